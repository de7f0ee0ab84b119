"""Phone benchmark (issue 10): Twilio callers talking with browser agents.

1. Load, at 1, 10 and 20 calls in one server process (the simulated callers and the aiortc
   agents in another process, bench/phone_load.py): server CPU per call, event-loop lag,
   and the outbound pacing each caller sees (media messages per second, aim 50; gap between
   them p50/p99/max, aim p99 < 30 ms). The server decodes, resamples and VAD-segments every
   voice as in production; utterances are counted, not transcribed (bench.relay_server).
2. Latency, with the local Whisper: a phone caller says the customer fixtures; end of
   speech → its final transcript at the agent, p50/p95 (bench/latency.py does the same over
   WebRTC).
3. The relay benchmark again (browser ↔ browser), whose figures the phone path must not worsen.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.latency import SPEECH, pct, speech_bounds_s
from bench.relay import ROOT, _cpu_s, _free_port, _wait_health
from server.qa import Participant, login
from server.qa_phone import TwilioCaller, wav_to_mulaw_frames

AUTH_TOKEN = "bench-twilio-auth-token"


def _env(port: int) -> dict[str, str]:
    return {
        **os.environ,
        "CALLASSIST_ICE_HOSTS": "127.0.0.1",
        "PYTHONPATH": str(ROOT),
        "CALLASSIST_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "CALLASSIST_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }


def load_step(calls: int, seconds: float) -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env(port)
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.relay_server", str(port), data],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_health(url, server)
            load = subprocess.Popen(
                [sys.executable, "-m", "bench.phone_load", "--url", url, "--auth-token", AUTH_TOKEN,
                 "--calls", str(calls), "--seconds", str(seconds),
                 "--caller-wav", str(SPEECH / "customer_refund.wav"),
                 "--agent-wav", str(SPEECH / "agent_escalate.wav")],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
            )
            assert load.stdout is not None
            result: dict = {}
            cpu0 = cpu1 = t0 = t1 = 0.0
            for line in load.stdout:
                if line.startswith("WINDOW_START"):
                    cpu0, t0 = _cpu_s(server.pid), time.monotonic()
                elif line.startswith("WINDOW_END"):
                    cpu1, t1 = _cpu_s(server.pid), time.monotonic()
                elif line.startswith("{"):
                    result = json.loads(line)
            load.wait(timeout=120)
            if load.returncode != 0 or not result:
                raise RuntimeError(f"phone load generator failed at {calls} calls")
        finally:
            server.terminate()
            server.wait(timeout=30)
    cores = (cpu1 - cpu0) / (t1 - t0)
    return {**result, "server_cores": round(cores, 3), "cores_per_call": round(cores / calls, 4)}


def latency(rounds: int = 2) -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**_env(port), "CALLASSIST_STT_ENGINE": "local", "CALLASSIST_ASSIST_ENGINE": "off"}
    with tempfile.TemporaryDirectory() as data:
        subprocess.run(
            [sys.executable, "-m", "server", "user", "add", "bench", "--role", "agent",
             "--password-stdin", "--data-dir", data],
            input="bench-password", text=True, cwd=ROOT, env=env, check=True, capture_output=True,
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port), "--data-dir", data],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_health(url, server)
            return asyncio.run(_latency(url, rounds))
        finally:
            server.terminate()
            server.wait(timeout=30)


async def _latency(url: str, rounds: int) -> dict:
    fixtures = json.loads((SPEECH / "fixtures.json").read_text())["fixtures"]
    lines = [
        (SPEECH / f["file"], wav_to_mulaw_frames(SPEECH / f["file"]), *speech_bounds_s(SPEECH / f["file"]))
        for f in fixtures if f["role"] == "customer"
    ]
    async with aiohttp.ClientSession() as http:
        token = await login(http, url, "bench", "bench-password")
        caller = TwilioCaller(url, AUTH_TOKEN, http=http)
        await caller.dial()
        agent = Participant(url, token, "agent", decode=False, http=http)
        await agent.request("POST", f"/api/calls/{caller.call_id}/accept")
        await agent.connect(caller.call_id)
        await asyncio.sleep(1.0)
        finals: list[float] = []
        missed = 0
        for _ in range(rounds):
            for _path, frames, _start_s, end_s in lines:
                mark = len(agent.events)
                caller.play(frames)
                while caller.clip_started_at is None:  # noqa: ASYNC110 - set by the sender
                    await asyncio.sleep(0.005)
                spoken = caller.clip_started_at + end_s
                await asyncio.sleep(len(frames) * 0.02 + 2.5)
                got = [
                    at for e, at in zip(agent.events[mark:], agent.received_at[mark:], strict=False)
                    if e["type"] == "transcript" and e["final"] and e["speaker"] == "customer"
                ]
                if got:
                    finals.append((got[-1] - spoken) * 1000)
                else:
                    missed += 1
        await caller.stop()
        await agent.close()
    return {"lines": len(finals), "missed": missed,
            "final_p50_ms": round(pct(finals, 0.5)), "final_p95_ms": round(pct(finals, 0.95))}


def main(steps: tuple[int, ...] = (1, 10, 20), seconds: float = 10.0) -> None:
    print(f"uptime: {Path('/proc/loadavg').read_text().split()[:3]} (load average, shared cores)")
    print(f"phone load: {seconds:.0f} s window per step; callers say customer_refund.wav in a loop")
    print(f"{'calls':>5} {'server cores':>12} {'per call':>9} {'lag p99 ms':>10} {'out msg/s':>9} "
          f"{'min msg/s':>9} {'gap p50':>7} {'gap p99':>7} {'gap max':>7} {'agent pkt/s':>11} {'loadgen cores':>13}")
    for calls in steps:
        r = load_step(calls, seconds)
        print(f"{r['calls']:>5} {r['server_cores']:>12} {r['cores_per_call']:>9} "
              f"{r['loop_lag_ms']['p99']:>10.2f} {r['out_msgs_per_s']:>9} {r['out_msgs_per_s_min']:>9} "
              f"{r['gap_p50_ms']:>7} {r['gap_p99_ms']:>7} {r['gap_max_ms']:>7} "
              f"{r['agent_pkts_per_s']:>11} {r['loadgen_cores']:>13}", flush=True)
    print("\nphone caller, local Whisper: end of speech → final transcript at the agent")
    lat = latency()
    print(f"  {lat['lines']} lines ({lat['missed']} missed): p50 {lat['final_p50_ms']} ms, "
          f"p95 {lat['final_p95_ms']} ms", flush=True)
    print("\nrelay (browser ↔ browser) again:")
    from bench import relay

    relay.main()
    print(f"uptime: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
