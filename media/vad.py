"""Is this 30 ms frame speech? webrtcvad, guarded against loud steady noise.

webrtcvad alone calls any loud enough stationary noise (a fan, hiss, hum at -15 dBFS)
speech, at every aggressiveness. Speech is modulated: within a second or two there are
always quieter stretches between syllables and words. So a frame counts as speech only
when webrtcvad says so and it stands clearly above the noise floor, estimated as the
quietest frame of the last moments ("minimum statistics"). Steady noise sits on its own
floor and never qualifies; speech over that noise still does.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import webrtcvad

from .audio import BYTES_PER_MS, SAMPLE_RATE

FRAME_MS = 30
"""webrtcvad takes 10, 20 or 30 ms; 30 is the cheapest per second of audio."""
FLOOR_WINDOW_MS = 1500
"""How far back the noise floor looks for the quietest frame."""
ABOVE_FLOOR_DB = 6.0
"""How far above the noise floor a speech frame must be."""
MIN_LEVEL_DBFS = -60.0
"""Quieter frames are never speech, whatever webrtcvad says."""


def frame_level_dbfs(frame: bytes) -> float:
    """Level of an s16 frame in dB relative to full scale (-100 for silence).

    Measured after a first difference (a gentle high-pass, like speech pre-emphasis): the
    rumble of traffic or brown noise wanders by many dB from frame to frame below 200 Hz,
    and would otherwise look modulated like speech.
    """
    samples = np.diff(np.frombuffer(frame, dtype=np.int16).astype(np.float32))
    power = float(np.dot(samples, samples)) / max(1, samples.size)
    if power <= 0.0:
        return -100.0
    return 10.0 * math.log10(power / (32768.0 * 32768.0))


class VoiceActivityDetector:
    """Classifies consecutive frames of one stream; keeps that stream's noise floor."""

    def __init__(self, aggressiveness: int, frame_ms: int = FRAME_MS) -> None:
        if frame_ms not in (10, 20, 30):
            raise ValueError("webrtcvad frames are 10, 20 or 30 ms")
        self.frame_ms = frame_ms
        self.frame_bytes = frame_ms * BYTES_PER_MS
        self._vad = webrtcvad.Vad(aggressiveness)
        self._levels: deque[float] = deque(maxlen=max(1, FLOOR_WINDOW_MS // frame_ms))

    def is_speech(self, frame: bytes) -> bool:
        level = frame_level_dbfs(frame)
        self._levels.append(level)
        if level < MIN_LEVEL_DBFS or level < min(self._levels) + ABOVE_FLOOR_DB:
            return False
        return self._vad.is_speech(frame, SAMPLE_RATE)

    def reset(self) -> None:
        """Forget the noise floor (after a gap in the stream)."""
        self._levels.clear()
