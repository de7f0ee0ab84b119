"""Outbound audio made of Opus packets that were already encoded (forwarded or pre-encoded).

aiortc's RTCRtpSender sends an `av.Packet` as it is, without re-encoding, so relaying a
party's voice costs a copy instead of a decode and an encode per leg.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

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


class ForwardedAudioTrack(MediaStreamTrack):
    """Plays Opus payloads pushed to it, in arrival order, stamped on a continuous clock.

    Timestamps follow the packets' own durations while they flow and jump ahead by the
    real gap after a pause (the other party not connected, or silent), so receivers'
    jitter buffers see a sane timeline across reconnects.
    """

    kind = "audio"

    def __init__(self, max_queue: int = 25) -> None:
        super().__init__()
        self._queue: deque[bytes] = deque(maxlen=max_queue)
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

    async def recv(self) -> av.Packet:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        payload = self._queue.popleft()
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
        self._ready.set()
