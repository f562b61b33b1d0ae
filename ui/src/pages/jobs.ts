// The jobs list: every job of the organization with status, progress, elapsed time and
// estimate; refreshed every few seconds while any job is unfinished.

import { get } from "../api";
import { badge, errorBox, h, replace } from "../dom";
import { FINISHED, type Job, type JobEvent, type Metrics, type Page } from "../types";
import { elapsed, estimate, progressOf } from "./progress";

const REFRESH_MS = 3000;
const SHOWN = 100; // one page: the list is refreshed while jobs run, so it stays one call

export function jobsPage(root: HTMLElement): () => void {
  const table = h("div", {}, h("p", {}, "Loading jobs…"));
  replace(
    root,
    h("h1", {}, "Fine-tuning jobs"),
    h("p", { class: "muted" }, "Start a job with the API, the SDK or the tailor command; it appears here."),
    table,
  );
  let timer = 0;
  let stopped = false;
  const refresh = async () => {
    try {
      const page = await get<Page<Job>>(`/fine_tuning/jobs?limit=${SHOWN}`);
      const jobs = page.data;
      // only a running or paused job has progress to show
      const latest = await Promise.all(
        jobs.map((job) => (job.status === "running" || job.status === "paused" ? latestMetrics(job.id) : undefined)),
      );
      if (stopped) return;
      replace(table, jobsTable(jobs, latest), page.has_more ? h("p", { class: "muted" }, `The newest ${SHOWN} jobs.`) : null);
      if (jobs.some((job) => !FINISHED.includes(job.status))) timer = window.setTimeout(refresh, REFRESH_MS);
    } catch (error) {
      if (!stopped) replace(table, errorBox(error));
    }
  };
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** The newest metrics of a job among its last events. */
export async function latestMetrics(jobId: string): Promise<Metrics | undefined> {
  const page = await get<Page<JobEvent>>(`/fine_tuning/jobs/${encodeURIComponent(jobId)}/events?limit=20`);
  return page.data.find((event) => event.type === "metrics")?.data;
}

function jobsTable(jobs: Job[], latest: (Metrics | undefined)[]): HTMLElement {
  if (jobs.length === 0) return h("p", {}, "No jobs yet.");
  return h(
    "table",
    { class: "jobs" },
    h("caption", { class: "visually-hidden" }, "Fine-tuning jobs, newest first"),
    h(
      "thead",
      {},
      h("tr", {}, ["Job", "Base model", "Fine-tuned model", "Status", "Progress", "Elapsed", "Estimate"].map((t) => h("th", { scope: "col" }, t))),
    ),
    h(
      "tbody",
      {},
      jobs.map((job, i) =>
        h(
          "tr",
          { "data-job": job.id },
          h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.id)),
          h("td", {}, job.model),
          h("td", { class: "wrap" }, job.fine_tuned_model ?? ""),
          h("td", {}, badge(job.status)),
          h("td", {}, progressOf(job, latest[i])),
          h("td", {}, elapsed(job)),
          h("td", {}, estimate(job)),
        ),
      ),
    ),
  );
}
