// One participant's WebRTC connection, as API.md describes it: one sendrecv audio
// transceiver, a data channel labelled `events`, all ICE candidates in the offer.

const GATHER_TIMEOUT_MS = 8000;

export class ConnectionError extends Error {}

function waitForIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    // An unreachable STUN/TURN server can hold gathering up; go on with what we have.
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export class RtcLink {
  // onEvent(event), onState(state), onRemoteStream(stream)
  constructor({ api, callId, stream, onEvent, onState, onRemoteStream }) {
    this.api = api;
    this.callId = callId;
    this.stream = stream;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onRemoteStream = onRemoteStream;
    this.pc = null;
    this.channel = null;
    this.closed = false;
  }

  get state() {
    if (!this.pc) return "new";
    const state = this.pc.connectionState;
    // Connected media without the events channel is not a usable call yet.
    if (state === "connected" && (!this.channel || this.channel.readyState !== "open")) return "connecting";
    return state;
  }

  async connect() {
    const { iceServers } = await this.api.iceServers();
    if (this.closed) return;
    const pc = new RTCPeerConnection({ iceServers: iceServers || [] });
    this.pc = pc;
    const track = this.stream.getAudioTracks()[0];
    pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] });
    const channel = pc.createDataChannel("events");
    this.channel = channel;
    channel.addEventListener("message", (message) => this._message(message.data));
    channel.addEventListener("open", () => this._state());
    channel.addEventListener("close", () => this._state());
    pc.addEventListener("connectionstatechange", () => this._state());
    pc.addEventListener("track", (event) => {
      this.onRemoteStream(event.streams[0] || new MediaStream([event.track]));
    });

    await pc.setLocalDescription(await pc.createOffer());
    this._state();
    await waitForIceGathering(pc, GATHER_TIMEOUT_MS);
    if (this.closed) return;
    if (!/^a=candidate:/m.test(pc.localDescription.sdp)) {
      throw new ConnectionError("No network path for the call was found (the browser gathered no ICE candidates). Check the network and the TURN settings.");
    }
    const answer = await this.api.offer(this.callId, pc.localDescription);
    if (this.closed) return;
    await pc.setRemoteDescription(answer);
  }

  _message(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (event && typeof event.type === "string") this.onEvent(event);
  }

  _state() {
    if (!this.closed) this.onState(this.state);
  }

  send(message) {
    if (!this.channel || this.channel.readyState !== "open") return false;
    this.channel.send(JSON.stringify(message));
    return true;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.channel) this.channel.close();
    if (this.pc) this.pc.close();
  }
}
