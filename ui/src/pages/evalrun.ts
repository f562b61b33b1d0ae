// One eval run (the run's report_url points here): its model, status and scores, then every
// output item: the messages the model was given, what it answered, and each criterion's grade.
// Polled while the run is unfinished; the items are fetched again when more were graded.

import { ApiError, get, listAll } from "../api";
import { badge, errorBox, facts, h, replace } from "../dom";
import { dateTime } from "../format";
import { RUN_FINISHED, type EvalRun, type OutputItem } from "../types";
import { messageBubble } from "./conversation";
import { scoreCell } from "./eval";

const POLL_MS = 2000;
const FILTERS: [string, string][] = [
  ["all", "All items"],
  ["fail", "Failed"],
  ["error", "Errored"],
  ["pass", "Passed"],
];

export function evalRunPage(root: HTMLElement, evalId: string, _query: URLSearchParams, runId: string): () => void {
  const path = `/evals/${encodeURIComponent(evalId)}/runs/${encodeURIComponent(runId)}`;
  const header = h("div", {}, h("p", {}, "Loading the run…"));
  const status = h("div", { "aria-live": "polite" });
  const summary = h("div", {});
  const list = h("div", {});
  const filter = h(
    "select",
    { id: "item-filter", onchange: () => drawItems() },
    FILTERS.map(([value, label]) => h("option", { value }, label)),
  );
  replace(
    root,
    h("p", {}, h("a", { href: `#/evals/${encodeURIComponent(evalId)}` }, "← The eval's runs")),
    header,
    status,
    summary,
    h(
      "section",
      { "aria-labelledby": "items" },
      h("div", { class: "job-header" }, h("h2", { id: "items" }, "Output items"), h("div", { class: "actions" }, h("label", { for: "item-filter" }, "Show"), filter)),
      list,
    ),
  );

  let items: OutputItem[] = [];
  let itemsOfTotal = -1; // result_counts.total when the items were last fetched
  let timer = 0;
  let stopped = false;
  const drawItems = () => {
    const shown = filter.value === "all" ? items : items.filter((item) => item.status === filter.value);
    replace(list, itemsTable(shown, items.length));
  };
  const refresh = async () => {
    try {
      const run = await get<EvalRun>(path);
      if (run.result_counts.total !== itemsOfTotal || RUN_FINISHED.includes(run.status)) {
        items = (await listAll<OutputItem>(`${path}/output_items`)).sort((a, b) => a.datasource_item_id - b.datasource_item_id);
        itemsOfTotal = run.result_counts.total;
      }
      if (stopped) return;
      replace(header, h("h1", {}, "Run ", run.name || run.id, " ", badge(run.status)));
      replace(status, run.error?.message ? errorBox(`${run.error.code}: ${run.error.message}`) : null);
      replace(summary, runSummary(run));
      drawItems();
      clearTimeout(timer);
      if (!RUN_FINISHED.includes(run.status)) timer = window.setTimeout(refresh, POLL_MS);
    } catch (error) {
      if (stopped) return;
      replace(status, errorBox(error));
      clearTimeout(timer);
      // gone (deleted, or another organization's) stays gone; anything else may pass
      if (!(error instanceof ApiError && error.status === 404)) timer = window.setTimeout(refresh, POLL_MS * 2);
    }
  };
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function runSummary(run: EvalRun): HTMLElement {
  const counts = run.result_counts;
  return h(
    "div",
    { class: "columns" },
    facts([
      ["Model", h("span", {}, h("code", {}, run.model), " ", h("a", { href: `#/playground?models=${encodeURIComponent(run.model)}` }, "chat"))],
      ["Run", h("code", {}, run.id)],
      ["Eval", h("a", { href: `#/evals/${run.eval_id}` }, run.eval_id)],
      ["Items", `${counts.passed} passed, ${counts.failed} failed, ${counts.errored} errored of ${counts.total}`],
      ["Created", dateTime(run.created_at)],
    ]),
    h(
      "table",
      { class: "scores" },
      h("caption", {}, "Score per testing criterion"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Criterion"), h("th", { scope: "col" }, "Passed"))),
      h(
        "tbody",
        {},
        h("tr", {}, h("th", { scope: "row" }, "All criteria passed"), scoreCell(run, "overall", counts.passed, counts.total)),
        run.per_testing_criteria_results.map((result) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, result.testing_criteria),
            scoreCell(run, result.testing_criteria, result.passed, result.passed + result.failed),
          ),
        ),
      ),
    ),
  );
}

function itemsTable(items: OutputItem[], of: number): HTMLElement {
  if (!of) return h("p", { class: "muted" }, "No items graded yet.");
  if (!items.length) return h("p", { class: "muted" }, "No items of this kind.");
  return h(
    "table",
    { class: "output-items" },
    h("caption", { class: "visually-hidden" }, "Output items with their grades"),
    h("thead", {}, h("tr", {}, ["Item", "Input", "Output", "Grades"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      items.map((item) =>
        h(
          "tr",
          { "data-item": item.datasource_item_id, "data-status": item.status },
          h("td", {}, h("span", { class: "item-number" }, `#${item.datasource_item_id}`), " ", badge(item.status)),
          h("td", { class: "sample-input" }, h("div", { class: "conversation" }, item.sample.input.map(messageBubble))),
          h(
            "td",
            { class: "sample-output" },
            item.sample.error?.message
              ? errorBox(`${item.sample.error.code}: ${item.sample.error.message}`)
              : h("div", { class: "conversation" }, item.sample.output.map((m) => messageBubble({ role: m.role ?? "assistant", content: m.content }))),
            item.sample.finish_reason ? h("p", { class: "finish muted" }, `finish: ${item.sample.finish_reason}`) : null,
          ),
          h(
            "td",
            {},
            h(
              "ul",
              { class: "plain grades" },
              item.results.map((grade) =>
                h(
                  "li",
                  { "data-grade": grade.name },
                  h("span", { class: "grade-name" }, grade.name),
                  " ",
                  badge(grade.passed ? "pass" : "fail"),
                  " ",
                  h("span", { class: "muted" }, `score ${Number(grade.score.toPrecision(3))}`),
                ),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}
