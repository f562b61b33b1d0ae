// Webhooks: the organization's endpoints with their delivery counts, and a form to add one.
// The signing secret is in the API's answer to a create (or a rotation) only, so the page shows
// it once, with a copy button, and never again: a reload lists the endpoint with its hint.

import { get, post, remove } from "../api";
import { errorBox, h, replace } from "../dom";
import { dateTime } from "../format";
import { WEBHOOK_EVENT_TYPES, type Page, type WebhookEndpoint, type WebhookEndpointWithSecret } from "../types";

const SHOWN = 100; // one page: an organization has a handful of endpoints
const REFRESH_MS = 5000; // while deliveries are pending, their counts move

export function webhooksPage(root: HTMLElement): () => void {
  const status = h("div", { "aria-live": "polite" });
  const list = h("div", {}, h("p", {}, "Loading endpoints…"));
  const fields = endpointFields("new", { name: "", url: "", event_types: [] });
  const form = h(
    "form",
    {
      class: "endpoint-form",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        const body = fields.read();
        if (!body) return;
        try {
          const created = await post<WebhookEndpointWithSecret>("/webhook_endpoints", body);
          replace(status, secretBox(created, "created"));
          form.reset();
          refresh();
        } catch (error) {
          replace(status, errorBox(error));
        }
      },
    },
    h("h2", {}, "New endpoint"),
    fields.element,
    h("button", { type: "submit" }, "Create endpoint"),
  );
  replace(
    root,
    h("h1", {}, "Webhooks"),
    h(
      "p",
      { class: "muted" },
      "Tailor POSTs an event to each endpoint subscribed to its type, signed with the endpoint's secret (Standard Webhooks), and retries until the endpoint answers 2xx.",
    ),
    form,
    status,
    h("h2", {}, "Endpoints"),
    list,
  );

  let timer = 0;
  let stopped = false;
  const refresh = async () => {
    clearTimeout(timer);
    try {
      const page = await get<Page<WebhookEndpoint>>(`/webhook_endpoints?limit=${SHOWN}`);
      if (stopped) return;
      const onDelete = async (endpoint: WebhookEndpoint) => {
        if (!confirm(`Delete the endpoint ${endpoint.name} (${endpoint.url})? Its pending deliveries are dropped.`)) return;
        try {
          await remove(`/webhook_endpoints/${encodeURIComponent(endpoint.id)}`);
          replace(status, h("p", { class: "notice" }, `Deleted ${endpoint.name}.`));
        } catch (error) {
          replace(status, errorBox(error));
        }
        refresh();
      };
      replace(list, endpointsTable(page.data, onDelete), page.has_more ? h("p", { class: "muted" }, `The newest ${SHOWN} endpoints.`) : null);
      clearTimeout(timer); // one polling chain, even when a create refreshed meanwhile
      if (page.data.some((e) => e.delivery_stats.pending > 0)) timer = window.setTimeout(refresh, REFRESH_MS);
    } catch (error) {
      if (!stopped) replace(list, errorBox(error));
    }
  };
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function endpointsTable(endpoints: WebhookEndpoint[], onDelete: (endpoint: WebhookEndpoint) => void): HTMLElement {
  if (!endpoints.length) return h("p", {}, "No endpoints yet.");
  return h(
    "table",
    { class: "endpoints" },
    h("caption", { class: "visually-hidden" }, "Webhook endpoints, newest first"),
    h(
      "thead",
      {},
      h("tr", {}, ["Endpoint", "URL", "Events", "Delivered", "Pending", "Failed", "Secret", "Created", ""].map((t) => h("th", { scope: "col" }, t))),
    ),
    h(
      "tbody",
      {},
      endpoints.map((endpoint) =>
        h(
          "tr",
          { "data-endpoint": endpoint.id },
          h("td", {}, h("a", { href: `#/webhooks/${endpoint.id}` }, endpoint.name), h("br"), h("code", { class: "muted" }, endpoint.id)),
          h("td", { class: "wrap" }, endpoint.url),
          h("td", {}, h("ul", { class: "plain" }, endpoint.event_types.map((type) => h("li", {}, h("code", {}, type))))),
          h("td", { class: "stat-delivered" }, endpoint.delivery_stats.delivered),
          h("td", { class: "stat-pending" }, endpoint.delivery_stats.pending),
          h("td", { class: endpoint.delivery_stats.failed ? "stat-failed bad" : "stat-failed" }, endpoint.delivery_stats.failed),
          h("td", {}, h("code", { class: "secret-hint" }, endpoint.signing_secret_hint)),
          h("td", {}, dateTime(endpoint.created_at)),
          h(
            "td",
            {},
            h(
              "button",
              { type: "button", class: "danger small", "aria-label": `Delete ${endpoint.name}`, onclick: () => onDelete(endpoint) },
              "Delete",
            ),
          ),
        ),
      ),
    ),
  );
}

export interface EndpointFields {
  element: HTMLElement;
  /** The form's values as the API takes them, or null (with a message shown) when incomplete. */
  read(): { name: string; url: string; event_types: string[] } | null;
}

/** Name, URL and event-type checkboxes; ``prefix`` keeps ids unique when two forms share a page. */
export function endpointFields(prefix: string, current: Pick<WebhookEndpoint, "name" | "url" | "event_types">): EndpointFields {
  const name = h("input", { id: `${prefix}-name`, required: true, maxlength: 256, value: current.name, autocomplete: "off" });
  const url = h("input", {
    id: `${prefix}-url`,
    type: "url",
    required: true,
    maxlength: 2048,
    value: current.url,
    placeholder: "https://example.com/tailor-webhooks",
    autocomplete: "off",
  });
  // an endpoint may hold a type this page does not know of yet: keep it offered
  const types = [...WEBHOOK_EVENT_TYPES, ...current.event_types.filter((t) => !WEBHOOK_EVENT_TYPES.includes(t))];
  const boxes = types.map((type) =>
    h("input", { type: "checkbox", id: `${prefix}-type-${type}`, value: type, checked: current.event_types.includes(type) }),
  );
  const problem = h("p", { class: "field-problem", id: `${prefix}-types-problem`, "aria-live": "polite" });
  const element = h(
    "div",
    { class: "endpoint-fields" },
    h("div", { class: "field" }, h("label", { for: name.id }, "Name"), name),
    h("div", { class: "field wide" }, h("label", { for: url.id }, "URL"), url),
    h(
      "fieldset",
      { class: "event-types", "aria-describedby": problem.id },
      h("legend", {}, "Event types"),
      h("div", { class: "checks" }, boxes.map((box) => h("label", { class: "check" }, box, " ", h("code", {}, box.value)))),
      problem,
    ),
  );
  return {
    element,
    read() {
      const eventTypes = boxes.filter((b) => b.checked).map((b) => b.value);
      if (!eventTypes.length) {
        problem.textContent = "Choose at least one event type.";
        boxes[0]?.focus();
        return null;
      }
      problem.textContent = "";
      return { name: name.value.trim(), url: url.value.trim(), event_types: eventTypes };
    },
  };
}

/** The secret of a create or a rotation, shown this once with a copy button. */
export function secretBox(endpoint: WebhookEndpointWithSecret, what: "created" | "rotated"): HTMLElement {
  const secret = h("input", { class: "secret", id: "signing-secret", readonly: true, value: endpoint.signing_secret, size: 48, spellcheck: "false" });
  const copied = h("span", { class: "muted", "aria-live": "polite" });
  const box = h(
    "section",
    { class: "secret-box", role: "status", "aria-labelledby": "secret-title" },
    h("h2", { id: "secret-title" }, what === "created" ? `Endpoint ${endpoint.name} created` : `Secret of ${endpoint.name} rotated`),
    h("p", {}, h("strong", {}, "Copy the signing secret now: you will not see this again."), " Tailor keeps only its hint (", h("code", {}, endpoint.signing_secret_hint), ")."),
    h("p", {}, h("label", { for: "signing-secret" }, "Signing secret"), " ", secret),
    h(
      "div",
      { class: "actions" },
      h(
        "button",
        {
          type: "button",
          onclick: async () => {
            try {
              await navigator.clipboard.writeText(endpoint.signing_secret);
              copied.textContent = "Copied.";
            } catch {
              // no clipboard (an insecure origin): select it for Ctrl+C instead
              secret.select();
              copied.textContent = "Selected: press Ctrl+C to copy.";
            }
          },
        },
        "Copy secret",
      ),
      h("button", { type: "button", onclick: () => box.remove() }, "I have stored it"),
      copied,
    ),
  );
  return box;
}
