"""Per call: SegmentEvents in, Transcripts out, one engine request at a time.

`submit` only queues. One task per call works through the queue in order: status notices
first, then final segments (oldest first), and only when the engine is idle and nothing
final waits, the newest snapshot of a still-open utterance for an interim transcript.
A snapshot superseded by a newer one, or by its segment's final, is dropped unheard.

When more than `queue_max_segments` finals wait, the oldest neighbours of one speaker are
merged into one request (nothing is lost, and fewer requests catch up faster); if none
can be merged, the oldest segment is dropped. Either way the call gets a `status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from media.settings import SpeechSettings

from .audio import SegmentEvent, Transcript, silence
from .stt.base import SpeechToText

logger = logging.getLogger(__name__)

EmitTranscript = Callable[[Transcript], Awaitable[None]]
EmitStatus = Callable[[str, str, str], Awaitable[None]]
"""(level, code, message), as in the `status` event."""

MERGE_MAX_MS = 25_000
"""Merged segments stay within one Whisper window (30 s)."""
MERGE_GAP_MS = 300
"""Silence put between merged segments (the real gap, up to this)."""
CONTEXT_GAP_MS = 1_000
"""A segment starting this soon after the same speaker's last one continues it (a long
monologue cut at max_segment_ms): the earlier text is given to the engine as a prompt."""
DRAIN_TIMEOUT_S = 30.0
"""close(drain=True) waits at most this long for queued finals."""

# Whisper annotates what it hears but is not speech: "[BLANK_AUDIO]", "(music)", "*cough*".
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")
_WORD = re.compile(r"\w")


def clean_text(text: str) -> str:
    """Engine output without non-speech annotations or stray whitespace; "" if no words."""
    text = " ".join(_ANNOTATION.sub(" ", text).split())
    return text if _WORD.search(text) else ""


@dataclass
class TranscriberStats:
    finals: int = 0
    """Final transcripts emitted."""
    interims: int = 0
    blank: int = 0
    """Final segments the engine found no words in."""
    merged: int = 0
    """Segments merged into an earlier one of the same speaker."""
    dropped: int = 0
    skipped: int = 0
    """Segments the engine failed on."""
    stale_partials: int = 0


class CallTranscriber:
    """Transcribes one call's segments with a shared engine; owns one task."""

    def __init__(
        self,
        *,
        engine: SpeechToText,
        settings: SpeechSettings,
        emit_transcript: EmitTranscript,
        emit_status: EmitStatus,
    ) -> None:
        self._engine = engine
        self._max_pending = max(1, settings.queue_max_segments)
        self._emit_transcript = emit_transcript
        self._emit_status = emit_status
        self._finals: deque[SegmentEvent] = deque()
        self._partials: dict[str, SegmentEvent] = {}
        self._notices: deque[tuple[str, str, str]] = deque()
        # Per speaker: start of its latest submitted final (older snapshots are stale),
        # and the text and end of its latest transcript (context for a continuation).
        self._closed_through: dict[str, int] = {}
        self._context: dict[str, tuple[str, int]] = {}
        self._behind = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._draining = False
        self.stats = TranscriberStats()

    @property
    def pending(self) -> int:
        """Final segments waiting for the engine."""
        return len(self._finals)

    def submit(self, event: SegmentEvent) -> None:
        """Queue a segment or snapshot. Never blocks; call on the event loop."""
        if self._closed:
            return
        if event.final:
            self._closed_through[event.speaker] = max(
                event.start_ms, self._closed_through.get(event.speaker, event.start_ms)
            )
            stale = self._partials.get(event.speaker)
            if stale is not None and stale.start_ms <= event.start_ms:
                del self._partials[event.speaker]
                self.stats.stale_partials += 1
            self._finals.append(event)
            self._idle.clear()
            if len(self._finals) > self._max_pending:
                self._shed_load()
        elif self._draining:
            return
        elif event.start_ms > self._closed_through.get(event.speaker, -1):
            if event.speaker in self._partials:
                self.stats.stale_partials += 1
            self._partials[event.speaker] = event
        else:
            # A snapshot of an utterance whose final is already queued.
            self.stats.stale_partials += 1
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="call-transcriber"
            )
        self._wake.set()

    async def close(self, *, drain: bool = False) -> None:
        """Stop; with `drain`, first transcribe the queued finals (bounded). Idempotent."""
        if self._closed:
            return
        if drain and self._task is not None and not self._task.done():
            # The call is over: no utterance is open any more, only finals matter.
            self._draining = True
            self._partials.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await self._idle.wait()
        self._closed = True
        self._partials.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- load shedding (on submit) --------------------------------------------------------

    def _shed_load(self) -> None:
        while len(self._finals) > self._max_pending:
            if self._merge_oldest_pair():
                self.stats.merged += 1
                if not self._behind:
                    self._notice(
                        "warning",
                        "stt_behind",
                        "Speech-to-text is falling behind; merging queued segments.",
                    )
            else:
                oldest = self._finals.popleft()
                self.stats.dropped += 1
                self._notice(
                    "warning",
                    "stt_segment_dropped",
                    f"Speech-to-text is behind; dropped {oldest.duration_ms / 1000:.1f} s of "
                    f"{oldest.speaker} audio at {_clock(oldest.start_ms)}.",
                )
            self._behind = True

    def _merge_oldest_pair(self) -> bool:
        """Merge the oldest two queued finals of one speaker that fit one window."""
        finals = self._finals
        last_of: dict[str, int] = {}
        for index, event in enumerate(finals):
            previous = last_of.get(event.speaker)
            last_of[event.speaker] = index
            if previous is None:
                continue
            first = finals[previous]
            gap_ms = max(0, event.start_ms - first.end_ms)
            pad_ms = min(gap_ms, MERGE_GAP_MS)
            if first.duration_ms + pad_ms + event.duration_ms > MERGE_MAX_MS:
                continue
            finals[previous] = SegmentEvent(
                speaker=first.speaker,
                segment_id=first.segment_id,
                pcm=first.pcm + silence(pad_ms) + event.pcm,
                start_ms=first.start_ms,
                end_ms=event.end_ms,
                final=True,
            )
            del finals[index]
            return True
        return False

    def _notice(self, level: str, code: str, message: str) -> None:
        self._notices.append((level, code, message))

    # -- the task ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while await self._step():
                pass
            if not self._finals:
                self._idle.set()

    async def _step(self) -> bool:
        """Do the most urgent piece of work; False when there is none right now."""
        if self._notices:
            await self._status(*self._notices.popleft())
            return True
        if self._finals:
            await self._transcribe_final(self._finals.popleft())
            if not self._finals and self._behind:
                self._behind = False
                self._notice("info", "stt_caught_up", "Speech-to-text has caught up.")
            return True
        if self._partials and not self._engine.busy:
            # The newest snapshot of the earliest open utterance.
            speaker = min(self._partials, key=lambda s: self._partials[s].start_ms)
            await self._transcribe_partial(self._partials.pop(speaker))
            return True
        return False

    async def _transcribe_final(self, event: SegmentEvent) -> None:
        text = await self._transcribe(event)
        if text is None:
            return
        if not text:
            self.stats.blank += 1
            return
        self._context[event.speaker] = (text, event.end_ms)
        self.stats.finals += 1
        await self._transcript(event, text)

    async def _transcribe_partial(self, event: SegmentEvent) -> None:
        text = await self._transcribe(event)
        # Its final may have been submitted meanwhile: then this interim is already stale.
        if not text or event.start_ms <= self._closed_through.get(event.speaker, -1):
            return
        self.stats.interims += 1
        await self._transcript(event, text)

    async def _transcribe(self, event: SegmentEvent) -> str | None:
        """Cleaned text ("" for no words), or None if the engine failed (reported)."""
        prompt = None
        context = self._context.get(event.speaker)
        if context is not None and 0 <= event.start_ms - context[1] <= CONTEXT_GAP_MS:
            prompt = context[0]
        try:
            if event.final:
                text = await self._engine.transcribe(event.pcm, prompt=prompt)
            else:
                text = await self._engine.transcribe_interim(event.pcm, prompt=prompt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not event.final:
                # An interim that fails is simply not shown; its final will be tried.
                logger.info("interim transcription failed: %s", exc)
                return None
            self.stats.skipped += 1
            logger.warning("speech-to-text skipped a %s segment: %r", event.speaker, exc)
            await self._status(
                "warning",
                "stt_segment_skipped",
                f"Speech-to-text skipped {event.duration_ms / 1000:.1f} s of {event.speaker} "
                f"audio at {_clock(event.start_ms)}: {_reason(exc)}",
            )
            return None
        return clean_text(text)

    async def _transcript(self, event: SegmentEvent, text: str) -> None:
        transcript = Transcript(
            speaker=event.speaker,
            segment_id=event.segment_id,
            text=text,
            final=event.final,
            start_ms=event.start_ms,
            end_ms=event.end_ms,
        )
        try:
            await self._emit_transcript(transcript)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("emitting a transcript failed")

    async def _status(self, level: str, code: str, message: str) -> None:
        try:
            await self._emit_status(level, code, message)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("emitting a status failed")


def _clock(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
