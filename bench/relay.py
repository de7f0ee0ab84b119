"""Relay benchmark: concurrent calls one server process holds (issue 2).

For 1, 5, 10 and 20 calls: server CPU per call, event-loop lag p99, fraction of audio
frames delivered, RSS per call, and the load generator's own CPU (it shares the cores).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _own_cpu_s(stat: Path) -> float:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in children.read_text().split()]
        except OSError:
            pass
    return found


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (the server's speech-to-text
    processes count as the server's)."""
    return _own_cpu_s(Path(f"/proc/{pid}/stat")) + sum(_cpu_s(c) for c in _children(pid))


def _thread_cpu_s(pid: int, tid: int | None = None) -> float:
    """CPU seconds of one thread (by default the main one, which runs the event loop)."""
    return _own_cpu_s(Path(f"/proc/{pid}/task/{tid or pid}/stat"))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait_health(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("bench server exited")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("bench server did not start")


def run_step(calls: int, seconds: float, wav: Path, forward_only: bool = False) -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CALLASSIST_ICE_HOSTS": "127.0.0.1", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.relay_server", str(port), data]
            + (["--forward-only"] if forward_only else []),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_health(url, server)
            idle_rss = _rss_mb(server.pid)
            load = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.loadgen",
                    "--url",
                    url,
                    "--calls",
                    str(calls),
                    "--seconds",
                    str(seconds),
                    "--wav",
                    str(wav),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert load.stdout is not None
            cpu0 = t0 = 0.0
            result: dict = {}
            rss = idle_rss
            for line in load.stdout:
                if line.startswith("WINDOW_START"):
                    cpu0, t0 = _cpu_s(server.pid), time.monotonic()
                elif line.startswith("WINDOW_END"):
                    cpu1, t1 = _cpu_s(server.pid), time.monotonic()
                    rss = _rss_mb(server.pid)
                elif line.startswith("{"):
                    result = json.loads(line)
            load.wait(timeout=120)
            if load.returncode != 0 or not result:
                raise RuntimeError(f"load generator failed at {calls} calls")
        finally:
            server.terminate()
            server.wait(timeout=30)
    server_cores = (cpu1 - cpu0) / (t1 - t0)
    return {
        "calls": calls,
        "server_cores": round(server_cores, 3),
        "cores_per_call": round(server_cores / calls, 4),
        "loop_lag_p99_ms": round(result["loop_lag_ms"]["p99"], 2),
        "loop_lag_max_ms": round(result["loop_lag_ms"]["max"], 2),
        "delivered": round(result["delivered"], 4),
        "rss_mb": round(rss, 1),
        "rss_per_call_mb": round((rss - idle_rss) / calls, 2),
        "loadgen_cores": result["loadgen_cores"],
        "setup_s": result["setup_s"],
    }


def main(
    steps: tuple[int, ...] = (1, 5, 10, 20), seconds: float = 10.0, forward_only: bool = False
) -> list[dict]:
    wav = ROOT / "tests" / "fixtures" / "speech" / "customer_refund.wav"
    if not wav.exists():
        wav = next((ROOT / "tests" / "fixtures" / "speech").glob("*.wav"))
    mode = "forwarding only" if forward_only else "forwarding + decode/resample/VAD per track"
    print(f"relay benchmark ({mode}): {seconds:.0f} s window per step, {wav.name} looped")
    print(
        f"{'calls':>5} {'server cores':>12} {'per call':>9} {'lag p99 ms':>10} {'delivered':>9} "
        f"{'RSS MB':>7} {'MB/call':>8} {'loadgen cores':>13}"
    )
    rows = []
    for calls in steps:
        row = run_step(calls, seconds, wav, forward_only)
        rows.append(row)
        print(
            f"{row['calls']:>5} {row['server_cores']:>12} {row['cores_per_call']:>9} "
            f"{row['loop_lag_p99_ms']:>10} {row['delivered']:>9.2%} {row['rss_mb']:>7} "
            f"{row['rss_per_call_mb']:>8} {row['loadgen_cores']:>13}",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    main(forward_only="--forward-only" in sys.argv)
