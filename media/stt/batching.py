"""Cross-call batching for a local engine: the segments of every call share model runs.

A CTranslate2 Whisper encodes and decodes a batch of windows in one call, and a batch costs
less per segment than the same segments one by one (tiny.en, int8, 2 threads, measured in
docs/benchmarks.md: 1.4x the throughput at 8 segments a batch). Segments of different calls
often end close together, so they are gathered here:

- requests queue on the event loop, finals before interims, oldest first;
- whenever a worker is free it takes up to `batch_max` of them as one batch;
- an idle queue waits `batch_wait_s` for company before it starts a lone segment (segments
  ending close together then share a run); a busy one starts the next batch as soon as a
  worker is free, with everything that came meanwhile;
- interims are a preview: they run only when no final waits and the engine has had
  headroom lately (busy less than INTERIM_MAX_UTILIZATION of the last UTILIZATION_WINDOW_S);
  endpoint snapshots likewise (`saturated`, SPECULATIVE_MAX_UTILIZATION).
  One still queued when a batch of finals starts is answered at once with `declined`, so
  that it neither delays the finals nor holds up the next final of its own call.

Each call's transcriber has at most one request in flight, so a batch never holds two
segments of one call and every call with a final waiting gets into one of the next
⌈calls / batch_max⌉ batches: a call that talks a lot cannot starve the others.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")

UTILIZATION_WINDOW_S = 5.0
"""How far back `utilization` looks: a few utterances, so it follows the calls' talk."""
INTERIM_MAX_UTILIZATION = 0.5
"""Above this the engine has no headroom for interims: an interim batch running when a final
arrives delays it by up to a batch, and its CPU is taken from the event loop and the other
processes of a node. Measured with bench.latency at 12 calls (docs/benchmarks.md): 1.06
interims per line and 0.79 of a core for speech-to-text without this limit; 0.60 per line,
0.65 of a core with it, and finals no later (p50 531 → 494 ms, p95 1084 → 995 ms)."""


SPECULATIVE_MAX_UTILIZATION = 0.5
"""Above this an endpoint snapshot (a decoding at the first pause, which is wasted when the
speaker goes on) is not asked for either: the segment's final comes 120 ms later without it
(silence_ms against endpoint_silence_ms). Measured with bench.latency at 24 calls (the
engine busy ~85 % of the time): snapshots were a quarter of all decodings (319 of 1248),
and without them the engine decoded 985 segments for the same 672 lines, its CPU fell from
0.57 to 0.47 of a core, and end of speech → final went from p50 599-1468 / p95 1233-7431 ms
over four runs to 576-618 / 931-972 ms over two."""


@dataclass(frozen=True, slots=True)
class Request:
    """One segment to decode: a final one, or with `interim` a snapshot of a growing one."""

    pcm: bytes
    prompt: str | None = None
    interim: bool = False


@dataclass
class BatchStats:
    batches: int = 0
    segments: int = 0
    """Segments decoded, in all batches."""
    interims_declined: int = 0
    """Interim requests answered empty because finals needed the engine."""
    batch_sizes: Counter[int] = field(default_factory=Counter)
    """How many batches of each size ran."""
    busy_s: float = 0.0
    """Time spent decoding, summed over workers."""


@dataclass(eq=False, slots=True)
class _Job(Generic[R]):
    request: Request
    future: asyncio.Future[R]


class BatchQueue(Generic[R]):
    """Runs `decode_batch` on `executor` for batches of queued requests; use on one loop."""

    def __init__(
        self,
        decode_batch: Callable[[list[Request]], list[R]],
        *,
        executor: Executor,
        workers: int,
        batch_max: int,
        batch_wait_s: float,
        declined: R,
    ) -> None:
        self._decode_batch = decode_batch
        self._executor = executor
        self._workers = max(1, workers)
        self._batch_max = max(1, batch_max)
        self._batch_wait_s = max(0.0, batch_wait_s)
        self._declined = declined
        self._finals: deque[_Job[R]] = deque()
        self._interims: deque[_Job[R]] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._spans: deque[tuple[float, float]] = deque()
        """(start, end) of the batches that ended within the utilization window."""
        self._running_since: dict[int, float] = {}
        self.stats = BatchStats()

    async def submit(self, request: Request) -> R:
        """The result of one request; raises what `decode_batch` raised for its batch."""
        if self._closed:
            raise RuntimeError("the batch queue is closed")
        job: _Job[R] = _Job(request, asyncio.get_running_loop().create_future())
        (self._interims if request.interim else self._finals).append(job)
        self._dispatch()
        return await job.future

    @property
    def busy(self) -> bool:
        """Finals wait, every worker is decoding, or the engine was busy most of the last
        few seconds: no headroom for interims."""
        return (
            bool(self._finals)
            or self._running >= self._workers
            or self.utilization() > INTERIM_MAX_UTILIZATION
        )

    @property
    def saturated(self) -> bool:
        """Finals wait for a free worker, or the workers were busy most of the last few
        seconds (SPECULATIVE_MAX_UTILIZATION): no room for speculative work."""
        return bool(self._finals) or self.utilization() > SPECULATIVE_MAX_UTILIZATION

    def utilization(self, now: float | None = None) -> float:
        """Fraction of the workers' time spent decoding over the last UTILIZATION_WINDOW_S."""
        now = time.monotonic() if now is None else now
        since = now - UTILIZATION_WINDOW_S
        while self._spans and self._spans[0][1] <= since:
            self._spans.popleft()
        busy = sum(end - max(start, since) for start, end in self._spans)
        busy += sum(now - max(start, since) for start in self._running_since.values())
        return busy / (UTILIZATION_WINDOW_S * self._workers)

    @property
    def queued(self) -> int:
        return len(self._finals) + len(self._interims)

    def _dispatch(self, *, waited: bool = False) -> None:
        while self._running < self._workers and not self._closed:
            self._drop_cancelled()
            if not self.queued:
                return
            if (
                not waited
                and self._running == 0
                and self._batch_wait_s > 0
                and self.queued < self._batch_max
            ):
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(
                        self._batch_wait_s, self._wait_over
                    )
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._start(self._take())

    def _wait_over(self) -> None:
        self._timer = None
        self._dispatch(waited=True)

    def _drop_cancelled(self) -> None:
        for queue in (self._finals, self._interims):
            while queue and queue[0].future.done():
                queue.popleft()

    def _take(self) -> list[_Job[R]]:
        source = self._finals if self._finals else self._interims
        batch: list[_Job[R]] = []
        while source and len(batch) < self._batch_max:
            job = source.popleft()
            if not job.future.done():
                batch.append(job)
        if source is self._finals:
            while self._interims:
                job = self._interims.popleft()
                if not job.future.done():
                    self.stats.interims_declined += 1
                    job.future.set_result(self._declined)
        return batch

    def _start(self, batch: list[_Job[R]]) -> None:
        if not batch:
            return
        self._running += 1
        self.stats.batches += 1
        self.stats.segments += len(batch)
        self.stats.batch_sizes[len(batch)] += 1
        task = asyncio.get_running_loop().create_task(self._run(batch), name="stt-batch")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Job[R]]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self._running_since[id(batch)] = started
        try:
            results = await loop.run_in_executor(
                self._executor, self._decode_batch, [job.request for job in batch]
            )
        except Exception as exc:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
        else:
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)
        finally:
            ended = time.monotonic()
            del self._running_since[id(batch)]
            self._spans.append((started, ended))
            self.stats.busy_s += ended - started
            self._running -= 1
            self._dispatch()

    async def aclose(self, error: Exception) -> None:
        """Fail what waits with `error`; let running batches finish. Idempotent."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for queue in (self._finals, self._interims):
            while queue:
                job = queue.popleft()
                if not job.future.done():
                    job.future.set_exception(error)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
