"""Audio a server-side speaker (the voice agent) plays into a call, paced in real time.

Transports play what they are given at once (a browser's jitter buffer, Twilio's buffer),
so audio made faster than real time (Piper makes a sentence in a tenth of its length) must
be released at the pace it is heard: otherwise it piles up downstream, where a barge-in can
no longer take it back. Frames go out on a schedule computed from one monotonic start time
(sleeping 20 ms per frame drifts and stutters), LEAD_MS ahead of it so that a late wake-up
of the event loop does not starve the listener.

What the caller heard is what was released minus that lead: `played_ms` counts it, so a
reply cut by a barge-in is transcribed as far as it was actually heard.

A pause (the caller may be interrupting, media/bargein.py) stops the releasing and keeps
the rest. The transports are then told to drop what they still hold (a phone stream sends
Twilio `clear`), and `take_back` puts those frames, which the caller never heard, back at
the head of the queue: a resume plays on from exactly where the caller stopped hearing, and
`released_ms` stays what left the server for the caller (the last TAKE_BACK_MS of released
frames are kept for this).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from .audio import BYTES_PER_MS

FRAME_MS = 20
FRAME_BYTES = FRAME_MS * BYTES_PER_MS
LEAD_MS = 40
"""How far ahead of real time frames are released."""
TAKE_BACK_MS = 2000
"""Released audio kept for `take_back`: far more than transports hold (the lead, and the
phone stream's 60 ms of priming)."""


class PacedPlayout:
    """Releases 16 kHz mono s16 PCM to `sink` in 20 ms frames, in real time."""

    def __init__(self, sink: Callable[[bytes], None], *, lead_ms: int = LEAD_MS) -> None:
        self._sink = sink
        self._lead_s = lead_ms / 1000
        self._frames: deque[bytes] = deque()
        self._partial = b""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._paused = False
        self._released: deque[bytes] = deque(maxlen=TAKE_BACK_MS // FRAME_MS)
        self.released_ms = 0
        """Audio handed to the sink since the start (frames × 20 ms)."""
        self._last_release = 0.0

    def enqueue(self, pcm: bytes) -> None:
        """Queue audio to play after what is queued (a piece under a frame waits for more)."""
        if self._closed:
            return
        data = self._partial + pcm
        usable = len(data) - len(data) % FRAME_BYTES
        self._partial = data[usable:]
        for offset in range(0, usable, FRAME_BYTES):
            self._frames.append(data[offset : offset + FRAME_BYTES])
        if self._frames:
            self._idle.clear()
            self._wake.set()
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._run())

    def finish(self) -> None:
        """The last piece is in: a trailing part-frame is padded with silence and played."""
        if self._partial:
            self.enqueue(bytes(FRAME_BYTES - len(self._partial)))

    @property
    def queued_ms(self) -> int:
        return len(self._frames) * FRAME_MS

    @property
    def playing(self) -> bool:
        """Audio is queued (paused or not)."""
        return not self._idle.is_set()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def played_ms(self) -> int:
        """Audio the listener has heard by now: released, less what is still ahead of time."""
        if self._idle.is_set() or self._paused:
            return self.released_ms
        ahead = max(0.0, self._last_release - asyncio.get_running_loop().time())
        return max(0, self.released_ms - round(ahead * 1000))

    async def wait_idle(self) -> None:
        """Until everything queued has been released (or cleared); a pause holds it."""
        await self._idle.wait()

    def pause(self) -> None:
        """Stop releasing at once; what is queued stays for `resume`."""
        self._paused = True

    def take_back(self, ms: int) -> int:
        """The last `ms` of released audio never reached the listener (the transports
        dropped it): queue it again, ahead of the rest. Returns the ms taken back (whole
        frames, at most what was kept)."""
        frames = min(round(ms / FRAME_MS), len(self._released))
        for _ in range(frames):
            self._frames.appendleft(self._released.pop())
        self.released_ms -= frames * FRAME_MS
        if frames:
            self._idle.clear()
            self._last_release = 0.0
        return frames * FRAME_MS

    def resume(self) -> None:
        """Release again, from where the pause (and `take_back`) left off."""
        if not self._paused:
            return
        self._paused = False
        if self._frames:
            self._idle.clear()
            self._wake.set()
            if self._task is None and not self._closed:
                self._task = asyncio.get_running_loop().create_task(self._run())

    def clear(self) -> int:
        """Drop everything not yet released (barge-in), and end a pause; returns the ms
        dropped."""
        dropped = len(self._frames) * FRAME_MS
        self._frames.clear()
        self._partial = b""
        self._paused = False
        self._idle.set()
        return dropped

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._frames or self._paused:
                if not self._frames:
                    self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            # A new stretch of audio (or a resume): its schedule starts now.
            start = loop.time()
            sent = 0
            while self._frames and not self._closed and not self._paused:
                due = start + sent * FRAME_MS / 1000 - self._lead_s
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if not self._frames or self._paused:  # cleared or paused while we slept
                        break
                frame = self._frames.popleft()
                self._sink(frame)
                self._released.append(frame)
                sent += 1
                self.released_ms += FRAME_MS
                self._last_release = start + sent * FRAME_MS / 1000
            if not self._frames:
                self._idle.set()

    async def close(self) -> None:
        """Stop at once; safe to call twice."""
        self._closed = True
        self.clear()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
