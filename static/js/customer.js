// Customer page: identify, place a call, talk to the agent, see the transcript.

import { Api, ApiError, isSessionError, sessionStore } from "./api.js";
import { LiveCall, callPanel } from "./call.js";
import { EventFeed } from "./feed.js";
import { openMicrophone, resumeAudioOnGesture, stopStream } from "./media.js";
import { $, Notices } from "./ui.js";
import { TranscriptView } from "./views.js";

const PAGE = "customer";
const CALL_STATE_TEXT = { waiting: "Waiting for an agent…", active: "Talking with an agent", ended: "Ended" };

const notices = new Notices(document);
const form = $("#call-form");
const callSection = $("#call");
const panel = callPanel(callSection);
const hangup = $("#hangup");
const transcript = new TranscriptView($("#transcript"), {
  names: { customer: "You", agent: "Agent", voice_agent: "Assistant (automated)" },
  empty: $("#transcript-empty"),
});

let live = null;

function lockForm(locked) {
  for (const control of form.elements) control.disabled = locked;
}

function showState(state, voiceAgent = false) {
  panel.state.textContent =
    state === "waiting" && voiceAgent
      ? "An automated assistant is answering until a person joins"
      : CALL_STATE_TEXT[state] || state;
  panel.state.dataset.state = state;
  panel.state.dataset.voiceAgent = voiceAgent ? "true" : "false";
}

function feedFor() {
  const feed = new EventFeed();
  feed.on("transcript", (event) => transcript.transcript(event));
  feed.on("call_state", (event) => {
    transcript.callState(event);
    showState(event.state, event.voice_agent === true);
    if (event.voice_agent === true) notices.info("An automated assistant is answering until a person is free.", { fade: 8000 });
    if (event.state === "active") notices.info("An agent has joined your call.", { fade: 6000 });
    if (event.state === "ended") callEnded();
  });
  feed.on("status", (event) => notices.serverStatus(event));
  return feed;
}

async function join(api, callId, stream, { restore }) {
  transcript.clear();
  $("#start").hidden = true;
  callSection.hidden = false;
  hangup.disabled = false;
  lockForm(true);
  showState("waiting");
  live = new LiveCall({ api, callId, feed: feedFor(), panel, notices, onEnded: callEnded });
  if (restore) await live.restore();
  if (live.ended) {
    stopStream(stream); // it ended while we were away
    return;
  }
  notices.info("Connecting your call…", { fade: 4000 });
  await live.start(stream);
}

function callEnded() {
  if (live) live.finish();
  sessionStore.update(PAGE, { callId: null });
  showState("ended");
  hangup.disabled = true;
  lockForm(false);
  $("#start").hidden = false;
  notices.info("The call has ended. Thank you for calling.");
}

function readForm() {
  const value = (name) => form.elements[name].value.trim();
  return { name: value("name"), phone: value("phone"), email: value("email"), reason: value("reason") };
}

async function placeCall(event) {
  event.preventDefault();
  notices.clearError();
  const details = readForm();
  if (!details.name) {
    notices.error("Please enter your name.");
    form.elements.name.focus();
    return;
  }
  lockForm(true);
  let stream = null;
  try {
    notices.info("Opening your microphone…");
    stream = await openMicrophone(); // before the call exists: a refused mic places no call
    const contact = { name: details.name };
    if (details.phone) contact.phone = details.phone;
    if (details.email) contact.email = details.email;
    const session = await Api.customerSession(contact);
    sessionStore.save(PAGE, { ...details, token: session.token, customerId: session.customer_id });
    const api = new Api(session.token);
    let callId;
    let rejoin = false;
    try {
      ({ call_id: callId } = await api.createCall(details.reason));
    } catch (error) {
      // A call left open (another tab, a lost session) is joined again rather than refused.
      const open = error instanceof ApiError && error.code === "call_already_open" && error.details.call_id;
      if (!open) throw error;
      callId = open;
      rejoin = true;
    }
    sessionStore.update(PAGE, { callId });
    await join(api, callId, stream, { restore: rejoin });
  } catch (error) {
    stopStream(stream);
    notices.info("");
    notices.error(error);
    lockForm(false);
    $("#start").hidden = false;
    form.elements.name.focus();
  }
}

async function hangUp() {
  if (!live) return;
  hangup.disabled = true;
  try {
    await live.api.end(live.callId);
    callEnded();
  } catch (error) {
    hangup.disabled = false;
    notices.error(error);
  }
}

// After a reload: the same session and, if it is still open, the same call.
async function resume() {
  const saved = sessionStore.load(PAGE);
  if (!saved) return;
  for (const name of ["name", "phone", "email", "reason"]) {
    if (saved[name]) form.elements[name].value = saved[name];
  }
  if (!saved.token || !saved.callId) return;
  const api = new Api(saved.token);
  let stream = null;
  try {
    const call = await api.getCall(saved.callId);
    if (call.state === "ended") {
      sessionStore.update(PAGE, { callId: null });
      return;
    }
    notices.info("Rejoining your call…");
    stream = await openMicrophone();
    await join(api, call.call_id, stream, { restore: true });
  } catch (error) {
    stopStream(stream);
    if (isSessionError(error) || (error instanceof ApiError && [403, 404].includes(error.status))) {
      sessionStore.update(PAGE, { token: null, callId: null });
    }
    notices.error(error);
    lockForm(false);
  }
}

form.addEventListener("submit", placeCall);
hangup.addEventListener("click", hangUp);
resumeAudioOnGesture();
resume();
