// A job's progress as the jobs list and the job page show it: step / total and epoch from the
// newest metrics event, elapsed time, and the trainer's estimate of the finish.

import { h } from "../dom";
import { duration, now } from "../format";
import { FINISHED, type Job, type Metrics } from "../types";

export function progressOf(job: Job, latest: Metrics | undefined): HTMLElement {
  if (job.status === "succeeded") {
    return h("span", { class: "progress-text" }, "complete");
  }
  if (!latest?.step || !latest.total_steps) {
    return h("span", { class: "progress-text muted" }, FINISHED.includes(job.status) ? "" : "not started");
  }
  const epochs = job.hyperparameters.n_epochs;
  const epoch =
    latest.epoch === undefined
      ? ""
      : ` · epoch ${Number.isInteger(latest.epoch) ? latest.epoch : latest.epoch.toFixed(2)}` +
        (typeof epochs === "number" ? ` / ${epochs}` : "");
  const label = `step ${latest.step} / ${latest.total_steps}${epoch}`;
  return h(
    "span",
    { class: "progress" },
    h("progress", { max: latest.total_steps, value: latest.step, "aria-label": label }),
    h("span", { class: "progress-text" }, label),
  );
}

export function elapsed(job: Job): string {
  return duration((job.finished_at ?? now()) - job.created_at);
}

export function estimate(job: Job): string {
  if (FINISHED.includes(job.status) || !job.estimated_finish) return "";
  const left = job.estimated_finish - now();
  return left > 0 ? `${duration(left)} left` : "any moment";
}
