"""Per call: SegmentEvents in, Transcripts out, one engine request at a time.

`submit` only queues. One task per call works through the queue in order: status notices
first, then final segments (oldest first), and only when the engine is idle and nothing
final waits, the newest snapshot of a still-open utterance for an interim transcript.
A snapshot superseded by a newer one, or by its segment's final, is dropped unheard.

When more than `queue_max_segments` finals wait, the oldest neighbours of one speaker are
merged into one request (nothing is lost, and fewer requests catch up faster); if none
can be merged, the oldest segment is dropped. Either way the call gets a `status`, as it
does when a final waited more than BEHIND_S for the engine (the engine is shared: under
overload every call's finals slow down alike, and each is told).

Endpoint snapshots (taken as a pause begins, see media/turns.py) come before interims:
one whose text reads as a finished sentence becomes the segment's final at once. The final
the segmenter sends later for the same utterance is then dropped unheard, or, if the
speaker went on, only its new part is transcribed, as a segment of its own.
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

from .audio import BYTES_PER_MS, SegmentEvent, Transcript, silence
from .stt.base import SpeechToText
from .turns import reads_finished

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
BEHIND_S = 2.0
"""A final that waited this long for the engine means the call is falling behind."""
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
    endpoints: int = 0
    """Finals that came from an endpoint snapshot, before the full pause."""
    endpoints_skipped: int = 0
    """Endpoint snapshots not decoded because the engine was behind."""
    split: int = 0
    """Utterances that went on after an endpoint final: their rest became a new segment."""
    max_wait_ms: int = 0
    """Longest time a final waited in this call's queue."""


class CallTranscriber:
    """Transcribes one call's segments with a shared engine; owns one task."""

    def __init__(
        self,
        *,
        engine: SpeechToText,
        settings: SpeechSettings,
        emit_transcript: EmitTranscript,
        emit_status: EmitStatus,
        behind_s: float = BEHIND_S,
    ) -> None:
        self._engine = engine
        self._behind_s = behind_s
        self._max_pending = max(1, settings.queue_max_segments)
        self._show_interims = settings.interim_interval_ms > 0
        self._emit_transcript = emit_transcript
        self._emit_status = emit_status
        self._finals: deque[SegmentEvent] = deque()
        self._partials: dict[str, SegmentEvent] = {}
        self._endpoints: dict[str, SegmentEvent] = {}
        # Per speaker: the utterance (its start as the segmenter numbers it) whose endpoint
        # snapshot became final, and where that final ended; and the latest speech heard
        # (utterance start, end of its speech) from any event.
        self._ended_early: dict[str, tuple[int, int]] = {}
        self._heard: dict[str, tuple[int, int]] = {}
        self._queued_at: dict[str, float] = {}
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
        if event.speech_end_ms is not None:
            heard = self._heard.get(event.speaker)
            if heard is None or heard[0] != event.start_ms or heard[1] < event.speech_end_ms:
                self._heard[event.speaker] = (event.start_ms, event.speech_end_ms)
        trimmed = self._after_endpoint(event)
        if trimmed is None:
            return
        event = trimmed
        if event.final:
            self._closed_through[event.speaker] = max(
                event.start_ms, self._closed_through.get(event.speaker, event.start_ms)
            )
            for pending in (self._partials, self._endpoints):
                stale = pending.get(event.speaker)
                if stale is not None and stale.start_ms <= event.start_ms:
                    del pending[event.speaker]
                    self.stats.stale_partials += 1
            self._finals.append(event)
            self._queued_at.setdefault(event.segment_id, _now())
            self._idle.clear()
            if len(self._finals) > self._max_pending:
                self._shed_load()
        elif self._draining or not (event.endpoint or self._show_interims):
            # (With interims off, a snapshot still told _heard that speech went on.)
            return
        elif event.start_ms > self._closed_through.get(event.speaker, -1):
            pending = self._endpoints if event.endpoint else self._partials
            if event.speaker in pending:
                self.stats.stale_partials += 1
            pending[event.speaker] = event
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
            self._endpoints.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await self._idle.wait()
        self._closed = True
        if self.stats.finals or self.stats.blank or self.stats.skipped:
            logger.info("call transcription: %s", self.stats)
        self._partials.clear()
        self._endpoints.clear()
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
                self._queued_at.pop(oldest.segment_id, None)
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
                speech_end_ms=event.speech_end_ms,
            )
            del finals[index]
            self._queued_at.pop(event.segment_id, None)
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
            event = self._finals.popleft()
            await self._check_wait(event)
            trimmed = self._after_endpoint(event)
            if trimmed is not None:
                await self._transcribe_final(trimmed)
            if not self._finals and self._behind:
                self._behind = False
                self._notice("info", "stt_caught_up", "Speech-to-text has caught up.")
            return True
        if self._endpoints:
            speaker = min(self._endpoints, key=lambda s: self._endpoints[s].start_ms)
            event = self._endpoints.pop(speaker)
            if self._engine.saturated:
                # Other calls' finals wait for the engine: this turn's end will be found by
                # its final (silence_ms), and a snapshot taken at a comma would only have
                # delayed them. Measured at 24 calls (bench.latency, load 7-8): the engine
                # decoded 1390 segments for 672 lines with them, 1094 without; end of
                # speech → final p50 1863 → 1185 ms, p95 3228 → 3918 ms (within the noise
                # of that load).
                self.stats.endpoints_skipped += 1
            else:
                await self._transcribe_endpoint(event)
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

    async def _check_wait(self, event: SegmentEvent) -> None:
        queued_at = self._queued_at.pop(event.segment_id, None)
        if queued_at is None:
            return
        waited = _now() - queued_at
        self.stats.max_wait_ms = max(self.stats.max_wait_ms, round(waited * 1000))
        if waited >= self._behind_s and not self._behind:
            self._behind = True
            await self._status(
                "warning",
                "stt_behind",
                f"Speech-to-text is running {waited:.1f} s behind on this call; "
                "final transcripts are delayed.",
            )

    async def _transcribe_endpoint(self, event: SegmentEvent) -> None:
        """A snapshot at the start of a pause: final now if it reads as a finished sentence
        and the speaker has not gone on meanwhile."""
        text = await self._transcribe(event, as_final=True)
        if not text:
            return  # its final will tell
        ended = self._ended_early.get(event.speaker)
        # After an earlier endpoint of the same utterance, `event` was trimmed to start there.
        utterance = ended[0] if ended is not None and ended[1] == event.start_ms else event.start_ms
        heard = self._heard.get(event.speaker)
        went_on = (
            heard is not None
            and heard[0] == utterance
            and event.speech_end_ms is not None
            and heard[1] > event.speech_end_ms
        )
        if went_on or not reads_finished(text):
            # Not the turn's end, but good text: an interim, unless its final is queued.
            if self._show_interims and event.start_ms > self._closed_through.get(event.speaker, -1):
                self.stats.interims += 1
                await self._transcript(event, text, final=False)
            return
        # Final now. Its utterance's final, if queued meanwhile, still waits behind this
        # task: _after_endpoint trims it to what was said after `event`, if anything.
        self._ended_early[event.speaker] = (utterance, event.end_ms)
        self._closed_through[event.speaker] = max(
            event.start_ms, self._closed_through.get(event.speaker, event.start_ms)
        )
        self._partials.pop(event.speaker, None)
        self._context[event.speaker] = (text, event.end_ms)
        self.stats.finals += 1
        self.stats.endpoints += 1
        await self._transcript(event, text, final=True)

    def _after_endpoint(self, event: SegmentEvent) -> SegmentEvent | None:
        """`event` less what an endpoint final already covered; None if nothing is left."""
        ended = self._ended_early.get(event.speaker)
        if ended is None or event.start_ms != ended[0]:
            return event
        start_ms, cut_ms = ended
        speech_end = event.speech_end_ms if event.speech_end_ms is not None else event.end_ms
        if speech_end <= cut_ms:
            # Nothing said after the endpoint: this is the same utterance, transcribed.
            if event.final:
                del self._ended_early[event.speaker]
            return None
        if event.final:
            del self._ended_early[event.speaker]
            self.stats.split += 1
        offset = (cut_ms - start_ms) * BYTES_PER_MS
        return SegmentEvent(
            speaker=event.speaker,
            segment_id=f"{event.speaker}-{cut_ms}",
            pcm=event.pcm[offset:],
            start_ms=cut_ms,
            end_ms=event.end_ms,
            final=event.final,
            speech_end_ms=event.speech_end_ms,
            endpoint=event.endpoint,
        )

    async def _transcribe_partial(self, event: SegmentEvent) -> None:
        text = await self._transcribe(event)
        # Its final may have been submitted meanwhile: then this interim is already stale.
        if not text or event.start_ms <= self._closed_through.get(event.speaker, -1):
            return
        self.stats.interims += 1
        await self._transcript(event, text)

    async def _transcribe(self, event: SegmentEvent, *, as_final: bool = False) -> str | None:
        """Cleaned text ("" for no words), or None if the engine failed (reported)."""
        prompt = None
        context = self._context.get(event.speaker)
        if context is not None and 0 <= event.start_ms - context[1] <= CONTEXT_GAP_MS:
            prompt = context[0]
        try:
            if event.final or as_final:
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

    async def _transcript(
        self, event: SegmentEvent, text: str, *, final: bool | None = None
    ) -> None:
        transcript = Transcript(
            speaker=event.speaker,
            segment_id=event.segment_id,
            text=text,
            final=event.final if final is None else final,
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


def _now() -> float:
    return asyncio.get_running_loop().time()


def _clock(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
