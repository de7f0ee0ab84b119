"""Opus payloads from the WebRTC edge → 16 kHz mono s16 PCM, the pipeline's format."""

from __future__ import annotations

import av
import av.error

from .audio import CHANNELS, SAMPLE_RATE

OPUS_RATE = 48000


class DecodeError(Exception):
    """One payload could not be decoded; the stream goes on."""


class OpusDecoder:
    """Decodes one stream's Opus payloads, in order, and resamples them once.

    Not thread-safe: one decoder belongs to one stream's worker thread.
    """

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("opus", "r")
        self._codec.sample_rate = OPUS_RATE
        # One resampler for the stream: it keeps its filter state between packets, so
        # 20 ms packets resample without clicks at their edges.
        self._resampler = av.AudioResampler(
            format="s16", layout="mono" if CHANNELS == 1 else "stereo", rate=SAMPLE_RATE
        )

    def decode(self, payload: bytes) -> bytes:
        """PCM of one RTP payload (may be empty while the resampler fills)."""
        if not payload:
            # An empty packet would put the decoder into draining mode for good.
            raise DecodeError("empty payload")
        try:
            frames = self._codec.decode(av.Packet(payload))
            return self._resample(frames)
        except (av.error.FFmpegError, ValueError) as exc:
            raise DecodeError(f"{type(exc).__name__}: {exc}") from exc

    def flush(self) -> bytes:
        """The samples the resampler still holds, at the end of the stream."""
        try:
            return self._resample([None])
        except (av.error.FFmpegError, ValueError):
            return b""

    def _resample(self, frames: list[av.AudioFrame] | list[None]) -> bytes:
        out = bytearray()
        for frame in frames:
            for resampled in self._resampler.resample(frame):
                # planes[0] can be padded past the samples; take exactly the samples.
                out += bytes(resampled.planes[0])[: resampled.samples * 2 * CHANNELS]
        return bytes(out)
