// One message of a conversation as the file preview and the playground show it.

import { h } from "../dom";
import type { ChatMessage } from "../types";

export function messageBubble(message: ChatMessage): HTMLElement {
  return h(
    "div",
    { class: `message role-${message.role}` },
    h("span", { class: "role" }, message.role),
    h("div", { class: "content" }, typeof message.content === "string" ? message.content : JSON.stringify(message.content)),
  );
}
