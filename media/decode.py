"""Each ingress's codec → 16 kHz mono s16 PCM, the pipeline's one format.

An ingress brings its own decoder (Opus from WebRTC, μ-law from a phone stream) and the
pipeline runs it on the audio thread. Each decoder resamples once, with one resampler per
stream that keeps its filter state between packets: resampling every 20 ms chunk on its
own clicks at the chunk edges.
"""

from __future__ import annotations

from typing import Protocol, cast

import av
import av.error
from av.audio.codeccontext import AudioCodecContext

from .audio import CHANNELS, SAMPLE_RATE

OPUS_RATE = 48000
MULAW_RATE = 8000


class DecodeError(Exception):
    """One payload could not be decoded; the stream goes on."""


class AudioDecoder(Protocol):
    """One stream's payloads, in order, to 16 kHz mono s16 PCM. Used by one thread."""

    codec: str

    def decode(self, payload: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Resampling:
    def __init__(self, codec_name: str, rate: int) -> None:
        self._codec = cast(AudioCodecContext, av.CodecContext.create(codec_name, "r"))
        self._codec.sample_rate = rate
        if codec_name == "pcm_mulaw" or CHANNELS == 1:
            # WebRTC's Opus is signalled as 2 channels, so the decoder would make stereo for
            # the resampler to mix down again; asked for mono it mixes (a stereo-coded stream
            # too) and decodes less: 36 → 28 µs a 20 ms packet, 50 → 43 µs with resampling.
            self._codec.layout = "mono"
        self._resampler = av.AudioResampler(
            format="s16", layout="mono" if CHANNELS == 1 else "stereo", rate=SAMPLE_RATE
        )

    def decode(self, payload: bytes) -> bytes:
        """PCM of one payload (may be empty while the resampler fills)."""
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


class OpusDecoder(_Resampling):
    """A WebRTC participant's Opus payloads (48 kHz) → 16 kHz mono."""

    codec = "opus"

    def __init__(self) -> None:
        super().__init__("opus", OPUS_RATE)


class MulawDecoder(_Resampling):
    """A phone stream's G.711 μ-law (8 kHz, one byte a sample) → 16 kHz mono."""

    codec = "mulaw"

    def __init__(self) -> None:
        super().__init__("pcm_mulaw", MULAW_RATE)


class PcmPassthrough:
    """An ingress that already speaks 16 kHz mono s16 (a voice agent's synthesized audio)."""

    codec = "pcm16k"

    def decode(self, payload: bytes) -> bytes:
        return payload

    def flush(self) -> bytes:
        return b""
