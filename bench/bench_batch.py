"""Batched speech-to-text micro-benchmark (issue 14): the local engine alone, no WebRTC.

    python -m bench.bench_batch [--sizes 1,2,4,8,16] [--windows 3,4,5,6] [--calls 16,24,32]

Less sensitive to other load on the machine than the end-to-end benchmark, because every
figure compares settings measured back to back on the same segments:

1. batch size: ms of engine time per segment and per batch, for batches of N fixture
   segments (each batch mixes segments of different speakers and lengths, as calls do);
2. threads × parallel batches (`cpu_threads` × `num_workers`) at the same total threads;
3. minimum window (segments are padded with silence to at least this): speed and word
   error rate, alone and in batches of 8;
4. word error rate of every fixture decoded alone and decoded in mixed batches;
6. end of turn: every fixture through the segmenter and a CallTranscriber on the engine
   with the endpoint rule off and at several pause lengths: word error rate, utterances
   split, and how much earlier the final's audio ends (time not waited for);
5. the scheduler: N simulated calls, each saying a fixture segment every ~3.5 s (both
   parties in turn) and waiting for its final before the next, through LocalWhisper with
   each batch cap and wait budget: end of segment → result p50/p95, and batch sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from media.audio import SegmentEvent  # noqa: E402
from media.stt.local import MIN_WINDOW_S, LocalWhisper, Request, WhisperDecoder  # noqa: E402
from media.wer import corpus_wer  # noqa: E402
from server.config import SpeechSettings  # noqa: E402
from tests.media.speech import events_offline, segment_offline, silence, speech_fixtures  # noqa: E402


def _load() -> float:
    return os.getloadavg()[0]


def fixture_segments() -> list[tuple[str, str, list[SegmentEvent]]]:
    """(reference text, role, segments) of every speech fixture, as the pipeline cuts it."""
    return [(f.text, f.role, segment_offline(silence(300) + f.pcm())) for f in speech_fixtures()]


def batch_sizes(decoder: WhisperDecoder, pcms: list[bytes], sizes: list[int], rounds: int) -> None:
    print(
        f"\n1. batch size (load {_load():.2f}); {len(pcms)} segments, "
        f"{statistics.mean(len(p) for p in pcms) / 32000:.1f} s mean"
    )
    print("   batch | ms per segment | ms per batch | vs batch of 1 | CPU ms per segment")
    base = None
    for size in sizes:
        best = cpu_best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            cpu_started = time.process_time()
            count = 0
            for offset in range(0, len(pcms), size):
                chunk = pcms[offset : offset + size]
                if len(chunk) < size:  # whole batches only: wrap around
                    chunk += pcms[: size - len(chunk)]
                decoder.decode_batch([Request(p) for p in chunk])
                count += len(chunk)
            best = min(best, (time.perf_counter() - started) * 1000 / count)
            cpu_best = min(cpu_best, (time.process_time() - cpu_started) * 1000 / count)
        base = base or best
        print(
            f"   {size:5} | {best:14.1f} | {best * size:12.0f} | {base / best:12.2f}x | "
            f"{cpu_best:.1f}"
        )


def threads_workers(pcms: list[bytes], combos: list[tuple[int, int]], batch: int) -> None:
    print(f"\n2. cpu_threads x num_workers, batches of {batch} (load {_load():.2f})")
    for threads, workers in combos:
        settings = replace(SpeechSettings(), threads=threads, workers=workers)
        decoder = WhisperDecoder.load(settings)
        decoder.decode_batch([Request(p) for p in pcms[:batch]])  # warm up
        batches = [pcms[i : i + batch] for i in range(0, len(pcms) - batch + 1, batch)] * 3
        lock = threading.Lock()
        latencies: list[float] = []

        def worker(
            decoder: WhisperDecoder = decoder,
            lock: threading.Lock = lock,
            batches: list[list[bytes]] = batches,
            latencies: list[float] = latencies,
        ) -> None:
            while True:
                with lock:
                    if not batches:
                        return
                    chunk = batches.pop()
                started = time.perf_counter()
                decoder.decode_batch([Request(p) for p in chunk])
                with lock:
                    latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        threads_ = [threading.Thread(target=worker) for _ in range(workers)]
        for t in threads_:
            t.start()
        for t in threads_:
            t.join()
        wall = time.perf_counter() - started
        segments = len(latencies) * batch
        print(
            f"   threads {threads} x workers {workers}: {wall * 1000 / segments:.1f} ms per "
            f"segment (throughput), batch latency mean {statistics.mean(latencies) * 1000:.0f} ms"
        )
        del decoder


def windows(
    decoder: WhisperDecoder,
    fixtures: list[tuple[str, str, list[SegmentEvent]]],
    values: list[float],
) -> None:
    print(f"\n3./4. minimum window and batching: WER and speed (load {_load():.2f})")
    print("   window | alone: WER, ms/segment | batches of 8: WER, ms/segment")
    segments = [s for _, _, segs in fixtures for s in segs]
    owner = [i for i, (_, _, segs) in enumerate(fixtures) for _ in segs]
    for window in values:
        decoder.min_window_s = window
        row = []
        for size in (1, 8):
            # A mixed order, so that each batch holds different speakers and lengths.
            order = list(range(len(segments)))
            random.Random(7).shuffle(order)
            texts: dict[int, str] = {}
            started = time.perf_counter()
            for offset in range(0, len(order), size):
                chunk = order[offset : offset + size]
                results = decoder.decode_batch([Request(segments[i].pcm) for i in chunk])
                for i, result in zip(chunk, results, strict=True):
                    texts[i] = result.text if result.is_speech else ""
            per_segment = (time.perf_counter() - started) * 1000 / len(order)
            hyps = [""] * len(fixtures)
            for i in range(len(segments)):
                hyps[owner[i]] = f"{hyps[owner[i]]} {texts[i]}".strip()
            wer = corpus_wer([(ref, hyp) for (ref, _, _), hyp in zip(fixtures, hyps, strict=True)])
            row.append(f"{wer * 100:5.1f}%, {per_segment:5.1f} ms")
        print(f"   {window:4.1f} s | {row[0]:>22} | {row[1]:>22}")
    decoder.min_window_s = MIN_WINDOW_S


async def scheduler(
    pcms: list[bytes], calls: list[int], caps: list[int], waits: list[int], seconds: float
) -> None:
    print(
        f"\n5. scheduler: simulated calls, one segment every ~3.5 s each, {seconds:.0f} s "
        f"(load {_load():.2f})"
    )
    print("   calls | batch_max | wait ms | end → result p50 / p95 ms | mean batch | segments")
    for n in calls:
        for cap in caps:
            for wait in waits:
                settings = replace(SpeechSettings(), batch_max=cap, batch_wait_ms=wait)
                engine = LocalWhisper(settings)
                await engine.start()
                latencies: list[float] = []
                deadline = time.monotonic() + seconds

                async def call(
                    seed: int,
                    engine: LocalWhisper = engine,
                    deadline: float = deadline,
                    latencies: list[float] = latencies,
                ) -> None:
                    rng = random.Random(seed)
                    await asyncio.sleep(rng.uniform(0, 3.5))
                    while time.monotonic() < deadline:
                        pcm = rng.choice(pcms)
                        ended = time.monotonic()
                        await engine.transcribe(pcm)
                        latencies.append(time.monotonic() - ended)
                        # The other party answers, then this one speaks again.
                        await asyncio.sleep(
                            max(0.0, rng.uniform(2.5, 4.5) - (time.monotonic() - ended))
                        )

                await asyncio.gather(*(call(i) for i in range(n)))
                stats = engine.stats
                await engine.aclose()
                latencies.sort()
                p50 = latencies[len(latencies) // 2] * 1000
                p95 = latencies[int(len(latencies) * 0.95)] * 1000
                print(
                    f"   {n:5} | {cap:9} | {wait:7} | {p50:10.0f} / {p95:6.0f}"
                    f"{'':11} | {stats.segments / max(1, stats.batches):10.2f} | {len(latencies)}",
                    flush=True,
                )


async def endpoints(values: list[int]) -> None:
    """One call, in real time: each fixture's events reach a CallTranscriber when the audio
    thread would hand them over (a snapshot at its end, a final `silence_ms` after the
    speech), and the engine runs as in a call. End of speech → last final of the line."""
    from bench.latency import speech_bounds_s
    from media.audio import Transcript
    from media.transcriber import CallTranscriber

    print(f"\n6. end of turn, one call in real time (load {_load():.2f})")
    print(
        "   endpoint ms | WER customer / agent | finals | early | split | "
        "end of speech → final p50 / p95 / max"
    )
    engine = LocalWhisper(SpeechSettings())
    await engine.start()
    loop = asyncio.get_running_loop()
    lead_ms, after_ms = 300, 600
    for value in values:
        settings = replace(SpeechSettings(), endpoint_silence_ms=value)
        by_role: dict[str, list[tuple[str, str]]] = {}
        finals = early = split = 0
        latencies: list[float] = []
        splits: list[str] = []
        for fx in speech_fixtures():
            emitted: list[tuple[float, Transcript]] = []

            async def emit(t: Transcript, out: list[tuple[float, Transcript]] = emitted) -> None:
                out.append((loop.time(), t))

            async def status(*_args: str) -> None:
                pass

            transcriber = CallTranscriber(
                engine=engine, settings=settings, emit_transcript=emit, emit_status=status
            )
            events = events_offline(silence(lead_ms) + fx.pcm() + silence(after_ms), settings)
            t0 = loop.time()
            for event in events:
                due_ms = event.end_ms
                if event.final and event.speech_end_ms is not None:
                    due_ms = max(event.end_ms, event.speech_end_ms + settings.silence_ms)
                await asyncio.sleep(max(0.0, t0 + due_ms / 1000 - loop.time()))
                transcriber.submit(event)
            await transcriber.close(drain=True)
            got = [(at, t) for at, t in emitted if t.final]
            finals += len(got)
            early += transcriber.stats.endpoints
            split += transcriber.stats.split
            if len(got) > 1:
                splits.append(" | ".join(t.text for _, t in got))
            by_role.setdefault(fx.role, []).append((fx.text, " ".join(t.text for _, t in got)))
            if got:
                spoken = t0 + lead_ms / 1000 + speech_bounds_s(fx.path)[1]
                latencies.append((got[-1][0] - spoken) * 1000)
        wers = " / ".join(f"{corpus_wer(by_role[r]) * 100:.1f}%" for r in ("customer", "agent"))
        latencies.sort()
        p50, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95)]
        print(
            f"   {value:11} | {wers:>20} | {finals:6} | {early:5} | {split:5} | "
            f"{p50:.0f} / {p95:.0f} / {latencies[-1]:.0f} ms",
            flush=True,
        )
        for text in splits:
            print(f"      several finals: {text}")
    await engine.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4,8,16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--combos", default="2x1,1x2", help="threads x workers")
    parser.add_argument("--windows", default="3,4,5,6")
    parser.add_argument("--calls", default="16,24,32")
    parser.add_argument("--caps", default="1,4,8")
    parser.add_argument("--waits", default="0,10,25")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--endpoints", default="0,120,180")
    parser.add_argument("--only", default="1,2,3,6,5", help="which parts to run")
    args = parser.parse_args()
    ints = lambda text: [int(v) for v in text.split(",") if v]  # noqa: E731
    parts = set(ints(args.only))
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()}")
    fixtures = fixture_segments()
    pcms = [s.pcm for _, _, segs in fixtures for s in segs]
    decoder = WhisperDecoder.load(SpeechSettings())
    decoder.decode_batch([Request(p) for p in pcms[:4]])  # warm up
    if 1 in parts:
        batch_sizes(decoder, pcms, ints(args.sizes), args.rounds)
    if 2 in parts:
        combos = [tuple(int(x) for x in c.split("x")) for c in args.combos.split(",")]
        threads_workers(pcms, combos, 8)  # type: ignore[arg-type]
    if 3 in parts:
        windows(decoder, fixtures, [float(v) for v in args.windows.split(",")])
    if 6 in parts:
        asyncio.run(endpoints(ints(args.endpoints)))
    if 5 in parts:
        asyncio.run(
            scheduler(pcms, ints(args.calls), ints(args.caps), ints(args.waits), args.seconds)
        )
    print(f"\nload average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
