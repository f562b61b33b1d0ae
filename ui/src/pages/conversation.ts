// One message of a conversation as the file preview and the playground show it.

import { h } from "../dom";

/** Any message with a role: a chat message, or an eval sample's input and output. */
export function messageBubble(message: { role: string; content: unknown }): HTMLElement {
  return h(
    "div",
    { class: `message role-${message.role}` },
    h("span", { class: "role" }, message.role),
    h("div", { class: "content" }, typeof message.content === "string" ? message.content : JSON.stringify(message.content)),
  );
}
