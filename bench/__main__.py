"""`make bench`: every benchmark in turn, each in its own process, printing its figures.

    python -m bench                 # all of them (~15 minutes on 2 cores)
    python -m bench relay latency   # some of them
    python -m bench.latency --calls 1,24 --rounds 2   # one benchmark with its own options

Run them on an otherwise idle machine: they measure CPU and latency on shared cores.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = {
    "relay": ("bench.relay", "concurrent calls: CPU, loop lag, frames delivered, RSS (issue 2)"),
    "stt": ("bench.bench_stt", "speech-to-text engine and audio front end (issue 3)"),
    "assist": ("bench.bench_assist", "final transcript → first suggestion, engine only (issue 4)"),
    "batch": ("bench.bench_batch", "batched speech-to-text, threads, windows, end of turn (issue 14)"),
    "latency": ("bench.latency", "talking calls over WebRTC: end of speech → final transcript, capacity (issues 3, 4, 14)"),
    "security": ("bench.security", "a live call's ping RTT under a login storm and a call flood (issue 9)"),
    "nlp": ("bench.nlp", "kept libraries: sentiment, retrieval, phone entities vs labels (issue 13)"),
    "scenarios": ("bench.scenarios", "scripted calls: coverage, relevance, stale facts, redaction (issue 13)"),
    "voice_agent": ("bench.voice_agent", "voice agent: speech end → its first audio, barge-in, concurrent calls (issue 11)"),
    "cluster": ("bench.cluster", "several nodes: cross-node hop, takeover, Redis/Postgres load, per-core scaling (issue 12)"),
    "phone": ("bench.phone", "Twilio callers: CPU per call, outbound pacing, transcript latency, relay again (issue 10)"),
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    for name in names:
        module, what = BENCHMARKS[name]
        print(f"\n=== {name}: {what}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", module])
        print(f"=== {name}: {'ok' if result.returncode == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s", flush=True)
        if result.returncode != 0:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
