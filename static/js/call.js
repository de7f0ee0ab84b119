// A participant's live call (customer or agent): history from /messages, the WebRTC link,
// the level meters and remote audio, and reconnecting when the connection drops.

import { ApiError, describeError } from "./api.js";
import { LevelMeter, RemoteAudio, stopStream } from "./media.js";
import { RtcLink } from "./rtc.js";

const STATE_TEXT = {
  new: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  disconnected: "Interrupted, recovering…",
  failed: "Failed",
  closed: "Closed",
  reconnecting: "Reconnecting…",
};
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 8000];
const DISCONNECTED_GRACE_MS = 5000;

// The page's call panel, found by data attributes inside `root`: made once per page and
// used by each call shown in it.
export function callPanel(root) {
  const pick = (name) => root.querySelector(`[data-call="${name}"]`);
  return {
    state: pick("state"),
    connection: pick("connection"),
    reconnect: pick("reconnect"),
    micLevel: new LevelMeter(pick("mic-meter")),
    remoteLevel: new LevelMeter(pick("remote-meter")),
    remoteAudio: new RemoteAudio(pick("audio"), pick("enable-audio")),
  };
}

export class LiveCall {
  constructor({ api, callId, feed, panel, notices, onEnded }) {
    this.api = api;
    this.callId = callId;
    this.feed = feed;
    this.panel = panel;
    this.notices = notices;
    this.onEnded = onEnded || (() => {});
    this.stream = null;
    this.link = null;
    this.attempt = 0;
    this.timer = null;
    this.ended = false;
    this._onReconnectClick = () => this.reconnect();
    panel.reconnect.addEventListener("click", this._onReconnectClick);
  }

  // Everything persisted so far, so a reloaded page shows the call as it was.
  async restore() {
    const { messages } = await this.api.messages(this.callId);
    this.feed.handleAll(messages);
  }

  async start(stream) {
    this.stream = stream;
    this.panel.micLevel.attach(stream);
    await this.connect();
  }

  async connect() {
    clearTimeout(this.timer);
    if (this.ended) return;
    if (this.link) this.link.close();
    this.panel.reconnect.hidden = true;
    const link = new RtcLink({
      api: this.api,
      callId: this.callId,
      stream: this.stream,
      onEvent: (event) => this.feed.handle(event),
      onState: (state) => this._state(link, state),
      onRemoteStream: (stream) => {
        this.panel.remoteAudio.attach(stream);
        this.panel.remoteLevel.attach(stream);
      },
    });
    this.link = link;
    this._show(this.attempt ? "reconnecting" : "connecting");
    try {
      await link.connect();
    } catch (error) {
      if (this.link !== link) return;
      link.close();
      this._failed(error);
    }
  }

  reconnect() {
    this.attempt += 1;
    this.connect();
  }

  send(message) {
    return Boolean(this.link && this.link.send(message));
  }

  _state(link, state) {
    if (link !== this.link || this.ended) return;
    this._show(state);
    clearTimeout(this.timer);
    if (state === "connected") {
      if (this.attempt) this.notices.info("Reconnected.", { fade: 4000 });
      this.attempt = 0;
      this.notices.clearError();
    } else if (state === "failed") {
      this._failed(new Error("The connection failed: no network path to the server's media (ICE failed)."));
    } else if (state === "disconnected") {
      this.timer = setTimeout(() => this.reconnect(), DISCONNECTED_GRACE_MS);
    }
  }

  _failed(error) {
    if (error instanceof ApiError && error.status === 409) {
      // The call ended while we were away (or was never accepted by us).
      this.notices.error(describeError(error));
      this.finish();
      this.onEnded();
      return;
    }
    this._show("failed");
    const fatal = error instanceof ApiError && [400, 401, 403, 404].includes(error.status);
    const delay = RETRY_DELAYS_MS[this.attempt];
    if (fatal || delay === undefined) {
      this.notices.error(`${describeError(error)} Use “Reconnect” to try again.`);
      this.panel.reconnect.hidden = false;
      return;
    }
    this.notices.error(`${describeError(error)} Retrying in ${Math.round(delay / 1000)} s…`);
    this.timer = setTimeout(() => this.reconnect(), delay);
  }

  _show(state) {
    this.panel.connection.textContent = STATE_TEXT[state] || state;
    this.panel.connection.dataset.state = state;
  }

  // The call is over: close the connection and the microphone. Safe to call twice.
  finish() {
    this.ended = true;
    clearTimeout(this.timer);
    if (this.link) this.link.close();
    this.link = null;
    stopStream(this.stream);
    this.stream = null;
    this.panel.micLevel.detach();
    this.panel.remoteLevel.detach();
    this.panel.remoteAudio.detach();
    this.panel.reconnect.hidden = true;
    this.panel.reconnect.removeEventListener("click", this._onReconnectClick);
    this._show("closed");
  }
}
