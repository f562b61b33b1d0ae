// The playground: chat with any model of the organization, streamed; with two or three
// columns, the same prompt goes to every chosen model (base, fine-tuned, a checkpoint) and the
// answers stream side by side. The chosen models are in the URL (#/playground?models=a,b), so
// a comparison can be shared.

import { get, streamChat } from "../api";
import { errorBox, h, replace } from "../dom";
import type { ChatMessage, Model } from "../types";
import { messageBubble } from "./conversation";

const MAX_COLUMNS = 3;

interface Column {
  model: string;
  messages: ChatMessage[];
  element: HTMLElement;
  transcript: HTMLElement;
  controller: AbortController | null;
}

export function playgroundPage(root: HTMLElement, _id: string, query: URLSearchParams): () => void {
  replace(root, h("h1", {}, "Playground"), h("p", {}, "Loading models…"));
  const columns: Column[] = [];
  let models: Model[] = [];
  const grid = h("div", { class: "compare" });
  const system = h("textarea", { id: "system-prompt", rows: 2, placeholder: "Optional" });
  const prompt = h("textarea", { id: "prompt", rows: 3, required: true, placeholder: "Ctrl+Enter sends" });
  const maxTokens = h("input", { id: "max-tokens", type: "number", min: 1, max: 4096, value: "64" });
  const temperature = h("input", { id: "temperature", type: "number", min: 0, max: 2, step: 0.1, value: "0" });
  const addButton = h("button", { type: "button", onclick: () => addColumn(models[0]?.id ?? "") }, "Add a model to compare");

  const syncUrl = () => {
    const wanted = `#/playground?models=${columns.map((c) => encodeURIComponent(c.model)).join(",")}`;
    if (location.hash !== wanted) history.replaceState(null, "", wanted);
    addButton.disabled = columns.length >= MAX_COLUMNS;
    for (const c of columns) c.element.querySelector<HTMLButtonElement>(".remove")!.disabled = columns.length === 1;
  };

  const addColumn = (model: string) => {
    const index = columns.length + 1;
    const select = h(
      "select",
      { id: `model-${index}`, class: "model-select" },
      models.map((m) => h("option", { value: m.id, selected: m.id === model }, m.id)),
    );
    const transcript = h("div", { class: "transcript", "aria-live": "polite" });
    // the select cuts long names; the full one (ft:...:ckpt-step-N) is spelled out below it
    const fullName = h("p", { class: "model-name" }, h("code", {}, model));
    const column: Column = { model, messages: [], transcript, controller: null, element: h("section") };
    column.element = h(
      "section",
      { class: "column", "aria-label": `Column ${index}`, "data-state": "idle" },
      h(
        "div",
        { class: "column-head" },
        h("label", { for: `model-${index}` }, `Model ${index}`),
        select,
        h("button", { type: "button", class: "remove small", "aria-label": `Remove model ${index}`, onclick: () => removeColumn(column) }, "Remove"),
      ),
      fullName,
      transcript,
    );
    select.addEventListener("change", () => {
      column.model = select.value;
      replace(fullName, h("code", {}, select.value));
      syncUrl();
    });
    columns.push(column);
    grid.appendChild(column.element);
    syncUrl();
  };

  const removeColumn = (column: Column) => {
    column.controller?.abort();
    columns.splice(columns.indexOf(column), 1);
    column.element.remove();
    syncUrl();
  };

  const send = async (event: Event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
    prompt.value = "";
    await Promise.all(columns.map((column) => ask(column, text)));
  };

  const ask = async (column: Column, text: string) => {
    column.messages.push({ role: "user", content: text });
    column.transcript.appendChild(messageBubble({ role: "user", content: text }));
    const answer = messageBubble({ role: "assistant", content: "" });
    const content = answer.querySelector(".content")!;
    const footer = h("p", { class: "finish muted" }, "…");
    answer.appendChild(footer);
    column.transcript.appendChild(answer);
    column.element.dataset.state = "streaming";
    column.controller = new AbortController();
    let reply = "";
    try {
      const messages = system.value.trim() ? [{ role: "system" as const, content: system.value.trim() }, ...column.messages] : column.messages;
      const finish = await streamChat(
        { model: column.model, messages, max_tokens: Number(maxTokens.value) || 64, temperature: Number(temperature.value) || 0 },
        (piece) => {
          reply += piece;
          content.textContent = reply;
        },
        column.controller.signal,
      );
      // a model may answer only spaces and newlines (an untrained base often does): say so
      if (reply && !reply.trim()) content.textContent = `(${reply.length} whitespace characters)`;
      footer.textContent = `finish: ${finish || "stop"}`;
      column.element.dataset.state = "done";
    } catch (error) {
      footer.replaceWith(errorBox(error));
      column.element.dataset.state = "error";
    }
    column.messages.push({ role: "assistant", content: reply });
    column.controller = null;
  };

  const clear = () => {
    for (const column of columns) {
      column.controller?.abort();
      column.messages = [];
      replace(column.transcript);
      column.element.dataset.state = "idle";
    }
  };

  const form = h(
    "form",
    { class: "prompt", onsubmit: send },
    h("div", { class: "field" }, h("label", { for: "system-prompt" }, "System message"), system),
    h("div", { class: "field" }, h("label", { for: "prompt" }, "Message"), prompt),
    h(
      "div",
      { class: "row" },
      h("label", { for: "max-tokens" }, "Max tokens"),
      maxTokens,
      h("label", { for: "temperature" }, "Temperature"),
      temperature,
      h("button", { type: "submit" }, "Send"),
      h("button", { type: "button", onclick: clear }, "Clear conversation"),
      addButton,
    ),
  );
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });

  get<{ data: Model[] }>("/models")
    .then((answer) => {
      models = answer.data;
      replace(root, h("h1", {}, "Playground"), grid, form);
      const wanted = (query.get("models") ?? "").split(",").filter((m) => models.some((x) => x.id === m));
      for (const model of (wanted.length ? wanted : [models[0]?.id ?? ""]).slice(0, MAX_COLUMNS)) addColumn(model);
    })
    .catch((error) => replace(root, h("h1", {}, "Playground"), errorBox(error)));

  return () => {
    for (const column of columns) column.controller?.abort();
  };
}
