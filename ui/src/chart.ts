// The live loss chart of a job page: train and validation loss (left axis) and token accuracy
// (right axis, 0-1) per step, drawn with uPlot (a 50 kB canvas chart that redraws thousands of
// points in a millisecond). ``update`` is called with every metrics event known so far.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./dom";
import type { Metrics } from "./types";

const SERIES: { key: keyof Metrics; label: string; color: string; scale: "loss" | "acc"; dash?: number[] }[] = [
  { key: "train_loss", label: "train loss", color: "#1f6feb", scale: "loss" },
  { key: "valid_loss", label: "valid loss", color: "#d9480f", scale: "loss" },
  { key: "full_valid_loss", label: "full valid loss", color: "#862e9c", scale: "loss" },
  { key: "train_mean_token_accuracy", label: "train token accuracy", color: "#2b8a3e", scale: "acc", dash: [6, 4] },
  { key: "valid_mean_token_accuracy", label: "valid token accuracy", color: "#e67700", scale: "acc", dash: [6, 4] },
];

export class LossChart {
  readonly element: HTMLElement;
  private readonly plotArea: HTMLElement;
  private readonly summary: HTMLElement;
  private plot: uPlot | null = null;
  private readonly resize = new ResizeObserver(() => this.fit());

  constructor() {
    this.plotArea = h("div", { class: "chart-area" });
    this.summary = h("p", { class: "chart-summary", "aria-live": "polite" }, "No metrics yet.");
    this.element = h("figure", { class: "chart", "data-points": "0" }, this.plotArea, h("figcaption", {}, this.summary));
    this.resize.observe(this.plotArea);
  }

  update(points: Metrics[]): void {
    const bySteps = new Map<number, Metrics>();
    for (const point of points) {
      if (point.step === undefined) continue;
      bySteps.set(point.step, { ...bySteps.get(point.step), ...point });
    }
    const steps = [...bySteps.keys()].sort((a, b) => a - b);
    const shown = SERIES.filter((s) => steps.some((step) => bySteps.get(step)![s.key] !== undefined));
    const data: uPlot.AlignedData = [
      steps,
      ...shown.map((s) => steps.map((step) => bySteps.get(step)![s.key] ?? null)),
    ];
    this.element.dataset.points = String(steps.length);
    if (steps.length === 0) return;
    const last = bySteps.get(steps[steps.length - 1])!;
    this.summary.textContent =
      `${steps.length} steps plotted; step ${last.step}` +
      (last.total_steps ? ` of ${last.total_steps}` : "") +
      shown.map((s) => (last[s.key] !== undefined ? `, ${s.label} ${Number(last[s.key]).toPrecision(4)}` : "")).join("");
    const key = shown.map((s) => s.key).join();
    if (this.plot && this.plot.series.length - 1 === shown.length && this.plot.root.dataset.key === key) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.plot = new uPlot(this.options(shown), data, this.plotArea);
    this.plot.root.dataset.key = key;
  }

  destroy(): void {
    this.resize.disconnect();
    this.plot?.destroy();
  }

  private options(shown: typeof SERIES): uPlot.Options {
    return {
      width: Math.max(300, this.plotArea.clientWidth),
      height: 300,
      scales: { x: { time: false }, loss: {}, acc: { range: [0, 1] } },
      axes: [
        { label: "step" },
        { scale: "loss", label: "loss" },
        { scale: "acc", label: "token accuracy", side: 1, grid: { show: false } },
      ],
      series: [
        { label: "step" },
        ...shown.map((s) => ({
          label: s.label,
          scale: s.scale,
          stroke: s.color,
          width: 2,
          dash: s.dash,
          spanGaps: true,
          points: { show: true, size: 4 },
        })),
      ],
    };
  }

  private fit(): void {
    if (this.plot && this.plotArea.clientWidth > 0) {
      this.plot.setSize({ width: this.plotArea.clientWidth, height: 300 });
    }
  }
}
