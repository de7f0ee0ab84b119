// Agent console: waiting calls, the live call with transcript, suggestions and customer
// context, and the summary afterwards.

import { ApiError } from "./api.js";
import { LiveCall, callPanel } from "./call.js";
import { LiveCallList } from "./calllist.js";
import { EventFeed } from "./feed.js";
import { openMicrophone, resumeAudioOnGesture, stopStream } from "./media.js";
import { StaffSession } from "./staff.js";
import { $, h, Notices, since } from "./ui.js";
import { CustomerView, SuggestionsView, TranscriptView, renderSummary } from "./views.js";

const PAGE = "agent";
const WAITED_TICK_MS = 5000; // "waiting 2 min" is written again this often (no request)
const SUMMARY_RETRIES = 20; // the summary is written just after the call ends
const CALL_STATE_TEXT = { waiting: "Waiting", active: "Active", ended: "Ended" };

const notices = new Notices(document);
const consoleEl = $("#console");
const panel = callPanel($("#call"));
const endButton = $("#end-call");
const summaryCard = $("#summary-card");

const transcript = new TranscriptView($("#transcript"), { names: { agent: "You" }, empty: $("#transcript-empty") });
const customer = new CustomerView($("#customer"));
const suggestions = new SuggestionsView($("#suggestions"), {
  interactive: true,
  empty: $("#suggestions-empty"),
  onFeedback: (id, action) => {
    if (live && live.send({ type: "suggestion_feedback", suggestion_id: id, action })) return true;
    notices.error("Not connected: the feedback was not sent. Try again once the call is connected.");
    return false;
  },
  onStop: stopSuggestions,
});

let api = null;
let live = null; // the LiveCall on screen (active or ended)
let waitingList = null; // LiveCallList: the list comes live from the server
let waitedTick = null;
let accepting = false;
let summaryShown = false;

const staff = new StaffSession({ page: PAGE, role: "agent", notices, onSignedIn, onSignedOut });

function inCall() {
  return Boolean(live && !live.ended);
}

// -- waiting calls ---------------------------------------------------------------------

function renderWaiting() {
  if (!waitingList) return;
  const calls = waitingList.list((call) => call.state === "waiting");
  const list = $("#waiting");
  const focused = document.activeElement && document.activeElement.closest("#waiting [data-call-id]");
  const focusedId = focused && focused.dataset.callId;
  const busy = inCall() || accepting;
  list.replaceChildren(
    ...calls.map((call) => {
      const name = (call.customer && call.customer.name) || "unknown caller";
      const contact = call.customer && (call.customer.phone || call.customer.email);
      const phone = call.customer && call.customer.channel === "phone";
      const before = [phone ? `phone ${contact || ""}`.trim() : contact, call.reason].filter(Boolean).join(" · ");
      const after = call.voice_agent ? " · talking with the voice agent" : "";
      return h(
        "li",
        { class: "call-item", dataset: { callId: call.call_id, channel: (call.customer && call.customer.channel) || "web" } },
        h(
          "span",
          { class: "who" },
          name,
          phone ? h("span", { class: "pill channel" }, "Phone") : null,
          call.voice_agent ? h("span", { class: "pill voice-agent" }, "Voice agent") : null,
        ),
        h(
          "span",
          { class: "meta" },
          before ? `${before} · ` : "",
          h("span", { class: "waited", dataset: { since: String(call.created_at) } }, `waiting ${since(call.created_at)}`),
          after,
        ),
        h(
          "button",
          {
            type: "button",
            class: "primary",
            "aria-label": `Accept call from ${name}`,
            title: busy ? "Finish the current call first" : null,
            disabled: busy,
            onclick: () => accept(call),
          },
          "Accept",
        ),
      );
    }),
  );
  if (focusedId) {
    const again = list.querySelector(`[data-call-id="${CSS.escape(focusedId)}"] button`);
    if (again && !again.disabled) again.focus();
  }
  $("#waiting-count").textContent = calls.length ? `(${calls.length})` : "";
  $("#waiting-empty").hidden = calls.length > 0;
}

async function accept(call) {
  if (inCall() || accepting) return;
  accepting = true;
  renderWaiting();
  notices.clearError();
  let stream = null;
  try {
    notices.info("Opening your microphone…");
    stream = await openMicrophone(); // first: a refused mic leaves the call waiting for others
    await api.accept(call.call_id);
  } catch (error) {
    stopStream(stream);
    notices.info("");
    staff.handleError(error);
    accepting = false;
    renderWaiting();
    return;
  }
  accepting = false;
  staff.update({ callId: call.call_id });
  notices.info(`Connecting to ${(call.customer && call.customer.name) || "the caller"}…`, { fade: 4000 });
  await openCall({ ...call, state: "active" }, stream);
  renderWaiting();
}

// -- the call ----------------------------------------------------------------------------

function feedFor() {
  const feed = new EventFeed();
  feed.on("transcript", (event) => transcript.transcript(event));
  feed.on("call_state", (event) => {
    transcript.callState(event);
    showState(event.state);
    // A call that ended long ago (seen after a reload) will not get its summary any more.
    if (event.state === "ended") callEnded({ retries: Date.now() - event.ts < 30000 ? SUMMARY_RETRIES : 0 });
  });
  feed.on("customer_context", (event) => {
    customer.context(event);
    if (event.customer) showIdentity(event.customer);
  });
  feed.on("ai_suggestion", (event) => suggestions.suggestion(event));
  feed.on("suggestion_feedback", (event) => suggestions.feedback(event));
  feed.on("summary", (event) => showSummary(event.summary));
  feed.on("status", (event) => notices.serverStatus(event));
  feed.on("dtmf", (event) => notices.info(`The caller pressed ${event.digit}`, { fade: 6000 }));
  feed.on("handover", (event) => transcript.handover(event));
  return feed;
}

function showState(state) {
  panel.state.textContent = CALL_STATE_TEXT[state] || state;
  panel.state.dataset.state = state;
}

function resetCall() {
  if (live) live.finish();
  live = null;
  summaryShown = false;
  transcript.clear();
  suggestions.clear();
  suggestions.setInteractive(true);
  customer.clear();
  $("#identity").hidden = true;
  summaryCard.hidden = true;
  $("#summary").replaceChildren(h("p", { class: "muted" }, "Writing the summary…"));
  $("#call-live").hidden = true;
  $("#call-idle").hidden = false;
}

// Shows `call` (a record of GET /api/calls) and, if `stream` is given, joins it live.
async function openCall(call, stream = null) {
  resetCall();
  const name = (call.customer && call.customer.name) || "Customer";
  transcript.setNames({ customer: name });
  customer.basic(call.customer);
  if (call.customer) showIdentity(call.customer, call.state);
  $("#caller").textContent = name;
  $("#call-idle").hidden = true;
  $("#call-live").hidden = false;
  endButton.disabled = call.state === "ended";
  showState(call.state);
  const current = new LiveCall({
    api,
    callId: call.call_id,
    feed: feedFor(),
    panel,
    notices,
    onEnded: () => callEnded({ retries: SUMMARY_RETRIES }),
  });
  live = current;
  try {
    await current.restore();
  } catch (error) {
    staff.handleError(error);
  }
  if (!stream || current.ended || live !== current) {
    stopStream(stream);
    return;
  }
  await current.start(stream);
}

// -- caller identity ---------------------------------------------------------------------
// A phone or email the caller typed is a claim: the record it links to stays "Not verified"
// until the agent has checked the caller (order number, email on file) and pressed Verify.

function showIdentity(who, state = live && !live.ended ? "active" : "ended") {
  const verified = who.verified === true;
  const badge = $("#identity-state");
  badge.textContent = verified ? "Verified" : "Not verified";
  badge.className = `pill ${verified ? "verified" : "unverified"}`;
  // customer_context carries the record only; what the caller typed comes with the call.
  if (who.claimed) {
    const claimed = [who.claimed.name, who.claimed.phone, who.claimed.email].filter(Boolean).join(", ");
    $("#identity-claimed").textContent = claimed ? `The caller said: ${claimed}` : "";
  }
  $("#verify").hidden = verified || state === "ended";
  $("#identity").hidden = false;
}

async function verifyCaller() {
  if (!live || live.ended) return;
  const button = $("#verify");
  button.disabled = true;
  try {
    const call = await api.verify(live.callId);
    showIdentity(call.customer);
    notices.info("Caller verified.", { fade: 3000 });
  } catch (error) {
    staff.handleError(error);
  } finally {
    button.disabled = false;
  }
}

$("#verify").addEventListener("click", verifyCaller);

function callEnded({ retries = 0 } = {}) {
  if (!live || live.ended) return;
  live.finish();
  endButton.disabled = true;
  $("#verify").hidden = true;
  suggestions.stopStreaming();
  suggestions.setInteractive(false);
  showState("ended");
  summaryCard.hidden = false;
  notices.info("The call has ended.");
  renderWaiting();
  if (!summaryShown) loadSummary(live, retries);
}

async function loadSummary(call, retries) {
  const wanted = () => live === call && !summaryShown;
  try {
    const summary = await api.waitForSummary(call.callId, { retries, stillWanted: wanted });
    if (wanted()) showSummary(summary);
  } catch (error) {
    notices.error(error);
  }
}

function showSummary(summary) {
  summaryShown = true;
  summaryCard.hidden = false;
  renderSummary($("#summary"), summary);
}

async function endCall() {
  if (!inCall()) return;
  endButton.disabled = true;
  try {
    const call = live;
    await api.end(call.callId); // returns once the server has written the summary
    callEnded();
    if (!summaryShown) loadSummary(call, 0);
  } catch (error) {
    endButton.disabled = false;
    staff.handleError(error);
  }
}

function stopSuggestions() {
  if (!suggestions.streaming.length) return;
  if (live && live.send({ type: "stop_suggestions" })) suggestions.stopStreaming();
  else notices.error("Not connected: could not stop the suggestion.");
}

// -- session ------------------------------------------------------------------------------

function onSignedIn(signedInApi, saved) {
  api = signedInApi;
  consoleEl.hidden = false;
  waitingList = new LiveCallList(api, { onChange: renderWaiting, onError: (error) => staff.handleError(error) }).start();
  waitedTick = setInterval(() => {
    for (const el of document.querySelectorAll("#waiting .waited")) el.textContent = `waiting ${since(Number(el.dataset.since))}`;
  }, WAITED_TICK_MS);
  renderWaiting();
  if (saved.callId) resumeCall(saved.callId);
}

function onSignedOut() {
  if (waitingList) waitingList.stop();
  waitingList = null;
  clearInterval(waitedTick);
  resetCall();
  consoleEl.hidden = true;
  api = null;
}

// After a reload: rejoin the active call (a new offer replaces the old connection), or
// show the ended one with its summary.
async function resumeCall(callId) {
  let stream = null;
  try {
    const call = await api.getCall(callId);
    if (call.state === "active") {
      notices.info("Rejoining the call…", { fade: 4000 });
      stream = await openMicrophone();
    }
    await openCall(call, stream);
    if (call.state === "ended") callEnded({ retries: 0 });
  } catch (error) {
    stopStream(stream);
    if (error instanceof ApiError && [403, 404].includes(error.status)) staff.update({ callId: null });
    staff.handleError(error);
  }
}

endButton.addEventListener("click", endCall);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && suggestions.streaming.length) {
    event.preventDefault();
    stopSuggestions();
  }
});
resumeAudioOnGesture();
staff.start();
