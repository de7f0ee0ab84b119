// Microphone, remote audio playback and level meters (WebAudio AnalyserNode).

const AUDIO_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  video: false,
};

export class MediaError extends Error {}

export async function openMicrophone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MediaError("This browser cannot use a microphone here. Open the page over HTTPS (or on localhost) in a current browser.");
  }
  try {
    return await navigator.mediaDevices.getUserMedia(AUDIO_CONSTRAINTS);
  } catch (error) {
    const reasons = {
      NotAllowedError: "Microphone access was denied. Allow the microphone for this site in your browser's settings, then try again.",
      SecurityError: "Microphone access was denied. Allow the microphone for this site in your browser's settings, then try again.",
      NotFoundError: "No microphone was found. Connect one and try again.",
      NotReadableError: "The microphone is busy or failed to start. Close other apps that use it and try again.",
      OverconstrainedError: "The microphone does not support the needed settings.",
      AbortError: "Opening the microphone was interrupted. Try again.",
    };
    throw new MediaError(reasons[error.name] || `The microphone could not be opened: ${error.message || error.name}.`);
  }
}

export function stopStream(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

let context = null;

function audioContext() {
  if (!context) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    context = new Ctx();
  }
  return context;
}

// Browsers start audio only after a user gesture: resume on each one until running.
export function resumeAudioOnGesture() {
  const resume = () => {
    if (context && context.state === "suspended") context.resume().catch(() => {});
  };
  for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, resume, { capture: true });
}

// Drives a <meter> (0..1) from a stream's loudness, ten times a second.
export class LevelMeter {
  constructor(meter) {
    this.meter = meter;
    this.source = null;
    this.analyser = null;
    this.timer = null;
  }

  attach(stream) {
    this.detach();
    const ctx = audioContext();
    if (!ctx || !stream || stream.getAudioTracks().length === 0) return;
    if (ctx.state === "suspended") ctx.resume().catch(() => {}); // works once the page had a click
    this.source = ctx.createMediaStreamSource(stream);
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 1024;
    this.source.connect(this.analyser);
    const samples = new Float32Array(this.analyser.fftSize);
    this.timer = setInterval(() => {
      this.analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const x of samples) sum += x * x;
      const rms = Math.sqrt(sum / samples.length);
      const db = rms > 0 ? 20 * Math.log10(rms) : -100;
      this.set(Math.min(1, Math.max(0, (db + 60) / 60))); // -60 dBFS .. 0 dBFS
    }, 100);
  }

  set(level) {
    this.meter.value = level;
    this.meter.textContent = `${Math.round(level * 100)}%`;
  }

  detach() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.source) this.source.disconnect();
    this.source = null;
    this.analyser = null;
    this.set(0);
  }
}

// The other participant's voice: an <audio> element, with a button when autoplay is refused
// (after a reload there was no click yet).
export class RemoteAudio {
  constructor(audio, enableButton) {
    this.audio = audio;
    this.enableButton = enableButton;
    enableButton.addEventListener("click", () => this.play());
  }

  attach(stream) {
    if (this.audio.srcObject !== stream) this.audio.srcObject = stream;
    this.play();
  }

  async play() {
    try {
      await this.audio.play();
      this.enableButton.hidden = true;
    } catch (error) {
      if (error.name === "NotAllowedError") this.enableButton.hidden = false;
    }
  }

  detach() {
    this.audio.pause();
    this.audio.srcObject = null;
    this.enableButton.hidden = true;
  }
}
