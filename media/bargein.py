"""Is the caller talking over the voice agent? Pause, then barge-in or backchannel, frame by frame.

A caller who says "mm-hm" or "okay" while the voice agent speaks is listening, not
interrupting; one who goes on talking is. Telling them apart takes about half a second of
speech, too long to keep talking over someone (the issue's aim: the voice agent's audio
stops within 500 ms of the caller starting). So, like LiveKit's agents
(`min_interruption_duration` with "false interruption" resume), the decision has two steps:

- PAUSE: a run of speech (gaps under GAP_MS joined) has reached PAUSE_MS of voiced 20 ms
  frames. The voice agent stops its audio at once but keeps what it has not played.
- INTERRUPT: the run has reached VOICED_MS, or the runs since the pause add up to
  EPISODE_VOICED_MS (short words with breaths between them: "Wait, sorry, that is not what
  I asked"). The reply is cut where the caller heard it.
- QUIET: QUIET_MS without speech after a pause that was not an interruption: it was a
  backchannel (or a cough); the voice agent goes on from where it paused.

Measured on the Piper fixtures (tests/fixtures/voice_agent, webrtcvad mode 2, 20 ms frames):
"Mm-hmm." is one run of 480 ms voiced, "Okay." 340 ms, "Yeah." 280 ms, "Right." 220 ms;
none reaches VOICED_MS. "Can I please talk to a real person instead?" reaches PAUSE_MS
200 ms after it starts and VOICED_MS 620 ms after. "Wait, sorry, that is not what I asked
about" is runs of 240 and 380 ms voiced with 340 and 400 ms breaths: it pauses the voice
agent 200 ms in, the breaths are shorter than QUIET_MS so it stays paused, and the third
run takes the episode past EPISODE_VOICED_MS (the final transcript, if it comes first,
confirms it as well: server/voice_agent.py).

Browsers send echo-cancelled audio, but what is left of the voice agent's own voice can
reach the VAD: frames quieter than MIN_LEVEL_DBFS are not counted, and the noise floor of
VoiceActivityDetector drops steady residue.

Pure and synchronous (like the segmenter): one stream's frames in, decisions out.
"""

from __future__ import annotations

from .audio import BYTES_PER_MS
from .vad import VoiceActivityDetector, frame_level_dbfs

FRAME_MS = 20
PAUSE_MS = 200
"""Voiced speech in one run that pauses the voice agent (it may still be a backchannel).
Measured at the caller (bench.voice_agent, load 1.4-3.3): its audio stops 221-227 ms (p50)
and 232-263 ms (p95) after the caller starts, at 1 and 3 concurrent calls; it was 648-673
ms when only VOICED_MS stopped it."""
VOICED_MS = 520
"""Voiced speech in one run that makes it an interruption."""
EPISODE_VOICED_MS = 1000
"""Voiced speech since a pause, over several runs, that makes it an interruption: more than
two backchannels a breath apart ("Okay. Mm-hmm." is 820 ms), less than three short words
and the start of a sentence."""
GAP_MS = 300
"""A pause this long ends a run: two backchannels a breath apart do not add up to VOICED_MS."""
QUIET_MS = 500
"""Silence after a pause that was no interruption before the voice agent goes on: longer
than the breaths between short words (340-400 ms in the fixtures), so "Wait, sorry, ..."
keeps it paused instead of letting it blurt a few words between the caller's. A "Mm-hmm."
silences it for ~780 ms in all (measured at the caller, p95 805 ms at 3 calls)."""
MIN_LEVEL_DBFS = -50.0
"""Quieter frames are echo residue or background, never an interruption."""

PAUSE = "pause"
INTERRUPT = "interrupt"
QUIET = "quiet"


class BargeInDetector:
    def __init__(self, aggressiveness: int = 2) -> None:
        self._vad = VoiceActivityDetector(aggressiveness, FRAME_MS)
        self._frame_bytes = FRAME_MS * BYTES_PER_MS
        self._pending = bytearray()
        self._voiced_ms = 0
        self._silent_ms = GAP_MS
        self._run_decided = False
        self._episode_voiced_ms: int | None = None
        self.position_ms = 0
        """Audio seen so far."""
        self.run_start_ms: int | None = None
        """Where the current run of speech began (None between runs)."""
        self.paused_at_ms: int | None = None
        """Where the open pause began (None when there is none: after INTERRUPT or QUIET)."""

    def push(self, pcm: bytes) -> list[str]:
        """Feed 16 kHz mono s16 of any length; the decisions it led to, in order: PAUSE
        (once per pause), then INTERRUPT or QUIET (once, which closes the pause)."""
        self._pending += pcm
        size = self._frame_bytes
        usable = len(self._pending) - len(self._pending) % size
        decisions: list[str] = []
        for offset in range(0, usable, size):
            decision = self._frame(bytes(self._pending[offset : offset + size]))
            if decision is not None:
                decisions.append(decision)
        del self._pending[:usable]
        return decisions

    def _frame(self, frame: bytes) -> str | None:
        voiced = self._vad.is_speech(frame) and frame_level_dbfs(frame) >= MIN_LEVEL_DBFS
        self.position_ms += FRAME_MS
        if not voiced:
            self._silent_ms += FRAME_MS
            if self._silent_ms >= GAP_MS:
                self._voiced_ms = 0
                self._run_decided = False
                self.run_start_ms = None
            if self.paused_at_ms is not None and self._silent_ms >= QUIET_MS:
                self._close_pause()
                return QUIET
            return None
        if self.run_start_ms is None:
            self.run_start_ms = self.position_ms - FRAME_MS
        self._silent_ms = 0
        self._voiced_ms += FRAME_MS
        if self.paused_at_ms is None:
            if self._run_decided or self._voiced_ms < PAUSE_MS:
                return None
            self.paused_at_ms = self.position_ms
            self._episode_voiced_ms = self._voiced_ms
            return PAUSE
        assert self._episode_voiced_ms is not None
        self._episode_voiced_ms += FRAME_MS
        if self._voiced_ms >= VOICED_MS or self._episode_voiced_ms >= EPISODE_VOICED_MS:
            self._close_pause()
            self._run_decided = True  # the rest of this run is the same interruption
            return INTERRUPT
        return None

    def _close_pause(self) -> None:
        self.paused_at_ms = None
        self._episode_voiced_ms = None

    @property
    def speaking(self) -> bool:
        """The caller is in a run of speech (a backchannel or more)."""
        return self.run_start_ms is not None

    @property
    def quiet_ms(self) -> int:
        """How long the caller has been silent (0 while a frame is voiced)."""
        return self._silent_ms

    def reset(self) -> None:
        """Forget the current run and pause (the voice agent starts a new reply)."""
        self._voiced_ms = 0
        self._silent_ms = GAP_MS
        self._run_decided = False
        self.run_start_ms = None
        self._close_pause()
        self._pending.clear()
