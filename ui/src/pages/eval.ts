// One eval: its runs side by side, one column per run (base models first, then fine-tunes),
// with each run's model, status, progress and score per testing criterion drawn as a bar, so
// a fine-tune's gain over its base reads at a glance. Polled every 2 s while a run is
// unfinished, and every 10 s otherwise, so a run a script starts appears without a reload.

import { ApiError, get, listAll } from "../api";
import { badge, errorBox, facts, h, replace } from "../dom";
import { dateTime } from "../format";
import { RUN_FINISHED, type Eval, type EvalRun, type Model } from "../types";
import { criteriaList } from "./evals";
import { isBase } from "./models";

const POLL_MS = 2000;
const IDLE_POLL_MS = 10_000;

export function evalPage(root: HTMLElement, evalId: string): () => void {
  const path = `/evals/${encodeURIComponent(evalId)}`;
  const header = h("div", {}, h("p", {}, "Loading the eval…"));
  const status = h("div", { "aria-live": "polite" });
  const runs = h("div", {});
  replace(
    root,
    h("p", {}, h("a", { href: "#/evals" }, "← Evals")),
    header,
    status,
    h("section", { "aria-labelledby": "runs" }, h("h2", { id: "runs" }, "Runs side by side"), runs),
  );

  let timer = 0;
  let stopped = false;
  let baseModels: Set<string> | null = null; // fetched once: which models are base models
  const refresh = async () => {
    try {
      const [item, all] = await Promise.all([get<Eval>(path), listAll<EvalRun>(`${path}/runs`)]);
      baseModels ??= new Set((await get<{ data: Model[] }>("/models")).data.filter(isBase).map((m) => m.id));
      if (stopped) return;
      replace(
        header,
        h("h1", {}, item.name || item.id),
        facts([
          ["ID", h("code", {}, item.id)],
          ["Created", dateTime(item.created_at)],
          ["Testing criteria", criteriaList(item.testing_criteria)],
        ]),
      );
      replace(status);
      replace(runs, comparison(all, baseModels));
      clearTimeout(timer);
      const running = all.some((run) => !RUN_FINISHED.includes(run.status));
      timer = window.setTimeout(refresh, running ? POLL_MS : IDLE_POLL_MS);
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

function comparison(runs: EvalRun[], baseModels: Set<string>): HTMLElement {
  if (!runs.length) return h("p", {}, "No runs yet: start one with client.evals.runs.create.");
  const isBaseRun = (run: EvalRun) => baseModels.has(run.model);
  const ordered = [...runs].sort((a, b) => Number(isBaseRun(b)) - Number(isBaseRun(a)) || a.created_at - b.created_at);
  const criteria = [...new Set(ordered.flatMap((run) => run.per_testing_criteria_results.map((r) => r.testing_criteria)))];
  const row = (label: string, cell: (run: EvalRun) => HTMLElement, attributes: Record<string, string> = {}) =>
    h("tr", attributes, h("th", { scope: "row" }, label), ordered.map((run) => cell(run)));
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { class: "scoreboard" },
      h("caption", { class: "visually-hidden" }, "Runs of this eval, one column each: base models first, then fine-tuned models"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("td", {}),
          ordered.map((run) =>
            h(
              "th",
              { scope: "col", "data-run": run.id },
              h("a", { href: `#/evals/${run.eval_id}/runs/${run.id}` }, run.name || run.id),
              h("span", { class: `model-kind ${isBaseRun(run) ? "base" : "fine-tuned"}` }, isBaseRun(run) ? "base model" : "fine-tuned"),
              h("code", { class: "model-name" }, run.model),
            ),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        row("Status", (run) => h("td", { "data-run": run.id }, badge(run.status), run.error?.message ? h("p", { class: "error small" }, run.error.message) : null)),
        row("Progress", (run) => h("td", { "data-run": run.id }, progress(run))),
        row("All criteria passed", (run) => scoreCell(run, "overall", run.result_counts.passed, run.result_counts.total)),
        criteria.map((name) =>
          row(name, (run) => {
            const result = run.per_testing_criteria_results.find((r) => r.testing_criteria === name);
            return result ? scoreCell(run, name, result.passed, result.passed + result.failed) : h("td", { "data-run": run.id });
          }, { "data-criterion": name }),
        ),
      ),
    ),
  );
}

/** Passed, failed and errored items of those sampled so far, as counts and a stacked bar. */
function progress(run: EvalRun): HTMLElement {
  const { total, passed, failed, errored } = run.result_counts;
  const label = `${passed} passed, ${failed} failed, ${errored} errored of ${total}`;
  const part = (count: number, kind: string) =>
    count ? h("span", { class: `part ${kind}`, style: `width: ${(100 * count) / total}%` }) : null;
  return h(
    "div",
    { class: "run-progress" },
    h("div", { class: "stacked", "aria-hidden": "true" }, total ? [part(passed, "passed"), part(failed, "failed"), part(errored, "errored")] : null),
    h("span", { class: "progress-text" }, label),
  );
}

/** One score as a bar with its percentage and counts: ``passed`` of ``total`` graded items. */
export function scoreCell(run: EvalRun, criterion: string, passed: number, total: number): HTMLElement {
  const score = total ? passed / total : null;
  const text = score === null ? "no items yet" : `${Math.round(score * 100)}% (${passed} / ${total})`;
  return h(
    "td",
    { class: "score", "data-run": run.id, "data-criterion": criterion, "data-score": score === null ? "" : score.toFixed(4) },
    h("div", { class: "bar", "aria-hidden": "true" }, h("span", { style: `width: ${(score ?? 0) * 100}%` })),
    h("span", { class: "score-text" }, text),
  );
}
