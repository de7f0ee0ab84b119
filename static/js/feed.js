import { errorFrom, unreachable } from "./api.js";

// Where a call's events go, whatever brought them (/messages, the data channel, SSE):
// persisted events are taken once by `seq`, then handed to the handlers of their type.

export class EventFeed {
  constructor() {
    this.seqs = new Set();
    this.lastSeq = 0;
    this.handlers = new Map();
  }

  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(handler);
    return this;
  }

  // Returns false for an event already taken (a replay after a reconnect or reload).
  handle(event) {
    if (typeof event.seq === "number") {
      if (this.seqs.has(event.seq)) return false;
      this.seqs.add(event.seq);
      this.lastSeq = Math.max(this.lastSeq, event.seq);
    }
    for (const handler of [...(this.handlers.get(event.type) || []), ...(this.handlers.get("*") || [])]) {
      try {
        handler(event);
      } catch (error) {
        console.error("event handler failed", event, error);
      }
    }
    return true;
  }

  handleAll(events) {
    for (const event of events) this.handle(event);
  }
}

// Server-Sent Events over fetch, so that the Authorization header can be sent (EventSource
// cannot). Resolves when the server ends the stream; rejects on HTTP or network errors.
export async function readEventStream(api, path, { onEvent, onOpen = () => {}, signal }) {
  const headers = { Accept: "text/event-stream", Authorization: `Bearer ${api.token}` };
  let response;
  try {
    response = await fetch(path, { headers, signal, cache: "no-store" });
  } catch (error) {
    throw error.name === "AbortError" ? error : unreachable();
  }
  if (!response.ok) throw await errorFrom(response);
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let blank;
    while ((blank = /\r?\n\r?\n/.exec(buffer))) {
      const block = buffer.slice(0, blank.index);
      buffer = buffer.slice(blank.index + blank[0].length);
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue; // a comment (keep-alive) or an event without data
      try {
        onEvent(JSON.parse(data));
      } catch (error) {
        console.error("bad SSE event", data, error);
      }
    }
  }
}
