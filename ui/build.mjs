// Builds the dashboard into services/gateway/ui_static/ (or --outdir DIR): one script, one
// stylesheet and index.html, under fixed names and without timestamps, so that the same
// source and lockfile always give byte-identical files (tests/unit/gateway/test_ui_assets.py
// rebuilds and compares). --watch rebuilds on every change while developing.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outdirAt = args.indexOf("--outdir");
const outdir = resolve(outdirAt >= 0 ? args[outdirAt + 1] : join(here, "..", "services", "gateway", "ui_static"));
const watch = args.includes("--watch");

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
copyFileSync(join(here, "src", "index.html"), join(outdir, "index.html"));

const options = {
  entryPoints: { app: join(here, "src", "main.ts") },
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  outdir,
  legalComments: "eof",
  logLevel: "warning",
};
if (watch) {
  const context = await esbuild.context(options);
  await context.watch();
  console.log(`watching; writing to ${outdir}`);
} else {
  await esbuild.build(options);
}
