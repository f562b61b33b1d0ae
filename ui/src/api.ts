// Every call the dashboard makes goes to the gateway's own /v1 API with the signed-in key, so
// a user sees exactly what their organization may see. The key lives in sessionStorage: it is
// kept for this tab only and forgotten when the tab closes.

import type { ChatMessage, Page } from "./types";

const KEY_NAME = "tailor.apiKey";
const API = "/v1";

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY_NAME);
}

export function signIn(key: string): void {
  sessionStorage.setItem(KEY_NAME, key);
}

export function signOut(): void {
  sessionStorage.removeItem(KEY_NAME);
}

/** A failed call, with the message of OpenAI's error envelope (``error.message``). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const key = apiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const response = await fetch(API + path, { ...init, headers });
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body?.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  if (response.status === 401) {
    signOut();
    window.dispatchEvent(new CustomEvent("tailor:signed-out", { detail: message }));
  }
  throw new ApiError(response.status, message);
}

export async function get<T>(path: string): Promise<T> {
  return (await call(path)).json();
}

export async function post<T>(path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method: "POST" };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "Content-Type": "application/json" };
  }
  return (await call(path, init)).json();
}

export async function remove<T>(path: string): Promise<T> {
  return (await call(path, { method: "DELETE" })).json();
}

/** Every item of a cursor-paginated listing, ``limit`` at a time. */
export async function listAll<T extends { id: string }>(path: string, limit = 100): Promise<T[]> {
  const items: T[] = [];
  let after = "";
  for (;;) {
    const separator = path.includes("?") ? "&" : "?";
    const page = await get<Page<T>>(`${path}${separator}limit=${limit}${after ? `&after=${after}` : ""}`);
    items.push(...page.data);
    if (!page.has_more || page.data.length === 0) return items;
    after = page.data[page.data.length - 1].id;
  }
}

/** The items of a newest-first listing that are newer than any in ``known``. */
export async function listNewer<T extends { id: string }>(path: string, known: Set<string>): Promise<T[]> {
  const fresh: T[] = [];
  let after = "";
  for (;;) {
    const page = await get<Page<T>>(`${path}?limit=100${after ? `&after=${after}` : ""}`);
    for (const item of page.data) {
      if (known.has(item.id)) return fresh;
      fresh.push(item);
    }
    if (!page.has_more || page.data.length === 0) return fresh;
    after = page.data[page.data.length - 1].id;
  }
}

/** The first ``maxBytes`` of a file's content (a preview needs no more than the first lines). */
export async function fileHead(fileId: string, maxBytes = 64 * 1024): Promise<{ text: string; complete: boolean }> {
  const response = await call(`/files/${encodeURIComponent(fileId)}/content`);
  const reader = response.body!.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let complete = false;
  while (size < maxBytes) {
    const { done, value } = await reader.read();
    if (done) {
      complete = true;
      break;
    }
    chunks.push(value);
    size += value.length;
  }
  if (!complete) await reader.cancel();
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return { text: new TextDecoder().decode(all), complete };
}

/** Saves a file's content to the user's downloads (a plain link could not send the key). */
export async function download(fileId: string, filename: string): Promise<void> {
  const blob = await (await call(`/files/${encodeURIComponent(fileId)}/content`)).blob();
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export interface ChatOptions {
  model: string;
  messages: ChatMessage[];
  max_tokens: number;
  temperature: number;
}

/** Streams a chat completion: calls ``onText`` with each piece, resolves with the finish reason. */
export async function streamChat(
  options: ChatOptions,
  onText: (text: string) => void,
  signal: AbortSignal,
): Promise<string> {
  const response = await call("/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...options, stream: true }),
    signal,
  });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let finish = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return finish;
    buffer += value;
    let end: number;
    // Server-sent events: blank-line separated, each a "data: <json>" line (sse.py).
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return finish;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(500, chunk.error.message);
        for (const choice of chunk.choices ?? []) {
          if (choice.delta?.content) onText(choice.delta.content);
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
  }
}
