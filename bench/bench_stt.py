"""Speech benchmark (issue 3): the audio front end's CPU, and the local engine's speed and
word error rate in both decoding modes.

    python -m bench.bench_stt [--tracks 40] [--seconds 10] [--modes real_length,padded]

1. Front end: Opus decode + resample + VAD + segmenter, CPU ms per second of audio (one
   track, as fast as it goes), then N tracks fed in real time at once: process CPU and
   event-loop lag.
2. Engine: every speech fixture goes through InboundAudio as browser Opus, and each
   segment it yields through the local Whisper engine, with the previous segment's text as
   prompt when it continues it (as in a call): latency per segment, real-time factor, and
   word error rate per fixture and per speaker role.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from media.audio import SAMPLE_RATE, SegmentEvent  # noqa: E402
from media.pipeline import InboundAudio  # noqa: E402
from media.stt.local import WhisperDecoder  # noqa: E402
from media.transcriber import CONTEXT_GAP_MS  # noqa: E402
from media.wer import corpus_wer, wer  # noqa: E402
from server.config import SpeechSettings  # noqa: E402
from tests.media.speech import (  # noqa: E402
    SpeechFixture,
    all_fixtures,
    opus_packets,
    silence,
    speech_fixtures,
)

PACKET_MS = 20


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _segments(packets: list[bytes], settings: SpeechSettings) -> list[SegmentEvent]:
    events: list[SegmentEvent] = []
    now = [0]
    track = InboundAudio(
        speaker="customer",
        settings=settings,
        clock_ms=lambda: now[0],
        on_event=events.append,
        loop=asyncio.get_running_loop(),
    )
    for index, packet in enumerate(packets):
        now[0] = index * PACKET_MS
        track.feed_opus(packet)
    await asyncio.to_thread(track.close)
    await asyncio.sleep(0)
    return [e for e in events if e.final]


async def front_end_single(settings: SpeechSettings) -> None:
    pcm = b"".join(f.pcm() + silence(500) for f in all_fixtures())
    packets = opus_packets(pcm)
    now = [0]
    track = InboundAudio(
        speaker="customer",
        settings=settings,
        clock_ms=lambda: now[0],
        on_event=lambda _e: None,
        loop=asyncio.get_running_loop(),
    )
    for index, packet in enumerate(packets):
        now[0] = index * PACKET_MS
        track.feed_opus(packet)
        if index % 500 == 499:
            await asyncio.sleep(0.2)  # faster than real time, within the worker's backlog
    await asyncio.to_thread(track.close)
    stats = track.stats
    print(
        f"front end, one track: {stats.cpu_ms / (stats.audio_ms / 1000):.2f} ms CPU per s of audio"
        f" ({stats.audio_ms / 1000:.0f} s of audio, worker thread CPU)"
    )


async def front_end_realtime(settings: SpeechSettings, tracks: int, seconds: float) -> None:
    """`tracks` tracks at once, each fed a 20 ms packet every 20 ms, as in real calls."""
    pcm = b"".join(f.pcm() for f in speech_fixtures()[:4])
    packets = opus_packets(pcm)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    segments = [0]

    def count(_event: SegmentEvent) -> None:
        segments[0] += 1

    clock = lambda: int((time.monotonic() - started) * 1000)  # noqa: E731
    inbound = [
        InboundAudio(speaker=f"t{i}", settings=settings, clock_ms=clock, on_event=count, loop=loop)
        for i in range(tracks)
    ]
    lags: list[float] = []
    cpu0 = _process_cpu_s()
    ticks = int(seconds * 1000 / PACKET_MS)
    for tick in range(ticks):
        due = started + tick * PACKET_MS / 1000
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.monotonic() - due) * 1000)
        for track in inbound:
            track.feed_opus(packets[tick % len(packets)])
    await asyncio.gather(*(asyncio.to_thread(t.close) for t in inbound))
    cpu = _process_cpu_s() - cpu0
    audio_s = tracks * seconds
    worker_ms = sum(t.stats.cpu_ms for t in inbound)
    lags.sort()
    print(
        f"front end, {tracks} tracks in real time for {seconds:.0f} s: process CPU "
        f"{cpu / seconds * 100:.0f}% of one core, {cpu * 1000 / audio_s:.2f} ms per s of "
        f"audio per track (workers alone {worker_ms / audio_s:.2f}); loop lag p50 "
        f"{lags[len(lags) // 2]:.1f} ms, p99 {lags[int(len(lags) * 0.99)]:.1f} ms; "
        f"{segments[0]} segment events"
    )


async def engines(settings: SpeechSettings, modes: list[str], repeat: int) -> None:
    """Both modes on the same segments, interleaved segment by segment so that other load
    on the machine hits them alike; each latency is the best of `repeat` runs."""
    loaded = time.perf_counter()
    first = WhisperDecoder.load(replace(settings, local_decoding=modes[0]))
    print(f"\nlocal engine: model loaded in {time.perf_counter() - loaded:.1f} s")
    decoders = {
        mode: WhisperDecoder(
            first.model, decoding=mode, beam_size=settings.beam_size, language=settings.language
        )
        for mode in modes
    }
    for decoder in decoders.values():
        decoder.decode(bytes(SAMPLE_RATE * 2))  # warm up
    results: dict[str, dict[str, tuple[str, list[float]]]] = {mode: {} for mode in modes}
    audio_s = 0.0
    fixtures = all_fixtures()
    for fx in fixtures:
        segments = await _segments(opus_packets(silence(300) + fx.pcm()), settings)
        audio_s += sum(s.duration_ms for s in segments) / 1000
        for mode, decoder in decoders.items():
            texts, latencies = [], []
            context_end_ms = None
            for segment in segments:
                # As the call transcriber does: a continuation gets the earlier text.
                prompt = None
                if (
                    context_end_ms is not None
                    and segment.start_ms - context_end_ms <= CONTEXT_GAP_MS
                ):
                    prompt = texts[-1]
                best = float("inf")
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    result = decoder.decode(segment.pcm, prompt)
                    best = min(best, time.perf_counter() - t0)
                latencies.append(best * 1000)
                if result.is_speech:
                    texts.append(result.text)
                    context_end_ms = segment.end_ms
            results[mode][fx.name] = (" ".join(texts), latencies)
    for mode in modes:
        print(f"\n  mode {mode} (best of {repeat}):")
        by_role: dict[str, list[tuple[str, str]]] = {}
        latencies = []
        for fx in fixtures:
            hypothesis, fx_latencies = results[mode][fx.name]
            latencies += fx_latencies
            _report_fixture(fx, hypothesis, fx_latencies)
            by_role.setdefault(fx.role, []).append((fx.text, hypothesis))
        latencies.sort()
        print(
            f"  {mode}: {len(latencies)} segments, latency mean {statistics.mean(latencies):.0f}"
            f" ms, p95 {latencies[int(len(latencies) * 0.95)]:.0f} ms, max {latencies[-1]:.0f}"
            f" ms; real-time factor {sum(latencies) / 1000 / audio_s:.3f}"
        )
        wers = ", ".join(
            f"{role} {corpus_wer(by_role[role]) * 100:.1f}%" for role in ("customer", "agent")
        )
        hallucinated = [h for _ref, h in by_role.get("none", []) if h]
        print(f"  {mode}: WER {wers}; words on silence/noise: {hallucinated or 'none'}")


def _report_fixture(fx: SpeechFixture, hypothesis: str, latencies: list[float]) -> None:
    err = wer(fx.text, hypothesis) * 100 if fx.text else (100.0 if hypothesis else 0.0)
    timing = "/".join(f"{ms:.0f}" for ms in latencies) or "-"
    print(f"    {fx.name:24} WER {err:5.1f}%  {timing:>9} ms  {hypothesis!r}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--modes", default="real_length,padded")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-front-end", action="store_true")
    args = parser.parse_args()
    settings = SpeechSettings()
    print(f"{os.cpu_count()} CPUs; numpy {np.__version__}")
    if not args.skip_front_end:
        await front_end_single(settings)
        await front_end_realtime(settings, args.tracks, args.seconds)
    modes = [m for m in args.modes.split(",") if m]
    if modes:
        await engines(settings, modes, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
