"""BatchQueue: which requests share a batch, in what order, and what each gets back.

The decode function stands in for the model at the queue's interface: it runs on the real
executor thread, records each batch, and can be held so that requests pile up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from media.stt.batching import BatchQueue, Request


class Decoder:
    """Answers each request with its pcm upper-cased; holds batches while `gate` is shut."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, bool]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail_on: str | None = None

    def __call__(self, requests: list[Request]) -> list[str]:
        self.batches.append([(r.pcm.decode(), r.interim) for r in requests])
        self.started.set()
        self.gate.wait(5)
        if self.fail_on and any(r.pcm.decode() == self.fail_on for r in requests):
            raise RuntimeError("model failed")
        return [r.pcm.decode().upper() for r in requests]


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown(wait=True)


def make(decoder: Decoder, executor: ThreadPoolExecutor, **kwargs: float) -> BatchQueue[str]:
    options = {"workers": 1, "batch_max": 8, "batch_wait_s": 0.0, **kwargs}
    return BatchQueue(decoder, executor=executor, declined="", **options)  # type: ignore[arg-type]


async def test_requests_that_arrive_together_share_one_batch_and_get_their_own_results(
    executor: ThreadPoolExecutor,
) -> None:
    decoder = Decoder()
    queue = make(decoder, executor, batch_wait_s=0.05)
    results = await asyncio.gather(*(queue.submit(Request(f"call{i}".encode())) for i in range(5)))
    assert results == ["CALL0", "CALL1", "CALL2", "CALL3", "CALL4"]
    assert decoder.batches == [[(f"call{i}", False) for i in range(5)]]
    assert queue.stats.batch_sizes == {5: 1}


async def test_a_lone_request_waits_at_most_the_wait_budget(executor: ThreadPoolExecutor) -> None:
    loop = asyncio.get_running_loop()
    for wait_s in (0.0, 0.1):
        decoder = Decoder()
        queue = make(decoder, executor, batch_wait_s=wait_s)
        started = loop.time()
        assert await queue.submit(Request(b"alone")) == "ALONE"
        took = loop.time() - started
        assert took >= wait_s
        assert decoder.batches == [[("alone", False)]]
    # A full batch does not wait for the budget.
    decoder = Decoder()
    queue = make(decoder, executor, batch_max=2, batch_wait_s=30.0)
    async with asyncio.timeout(5):
        assert await asyncio.gather(queue.submit(Request(b"a")), queue.submit(Request(b"b"))) == [
            "A",
            "B",
        ]


async def test_a_busy_queue_batches_what_came_meanwhile_oldest_first(
    executor: ThreadPoolExecutor,
) -> None:
    decoder = Decoder()
    queue = make(decoder, executor, batch_max=3)
    decoder.gate.clear()
    first = asyncio.ensure_future(queue.submit(Request(b"first")))
    assert await asyncio.to_thread(decoder.started.wait, 5)
    rest = [asyncio.ensure_future(queue.submit(Request(f"s{i}".encode()))) for i in range(7)]
    await asyncio.sleep(0.02)
    assert queue.busy and queue.queued == 7
    decoder.gate.set()
    assert await first == "FIRST"
    assert await asyncio.gather(*rest) == [f"S{i}" for i in range(7)]
    assert decoder.batches == [
        [("first", False)],
        [("s0", False), ("s1", False), ("s2", False)],
        [("s3", False), ("s4", False), ("s5", False)],
        [("s6", False)],
    ]


async def test_interims_run_only_with_headroom(executor: ThreadPoolExecutor) -> None:
    decoder = Decoder()
    queue = make(decoder, executor, batch_wait_s=0.05)
    # Idle: interims are batched like finals.
    assert await asyncio.gather(
        queue.submit(Request(b"i1", interim=True)), queue.submit(Request(b"i2", interim=True))
    ) == ["I1", "I2"]
    assert decoder.batches == [[("i1", True), ("i2", True)]]

    decoder.batches.clear()
    decoder.started.clear()
    decoder.gate.clear()
    running = asyncio.ensure_future(queue.submit(Request(b"f0")))
    assert await asyncio.to_thread(decoder.started.wait, 5)
    interim = asyncio.ensure_future(queue.submit(Request(b"i3", interim=True)))
    final = asyncio.ensure_future(queue.submit(Request(b"f1")))
    await asyncio.sleep(0.02)
    decoder.gate.set()
    # A batch of finals started while the interim waited: it is answered empty at once,
    # never decoded, and the finals go first.
    assert await asyncio.gather(running, interim, final) == ["F0", "", "F1"]
    assert decoder.batches == [[("f0", False)], [("f1", False)]]
    assert queue.stats.interims_declined == 1


async def test_every_call_gets_its_finals_however_much_another_talks(
    executor: ThreadPoolExecutor,
) -> None:
    """Twelve calls, one request in flight each (as CallTranscriber does), batches of 4."""
    decoder = Decoder()
    queue = make(decoder, executor, batch_max=4)
    heard: dict[int, list[str]] = {}
    waited: list[int] = []

    async def call(index: int, segments: int) -> None:
        heard[index] = []
        for n in range(segments):
            # An interim between finals, as a talking caller's transcriber asks.
            await queue.submit(Request(f"c{index}-p{n}".encode(), interim=True))
            name = f"c{index}-{n}"
            submitted = queue.stats.batches
            heard[index].append(await queue.submit(Request(name.encode())))
            ran = next(i for i, b in enumerate(decoder.batches) if (name, False) in b)
            waited.append(ran + 1 - submitted)

    # Call 0 talks five times as much as each of the others.
    await asyncio.gather(call(0, 20), *(call(i, 4) for i in range(1, 12)))
    assert heard[0] == [f"C0-{n}" for n in range(20)]
    for i in range(1, 12):
        assert heard[i] == [f"C{i}-{n}" for n in range(4)]
    for batch in decoder.batches:
        assert len(batch) <= 4
        calls = [name.split("-")[0] for name, _ in batch]
        assert len(calls) == len(set(calls)), batch  # never two of one call in a batch
    # A final runs in the batch after those already started or queued ahead of it: at most
    # the one running plus ⌈12 / 4⌉.
    assert max(waited) <= 1 + 3, waited


async def test_a_failing_batch_fails_its_requests_only(executor: ThreadPoolExecutor) -> None:
    decoder = Decoder()
    decoder.fail_on = "bad"
    queue = make(decoder, executor, batch_wait_s=0.05)
    results = await asyncio.gather(
        queue.submit(Request(b"bad")), queue.submit(Request(b"ok")), return_exceptions=True
    )
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert await queue.submit(Request(b"after")) == "AFTER"


async def test_close_fails_waiting_requests_and_refuses_new_ones(
    executor: ThreadPoolExecutor,
) -> None:
    decoder = Decoder()
    queue = make(decoder, executor)
    decoder.gate.clear()
    running = asyncio.ensure_future(queue.submit(Request(b"running")))
    assert await asyncio.to_thread(decoder.started.wait, 5)
    waiting = asyncio.ensure_future(queue.submit(Request(b"waiting")))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(queue.aclose(LookupError("closed")))
    await asyncio.sleep(0.02)
    decoder.gate.set()
    await closing
    assert await running == "RUNNING"
    with pytest.raises(LookupError):
        await waiting
    with pytest.raises(RuntimeError):
        await queue.submit(Request(b"late"))
    await queue.aclose(LookupError("closed"))  # twice is fine


async def test_speculative_work_waits_for_headroom_after_the_engine_was_mostly_busy(
    executor: ThreadPoolExecutor,
) -> None:
    """An engine that decoded finals for most of the last few seconds reports itself busy
    and saturated (the transcriber then asks for no interims and no endpoint snapshots)
    until its recent utilization drops."""
    from media.stt import batching

    decoder = Decoder()
    queue = make(decoder, executor)
    assert not queue.busy and queue.utilization() == 0.0
    decoder.gate.clear()
    job = asyncio.create_task(queue.submit(Request(b"final")))
    await asyncio.to_thread(decoder.started.wait, 5)
    assert queue.busy and not queue.saturated  # decoding, nothing else waits
    await asyncio.sleep(0.3)
    decoder.gate.set()
    assert await job == "FINAL"
    now = time.monotonic()
    used = queue.utilization(now)
    # One batch of ~0.3 s within the 5 s window: idle enough for interims.
    assert 0.3 / batching.UTILIZATION_WINDOW_S <= used < 0.5 / batching.UTILIZATION_WINDOW_S
    assert not queue.busy and not queue.saturated
    # As if the engine had decoded for 3 of the last 5 s: busy, until that has aged out.
    queue._spans.append((now - 3.2, now - 0.2))
    assert queue.utilization(now) > batching.INTERIM_MAX_UTILIZATION and queue.busy
    assert queue.utilization(now) > batching.SPECULATIVE_MAX_UTILIZATION and queue.saturated
    later = now + batching.UTILIZATION_WINDOW_S
    assert queue.utilization(later) == 0.0
    assert queue.stats.busy_s >= 0.3
