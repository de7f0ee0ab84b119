"""Abuse benchmark (issue 9): a live call while the server is attacked.

A real server process (bench/relay_server.py, forwarding only) holds one live call between
two real aiortc peers; the agent pings on its data channel, one ping at a time, and times
each pong. Meanwhile:

1. a login storm: 50 wrong logins arrive at once (distinct unknown usernames, one address);
   with the rate limits and, separately, with the limits lifted so all 50 are hashed;
2. a call flood: 300 requests from one address (150 customer sessions + their calls,
   20 in flight at a time).

It prints the ping round trip p50/p99/max and the server's event-loop lag p99 (a 10 ms
timer on its loop) for each phase. `--server-root DIR` runs the server from another
checkout (e.g. `git archive main | tar -x -C /tmp/main`) to measure the code before a
change with the same client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.relay import _free_port, _wait_health
from server.qa import Participant, customer_session, login
from signaling.ice import restrict_host_addresses

ROOT = Path(__file__).resolve().parent.parent


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Pinger:
    """Pings on the agent's data channel, one at a time, timing each pong."""

    def __init__(self, agent: Participant) -> None:
        self.agent = agent
        self.rtts_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            seen = sum(1 for e in self.agent.events if e["type"] == "pong")
            started = time.perf_counter()
            self.agent.send({"type": "ping"})
            while sum(1 for e in self.agent.events if e["type"] == "pong") == seen:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            self.rtts_ms.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)

    def start(self) -> None:
        self.rtts_ms = []
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> list[float]:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.rtts_ms


async def _lag(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/bench/lag") as r:
        return dict(await r.json())


async def _phase(
    name: str, http: aiohttp.ClientSession, url: str, pinger: Pinger, attack: Any
) -> dict[str, Any]:
    await asyncio.sleep(0.5)
    await _lag(http, url)  # reset the server's lag samples
    pinger.start()
    started = time.perf_counter()
    outcome = await attack() if attack else await asyncio.sleep(3.0)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.2)
    rtts = await pinger.stop()
    lag = await _lag(http, url)
    return {
        "phase": name,
        "seconds": round(elapsed, 2),
        "pings": len(rtts),
        "rtt_p50_ms": round(_pct(rtts, 0.5), 1),
        "rtt_p99_ms": round(_pct(rtts, 0.99), 1),
        "rtt_max_ms": round(max(rtts) if rtts else float("nan"), 1),
        "loop_lag_p99_ms": round(lag["p99"], 1),
        "loop_lag_max_ms": round(lag["max"], 1),
        "responses": outcome or {},
    }


async def _login_storm(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async def one(n: int) -> int:
        body = {"username": f"nobody{n}-{time.monotonic_ns()}", "password": "wrong password"}
        async with http.post(url + "/api/auth/login", json=body) as r:
            await r.read()
            return r.status

    statuses = await asyncio.gather(*(one(n) for n in range(50)))
    return {str(s): statuses.count(s) for s in sorted(set(statuses))}


async def _call_flood(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    gate = asyncio.Semaphore(20)

    async def one(n: int) -> None:
        async with gate:
            async with http.post(url + "/api/auth/customer", json={"name": f"Flood {n}"}) as r:
                body = await r.json()
                counts[f"session {r.status}"] = counts.get(f"session {r.status}", 0) + 1
            if r.status != 200:
                counts["call not tried"] = counts.get("call not tried", 0) + 1
                return
            headers = {"Authorization": f"Bearer {body['token']}"}
            async with http.post(url + "/api/calls", json={}, headers=headers) as r:
                await r.read()
                counts[f"call {r.status}"] = counts.get(f"call {r.status}", 0) + 1

    await asyncio.gather(*(one(n) for n in range(150)))
    return counts


async def measure(url: str) -> list[dict[str, Any]]:
    """The live call and the three phases, against a server already listening at `url`."""
    restrict_host_addresses(["127.0.0.1"])
    async with aiohttp.ClientSession() as http:
        cust = await customer_session(http, url, "Bench Caller", phone="+15550009999")
        async with http.post(
            url + "/api/calls", json={}, headers={"Authorization": f"Bearer {cust['token']}"}
        ) as r:
            call_id = (await r.json())["call_id"]
        agent_token = await login(http, url, "bench", "bench-password")
        async with http.post(
            f"{url}/api/calls/{call_id}/accept", headers={"Authorization": f"Bearer {agent_token}"}
        ) as r:
            assert r.status == 200, await r.text()
        customer = Participant(url, cust["token"], "customer", http=http, decode=False)
        agent = Participant(url, agent_token, "agent", http=http, decode=False)
        try:
            await customer.connect(call_id)
            await agent.connect(call_id)
            pinger = Pinger(agent)
            return [
                await _phase("idle call", http, url, pinger, None),
                await _phase("50 wrong logins", http, url, pinger, lambda: _login_storm(http, url)),
                await _phase("300-request call flood", http, url, pinger, lambda: _call_flood(http, url)),
            ]
        finally:
            await customer.close()
            await agent.close()


def run(server_root: Path, extra_env: dict[str, str]) -> list[dict[str, Any]]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CALLASSIST_")},
        "CALLASSIST_ICE_HOSTS": "127.0.0.1",
        "PYTHONPATH": str(server_root),
        **extra_env,
    }
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.relay_server", str(port), data, "--forward-only"],
            cwd=server_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_health(url, server)
            return asyncio.run(measure(url))
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-root", type=Path, default=ROOT)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON lines too")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"security benchmark: server from {args.server_root}; load average {' '.join(load)} (2 cores, shared)")
    variants = [("default limits", {})]
    if (args.server_root / "server" / "ratelimit.py").exists():
        variants.append(
            ("login limits lifted (all 50 hashed)", {"CALLASSIST_LOGIN_LIMIT_ADDRESS": "1000/minute"})
        )
    for title, env in variants:
        rows = run(args.server_root, env)
        print(f"\n{title}")
        print(f"{'phase':<24} {'s':>6} {'pings':>6} {'RTT p50':>8} {'RTT p99':>8} {'RTT max':>8} "
              f"{'lag p99':>8} {'lag max':>8}  responses")
        for row in rows:
            print(f"{row['phase']:<24} {row['seconds']:>6} {row['pings']:>6} {row['rtt_p50_ms']:>8} "
                  f"{row['rtt_p99_ms']:>8} {row['rtt_max_ms']:>8} {row['loop_lag_p99_ms']:>8} "
                  f"{row['loop_lag_max_ms']:>8}  {row['responses']}", flush=True)
            if args.json:
                print(json.dumps({"variant": title, **row}))
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
