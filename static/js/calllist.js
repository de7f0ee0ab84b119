// The calls list of the staff pages, live: GET /api/calls/events first lists the open calls,
// then sends each change (a call created, answered by the voice agent, accepted, ended or
// abandoned) as it happens, on whichever server the call lives. While the stream is down
// the list is read with GET /api/calls instead, each time before the stream is opened
// again (every 2 s at first, then less often); each opening lists the calls anew.

import { ApiError } from "./api.js";
import { readEventStream } from "./feed.js";

const RETRY_MS = 2000;
const RETRY_MAX_MS = 16000;

export class LiveCallList {
  // onChange(update | null): the list changed (null: it was listed anew).
  constructor(api, { onChange, onError }) {
    this.api = api;
    this.onChange = onChange;
    this.onError = onError;
    this.calls = new Map();
    this.live = false; // the stream is open
    this.stopped = false;
    this.controller = null;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  // The calls that `keep` accepts, oldest first (as queues are served).
  list(keep = () => true) {
    return [...this.calls.values()]
      .filter(keep)
      .sort((a, b) => a.created_at - b.created_at || (a.call_id < b.call_id ? -1 : 1));
  }

  async run() {
    let delay = RETRY_MS;
    while (!this.stopped) {
      this.controller = new AbortController();
      try {
        await readEventStream(this.api, "/api/calls/events", {
          onOpen: () => {
            delay = RETRY_MS;
          },
          onEvent: (event) => this.handle(event),
          signal: this.controller.signal,
        });
      } catch (error) {
        if (error.name === "AbortError" || this.stopped) return;
        if (error instanceof ApiError && [401, 403].includes(error.status)) {
          this.onError(error);
          return;
        }
      }
      this.live = false;
      if (this.stopped) return;
      await this.read(); // the stream is down: the list as it is now, from the database
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  handle(event) {
    if (event.type === "call_list") {
      this.calls = new Map(event.calls.map((call) => [call.call_id, call]));
      this.live = true;
      this.onChange(null);
    } else if (event.type === "call_update") {
      if (event.call.state === "ended") this.calls.delete(event.call_id);
      else this.calls.set(event.call_id, event.call);
      this.onChange(event);
    }
  }

  async read() {
    try {
      const [waiting, active] = await Promise.all([this.api.listCalls("waiting"), this.api.listCalls("active")]);
      if (this.stopped || this.live) return;
      this.calls = new Map([...waiting.calls, ...active.calls].map((call) => [call.call_id, call]));
      this.onChange(null);
    } catch (error) {
      if (!this.stopped) this.onError(error);
    }
  }
}
