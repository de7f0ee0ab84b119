// Supervisor page: statistics, live calls, and one watched call followed over SSE.

import { ApiError } from "./api.js";
import { LiveCallList } from "./calllist.js";
import { EventFeed, readEventStream } from "./feed.js";
import { StaffSession } from "./staff.js";
import { $, h, Notices, poll, since } from "./ui.js";
import { CustomerView, SuggestionsView, TranscriptView, renderSummary } from "./views.js";

const PAGE = "supervisor";
const SINCE_TICK_MS = 5000; // "for 2 min" is written again this often (no request)
const STATS_POLL_MS = 5000;
const RETRY_MS = 2000;
const CALL_STATE_TEXT = { waiting: "Waiting", active: "Active", ended: "Ended" };
const STREAM_TEXT = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", closed: "Closed" };

const notices = new Notices(document);
const dashboard = $("#dashboard");
const transcript = new TranscriptView($("#transcript"), { empty: $("#transcript-empty") });
const suggestions = new SuggestionsView($("#suggestions"), { empty: $("#suggestions-empty") });
const customer = new CustomerView($("#customer"));

let api = null;
let liveList = null; // LiveCallList: the list comes live from the server
let sinceTick = null;
let statsPoll = null;
let watching = null; // {callId, controller, ended}

const staff = new StaffSession({ page: PAGE, role: "admin", notices, onSignedIn, onSignedOut });

// -- statistics and live calls ------------------------------------------------------------

async function refreshStats() {
  let stats;
  try {
    stats = await api.stats();
  } catch (error) {
    staff.handleError(error);
    return;
  }
  const s = stats.suggestions || {};
  const rate = s.total ? `${Math.round(((s.used || 0) / s.total) * 100)}%` : "—";
  const items = [
    ["Waiting", stats.calls.waiting],
    ["Active", stats.calls.active],
    ["Ended", stats.calls.ended],
    ["Live sessions", stats.live_sessions],
    ["Suggestions", s.total],
    ["Used", s.used],
    ["Dismissed", s.dismissed],
    ["Use rate", rate],
  ];
  $("#stats").replaceChildren(...items.map(([label, value]) => h("div", { class: "stat" }, h("dt", {}, label), h("dd", {}, value ?? 0))));
}

function renderLive() {
  if (!liveList) return;
  // Active calls, and waiting ones the voice agent is talking with (they can be watched too).
  const calls = [
    ...liveList.list((call) => call.state === "active"),
    ...liveList.list((call) => call.state === "waiting" && call.voice_agent),
  ];
  const list = $("#live-calls");
  const focused = document.activeElement && document.activeElement.closest("#live-calls [data-call-id]");
  const focusedId = focused && focused.dataset.callId;
  list.replaceChildren(
    ...calls.map((call) => {
      const name = (call.customer && call.customer.name) || "unknown caller";
      const current = watching && watching.callId === call.call_id;
      const phone = call.customer && call.customer.channel === "phone";
      return h(
        "li",
        { class: `call-item${current ? " watching" : ""}`, dataset: { callId: call.call_id, channel: (call.customer && call.customer.channel) || "web" } },
        h("span", { class: "who" }, name, phone ? h("span", { class: "pill channel" }, "Phone") : null),
        h(
          "span",
          { class: "meta" },
          [phone ? `phone ${call.customer.phone || ""}`.trim() : null, `agent: ${call.agent || (call.voice_agent ? "voice agent (AI)" : "—")}`, call.reason].filter(Boolean).join(" · "),
          " · ",
          h("span", { class: "since", dataset: { since: String(call.accepted_at || call.created_at) } }, `for ${since(call.accepted_at || call.created_at)}`),
        ),
        h(
          "button",
          {
            type: "button",
            class: current ? null : "primary",
            "aria-label": `Watch call with ${name}, agent ${call.agent || (call.voice_agent ? "voice agent" : "unknown")}`,
            "aria-pressed": current ? "true" : "false",
            onclick: () => watch(call.call_id),
          },
          current ? "Watching" : "Watch",
        ),
      );
    }),
  );
  if (focusedId) {
    const again = list.querySelector(`[data-call-id="${CSS.escape(focusedId)}"] button`);
    if (again) again.focus();
  }
  $("#live-count").textContent = calls.length ? `(${calls.length})` : "";
  $("#live-empty").hidden = calls.length > 0;
}

// -- the watched call ----------------------------------------------------------------------

function showStream(state) {
  const el = $("#watch-stream");
  el.textContent = STREAM_TEXT[state] || state;
  el.dataset.state = state === "live" ? "connected" : state;
}

function showState(state) {
  $("#watch-state").textContent = CALL_STATE_TEXT[state] || state;
}

function clearWatch() {
  if (watching) watching.controller.abort();
  watching = null;
  transcript.clear();
  suggestions.clear();
  customer.clear();
  $("#summary-card").hidden = true;
  $("#summary").replaceChildren(h("p", { class: "muted" }, "Writing the summary…"));
  $("#watch-live").hidden = true;
  $("#watch-idle").hidden = false;
}

function feedFor(current) {
  const feed = new EventFeed();
  feed.on("transcript", (event) => transcript.transcript(event));
  feed.on("call_state", (event) => {
    transcript.callState(event);
    showState(event.state);
    if (event.state === "ended") watchedCallEnded(current, Date.now() - event.ts < 30000);
  });
  feed.on("customer_context", (event) => customer.context(event));
  feed.on("ai_suggestion", (event) => suggestions.suggestion(event));
  feed.on("suggestion_feedback", (event) => suggestions.feedback(event));
  feed.on("summary", (event) => showSummary(current, event.summary));
  feed.on("status", (event) => notices.serverStatus(event));
  feed.on("handover", (event) => transcript.handover(event));
  return feed;
}

async function watch(callId) {
  if (watching && watching.callId === callId) return;
  clearWatch();
  const current = { callId, controller: new AbortController(), ended: false, hasSummary: false };
  watching = current;
  staff.update({ watching: callId });
  renderLive();
  let call;
  try {
    call = await api.getCall(callId);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) staff.update({ watching: null });
    staff.handleError(error);
    if (watching === current) clearWatch();
    return;
  }
  if (watching !== current) return;
  const name = (call.customer && call.customer.name) || "Customer";
  transcript.setNames({ customer: name, agent: call.agent ? `${call.agent} (agent)` : "Agent" });
  customer.basic(call.customer);
  $("#watch-customer").textContent = name;
  $("#watch-agent").textContent = call.agent || "—";
  showState(call.state);
  $("#watch-idle").hidden = true;
  $("#watch-live").hidden = false;
  follow(current);
}

// Reads the SSE stream until the call ends; after a drop it reads again (the server
// replays the persisted events first; the feed drops those it has by seq).
async function follow(current) {
  const feed = feedFor(current);
  const path = `/api/calls/${encodeURIComponent(current.callId)}/events`;
  let failures = 0;
  while (watching === current && !current.ended) {
    showStream(failures ? "reconnecting" : "connecting");
    try {
      await readEventStream(api, path, {
        onOpen: () => {
          failures = 0;
          notices.clearError();
          showStream("live");
        },
        onEvent: (event) => feed.handle(event),
        signal: current.controller.signal,
      });
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error instanceof ApiError && [401, 403, 404].includes(error.status)) {
        staff.handleError(error);
        return;
      }
      failures += 1;
      notices.error(`${error.message} Reconnecting to the event stream…`);
    }
    if (current.ended || watching !== current) break;
    failures = Math.max(failures, 1);
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
  if (watching === current) showStream("closed");
}

async function watchedCallEnded(current, recent) {
  if (current.ended) return;
  current.ended = true;
  $("#summary-card").hidden = false;
  renderLive();
  statsPoll.now();
  if (current.hasSummary) return;
  try {
    const summary = await api.waitForSummary(current.callId, {
      retries: recent ? 20 : 0,
      stillWanted: () => watching === current && !current.hasSummary,
    });
    if (watching === current && !current.hasSummary) showSummary(current, summary);
  } catch (error) {
    notices.error(error);
  }
}

function showSummary(current, summary) {
  if (watching !== current) return;
  current.hasSummary = Boolean(summary);
  $("#summary-card").hidden = false;
  renderSummary($("#summary"), summary);
}

// -- session ---------------------------------------------------------------------------------

function onSignedIn(signedInApi, saved) {
  api = signedInApi;
  dashboard.hidden = false;
  liveList = new LiveCallList(api, {
    onChange: () => {
      renderLive();
      statsPoll.now(); // the counts changed too
    },
    onError: (error) => staff.handleError(error),
  });
  statsPoll = poll(refreshStats, STATS_POLL_MS);
  liveList.start();
  sinceTick = setInterval(() => {
    for (const el of document.querySelectorAll("#live-calls .since")) el.textContent = `for ${since(Number(el.dataset.since))}`;
  }, SINCE_TICK_MS);
  renderLive();
  if (saved.watching) watch(saved.watching);
}

function onSignedOut() {
  if (liveList) liveList.stop();
  liveList = null;
  clearInterval(sinceTick);
  if (statsPoll) statsPoll.stop();
  clearWatch();
  dashboard.hidden = true;
  api = null;
}

$("#stop-watching").addEventListener("click", () => {
  clearWatch();
  staff.update({ watching: null });
  renderLive();
});
staff.start();
