"""Twilio Media Streams: a phone caller as the `phone` kind of Participant.

Twilio opens a WebSocket to us when the call's TwiML says `<Connect><Stream>` (bidirectional)
and sends JSON text frames: `connected`, `start` (`streamSid`, `start.callSid`,
`start.customParameters`, `start.mediaFormat` audio/x-mulaw 8000 Hz mono), `media` (20 ms of
base64 μ-law in `media.payload`), `dtmf` (`dtmf.digit`), `mark` (the echo of a mark we sent,
once the audio before it has played), `stop`. We send `media` (`streamSid`,
`media.payload`), `mark` and `clear` (drop what Twilio has buffered for the caller: barge-in).

Outbound audio is released one 20 ms frame per 20 ms of a clock (never by sleeping 20 ms per
frame, which drifts, and never far ahead of real time: whatever Twilio has buffered is what a
`clear` would have to throw away). Messages we cannot use are counted and ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from media.decode import AudioDecoder, MulawDecoder
from media.encode import MULAW_FRAME_BYTES, MULAW_RATE, MulawEncoder
from media.participant import Participant

log = logging.getLogger(__name__)

FRAME_S = 0.02
MAX_MESSAGE_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 8000
"""One second of μ-law: Twilio sends 160 bytes a message; more is not a media stream."""
MAX_OUTBOUND_S = 60.0
"""Outbound audio held (a voice agent's whole reply may come at once); older is dropped."""
MAX_LATE_S = 0.1
"""How far the sender may fall behind its clock (starved of CPU, or the source late) and
still catch up by sending early; further behind (after a pause) the clock restarts at now."""
PRIME_FRAMES = 3
"""After a pause, sending starts once this many frames are queued (or one frame has waited
PRIME_FRAMES × 20 ms): the voices we relay arrive from the audio thread in small batches,
and 60 ms in hand keeps their jitter out of the caller's line."""
DTMF_DIGITS = frozenset("0123456789*#ABCD")
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


class ProtocolError(ValueError):
    """A message that is not Media Streams JSON we can use."""


@dataclass
class StreamStats:
    """Counters of one process's phone streams (reported by /api/stats)."""

    streams: int = 0
    rejected: int = 0
    malformed: int = 0
    media_in: int = 0
    media_out: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def count_malformed(self, reason: str) -> None:
        self.malformed += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if self.malformed in (1, 10, 100) or self.malformed % 1000 == 0:
            log.warning("ignored a malformed media-stream message (%d so far): %s", self.malformed, reason)


def parse(raw: str | bytes) -> dict[str, Any]:
    """One inbound message, checked for the fields we use; raises ProtocolError."""
    if isinstance(raw, bytes):
        raise ProtocolError("binary frame")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError("message too large")
    try:
        message = json.loads(raw)
    except ValueError:
        raise ProtocolError("not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise ProtocolError("not an object with an event")
    event = message["event"]
    if event == "media":
        media = message.get("media")
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            raise ProtocolError("media without media.payload")
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            raise ProtocolError("media of another track")
        if len(media["payload"]) > MAX_PAYLOAD_BYTES * 4 // 3 + 4:
            raise ProtocolError("media payload too large")
        try:
            payload = base64.b64decode(media["payload"], validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("media payload is not base64") from None
        if not payload:
            raise ProtocolError("empty media payload")
        message["_payload"] = payload
    elif event == "start":
        start = message.get("start")
        if not isinstance(start, dict) or not isinstance(message.get("streamSid"), str):
            raise ProtocolError("start without start/streamSid")
        params = start.get("customParameters", {})
        if not isinstance(params, dict):
            raise ProtocolError("start.customParameters is not an object")
    elif event == "dtmf":
        dtmf = message.get("dtmf")
        digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
        if not isinstance(digit, str) or digit not in DTMF_DIGITS:
            raise ProtocolError("dtmf without a digit")
    elif event == "mark":
        mark = message.get("mark")
        if not isinstance(mark, dict) or not isinstance(mark.get("name"), str):
            raise ProtocolError("mark without mark.name")
    elif event not in ("connected", "stop"):
        raise ProtocolError(f"unknown event {event[:40]!r}")
    return message


def media_format_ok(start: dict[str, Any]) -> bool:
    fmt = start.get("start", {}).get("mediaFormat")
    if fmt is None:  # older streams omit it; Media Streams are always μ-law 8 kHz mono
        return True
    return isinstance(fmt, dict) and all(fmt.get(k) == v for k, v in MEDIA_FORMAT.items())


async def wait_for_start(
    ws: web.WebSocketResponse, stats: StreamStats, timeout_s: float
) -> dict[str, Any] | None:
    """Read until the `start` message; None if the socket closes or it takes too long."""
    try:
        async with asyncio.timeout(timeout_s):
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        stats.count_malformed("binary frame")
                        continue
                    return None
                try:
                    message = parse(msg.data)
                except ProtocolError as exc:
                    stats.count_malformed(str(exc))
                    continue
                if message["event"] == "start":
                    return message
                if message["event"] == "stop":
                    return None
    except TimeoutError:
        return None
    return None


@dataclass(frozen=True)
class _Mark:
    name: str


class MediaStream(Participant):
    """One Twilio media stream of a call: the caller's voice in, everyone else's out."""

    kind = "phone"
    codec = "mulaw"
    forwards = frozenset({"mulaw"})

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        role: str,
        stream_sid: str,
        call_sid: str,
        stats: StreamStats,
    ) -> None:
        super().__init__()
        self.role = role
        self.ws = ws
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.stats = stats
        self.marks_played: list[str] = []
        """Names of our marks Twilio has echoed: the audio before each reached the caller."""
        self.dtmf_digits: list[str] = []
        self._encoder = MulawEncoder()
        self._pending = bytearray()  # μ-law not yet a whole 20 ms frame
        self._outbound: deque[bytes | _Mark] = deque()
        self._queued_frames = 0
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._closed = False
        self._hung_up = False
        self.frames_sent = 0
        self.frames_dropped = 0

    # -- Participant ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return not self._closed and not self.ws.closed

    def decoder(self) -> AudioDecoder:
        return MulawDecoder()

    def play_pcm(self, pcm: bytes) -> None:
        self._queue_mulaw(self._encoder.encode(pcm))

    def play_encoded(self, payload: bytes) -> None:
        self._queue_mulaw(payload)

    def clear_audio(self) -> int:
        # What was sent is counted as heard: we pace at real time, so Twilio holds no more
        # than its jitter buffer (and `clear` drops that too).
        dropped_ms = round(self._queued_frames * FRAME_S * 1000) + len(self._pending) * 1000 // MULAW_RATE
        self._outbound.clear()
        self._queued_frames = 0
        self._pending.clear()
        if not self._closed:
            self._send_json({"event": "clear", "streamSid": self.stream_sid})
        return dropped_ms

    def mark(self, name: str) -> None:
        """Ask Twilio to tell us (a `mark` back) when the audio queued so far has played."""
        self._outbound.append(_Mark(name))
        self._wake.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        # Closing from our side ends Twilio's <Connect>: the phone call hangs up.
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.port is not None and not self._hung_up:
            self.port.on_left(self, hung_up=False)

    # -- transport ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the stream until the caller hangs up (`stop`, or the socket closes) or we
        close it; the caller hanging up is reported to the call."""
        self.stats.streams += 1
        self._sender = asyncio.ensure_future(self._send_loop())
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    if self._handle(msg.data):
                        break
                elif msg.type == WSMsgType.BINARY:
                    self.stats.count_malformed("binary frame")
                else:
                    break
        finally:
            if not self._closed:
                self._hung_up = True
                if self.port is not None:
                    self.port.on_left(self, hung_up=True)
                await self.close()

    def _handle(self, raw: str) -> bool:
        """One message; True when the stream is over."""
        try:
            message = parse(raw)
        except ProtocolError as exc:
            self.stats.count_malformed(str(exc))
            return False
        event = message["event"]
        if message.get("streamSid", self.stream_sid) != self.stream_sid:
            self.stats.count_malformed("another stream's streamSid")
            return False
        if event == "media":
            self.stats.media_in += 1
            if self.port is not None:
                self.port.on_audio(self, message["_payload"])
        elif event == "dtmf":
            digit = message["dtmf"]["digit"]
            self.dtmf_digits.append(digit)
            if self.port is not None:
                self.port.on_dtmf(self, digit)
        elif event == "mark":
            self.marks_played.append(message["mark"]["name"])
        elif event == "stop":
            return True
        elif event == "start":
            self.stats.count_malformed("a second start")
        return False

    def _queue_mulaw(self, mulaw: bytes) -> None:
        if self._closed or not mulaw:
            return
        self._pending += mulaw
        while len(self._pending) >= MULAW_FRAME_BYTES:
            self._outbound.append(bytes(self._pending[:MULAW_FRAME_BYTES]))
            del self._pending[:MULAW_FRAME_BYTES]
            self._queued_frames += 1
        while self._queued_frames > MAX_OUTBOUND_S / FRAME_S:
            item = self._outbound.popleft()
            if isinstance(item, bytes):
                self._queued_frames -= 1
                self.frames_dropped += 1
        self._wake.set()

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        due = 0.0
        while True:
            if not self._outbound:
                while not self._outbound:
                    self._wake.clear()
                    await self._wake.wait()
                if due < loop.time() - MAX_LATE_S:
                    await self._prime()
            item = self._outbound.popleft()
            if isinstance(item, _Mark):
                await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": item.name}})
                continue
            self._queued_frames -= 1
            now = loop.time()
            if due < now - MAX_LATE_S:
                due = now
            elif due > now:
                await asyncio.sleep(due - now)
            due += FRAME_S
            payload = base64.b64encode(item).decode("ascii")
            await self._send({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})
            self.frames_sent += 1
            self.stats.media_out += 1

    async def _prime(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PRIME_FRAMES * FRAME_S):
                while self._queued_frames < PRIME_FRAMES:
                    self._wake.clear()
                    await self._wake.wait()

    def _send_json(self, message: dict[str, Any]) -> None:
        """Send out of band (a `clear` must not wait behind queued audio)."""
        task = asyncio.ensure_future(self._send(message))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        # A dead socket shows up as the read loop ending; here it only stops the sending.
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(json.dumps(message, separators=(",", ":")))
