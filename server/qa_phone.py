"""A Twilio phone caller, simulated: what Twilio does when someone dials the number.

    CALLASSIST_TWILIO_AUTH_TOKEN=... python -m server.qa --phone --wav hello.wav \\
        --server http://127.0.0.1:8080 --from +15551234567 --seconds 20 --out heard.wav

It posts the voice webhook signed with the auth token (X-Twilio-Signature over the public
URL and the sorted form fields, as Twilio signs), reads the TwiML, opens the
`<Connect><Stream>` WebSocket and speaks Media Streams to it: `connected`, `start` with the
TwiML's `<Parameter>`s, the WAV as 20 ms μ-law `media` messages in real time (then silence,
as a live line does), `dtmf`, `stop`. It keeps what it hears (decoded from the server's
`media` messages, with their arrival times), echoes `mark`s and counts `clear`s.
The same class drives the tests and the phone benchmark.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
import wave
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from twilio.request_validator import RequestValidator

from media.encode import MULAW_FRAME_BYTES, MULAW_RATE, MulawEncoder

FRAME_S = 0.02
SILENCE_BYTE = b"\xff"  # μ-law of 0


class PhoneError(RuntimeError):
    pass


def wav_to_mulaw_frames(path: Path | str, seconds_of_silence: float = 0.0) -> list[bytes]:
    """A WAV (16-bit, any rate, mono or stereo) as 20 ms frames of 8 kHz μ-law, once."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise PhoneError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    mono = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    pcm = b"".join(
        bytes(f.planes[0])[: f.samples * 2] for f in resampler.resample(frame) + resampler.resample(None)
    )
    mulaw = MulawEncoder().encode(pcm) + SILENCE_BYTE * int(seconds_of_silence * MULAW_RATE)
    mulaw += SILENCE_BYTE * (-len(mulaw) % MULAW_FRAME_BYTES)
    return [mulaw[i : i + MULAW_FRAME_BYTES] for i in range(0, len(mulaw), MULAW_FRAME_BYTES)]


def _mulaw_table() -> np.ndarray:
    # G.711 μ-law expansion, written out here so that the simulator does not decode with
    # the same code as the server it checks.
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


MULAW_TO_PCM = _mulaw_table()


@dataclass
class Heard:
    """What the caller received from the server."""

    payloads: list[bytes] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # monotonic time of each `media`
    marks: list[str] = field(default_factory=list)
    clears: int = 0
    other: list[dict[str, Any]] = field(default_factory=list)

    def pcm(self, since_s: float = 0.0) -> np.ndarray:
        """8 kHz int16 of everything heard, skipping the first `since_s` seconds."""
        data = np.frombuffer(b"".join(self.payloads), dtype=np.uint8)
        return MULAW_TO_PCM[data][int(since_s * MULAW_RATE) :]

    def gaps_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]

    def save(self, path: Path | str) -> None:
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(MULAW_RATE)
            wav.writeframes(self.pcm().tobytes())


class TwilioCaller:
    """One phone call through Twilio, as Twilio's side of the protocol behaves."""

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        *,
        public_url: str | None = None,
        caller: str = "+15550100001",
        to: str = "+15550199999",
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_url = (public_url or base_url).rstrip("/")
        self.auth_token = auth_token
        self.caller = caller
        self.to = to
        self.account_sid = "AC" + uuid.uuid4().hex
        self.call_sid = "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.heard = Heard()
        self.stream_url: str | None = None
        self.parameters: dict[str, str] = {}
        self.twiml = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed_by_server = asyncio.Event()
        self.sent_frames = 0
        self._http = http
        self._own_http = http is None
        self._sequence = 0
        self._clip: list[bytes] = []
        self._clip_index = 0
        self.loop_clip = False
        """Start the clip over when it ends (load generation) instead of going silent."""
        self.clip_started_at: float | None = None
        self.clip_ended_at: float | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    def webhook_form(self) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "ringing",
            "Called": self.to,
            "Caller": self.caller,
            "Direction": "inbound",
            "From": self.caller,
            "To": self.to,
        }

    def sign(self, path: str, form: dict[str, str]) -> str:
        return str(RequestValidator(self.auth_token).compute_signature(self.public_url + path, form))

    async def post_webhook(
        self, form: dict[str, str] | None = None, signature: str | None = None
    ) -> tuple[int, str]:
        """POST /twilio/voice; signed properly unless `signature` is given ("" sends none)."""
        form = form if form is not None else self.webhook_form()
        sig = self.sign("/twilio/voice", form) if signature is None else signature
        headers = {"X-Twilio-Signature": sig} if sig else {}
        http = await self._session()
        async with http.post(self.base_url + "/twilio/voice", data=form, headers=headers) as r:
            return r.status, await r.text()

    async def dial(self) -> None:
        """The webhook, then the TwiML's stream: connected + start."""
        status, body = await self.post_webhook()
        if status != 200:
            raise PhoneError(f"voice webhook → {status} {body}")
        self.read_twiml(body)
        await self.open_stream()

    def read_twiml(self, body: str) -> None:
        self.twiml = body
        root = ET.fromstring(body)
        stream = root.find("./Connect/Stream")
        if root.tag != "Response" or stream is None:
            raise PhoneError(f"TwiML without <Connect><Stream>: {body}")
        self.stream_url = stream.get("url")
        self.parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}

    @property
    def call_id(self) -> str:
        return self.parameters["call_id"]

    async def open_stream(self, parameters: dict[str, str] | None = None) -> None:
        if self.stream_url is None:
            raise PhoneError("no stream URL (dial first)")
        # The stream URL is the public one; a simulator on loopback connects to the server.
        url = self.stream_url
        public_ws = self.public_url.replace("https://", "wss://").replace("http://", "ws://")
        local_ws = self.base_url.replace("https://", "wss://").replace("http://", "ws://")
        if url.startswith(public_ws):
            url = local_ws + url[len(public_ws) :]
        http = await self._session()
        self.ws = await http.ws_connect(url, autoping=True)
        self._reader = asyncio.ensure_future(self._read())
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send(
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": parameters if parameters is not None else self.parameters,
                },
                "streamSid": self.stream_sid,
            }
        )
        self._sender = asyncio.ensure_future(self._send_media())

    def _next_seq(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    async def send(self, message: dict[str, Any] | str) -> None:
        if self.ws is None or self.ws.closed:
            return
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    def play(self, frames: list[bytes]) -> None:
        """Say this clip now (replacing what is playing); silence follows it."""
        self._clip = frames
        self._clip_index = 0
        self.clip_started_at = None
        self.clip_ended_at = None

    async def _send_media(self) -> None:
        start = time.monotonic()
        silence = SILENCE_BYTE * MULAW_FRAME_BYTES
        while self.ws is not None and not self.ws.closed:
            # Twilio streams the line in real time: one 20 ms message every 20 ms.
            due = start + self.sent_frames * FRAME_S
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._clip_index < len(self._clip):
                if self._clip_index == 0:
                    self.clip_started_at = time.monotonic()
                payload = self._clip[self._clip_index]
                self._clip_index += 1
                if self._clip_index == len(self._clip):
                    self.clip_ended_at = time.monotonic()
                    if self.loop_clip:
                        self._clip_index = 0
            else:
                payload = silence
            await self.send(
                {
                    "event": "media",
                    "sequenceNumber": self._next_seq(),
                    "media": {
                        "track": "inbound",
                        "chunk": str(self.sent_frames + 1),
                        "timestamp": str(self.sent_frames * 20),
                        "payload": base64.b64encode(payload).decode("ascii"),
                    },
                    "streamSid": self.stream_sid,
                }
            )
            self.sent_frames += 1

    async def dtmf(self, digit: str) -> None:
        await self.send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next_seq(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def stop(self) -> None:
        """The caller hangs up: `stop`, then Twilio closes the socket."""
        await self.send(
            {
                "event": "stop",
                "sequenceNumber": self._next_seq(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )
        await self.close()

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(msg.data)
            event = message.get("event")
            if event == "media":
                self.heard.payloads.append(base64.b64decode(message["media"]["payload"]))
                self.heard.arrivals.append(time.monotonic())
            elif event == "mark":
                name = message["mark"]["name"]
                self.heard.marks.append(name)
                # Twilio echoes a mark once the audio before it has played; it arrives
                # paced in real time, so it has.
                await self.send({"event": "mark", "streamSid": self.stream_sid, "sequenceNumber": self._next_seq(), "mark": {"name": name}})
            elif event == "clear":
                self.heard.clears += 1
            else:
                self.heard.other.append(message)
        self.closed_by_server.set()

    async def wait_closed(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.closed_by_server.wait(), timeout)

    async def close(self) -> None:
        for task in (self._sender,):
            if task is not None:
                task.cancel()
                # A socket the server closed (as when its node dies) ends the sender too.
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, ConnectionError):
                    await task
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await asyncio.wait_for(self._reader, 5)
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None
