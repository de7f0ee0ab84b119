// Renderers of a call's events: transcript, suggestions, customer context, summary.
// Each keeps its own model keyed by the ids of API.md and updates the DOM in place.

import { formatClock, formatDate, formatMoney, formatOffset, h } from "./ui.js";

const STATE_LINES = {
  waiting: "Call placed, waiting for an agent",
  active: "Agent joined the call",
  ended: "Call ended",
};

// The "Transcript" log: one line per segment; the final text replaces the interim one
// (same segment_id) as a new element, so that screen readers announce each line once.
export class TranscriptView {
  constructor(list, { names = {}, empty } = {}) {
    this.list = list; // <ol> inside the role="log" region
    this.names = { customer: "Customer", agent: "Agent", voice_agent: "Voice agent (AI)", ...names };
    this.segments = new Map(); // segment_id → {el, final}
    this.empty = empty || null;
  }

  setNames(names) {
    Object.assign(this.names, names);
    for (const el of this.list.querySelectorAll("[data-speaker]")) {
      el.querySelector(".who").textContent = this.names[el.dataset.speaker] || el.dataset.speaker;
    }
  }

  transcript(event) {
    const id = String(event.segment_id);
    const known = this.segments.get(id);
    // A late interim, or a final we already have; a revision (`revised`: the server
    // redacted card digits it only recognised in the next utterance) replaces the final.
    if (known && known.final && !event.revised) return;
    const line = h(
      "li",
      {
        class: `line speaker-${event.speaker}${event.final ? "" : " interim"}`,
        dataset: {
          speaker: event.speaker,
          segmentId: id,
          ...(typeof event.start_ms === "number" ? { startMs: event.start_ms } : {}),
          ...(event.seq ? { seq: event.seq } : {}),
        },
        "aria-hidden": event.final ? null : "true",
      },
      h("span", { class: "who" }, this.names[event.speaker] || event.speaker),
      h("span", { class: "when" }, formatOffset(event.start_ms)),
      h("p", { class: "text" }, event.text || ""),
    );
    if (known) known.el.replaceWith(line);
    else this._append(line, event.start_ms);
    this.segments.set(id, { el: line, final: Boolean(event.final) });
  }

  callState(event) {
    let text = STATE_LINES[event.state] || `Call ${event.state}`;
    if (event.voice_agent === true) text = "The voice agent (AI) answered while the call waits for a person";
    else if (event.voice_agent === false && event.state === "active") text = "Agent joined the call; the voice agent handed over";
    this._append(
      h(
        "li",
        { class: "line system", dataset: { state: event.state, ...(event.seq ? { seq: event.seq } : {}) } },
        h("span", { class: "when" }, formatClock(event.ts)),
        h("p", { class: "text" }, text),
      ),
    );
  }

  // The voice agent's summary for the agent who took the call over (agent and supervisor).
  handover(event) {
    const summary = event.summary || {};
    const parts = [h("p", { class: "text" }, summary.text || "The voice agent handed the call over.")];
    if (Array.isArray(summary.promised) && summary.promised.length) {
      parts.push(h("ul", { class: "promised" }, ...summary.promised.map((p) => h("li", {}, p))));
    }
    this._append(
      h(
        "li",
        { class: "line system handover", dataset: { kind: "handover", ...(event.seq ? { seq: event.seq } : {}) } },
        h("span", { class: "who" }, "Handover"),
        h("span", { class: "when" }, formatClock(event.ts)),
        ...parts,
      ),
    );
  }

  // Speech lines go in the order they were spoken: one speaker's segment can end (and
  // arrive) after the other's later one began.
  _append(line, startMs) {
    const scroller = this.list.closest("[role=log]") || this.list;
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    let before = null;
    if (typeof startMs === "number") {
      for (let el = this.list.lastElementChild; el && el.dataset.startMs && Number(el.dataset.startMs) > startMs; el = el.previousElementSibling) before = el;
    }
    this.list.insertBefore(line, before);
    if (this.empty) this.empty.hidden = true;
    if (atBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  clear() {
    this.list.replaceChildren();
    this.segments.clear();
    if (this.empty) this.empty.hidden = false;
  }
}

function sourceLabel(source) {
  if (typeof source === "string" || typeof source === "number") return String(source);
  if (!source || typeof source !== "object") return "";
  const kind = source.type || source.kind || "";
  if (source.order_id) return `Order ${source.order_id}`;
  if (source.ticket_id) return `Ticket ${source.ticket_id}`;
  if (source.title) return source.title;
  if (source.name) return source.name;
  if (source.id) return kind ? `${kind[0].toUpperCase()}${kind.slice(1)} ${source.id}` : String(source.id);
  return JSON.stringify(source);
}

const KIND_LABELS = { reply: "Reply", knowledge: "Knowledge", action: "Action" };
const FEEDBACK_LABELS = { used: "Used", dismissed: "Dismissed" };

// The "Suggestions" region: newest first; a suggestion streams in (`text` is all of it so
// far) until `done`. With `interactive`, each has Use / Dismiss, and Stop while streaming.
export class SuggestionsView {
  constructor(list, { interactive = false, onFeedback, onStop, empty } = {}) {
    this.list = list;
    this.interactive = interactive;
    this.onFeedback = onFeedback;
    this.onStop = onStop;
    this.empty = empty || null;
    this.items = new Map(); // suggestion_id → {data, el}
  }

  get streaming() {
    return [...this.items.values()].filter((item) => !item.data.done && !item.data.stopped);
  }

  suggestion(event) {
    const id = String(event.suggestion_id);
    const item = this.items.get(id);
    if (item && item.data.done && !event.done) return; // a chunk after the end
    const data = { ...(item ? item.data : {}), ...event };
    if (event.done) data.stopped = false;
    this._render(id, data);
  }

  feedback(event) {
    const item = this.items.get(String(event.suggestion_id));
    if (item) this._render(String(event.suggestion_id), { ...item.data, feedback: event.action });
  }

  // Use / Dismiss / Stop only while they can reach the server (the call is live).
  setInteractive(interactive) {
    if (this.interactive === interactive) return;
    this.interactive = interactive;
    for (const [id, item] of this.items) this._render(id, item.data);
  }

  // After "Stop": what was sent stays; the server may still close it with `done`.
  stopStreaming() {
    for (const item of this.streaming) this._render(String(item.data.suggestion_id), { ...item.data, stopped: true });
  }

  _render(id, data) {
    const textId = `suggestion-text-${id}`.replace(/[^\w-]/g, "_");
    const streaming = !data.done && !data.stopped;
    const state = data.feedback ? FEEDBACK_LABELS[data.feedback] : streaming ? "Writing…" : data.stopped ? "Stopped" : "";
    const sources = (data.sources || []).map(sourceLabel).filter(Boolean);
    const confidence = typeof data.confidence === "number" ? Math.round(data.confidence * 100) : null;
    const kind = KIND_LABELS[data.kind] || data.kind || "Suggestion";

    const actions = [];
    if (this.interactive && !data.feedback) {
      actions.push(
        h("button", { type: "button", class: "primary", "aria-describedby": textId, onclick: () => this._feedback(id, "used") }, "Use"),
        h("button", { type: "button", "aria-describedby": textId, onclick: () => this._feedback(id, "dismissed") }, "Dismiss"),
      );
      if (streaming) {
        actions.push(h("button", { type: "button", class: "danger", "aria-keyshortcuts": "Escape", onclick: () => this.onStop && this.onStop() }, "Stop"));
      }
    }

    const el = h(
      "li",
      {
        class: `suggestion kind-${data.kind || "other"}${streaming ? " streaming" : ""}${data.feedback ? ` ${data.feedback}` : ""}`,
        dataset: { suggestionId: id },
        "aria-busy": streaming ? "true" : null,
      },
      h(
        "article",
        { "aria-label": `${kind} suggestion` },
        h(
          "header",
          {},
          h("span", { class: "badge" }, kind),
          confidence !== null
            ? h("span", { class: "confidence", title: "How sure the assistant is" }, `Confidence ${confidence}%`)
            : null,
          state ? h("span", { class: `state state-${data.feedback || (streaming ? "streaming" : "stopped")}` }, state) : null,
        ),
        h("p", { class: "text", id: textId }, data.text || ""),
        sources.length
          ? h("p", { class: "sources" }, h("span", { class: "label" }, "Sources: "), ...sources.map((s) => h("span", { class: "source" }, s)))
          : null,
        actions.length ? h("div", { class: "actions" }, actions) : null,
      ),
    );

    const old = this.items.get(id);
    // Keep keyboard focus on the same button when the item is re-rendered while streaming.
    const focused = old && old.el.contains(document.activeElement) ? document.activeElement.textContent : null;
    if (old) old.el.replaceWith(el);
    else this.list.prepend(el);
    this.items.set(id, { data, el });
    if (focused) {
      const again = [...el.querySelectorAll("button")].find((b) => b.textContent === focused);
      (again || el.querySelector("button") || this.list).focus?.();
    }
    if (this.empty) this.empty.hidden = this.items.size > 0;
  }

  _feedback(id, action) {
    const item = this.items.get(id);
    if (!item || !this.onFeedback) return;
    if (this.onFeedback(id, action, item.data) !== false) this._render(id, { ...item.data, feedback: action });
    if (action === "used" && navigator.clipboard && item.data.text) {
      navigator.clipboard.writeText(item.data.text).catch(() => {});
    }
  }

  clear() {
    this.list.replaceChildren();
    this.items.clear();
    if (this.empty) this.empty.hidden = false;
  }
}

function field(label, value) {
  if (value === undefined || value === null || value === "") return null;
  return h("div", { class: "field" }, h("dt", {}, label), h("dd", {}, String(value)));
}

function orderItem(order) {
  const items = (order.items || []).map((i) => `${i.qty && i.qty > 1 ? `${i.qty} × ` : ""}${i.name || i.sku}`).join(", ");
  return h(
    "li",
    { class: "record", dataset: { orderId: order.order_id } },
    h("p", { class: "record-title" }, h("strong", {}, `Order ${order.order_id}`), " ", h("span", { class: `pill status-${order.status}` }, order.status || "")),
    h(
      "dl",
      {},
      field("Items", items),
      field("Total", formatMoney(order.amount, order.currency)),
      field("Placed", formatDate(order.created_at)),
      field("Carrier", order.carrier && `${order.carrier}${order.tracking_number ? ` · ${order.tracking_number}` : ""}`),
      field("Delivered", formatDate(order.delivered_at)),
      field("Expected", !order.delivered_at ? formatDate(order.estimated_delivery_at) : ""),
    ),
  );
}

function ticketItem(ticket) {
  return h(
    "li",
    { class: "record" },
    h("p", { class: "record-title" }, h("strong", {}, ticket.subject || `Ticket ${ticket.ticket_id}`), " ", h("span", { class: `pill status-${ticket.status}` }, ticket.status || "")),
    h("dl", {}, field("Ticket", ticket.ticket_id), field("Order", ticket.order_id), field("Priority", ticket.priority), field("Opened", formatDate(ticket.created_at)), field("Notes", ticket.notes)),
  );
}

function pastCallItem(call) {
  return h(
    "li",
    { class: "record" },
    h(
      "p",
      { class: "record-title" },
      h("strong", {}, formatDate(call.ended_at || call.created_at) || "Earlier call"),
      call.outcome ? h("span", { class: "pill" }, call.outcome) : null,
    ),
    call.reason ? h("p", { class: "muted" }, call.reason) : null,
    h("p", {}, call.text || "No summary."),
  );
}

function genericItem(value) {
  if (value === null || typeof value !== "object") return h("li", {}, String(value));
  return h("li", { class: "record" }, h("dl", {}, Object.entries(value).map(([k, v]) => field(k.replaceAll("_", " "), typeof v === "object" ? JSON.stringify(v) : v))));
}

const PAST_CALL_KEYS = ["previous_calls", "past_calls", "call_summaries", "summaries", "history"];

// The "Customer" region: who is calling, from the call record, then the `customer_context`.
export class CustomerView {
  constructor(root) {
    this.root = root;
  }

  basic(customer) {
    if (customer && customer.channel) this.channel = customer.channel;
    if (!customer || this.hasContext) return;
    this.root.replaceChildren(this._profile(customer));
  }

  context(event) {
    this.hasContext = true;
    const sections = [this._profile(event.customer || {})];
    const lists = [
      ["Orders", event.orders, orderItem, "No orders."],
      ["Tickets", event.tickets, ticketItem, "No tickets."],
    ];
    const pastKey = PAST_CALL_KEYS.find((k) => Array.isArray(event[k]));
    if (pastKey) lists.push(["Previous calls", event[pastKey], pastCallItem, "No previous calls."]);
    const known = new Set(["type", "call_id", "ts", "seq", "customer", "orders", "tickets", pastKey]);
    for (const [key, value] of Object.entries(event)) {
      if (!known.has(key) && Array.isArray(value)) lists.push([key.replaceAll("_", " "), value, genericItem, "None."]);
    }
    for (const [title, items, render, none] of lists) {
      sections.push(
        h(
          "div",
          { class: "context-block" },
          h("h3", {}, title, items && items.length ? h("span", { class: "count" }, ` (${items.length})`) : null),
          items && items.length ? h("ul", { class: "records" }, items.map(render)) : h("p", { class: "muted" }, none),
        ),
      );
    }
    this.root.replaceChildren(...sections);
  }

  _profile(customer) {
    const channel = customer.channel || this.channel;
    return h(
      "div",
      { class: "context-block profile" },
      h("p", { class: "customer-name" }, customer.name || "Unknown caller", customer.tier && customer.tier !== "standard" ? h("span", { class: "pill tier" }, customer.tier) : null),
      h("dl", {}, field("Channel", channel === "phone" ? "Phone call" : channel === "web" ? "Browser" : null), field("Phone", customer.phone), field("Email", customer.email), field("Customer since", formatDate(customer.created_at)), field("Notes", customer.notes)),
    );
  }

  clear() {
    this.hasContext = false;
    this.channel = null;
    this.root.replaceChildren(h("p", { class: "muted" }, "No call yet."));
  }
}

const list = (value) => (Array.isArray(value) ? value.filter((v) => v !== null && typeof v !== "object").join(", ") : "");

// What a summary shows besides its text; a summary from another engine may have fewer.
const SUMMARY_FIELDS = [
  ["Reason", (s) => s.reason],
  ["Outcome", (s) => s.outcome],
  ["Orders", (s) => list(s.orders)],
  ["Follow-up", (s) => list(s.follow_up)],
  ["Suggestions used", (s) => (Array.isArray(s.actions) ? s.actions.map((a) => a.text).filter(Boolean).join(" · ") : "")],
  ["Sentiment", (s) => (s.sentiment && s.sentiment.label_start ? `${s.sentiment.label_start} → ${s.sentiment.label_end}` : typeof s.sentiment === "string" ? s.sentiment : "")],
  ["Duration", (s) => (typeof s.duration_ms === "number" ? formatOffset(s.duration_ms) : "")],
];

// The "Summary" region after a call: the summary's `text`, then its main facts.
export function renderSummary(root, summary) {
  if (!summary) {
    root.replaceChildren(h("p", { class: "muted" }, "No summary was written for this call."));
    return;
  }
  const fields = SUMMARY_FIELDS.map(([label, get]) => field(label, get(summary))).filter(Boolean);
  root.replaceChildren(
    h("p", { class: "summary-text" }, summary.text || "The summary has no text."),
    fields.length ? h("dl", { class: "summary-fields" }, fields) : null,
  );
}
