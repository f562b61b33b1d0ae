// Models: the base models and the organization's fine-tuned models and checkpoints, each with
// the job that made it; chat with one in the playground, or delete it.

import { get, listAll, remove } from "../api";
import { errorBox, h, replace } from "../dom";
import { dateTime } from "../format";
import type { Job, Model } from "../types";

const CHECKPOINT = ":ckpt-step-";

export function modelsPage(root: HTMLElement): void {
  const status = h("div", { "aria-live": "polite" });
  const list = h("div", {}, h("p", {}, "Loading models…"));
  replace(root, h("h1", {}, "Models"), status, list);
  const refresh = async () => {
    try {
      const [models, jobs] = await Promise.all([get<{ data: Model[] }>("/models"), listAll<Job>("/fine_tuning/jobs")]);
      const jobOf = new Map(jobs.filter((j) => j.fine_tuned_model).map((j) => [j.fine_tuned_model!, j]));
      replace(list, modelsTable(models.data, jobOf, async (model) => {
        if (!confirm(`Delete ${model.id}? It cannot be used afterwards.`)) return;
        try {
          await remove(`/models/${encodeURIComponent(model.id)}`);
          replace(status, h("p", { class: "notice" }, `Deleted ${model.id}.`));
        } catch (error) {
          replace(status, errorBox(error));
        }
        refresh();
      }));
    } catch (error) {
      replace(list, errorBox(error));
    }
  };
  refresh();
}

/** A base model is served to every organization; the rest are fine-tunes and their checkpoints. */
export function isBase(model: Model): boolean {
  return model.owned_by === "system";
}

function kind(model: Model): string {
  if (isBase(model)) return "base";
  return model.id.includes(CHECKPOINT) ? "checkpoint" : "fine-tuned";
}

function modelsTable(models: Model[], jobOf: Map<string, Job>, onDelete: (model: Model) => void): HTMLElement {
  // base models first, then each fine-tuned model followed by its checkpoints, latest step first
  const step = (m: Model) => Number(m.id.split(CHECKPOINT)[1] ?? Infinity);
  const root = (m: Model) => m.id.split(CHECKPOINT)[0];
  const sorted = [...models].sort(
    (a, b) =>
      Number(kind(a) !== "base") - Number(kind(b) !== "base") || root(a).localeCompare(root(b)) || step(b) - step(a),
  );
  return h(
    "table",
    { class: "models" },
    h("caption", { class: "visually-hidden" }, "Models"),
    h("thead", {}, h("tr", {}, ["Model", "Kind", "Owner", "Created", "Job", ""].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      sorted.map((model) => {
        const job = jobOf.get(model.id.split(CHECKPOINT)[0]);
        return h(
          "tr",
          { "data-model": model.id },
          h("td", { class: "wrap" }, h("code", {}, model.id)),
          h("td", {}, kind(model)),
          h("td", {}, model.owned_by),
          h("td", {}, dateTime(model.created)),
          h("td", {}, job ? h("a", { href: `#/jobs/${job.id}` }, job.id) : ""),
          h(
            "td",
            {},
            h(
              "div",
              { class: "actions" },
              h("a", { class: "button small", href: `#/playground?models=${encodeURIComponent(model.id)}` }, "Chat"),
            kind(model) === "base"
              ? null
              : h("button", { type: "button", class: "danger small", "aria-label": `Delete ${model.id}`, onclick: () => onDelete(model) }, "Delete"),
            ),
          ),
        );
      }),
    ),
  );
}
