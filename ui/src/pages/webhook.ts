// One webhook endpoint: its settings (edit name, URL and event types), rotate the signing
// secret (the new one shown once), delete it, and its recent delivery attempts with the
// endpoint's answer, the error and when the next retry is due. Polled while deliveries pend.

import { get, post, remove } from "../api";
import { badge, errorBox, facts, h, replace } from "../dom";
import { dateTime } from "../format";
import type { DeliveryAttempt, Page, WebhookEndpoint, WebhookEndpointWithSecret } from "../types";
import { endpointFields, secretBox } from "./webhooks";

const ATTEMPTS_SHOWN = 50;
const POLL_MS = 3000;

export function webhookPage(root: HTMLElement, endpointId: string): () => void {
  const path = `/webhook_endpoints/${encodeURIComponent(endpointId)}`;
  const header = h("div", { class: "job-header" });
  const status = h("div", { "aria-live": "polite" });
  const summary = h("div", {});
  const editor = h("div", {});
  const attempts = h("div", {}, h("p", {}, "Loading delivery attempts…"));
  replace(
    root,
    h("p", {}, h("a", { href: "#/webhooks" }, "← Webhooks")),
    header,
    status,
    summary,
    h("section", { "aria-labelledby": "deliveries" }, h("h2", { id: "deliveries" }, "Recent delivery attempts"), attempts),
    h("section", { "aria-labelledby": "edit" }, h("h2", { id: "edit" }, "Edit"), editor),
  );

  let timer = 0;
  let stopped = false;
  let editing = false; // the edit form is drawn once, so a poll never clears what the user types

  const rotate = async (endpoint: WebhookEndpoint) => {
    if (!confirm(`Rotate the signing secret of ${endpoint.name}? Deliveries are signed with the new one at once.`)) return;
    try {
      replace(status, secretBox(await post<WebhookEndpointWithSecret>(`${path}/rotate_secret`), "rotated"));
      refresh();
    } catch (error) {
      replace(status, errorBox(error));
    }
  };
  const destroy = async (endpoint: WebhookEndpoint) => {
    if (!confirm(`Delete the endpoint ${endpoint.name} (${endpoint.url})? Its pending deliveries are dropped.`)) return;
    try {
      await remove(path);
      location.hash = "#/webhooks";
    } catch (error) {
      replace(status, errorBox(error));
    }
  };

  const refresh = async () => {
    clearTimeout(timer);
    try {
      const [endpoint, page] = await Promise.all([
        get<WebhookEndpoint>(path),
        get<Page<DeliveryAttempt>>(`${path}/deliveries?limit=${ATTEMPTS_SHOWN}`),
      ]);
      if (stopped) return;
      replace(
        header,
        h("h1", {}, endpoint.name),
        h(
          "div",
          { class: "actions", role: "group", "aria-label": "Endpoint controls" },
          h("button", { type: "button", onclick: () => rotate(endpoint) }, "Rotate secret"),
          h("button", { type: "button", class: "danger", onclick: () => destroy(endpoint) }, "Delete"),
        ),
      );
      replace(summary, summaryOf(endpoint));
      replace(attempts, attemptsTable(page.data), page.has_more ? h("p", { class: "muted" }, `The newest ${ATTEMPTS_SHOWN} attempts.`) : null);
      if (!editing) {
        editing = true;
        replace(editor, editForm(endpoint, path, status, refresh));
      }
      clearTimeout(timer);
      if (endpoint.delivery_stats.pending > 0) timer = window.setTimeout(refresh, POLL_MS);
    } catch (error) {
      if (!stopped) replace(status, errorBox(error));
    }
  };
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function summaryOf(endpoint: WebhookEndpoint): HTMLElement {
  const stats = endpoint.delivery_stats;
  return facts(
    [
      ["ID", h("code", {}, endpoint.id)],
      ["URL", h("code", {}, endpoint.url)],
      ["Event types", endpoint.event_types.map((t, i) => [i ? ", " : "", h("code", {}, t)])],
      ["Secret", h("code", {}, endpoint.signing_secret_hint)],
      ["Deliveries", `${stats.delivered} delivered, ${stats.pending} pending, ${stats.failed} failed`],
      ["Created", dateTime(endpoint.created_at)],
      ["Updated", dateTime(endpoint.updated_at)],
    ],
    true,
  );
}

function editForm(endpoint: WebhookEndpoint, path: string, status: HTMLElement, refresh: () => void): HTMLElement {
  const fields = endpointFields("edit", endpoint);
  return h(
    "form",
    {
      class: "endpoint-form",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        const body = fields.read();
        if (!body) return;
        try {
          const saved = await post<WebhookEndpoint>(path, body);
          replace(status, h("p", { class: "notice" }, `Saved ${saved.name}.`));
          refresh();
        } catch (error) {
          replace(status, errorBox(error));
        }
      },
    },
    fields.element,
    h("button", { type: "submit" }, "Save changes"),
  );
}

function attemptsTable(attempts: DeliveryAttempt[]): HTMLElement {
  if (!attempts.length) return h("p", { class: "muted" }, "No deliveries yet: events of the subscribed types are delivered here.");
  return h(
    "table",
    { class: "attempts" },
    h("caption", { class: "visually-hidden" }, "Delivery attempts, newest first"),
    h(
      "thead",
      {},
      h("tr", {}, ["Attempted", "Event", "State", "HTTP status", "Error", "Next attempt"].map((t) => h("th", { scope: "col" }, t))),
    ),
    h(
      "tbody",
      {},
      attempts.map((attempt) =>
        h(
          "tr",
          { "data-attempt": attempt.id },
          h("td", {}, dateTime(attempt.attempted_at)),
          h("td", {}, h("code", {}, attempt.event_type), h("br"), h("code", { class: "muted" }, attempt.event_id)),
          h("td", {}, badge(attempt.state)),
          h("td", {}, attempt.status_code ?? h("span", { class: "muted" }, "no answer")),
          h("td", { class: "wrap" }, attempt.error ?? ""),
          h("td", {}, attempt.next_attempt_at ? dateTime(attempt.next_attempt_at) : ""),
        ),
      ),
    ),
  );
}
