// The dashboard's shell: hash routes (so a page's URL can be shared and a reload keeps the
// view), the navigation, and the sign-in gate. Each page renders into <main> and returns a
// function that stops its polling when the user leaves it.

import "./style.css";
import { apiKey, signOut } from "./api";
import { h, replace } from "./dom";
import { evalPage } from "./pages/eval";
import { evalRunPage } from "./pages/evalrun";
import { evalsPage } from "./pages/evals";
import { filePage, filesPage } from "./pages/files";
import { jobPage } from "./pages/job";
import { jobsPage } from "./pages/jobs";
import { modelsPage } from "./pages/models";
import { playgroundPage } from "./pages/playground";
import { signInPage } from "./pages/signin";
import { webhookPage } from "./pages/webhook";
import { webhooksPage } from "./pages/webhooks";

export type Cleanup = () => void;
// ``id`` is the route's first captured part; a route with more (an eval run's) gets them after ``query``
export type PageView = (root: HTMLElement, id: string, query: URLSearchParams, ...more: string[]) => Cleanup | void;

const ROUTES: [RegExp, PageView, string][] = [
  [/^\/jobs\/([^/]+)$/, jobPage, "jobs"],
  [/^\/jobs$/, jobsPage, "jobs"],
  [/^\/files\/([^/]+)$/, filePage, "files"],
  [/^\/files$/, filesPage, "files"],
  [/^\/models$/, modelsPage, "models"],
  [/^\/playground$/, playgroundPage, "playground"],
  // an eval run's report_url is /ui/#/evals/<eval_id>/runs/<run_id> (services/gateway/evals)
  [/^\/evals\/([^/]+)\/runs\/([^/]+)$/, evalRunPage, "evals"],
  [/^\/evals\/([^/]+)$/, evalPage, "evals"],
  [/^\/evals$/, evalsPage, "evals"],
  [/^\/webhooks\/([^/]+)$/, webhookPage, "webhooks"],
  [/^\/webhooks$/, webhooksPage, "webhooks"],
];
const SECTIONS: [string, string][] = [
  ["jobs", "Jobs"],
  ["files", "Files"],
  ["models", "Models"],
  ["playground", "Playground"],
  ["evals", "Evals"],
  ["webhooks", "Webhooks"],
];

let cleanup: Cleanup | void;
let navigated = false;
let signInNotice = "";

function render(): void {
  const root = document.getElementById("main")!;
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  cleanup?.();
  cleanup = undefined;
  if (!apiKey() || path === "/signin") {
    renderNav("");
    const next = path === "/signin" || !path ? "#/jobs" : location.hash;
    cleanup = signInPage(root, next, signInNotice);
    signInNotice = "";
    return;
  }
  for (const [pattern, view, section] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      renderNav(section);
      // after a navigation, keyboard and screen-reader users start at the new page's content
      if (navigated) root.focus({ preventScroll: true });
      const [id = "", ...more] = match.slice(1).map(decodeURIComponent);
      cleanup = view(root, id, new URLSearchParams(search), ...more);
      return;
    }
  }
  location.replace("#/jobs");
}

function renderNav(current: string): void {
  const nav = document.getElementById("nav")!;
  if (!apiKey()) return replace(nav);
  replace(
    nav,
    h(
      "ul",
      {},
      SECTIONS.map(([section, label]) =>
        h("li", {}, h("a", { href: `#/${section}`, "aria-current": section === current ? "page" : undefined }, label)),
      ),
      h(
        "li",
        {},
        h("button", { type: "button", class: "link", onclick: () => (signOut(), (location.hash = "#/signin")) }, "Sign out"),
      ),
    ),
  );
}

window.addEventListener("hashchange", () => {
  navigated = true;
  render();
});
window.addEventListener("tailor:signed-out", (event) => {
  signInNotice = `Signed out: ${(event as CustomEvent<string>).detail}`;
  render();
});
render();
