// One job: live loss curves, progress, controls (pause, resume, cancel), checkpoints with their
// metrics, the resolved hyperparameters, the result file and the events log. Polls every 2 s
// while the job is unfinished; new events are fetched down to the newest one already seen.

import { download, get, listAll, listNewer, post } from "../api";
import { LossChart } from "../chart";
import { badge, errorBox, facts, h, replace } from "../dom";
import { dateTime, metric } from "../format";
import { FINISHED, type Checkpoint, type Job, type JobEvent } from "../types";
import { elapsed, estimate, progressOf } from "./progress";

const POLL_MS = 2000;

export function jobPage(root: HTMLElement, jobId: string): () => void {
  const path = `/fine_tuning/jobs/${encodeURIComponent(jobId)}`;
  const chart = new LossChart();
  const header = h("div", { class: "job-header" });
  const notice = h("div", { "aria-live": "polite" });
  const summary = h("div", {});
  const checkpoints = h("div", {});
  const hyperparameters = h("div", {});
  const log = h("ol", { class: "events", "aria-label": "Events, newest first" });
  replace(
    root,
    header,
    notice,
    summary,
    h("section", { "aria-labelledby": "curves" }, h("h2", { id: "curves" }, "Loss curves"), chart.element),
    h(
      "div",
      { class: "columns" },
      h("section", { "aria-labelledby": "hp" }, h("h2", { id: "hp" }, "Hyperparameters"), hyperparameters),
      h("section", { "aria-labelledby": "ckpts" }, h("h2", { id: "ckpts" }, "Checkpoints"), checkpoints),
    ),
    h("section", { "aria-labelledby": "log" }, h("h2", { id: "log" }, "Events"), log),
  );

  const events: JobEvent[] = [];
  const seen = new Set<string>();
  let timer = 0;
  let stopped = false;
  let started = 0; // refreshes begun, and the newest one drawn: an older answer never overwrites a newer
  let drawn = 0;

  const act = async (action: "pause" | "resume" | "cancel") => {
    if (action === "cancel" && !confirm(`Cancel ${jobId}? A cancelled job cannot be resumed.`)) return;
    try {
      const job = await post<Job>(`${path}/${action}`);
      replace(notice, h("p", { class: "notice" }, `Asked to ${action}; the job is ${job.status}.`));
      window.setTimeout(() => replace(notice), 6000);
      clearTimeout(timer);
      await refresh();
    } catch (error) {
      replace(notice, errorBox(error));
    }
  };

  const refresh = async () => {
    const mine = ++started;
    try {
      const [job, fresh, kept] = await Promise.all([
        get<Job>(path),
        listNewer<JobEvent>(`${path}/events`, seen),
        listAll<Checkpoint>(`${path}/checkpoints`),
      ]);
      if (stopped || mine < drawn) return;
      drawn = mine;
      // a button's refresh may overlap a poll: keep one polling chain and each event once
      clearTimeout(timer);
      const unseen = fresh.filter((event) => !seen.has(event.id));
      for (const event of unseen) seen.add(event.id);
      events.unshift(...unseen);
      const metrics = events.filter((e) => e.type === "metrics").map((e) => e.data);
      chart.update(metrics);
      renderHeader(header, job, act);
      renderSummary(summary, job, metrics.length ? metrics.reduce((a, b) => ((b.step ?? 0) > (a.step ?? 0) ? b : a)) : undefined);
      replace(checkpoints, checkpointTable(kept));
      replace(hyperparameters, hyperparameterList(job));
      if (unseen.length) replace(log, events.map(eventItem));
      if (!FINISHED.includes(job.status)) timer = window.setTimeout(refresh, POLL_MS);
    } catch (error) {
      if (stopped) return;
      replace(notice, errorBox(error));
      clearTimeout(timer);
      timer = window.setTimeout(refresh, POLL_MS * 2);
    }
  };
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    chart.destroy();
  };
}

function renderHeader(header: HTMLElement, job: Job, act: (action: "pause" | "resume" | "cancel") => void): void {
  const running = !FINISHED.includes(job.status);
  const button = (action: "pause" | "resume" | "cancel", label: string, enabled: boolean) =>
    h("button", { type: "button", class: action === "cancel" ? "danger" : "", disabled: !enabled, onclick: () => act(action) }, label);
  const focused = document.activeElement instanceof HTMLButtonElement ? document.activeElement.textContent : null;
  replace(
    header,
    h("h1", {}, "Job ", h("code", {}, job.id), " ", badge(job.status)),
    h(
      "div",
      { class: "actions", role: "group", "aria-label": "Job controls" },
      button("pause", "Pause", running && job.status !== "paused"),
      button("resume", "Resume", job.status === "paused"),
      button("cancel", "Cancel", running),
    ),
  );
  // keep keyboard focus on the control the user was on across a refresh
  if (focused) [...header.querySelectorAll("button")].find((b) => b.textContent === focused && !b.disabled)?.focus();
}

function renderSummary(summary: HTMLElement, job: Job, latest: JobEvent["data"] | undefined): void {
  replace(
    summary,
    job.error ? errorBox(`${job.error.code}: ${job.error.message}`) : null,
    facts([
      ["Progress", progressOf(job, latest)],
      ["Base model", job.model],
      [
        "Fine-tuned model",
        job.fine_tuned_model
          ? h("span", {}, h("code", {}, job.fine_tuned_model), " ", h("a", { href: `#/playground?models=${encodeURIComponent(job.model)},${encodeURIComponent(job.fine_tuned_model)}` }, "compare in playground"))
          : null,
      ],
      ["Created", dateTime(job.created_at)],
      ["Finished", dateTime(job.finished_at)],
      ["Elapsed", elapsed(job)],
      ["Estimate", estimate(job)],
      ["Trained tokens", job.trained_tokens ?? null],
      ["Training file", h("a", { href: `#/files/${job.training_file}` }, job.training_file)],
      ["Validation file", job.validation_file ? h("a", { href: `#/files/${job.validation_file}` }, job.validation_file) : null],
      ["Suffix", job.user_provided_suffix],
      ["Seed", job.seed],
      [
        "Result file",
        job.result_files.length
          ? job.result_files.map((id) =>
              h("button", { type: "button", class: "link", onclick: () => download(id, `${job.id}-results.csv`) }, `Download ${id}`),
            )
          : null,
      ],
    ], true),
  );
}

function hyperparameterList(job: Job): HTMLElement {
  const values = job.method[job.method.type]?.hyperparameters ?? {};
  return facts([["method", job.method.type], ...Object.entries(values).map(([k, v]): [string, string] => [k, String(v)])]);
}

function checkpointTable(checkpoints: Checkpoint[]): HTMLElement {
  if (!checkpoints.length) return h("p", { class: "muted" }, "None yet.");
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, ["Step", "Model", "Train loss", "Valid loss", "Valid accuracy"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      checkpoints.map((c) =>
        h(
          "tr",
          {},
          h("td", {}, c.step_number),
          h("td", { class: "wrap" }, h("a", { href: `#/playground?models=${encodeURIComponent(c.fine_tuned_model_checkpoint)}` }, c.fine_tuned_model_checkpoint)),
          h("td", {}, metric(c.metrics.train_loss)),
          h("td", {}, metric(c.metrics.full_valid_loss ?? c.metrics.valid_loss)),
          h("td", {}, metric(c.metrics.full_valid_mean_token_accuracy ?? c.metrics.valid_mean_token_accuracy)),
        ),
      ),
    ),
  );
}

function eventItem(event: JobEvent): HTMLElement {
  return h(
    "li",
    { class: `event level-${event.level}` },
    h("time", { datetime: new Date(event.created_at * 1000).toISOString() }, dateTime(event.created_at)),
    " ",
    h("span", { class: "level" }, event.level),
    " ",
    event.message,
  );
}
