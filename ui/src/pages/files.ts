// Files: upload a training file, see every file's status and validation problems (the
// dataset service names the line in ``status_details``), and preview a file's first examples
// rendered as conversations.

import { fileHead, get, post, remove } from "../api";
import { badge, errorBox, facts, h, replace } from "../dom";
import { bytes, dateTime } from "../format";
import type { ChatMessage, FileObject, Page } from "../types";
import { messageBubble } from "./conversation";

const PREVIEW_EXAMPLES = 5;
const SHOWN = 100; // one page: the list is refreshed while files are being validated

export function filesPage(root: HTMLElement): () => void {
  const list = h("div", {}, h("p", {}, "Loading files…"));
  const status = h("div", { "aria-live": "polite" });
  const input = h("input", { id: "upload-file", type: "file", accept: ".jsonl,.json,.txt", required: true });
  const purpose = h(
    "select",
    { id: "upload-purpose" },
    ["fine-tune", "user_data", "evals"].map((p) => h("option", { value: p }, p)),
  );
  const form = h(
    "form",
    {
      class: "upload",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        const file = input.files?.[0];
        if (!file) return;
        const body = new FormData();
        body.append("purpose", purpose.value);
        body.append("file", file, file.name);
        replace(status, h("p", {}, `Uploading ${file.name}…`));
        try {
          const uploaded = await post<FileObject>("/files", body);
          replace(status, h("p", { class: "notice" }, `Uploaded ${uploaded.filename} as `, h("a", { href: `#/files/${uploaded.id}` }, uploaded.id), "."));
          form.reset();
          refresh();
        } catch (error) {
          replace(status, errorBox(error));
        }
      },
    },
    h("h2", {}, "Upload"),
    h("label", { for: "upload-file" }, "JSONL file"),
    input,
    h("label", { for: "upload-purpose" }, "Purpose"),
    purpose,
    h("button", { type: "submit" }, "Upload"),
  );
  replace(root, h("h1", {}, "Files"), form, status, list);

  let timer = 0;
  let stopped = false;
  const refresh = async () => {
    clearTimeout(timer);
    try {
      const page = await get<Page<FileObject>>(`/files?limit=${SHOWN}`);
      const files = page.data;
      if (stopped) return;
      replace(list, filesTable(files, refresh), page.has_more ? h("p", { class: "muted" }, `The newest ${SHOWN} files.`) : null);
      // a file is "uploaded" while the dataset service still validates it
      clearTimeout(timer); // one polling chain, even when an upload refreshed meanwhile
      if (files.some((f) => f.status === "uploaded")) timer = window.setTimeout(refresh, 1500);
    } catch (error) {
      if (!stopped) replace(list, errorBox(error));
    }
  };
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function filesTable(files: FileObject[], refresh: () => void): HTMLElement {
  if (!files.length) return h("p", {}, "No files yet.");
  return h(
    "table",
    { class: "files" },
    h("caption", { class: "visually-hidden" }, "Files, newest first"),
    h("thead", {}, h("tr", {}, ["File", "Purpose", "Size", "Status", "Problems", "Uploaded", ""].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      files.map((file) =>
        h(
          "tr",
          { "data-file": file.id },
          h("td", {}, h("a", { href: `#/files/${file.id}` }, file.filename), h("br"), h("code", { class: "muted" }, file.id)),
          h("td", {}, file.purpose),
          h("td", {}, bytes(file.bytes)),
          h("td", {}, badge(file.status)),
          h("td", { class: "problems wrap" }, file.status_details ?? ""),
          h("td", {}, dateTime(file.created_at)),
          h(
            "td",
            {},
            h(
              "button",
              {
                type: "button",
                class: "danger small",
                "aria-label": `Delete ${file.filename}`,
                onclick: async () => {
                  if (!confirm(`Delete ${file.filename} (${file.id})?`)) return;
                  await remove(`/files/${file.id}`).catch((e) => alert(e.message));
                  refresh();
                },
              },
              "Delete",
            ),
          ),
        ),
      ),
    ),
  );
}

export function filePage(root: HTMLElement, fileId: string): void {
  replace(root, h("p", {}, "Loading…"));
  (async () => {
    const file = await get<FileObject>(`/files/${encodeURIComponent(fileId)}`);
    const problemLine = Number(/line (\d+)/.exec(file.status_details ?? "")?.[1] ?? 0);
    const head = await fileHead(file.id).catch(() => null);
    const lines = head ? head.text.split("\n") : [];
    if (head && !head.complete) lines.pop(); // the last line may be cut
    replace(
      root,
      h("p", {}, h("a", { href: "#/files" }, "← Files")),
      h("h1", {}, file.filename, " ", badge(file.status)),
      file.status_details ? h("p", { class: "error problems", role: "alert" }, file.status_details) : null,
      facts([
        ["ID", h("code", {}, file.id)],
        ["Purpose", file.purpose],
        ["Size", bytes(file.bytes)],
        ["Uploaded", dateTime(file.created_at)],
      ]),
      h("section", { "aria-labelledby": "stats" }, h("h2", { id: "stats" }, "Statistics"), statistics(lines, head?.complete ?? false)),
      h(
        "section",
        { "aria-labelledby": "preview" },
        h("h2", { id: "preview" }, "First examples"),
        preview(lines, problemLine),
      ),
    );
  })().catch((error) => replace(root, errorBox(error)));
}

function parse(line: string): { messages?: ChatMessage[] } | null {
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

function statistics(lines: string[], complete: boolean): HTMLElement {
  const examples = lines.filter((l) => l.trim()).map(parse);
  const messages = examples.map((e) => (Array.isArray(e?.messages) ? e!.messages : []));
  const characters = messages.map((m) => m.reduce((sum, msg) => sum + (typeof msg.content === "string" ? msg.content.length : 0), 0));
  const total = characters.reduce((a, b) => a + b, 0);
  return facts([
    [complete ? "Examples" : "Examples in the first 64 KiB", examples.length],
    ["Unreadable lines", examples.filter((e) => e === null).length],
    ["Messages per example (mean)", examples.length ? (messages.reduce((a, m) => a + m.length, 0) / examples.length).toFixed(1) : ""],
    ["Characters per example (mean / max)", examples.length ? `${Math.round(total / examples.length)} / ${Math.max(...characters)}` : ""],
  ]);
}

function preview(lines: string[], problemLine: number): HTMLElement {
  const shown = new Set<number>();
  for (let i = 0; i < lines.length && shown.size < PREVIEW_EXAMPLES; i++) if (lines[i].trim()) shown.add(i + 1);
  if (problemLine && problemLine <= lines.length) shown.add(problemLine);
  if (!shown.size) return h("p", { class: "muted" }, "The file is empty.");
  return h(
    "ol",
    { class: "examples" },
    [...shown].sort((a, b) => a - b).map((number) => {
      const raw = lines[number - 1];
      const example = parse(raw);
      const isProblem = number === problemLine;
      return h(
        "li",
        { class: isProblem ? "example problem" : "example", value: number, "data-line": number },
        h("p", { class: "line-number" }, `Line ${number}`, isProblem ? " — the problem named above" : ""),
        Array.isArray(example?.messages)
          ? h("div", { class: "conversation" }, example!.messages.map(messageBubble))
          : h("pre", { class: "raw" }, raw),
      );
    }),
  );
}
