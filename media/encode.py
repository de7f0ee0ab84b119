"""16 kHz mono s16 PCM → what a participant's transport plays: Opus packets or μ-law.

Used where a participant hears audio that cannot be forwarded as received (a phone
caller's voice to a browser, a browser's voice to a phone). Each stream has its own
encoder, and its own stateful resampler where the rate changes.
"""

from __future__ import annotations

import av

from .audio import BYTES_PER_MS, SAMPLE_RATE

FRAME_MS = 20
FRAME_BYTES = FRAME_MS * BYTES_PER_MS
"""One 20 ms frame of 16 kHz mono s16."""
MULAW_RATE = 8000
MULAW_FRAME_BYTES = MULAW_RATE * FRAME_MS // 1000
"""One 20 ms μ-law frame: 160 bytes, what a phone stream sends in each `media` message."""


class OpusEncoder:
    """20 ms frames of 16 kHz PCM → one Opus packet each.

    libopus takes 16 kHz input as it is (Opus always plays at 48 kHz on the far side and
    RTP stamps it on a 48 kHz clock), so no resampler sits in this path.
    """

    def __init__(self, bit_rate: int = 32000) -> None:
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.sample_rate = SAMPLE_RATE
        self._codec.layout = "mono"
        self._codec.format = "s16"
        self._codec.bit_rate = bit_rate
        self._codec.options = {"application": "voip"}
        self._pts = 0

    def encode(self, pcm: bytes) -> list[bytes]:
        """Packets for one frame of `FRAME_BYTES` (more or fewer while libopus fills)."""
        samples = len(pcm) // 2
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += samples
        return [bytes(p) for p in self._codec.encode(frame)]


class MulawEncoder:
    """16 kHz PCM → 8 kHz μ-law bytes, resampled by one stateful resampler per stream."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=MULAW_RATE)
        self._codec = av.CodecContext.create("pcm_mulaw", "w")
        self._codec.sample_rate = MULAW_RATE
        self._codec.layout = "mono"
        self._codec.format = "s16"
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        if not pcm:
            return b""
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += len(pcm) // 2
        out = bytearray()
        for resampled in self._resampler.resample(frame):
            for packet in self._codec.encode(resampled):
                out += bytes(packet)
        return bytes(out)
