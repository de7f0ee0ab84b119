"""A WebRTC participant's outbound audio: Opus forwarded as received, or 16 kHz PCM encoded.

aiortc's RTCRtpSender sends an `av.Packet` as it is, without re-encoding, so relaying a
browser's voice to another browser costs a copy instead of a decode and an encode per
leg. Voices that arrive as something else (a phone caller's μ-law, a voice agent's speech)
come as 16 kHz PCM from the pipeline and are encoded here, off the event loop.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .encode import FRAME_BYTES, FRAME_MS, OpusEncoder

log = logging.getLogger(__name__)

OPUS_RATE = 48000
TIME_BASE = fractions.Fraction(1, OPUS_RATE)
# Frame sizes in 48 kHz samples for each Opus TOC configuration (RFC 6716, 3.1).
_CONFIG_SAMPLES = (
    [480, 960, 1920, 2880] * 3  # SILK NB/MB/WB: 10, 20, 40, 60 ms
    + [480, 960] * 2  # Hybrid SWB/FB: 10, 20 ms
    + [120, 240, 480, 960] * 4  # CELT NB/WB/SWB/FB: 2.5, 5, 10, 20 ms
)


def opus_packet_samples(payload: bytes) -> int:
    """Duration of one Opus packet in 48 kHz samples, from its TOC byte; 960 if unknown."""
    if not payload:
        return 960
    toc = payload[0]
    per_frame = _CONFIG_SAMPLES[toc >> 3]
    code = toc & 0x3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(payload) > 1:
        frames = payload[1] & 0x3F
    else:
        return 960
    return max(per_frame * max(frames, 1), 120)


MAX_PCM_S = 60.0
"""PCM held for playing (a voice agent may hand over a whole reply at once); past this the
oldest is dropped."""


class OutboundAudioTrack(MediaStreamTrack):
    """Plays Opus payloads pushed to it, in arrival order, stamped on a continuous clock;
    or 16 kHz PCM, encoded to Opus and released one 20 ms frame per 20 ms of wall clock.

    Timestamps follow the packets' own durations while they flow and jump ahead by the
    real gap after a pause (the other party not connected, or silent), so receivers'
    jitter buffers see a sane timeline across reconnects and across a change of source
    (a voice agent handing over to a browser agent). One source plays at a time.
    """

    kind = "audio"

    def __init__(self, max_queue: int = 25) -> None:
        super().__init__()
        self._queue: deque[bytes] = deque(maxlen=max_queue)
        self._pcm = bytearray()
        self._pcm_due = 0.0
        self._encoder: OpusEncoder | None = None
        self._ready = asyncio.Event()
        self._pts: int | None = None
        self._last_wall = 0.0
        self.packets_in = 0
        self.packets_out = 0
        self.dropped = 0

    def push(self, payload: bytes) -> None:
        if self.readyState != "live":
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # the receiver stalled: keep latency bounded, drop the oldest
        self._queue.append(payload)
        self.packets_in += 1
        self._ready.set()

    def push_pcm(self, pcm: bytes) -> None:
        """16 kHz mono s16 to play; any length (kept whole-frame aligned here)."""
        if self.readyState != "live" or not pcm:
            return
        self._pcm += pcm
        excess = len(self._pcm) - int(MAX_PCM_S * 1000 / FRAME_MS) * FRAME_BYTES
        if excess > 0:
            del self._pcm[: excess + (-excess % FRAME_BYTES)]
            self.dropped += 1
        self._ready.set()

    def clear(self) -> int:
        """Drop the PCM not yet played (barge-in); returns the milliseconds dropped."""
        dropped_ms = len(self._pcm) // FRAME_BYTES * FRAME_MS
        self._pcm.clear()
        return dropped_ms

    async def recv(self) -> av.Packet:
        while True:
            while not self._queue and len(self._pcm) < FRAME_BYTES:
                if self.readyState != "live":
                    raise MediaStreamError
                self._ready.clear()
                await self._ready.wait()
            if self.readyState != "live":
                raise MediaStreamError
            if self._queue:
                return self._stamp(self._queue.popleft())
            payload = await self._encode_pcm_frame()
            if payload is not None:
                return self._stamp(payload)

    async def _encode_pcm_frame(self) -> bytes | None:
        # Paced from a clock, not by sleeping 20 ms per frame: sleeps overshoot and the
        # drift adds up. After an idle stretch the clock restarts at now.
        now = time.monotonic()
        if self._pcm_due < now - 0.1:
            self._pcm_due = now
        elif self._pcm_due > now:
            await asyncio.sleep(self._pcm_due - now)
        self._pcm_due += FRAME_MS / 1000
        frame = bytes(self._pcm[:FRAME_BYTES])
        if len(frame) < FRAME_BYTES:  # cleared while we slept
            return None
        del self._pcm[:FRAME_BYTES]
        if self._encoder is None:
            self._encoder = OpusEncoder()
        # Opus encoding stays off the event loop (as aiortc does for the frames it encodes).
        loop = asyncio.get_running_loop()
        packets = await loop.run_in_executor(None, self._encoder.encode, frame)
        return packets[0] if packets else None

    def _stamp(self, payload: bytes) -> av.Packet:
        now = time.monotonic()
        samples = opus_packet_samples(payload)
        if self._pts is None:
            self._pts = 0
        else:
            gap = int((now - self._last_wall) * OPUS_RATE)
            self._pts += max(samples, gap if gap > 4 * samples else samples)
        self._last_wall = now
        packet = av.Packet(payload)
        packet.pts = self._pts
        packet.time_base = TIME_BASE
        self.packets_out += 1
        return packet

    def stop(self) -> None:
        super().stop()
        self._pcm.clear()
        self._ready.set()


ForwardedAudioTrack = OutboundAudioTrack
