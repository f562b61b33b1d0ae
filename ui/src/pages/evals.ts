// Evals: every eval of the organization with its testing criteria. Evals and their runs are
// created with the API or the SDK (``client.evals``); the pages show how the runs scored.

import { get } from "../api";
import { errorBox, h, replace } from "../dom";
import { dateTime } from "../format";
import type { Eval, Page, TestingCriterion } from "../types";

const SHOWN = 100;

export function evalsPage(root: HTMLElement): void {
  const list = h("div", {}, h("p", {}, "Loading evals…"));
  replace(
    root,
    h("h1", {}, "Evals"),
    h(
      "p",
      { class: "muted" },
      "Create an eval and run it against models with the API or the SDK (client.evals); each eval's page compares its runs.",
    ),
    list,
  );
  get<Page<Eval>>(`/evals?limit=${SHOWN}&order=desc`)
    .then((page) =>
      replace(list, evalsTable(page.data), page.has_more ? h("p", { class: "muted" }, `The newest ${SHOWN} evals.`) : null),
    )
    .catch((error) => replace(list, errorBox(error)));
}

function evalsTable(evals: Eval[]): HTMLElement {
  if (!evals.length) return h("p", {}, "No evals yet.");
  return h(
    "table",
    { class: "evals" },
    h("caption", { class: "visually-hidden" }, "Evals, newest first"),
    h("thead", {}, h("tr", {}, ["Eval", "Testing criteria", "Created"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      evals.map((item) =>
        h(
          "tr",
          { "data-eval": item.id },
          h("td", {}, h("a", { href: `#/evals/${item.id}` }, item.name || item.id), h("br"), h("code", { class: "muted" }, item.id)),
          h("td", {}, criteriaList(item.testing_criteria)),
          h("td", {}, dateTime(item.created_at)),
        ),
      ),
    ),
  );
}

/** Each criterion's name, grader type and pass threshold. */
export function criteriaList(criteria: TestingCriterion[]): HTMLElement {
  return h(
    "ul",
    { class: "plain" },
    criteria.map((criterion) =>
      h(
        "li",
        {},
        criterion.name,
        " ",
        h("span", { class: "muted" }, `(${criterion.type}${criterion.pass_threshold !== undefined ? `, passes at ${criterion.pass_threshold}` : ""})`),
      ),
    ),
  );
}
