"""Cuts one speaker's audio into utterances: pure, synchronous, one frame at a time.

Idle, the segmenter keeps a short ring of recent frames. When most frames of the last
START_WINDOW_MS are speech, an utterance starts, including the ring (the pre-roll, so the
first syllable is not clipped). It ends after `silence_ms` without speech, keeping a short
tail. While it grows, a snapshot of all of it so far goes out every `interim_interval_ms`
for interim transcripts. One that falls due late in a pause waits until speech goes on: the
utterance is probably ending, and the engine, one request at a time, would make its final
wait for a snapshot that the final replaces moments later. An utterance that reaches
`max_segment_ms` is cut, preferably in a pause near its end, and goes on as a new segment.

When a pause reaches `endpoint_silence_ms` (shorter than `silence_ms`), one more snapshot goes
out, marked `endpoint`: the transcriber may end the turn there if its text reads as a
finished sentence (media/turns.py). The segmenter itself keeps going; every event says where
its speech ends (`speech_end_ms`), so that the transcriber can tell whether the final that
follows holds anything more. If speech goes on after an endpoint snapshot, a plain snapshot
goes out at once: the transcriber, still decoding the endpoint, then knows the turn is not
over.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from media.settings import SpeechSettings

from .audio import BYTES_PER_MS, SegmentEvent

START_WINDOW_MS = 240
"""Speech must fill most of this window to start an utterance: clicks and coughs don't."""
START_RATIO = 0.75
TAIL_MS = 200
"""Silence kept after the last speech frame: Whisper hears the word end."""
CUT_SEARCH_FRACTION = 0.25
"""A cut at max_segment_ms looks for a pause in this last fraction of the segment."""


class Segmenter:
    """Turns a stream of PCM into SegmentEvents for one speaker.

    `is_speech` classifies one frame of `frame_ms`; `origin_ms` is the call time of the
    stream's first sample. Feed with `push`; call `skip` for a gap in the stream and
    `flush` at its end. Each returns the events it produced, in order.
    """

    def __init__(
        self,
        *,
        speaker: str,
        settings: SpeechSettings,
        is_speech: Callable[[bytes], bool],
        frame_ms: int,
        origin_ms: int = 0,
    ) -> None:
        self.speaker = speaker
        self._is_speech = is_speech
        self._frame_ms = frame_ms
        self._frame_bytes = frame_ms * BYTES_PER_MS
        self._origin_ms = origin_ms
        self._silence_frames = max(1, settings.silence_ms // frame_ms)
        endpoint_frames = max(0, settings.endpoint_silence_ms) // frame_ms
        self._endpoint_frames = endpoint_frames if endpoint_frames < self._silence_frames else 0
        # Half of the silence that ends an utterance: a snapshot due later in a pause waits.
        self._pause_frames = max(1, self._silence_frames // 2)
        self._tail_frames = min(self._silence_frames, max(1, TAIL_MS // frame_ms))
        self._max_frames = max(2, settings.max_segment_ms // frame_ms)
        self._interim_frames = (
            max(1, settings.interim_interval_ms // frame_ms)
            if settings.interim_interval_ms > 0
            else 0
        )
        self._window = max(1, START_WINDOW_MS // frame_ms)
        self._start_voiced = max(1, round(self._window * START_RATIO))
        self._preroll_frames = max(0, settings.preroll_ms // frame_ms)

        self._pending = bytearray()
        self._position = 0  # frames seen since origin, including skipped ones
        # Idle: recent (frame, voiced) pairs; the speech that starts an utterance and the
        # pre-roll before it come from here.
        self._ring: deque[tuple[bytes, bool]] = deque(maxlen=self._preroll_frames + self._window)
        # In an utterance: its frames, whether each was speech, where it started.
        self._frames: list[bytes] = []
        self._voiced: list[bool] = []
        self._start_frame = 0
        self._in_speech = False
        self._silent_run = 0
        self._next_interim = 0
        self._endpoint_sent = False

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def push(self, pcm: bytes) -> list[SegmentEvent]:
        """Feed PCM of any length; whole frames are classified, the rest waits."""
        self._pending += pcm
        events: list[SegmentEvent] = []
        size = self._frame_bytes
        usable = len(self._pending) - len(self._pending) % size
        for offset in range(0, usable, size):
            self._frame(bytes(self._pending[offset : offset + size]), events)
        del self._pending[:usable]
        return events

    def skip(self, ms: int) -> list[SegmentEvent]:
        """The stream had no audio for `ms` (no packets): end any utterance, move time on."""
        events = self.flush()
        self._position += max(0, ms) // self._frame_ms
        return events

    def flush(self) -> list[SegmentEvent]:
        """End of stream: the open utterance, if any, becomes final."""
        self._pending.clear()
        events: list[SegmentEvent] = []
        if self._in_speech:
            self._finish(events)
        self._ring.clear()
        return events

    # -- one frame ------------------------------------------------------------------

    def _frame(self, frame: bytes, events: list[SegmentEvent]) -> None:
        voiced = self._is_speech(frame)
        self._position += 1
        if not self._in_speech:
            self._ring.append((frame, voiced))
            recent = list(self._ring)[-self._window :]
            if sum(v for _, v in recent) >= self._start_voiced:
                self._begin()
            return

        self._frames.append(frame)
        self._voiced.append(voiced)
        self._silent_run = 0 if voiced else self._silent_run + 1
        if self._silent_run >= self._silence_frames:
            self._finish(events)
        elif self._endpoint_frames and self._silent_run == self._endpoint_frames:
            events.append(self._event(len(self._frames), final=False, endpoint=True))
            self._endpoint_sent = True
        elif voiced and self._endpoint_sent:
            # Speech goes on after an endpoint snapshot: say so now.
            events.append(self._event(len(self._frames), final=False))
            self._endpoint_sent = False
            self._next_interim = len(self._frames) + self._interim_frames
        elif len(self._frames) >= self._max_frames:
            self._cut(events)
        elif (
            self._interim_frames
            and len(self._frames) >= self._next_interim
            and self._silent_run < self._pause_frames
        ):
            events.append(self._event(len(self._frames), final=False))
            self._next_interim = len(self._frames) + self._interim_frames

    def _begin(self) -> None:
        ring = list(self._ring)
        window_start = len(ring) - min(self._window, len(ring))
        first_voiced = next(i for i in range(window_start, len(ring)) if ring[i][1])
        kept = ring[max(0, first_voiced - self._preroll_frames) :]
        self._frames = [f for f, _ in kept]
        self._voiced = [v for _, v in kept]
        self._start_frame = self._position - len(kept)
        self._ring.clear()
        self._in_speech = True
        self._silent_run = 0
        self._next_interim = self._interim_frames

    def _finish(self, events: list[SegmentEvent]) -> None:
        """Close the utterance after its last speech frame plus a short tail."""
        last_voiced = max((i for i, v in enumerate(self._voiced) if v), default=-1)
        keep = min(len(self._frames), last_voiced + 1 + self._tail_frames)
        if last_voiced >= 0:
            events.append(self._event(keep, final=True))
        # The silence after the tail may be the pre-roll of the next utterance.
        for frame, voiced in zip(self._frames[keep:], self._voiced[keep:], strict=True):
            self._ring.append((frame, voiced))
        self._frames, self._voiced = [], []
        self._in_speech = False
        self._silent_run = 0
        self._endpoint_sent = False

    def _cut(self, events: list[SegmentEvent]) -> None:
        """A segment at max length ends here; speech goes on in a new one."""
        at = self._pause_near_end()
        events.append(self._event(at, final=True))
        self._frames, self._voiced = self._frames[at:], self._voiced[at:]
        self._start_frame += at
        self._next_interim = self._interim_frames

    def _pause_near_end(self) -> int:
        """Where to cut: the middle of the last pause in the segment's tail, else its end."""
        n = len(self._voiced)
        search_from = int(n * (1 - CUT_SEARCH_FRACTION))
        best_start = best_len = 0
        run_start = None
        for i in range(search_from, n + 1):
            silent = i < n and not self._voiced[i]
            if silent and run_start is None:
                run_start = i
            elif not silent and run_start is not None:
                if i - run_start >= best_len:
                    best_start, best_len = run_start, i - run_start
                run_start = None
        if best_len == 0:
            return n
        return best_start + (best_len + 1) // 2

    def _event(self, frames: int, *, final: bool, endpoint: bool = False) -> SegmentEvent:
        start_ms = self._origin_ms + self._start_frame * self._frame_ms
        voiced = max((i for i in range(frames) if self._voiced[i]), default=-1)
        return SegmentEvent(
            speaker=self.speaker,
            # Unique within the call: a speaker never starts two segments at the same ms.
            segment_id=f"{self.speaker}-{start_ms}",
            pcm=b"".join(self._frames[:frames]),
            start_ms=start_ms,
            end_ms=start_ms + frames * self._frame_ms,
            final=final,
            speech_end_ms=start_ms + (voiced + 1) * self._frame_ms,
            endpoint=endpoint,
        )
