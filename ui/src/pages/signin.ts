// Sign-in: the user pastes an API key; it is checked with one call (the model list) and kept
// in sessionStorage for this tab only.

import { get, signIn, signOut } from "../api";
import { errorBox, h, replace } from "../dom";

export function signInPage(root: HTMLElement, next: string, notice: string): void {
  const input = h("input", {
    id: "api-key",
    type: "password",
    name: "api-key",
    autocomplete: "off",
    required: true,
    placeholder: "sk-...",
  });
  const status = h("div", { "aria-live": "polite" }, notice ? errorBox(notice) : null);
  const form = h(
    "form",
    {
      class: "signin",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        signIn(input.value.trim());
        try {
          await get("/models");
        } catch (error) {
          signOut();
          replace(status, errorBox(error));
          return;
        }
        if (location.hash === next) window.dispatchEvent(new HashChangeEvent("hashchange"));
        else location.hash = next;
      },
    },
    h("h1", {}, "Sign in"),
    h(
      "p",
      {},
      "Paste an API key of your organization. It is kept in this browser tab only and sent with every call to this gateway's API.",
    ),
    h("label", { for: "api-key" }, "API key"),
    input,
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  replace(root, form);
  input.focus();
}
