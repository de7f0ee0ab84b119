"""The one internal audio format, and the small records that flow through the pipeline.

After the WebRTC edge every piece of audio is 16 kHz mono signed 16-bit little-endian PCM,
which is what webrtcvad and Whisper want; it is resampled once, in media/decode.py.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from typing import Any

SAMPLE_RATE = 16000
CHANNELS = 1
SAMPLE_WIDTH = 2
"""Bytes per sample (s16)."""
BYTES_PER_MS = SAMPLE_RATE * SAMPLE_WIDTH * CHANNELS // 1000


def pcm_ms(pcm: bytes | bytearray) -> int:
    """Duration of a PCM buffer in milliseconds."""
    return len(pcm) // BYTES_PER_MS


def silence(ms: int) -> bytes:
    return bytes(ms * BYTES_PER_MS)


def pcm_to_wav(pcm: bytes) -> bytes:
    """A complete WAV file holding the PCM, for engines that take files."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class SegmentEvent:
    """A stretch of one speaker's speech, cut by the segmenter.

    While the utterance grows the segmenter sends snapshots (`final=False`) holding all
    of it so far; the last event of a segment, with the same `segment_id`, is final.
    Times are milliseconds since the call was accepted, on the server's clock.
    """

    speaker: str
    segment_id: str
    pcm: bytes
    start_ms: int
    end_ms: int
    final: bool
    speech_end_ms: int | None = None
    """End of the last speech frame in `pcm` (the rest is the tail); None: `end_ms`."""
    endpoint: bool = False
    """A snapshot taken as a pause begins: if its text reads as a finished sentence, the
    utterance may end here instead of after the full `silence_ms` (media/turns.py)."""

    @property
    def duration_ms(self) -> int:
        return pcm_ms(self.pcm)


@dataclass(frozen=True, slots=True)
class Transcript:
    """Text of a segment; a final one replaces the interim ones with its `segment_id`."""

    speaker: str
    segment_id: str
    text: str
    final: bool
    start_ms: int
    end_ms: int

    def event_fields(self) -> dict[str, Any]:
        """The fields of a `transcript` event (API.md), for `server.events.make`."""
        return {
            "speaker": self.speaker,
            "segment_id": self.segment_id,
            "text": self.text,
            "final": self.final,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }
