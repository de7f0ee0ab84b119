"""Many calls on one overloaded engine: every call keeps its finals, in order, and each is
told when it falls behind and when it has caught up."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from media.stt.base import SpeechToText
from media.stt.batching import BatchQueue, Request
from tests.media.test_transcriber import Call, segment


class BatchingEngine(SpeechToText):
    """The local engine's batching with a slow stand-in for the model: a batch costs 40 ms
    plus 10 ms a segment, and says the labels in the audio."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.queue: BatchQueue[str] = BatchQueue(
            self._decode,
            executor=self.executor,
            workers=1,
            batch_max=4,
            batch_wait_s=0.01,
            declined="",
        )

    @staticmethod
    def _decode(requests: list[Request]) -> list[str]:
        time.sleep(0.04 + 0.01 * len(requests))
        return [" ".join(p.decode() for p in r.pcm.split(b"\0") if p) for r in requests]

    async def transcribe(self, pcm: bytes, *, prompt: str | None = None) -> str:
        return await self.queue.submit(Request(pcm, prompt))

    async def transcribe_interim(self, pcm: bytes, *, prompt: str | None = None) -> str:
        return await self.queue.submit(Request(pcm, prompt, interim=True))

    @property
    def busy(self) -> bool:
        return self.queue.busy

    async def aclose(self) -> None:
        await self.queue.aclose(RuntimeError("closed"))
        self.executor.shutdown()


async def test_every_call_keeps_its_finals_and_is_told_it_fell_behind() -> None:
    engine = BatchingEngine()
    calls = [Call(engine, behind_s=0.3) for _ in range(12)]
    try:
        # Each call says five lines at once, 1 s apart on its clock, with interims: 60
        # finals arrive within a moment; the engine needs ~1.2 s for them in batches of 4.
        for n in range(5):
            for i, call in enumerate(calls):
                call.transcriber.submit(segment(f"c{i}-p{n}", n * 1000, final=False))
                call.transcriber.submit(segment(f"c{i}-{n}", n * 1000))
        for call in calls:
            await call.until(lambda call=call: len(call.finals) == 5, within_s=20)
    finally:
        for call in calls:
            await call.transcriber.close()
        await engine.aclose()
    for i, call in enumerate(calls):
        # Nothing dropped or merged (5 is within queue_max_segments), all in order.
        assert [t.text for t in call.finals] == [f"c{i}-{n}" for n in range(5)]
        assert call.transcriber.stats.dropped == call.transcriber.stats.merged == 0
    behind = [call for call in calls if "stt_behind" in call.codes()]
    # Most calls waited past the threshold; each of those was told, then told it caught up.
    assert len(behind) >= 6
    for call in behind:
        codes = call.codes()
        assert codes.index("stt_behind") < codes.index("stt_caught_up"), codes
        level, _code, message = call.statuses[codes.index("stt_behind")]
        assert level == "warning" and "behind on this call" in message
    # The batches were shared by calls.
    assert max(engine.queue.stats.batch_sizes) == 4


async def test_an_idle_engine_gives_no_status_and_runs_interims() -> None:
    engine = BatchingEngine()
    call = Call(engine)
    try:
        call.transcriber.submit(segment("hello", 0, final=False))
        await call.until(lambda: call.transcripts)
        call.transcriber.submit(segment("hello there", 0))
        await call.until(lambda: call.finals)
        await asyncio.sleep(0.05)
    finally:
        await call.transcriber.close()
        await engine.aclose()
    assert [(t.text, t.final) for t in call.transcripts] == [
        ("hello", False),
        ("hello there", True),
    ]
    assert call.statuses == []
