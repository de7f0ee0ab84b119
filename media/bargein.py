"""Is the caller talking over the voice agent? Barge-in versus backchannel, frame by frame.

A caller who says "mm-hm" or "okay" while the voice agent speaks is listening, not
interrupting; one who goes on talking is. Like LiveKit's agents (`min_interruption_duration`
0.5 s), we tell them apart by how much speech there is: an interruption is a run of speech
(gaps under GAP_MS joined) that has reached VOICED_MS of voiced 20 ms frames and is still
going. Measured on the Piper fixtures (tests/fixtures/voice_agent, webrtcvad mode 2):
"Mm-hmm." is 500 ms voiced, "Okay." 380 ms, "Right." 260 ms; "Can I please talk to a real
person instead?" reaches 520 ms 620 ms after it starts. An interruption made of short words
and pauses ("Wait, sorry, ...") never makes such a run: the voice agent stops for it when its
final transcript arrives and is not a backchannel (server/voice_agent.py), ~0.7 s in.

Browsers send echo-cancelled audio, but what is left of the voice agent's own voice can
reach the VAD: frames quieter than MIN_LEVEL_DBFS are not counted, and the noise floor of
VoiceActivityDetector drops steady residue.

Pure and synchronous (like the segmenter): one stream's frames in, a decision out.
"""

from __future__ import annotations

from .audio import BYTES_PER_MS
from .vad import VoiceActivityDetector, frame_level_dbfs

FRAME_MS = 20
VOICED_MS = 520
"""Voiced speech in one run that makes it an interruption."""
GAP_MS = 300
"""A pause this long ends a run: two backchannels a breath apart do not add up."""
MIN_LEVEL_DBFS = -50.0
"""Quieter frames are echo residue or background, never an interruption."""


class BargeInDetector:
    def __init__(self, aggressiveness: int = 2) -> None:
        self._vad = VoiceActivityDetector(aggressiveness, FRAME_MS)
        self._frame_bytes = FRAME_MS * BYTES_PER_MS
        self._pending = bytearray()
        self._voiced_ms = 0
        self._silent_ms = GAP_MS
        self.position_ms = 0
        """Audio seen so far."""
        self.run_start_ms: int | None = None
        """Where the current run of speech began (None between runs)."""

    def push(self, pcm: bytes) -> bool:
        """Feed 16 kHz mono s16 of any length; True when an interruption is recognised (once
        per run of speech: the next one needs a pause first)."""
        self._pending += pcm
        size = self._frame_bytes
        usable = len(self._pending) - len(self._pending) % size
        fired = False
        for offset in range(0, usable, size):
            fired |= self._frame(bytes(self._pending[offset : offset + size]))
        del self._pending[:usable]
        return fired

    def _frame(self, frame: bytes) -> bool:
        voiced = self._vad.is_speech(frame) and frame_level_dbfs(frame) >= MIN_LEVEL_DBFS
        self.position_ms += FRAME_MS
        if not voiced:
            self._silent_ms += FRAME_MS
            if self._silent_ms >= GAP_MS:
                self._voiced_ms = 0
                self.run_start_ms = None
            return False
        if self.run_start_ms is None:
            self.run_start_ms = self.position_ms - FRAME_MS
        self._silent_ms = 0
        before = self._voiced_ms
        self._voiced_ms += FRAME_MS
        return before < VOICED_MS <= self._voiced_ms

    @property
    def speaking(self) -> bool:
        """The caller is in a run of speech (a backchannel or more)."""
        return self.run_start_ms is not None

    def reset(self) -> None:
        """Forget the current run (the voice agent starts a new reply)."""
        self._voiced_ms = 0
        self._silent_ms = GAP_MS
        self.run_start_ms = None
        self._pending.clear()
