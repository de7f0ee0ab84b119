"""Several nodes (issue 12): what a cluster costs and gives, on real processes over a real
PostgreSQL and a real Redis (started here, on loopback, as the tests do).

    python -m bench.cluster                       # everything (~15 minutes on 2 cores)
    python -m bench.cluster hop takeover load     # the cheap ones (~3 minutes)
    python -m bench.cluster scaling --calls-one 6,10,14 --calls-two 12,18,24

- hop: the extra latency of a cross-node hop: one event (a caller's key press) read on an
  SSE stream of the node that holds the call and on one of another node; p50/p95/p99 of
  the difference.
- takeover: kill -9 of the node holding a call with both parties connected to it; both
  reconnect through the survivor at once: kill → both hear each other again.
- load: Redis commands and Postgres writes per call-minute, two parties talking in turn
  (local Whisper, local assist), calls made on one node and answered through the other.
- scaling: concurrently talking calls that keep end of speech → final transcript p95 under
  1.5 s: one node pinned to one core (alone, no Redis), one node pinned to one core as a
  member of a two-node cluster, and two nodes pinned one per core. The load generator is
  this process, unpinned; it encodes Opus once and decodes nothing.

Every figure is printed with the machine's load (`uptime`): on a shared machine they move
with what else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.latency import pct, speech_bounds_s
from server.qa import Participant, customer_session, encode_wav_to_opus, login
from signaling.ice import restrict_host_addresses
from tests.cluster.nodes import Node
from tests.postgres import PostgresServer, find_bin_dir
from tests.redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "fixtures" / "speech"
SECRET = "bench-secret-key-0123456789abcdef-0123"
TWILIO_TOKEN = "bench-twilio-auth-token-0123456789"
PUBLIC_URL = "http://callassist.bench"
PASSWORD = "bench-password"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def report(name: str, **figures: Any) -> None:
    print(json.dumps({"bench": name, **figures, "uptime": uptime()}), flush=True)


class Backends:
    """One PostgreSQL and one Redis for the whole run; a fresh database per scenario."""

    def __init__(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
        self.postgres = PostgresServer(bin_dir)
        self.postgres.start()
        self.redis = RedisServer("/usr/bin/redis-server")
        self.redis.start()
        self.tmp = Path(tempfile.mkdtemp(prefix="callassist-bench-cluster-"))
        self._count = 0

    def close(self) -> None:
        self.redis.close()
        self.postgres.stop()

    def scenario(self) -> tuple[str, Path]:
        self._count += 1
        subprocess.run(
            [*self._redis_cli(), "FLUSHALL"], check=True, capture_output=True
        )
        return self.postgres.create_database(), self.tmp / f"s{self._count}"

    def _redis_cli(self) -> list[str]:
        return ["redis-cli", "-p", str(self.redis.port)]

    def redis_commands(self) -> int:
        out = subprocess.run([*self._redis_cli(), "INFO", "stats"], capture_output=True, text=True).stdout
        match = re.search(r"total_commands_processed:(\d+)", out)
        return int(match.group(1)) if match else 0

    def postgres_writes(self, database_url: str) -> dict[str, int]:
        name = database_url.rsplit("/", 1)[1]
        sql = (
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
            f"WHERE datname = '{name}'"
        )
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.postgres.port), "-U", "postgres", "-At", "-c", sql],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        commits, ins, upd, dele = (int(x) for x in out.split("|"))
        return {"commits": commits, "rows_written": ins + upd + dele}


async def start_nodes(
    backends: Backends, count: int, *, cluster: bool = True, cpus: list[str | None] | None = None,
    **env: str,
) -> tuple[list[Node], str]:
    database_url, base = backends.scenario()
    common = {
        "CALLASSIST_ICE_HOSTS": "127.0.0.1",
        "CALLASSIST_SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "CALLASSIST_STT_THREADS": "1",
        "CALLASSIST_STT_ENGINE": "off",
        "CALLASSIST_ASSIST_ENGINE": "off",
        "CALLASSIST_LOGIN_LIMIT_USER": "1000/minute",
        "CALLASSIST_LOGIN_LIMIT_ADDRESS": "1000/minute",
        "CALLASSIST_CUSTOMER_LIMIT_ADDRESS": "10000/minute",
        **env,
    }
    if cluster:
        common["CALLASSIST_REDIS_URL"] = backends.redis.url
    base.mkdir(parents=True)
    for user, role in (("bench", "agent"), ("boss", "admin")):
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "server", "user", "add", user, "--role", role, "--password-stdin"],
            input=PASSWORD.encode(), cwd=ROOT, env={**os.environ, **common, "CALLASSIST_DATA_DIR": str(base)},
            check=True, capture_output=True,
        )
    nodes = []
    for i in range(count):
        node = Node("abc"[i], base / "abc"[i] / "data", common, cpus=(cpus or [None] * count)[i])
        node.start()
        nodes.append(node)
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(n.wait_ready(http) for n in nodes))
    return nodes, database_url


def stop(nodes: list[Node]) -> None:
    for node in nodes:
        node.stop()


# -- hop ---------------------------------------------------------------------------------------


async def read_sse(http: aiohttp.ClientSession, url: str, token: str, sink: list[tuple[float, dict]]) -> None:
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
        async for raw in r.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                sink.append((time.monotonic(), json.loads(line[6:])))


async def bench_hop(backends: Backends, presses: int) -> None:
    from server.qa_phone import TwilioCaller

    nodes, _ = await start_nodes(
        backends, 2, CALLASSIST_TWILIO_AUTH_TOKEN=TWILIO_TOKEN, CALLASSIST_PUBLIC_URL=PUBLIC_URL
    )
    a, b = nodes
    try:
        async with aiohttp.ClientSession() as http:
            admin = await login(http, a.url, "boss", PASSWORD)
            caller = TwilioCaller(a.url, TWILIO_TOKEN, public_url=PUBLIC_URL, http=http)
            await caller.dial()
            here: list[tuple[float, dict]] = []
            there: list[tuple[float, dict]] = []
            path = f"/api/calls/{caller.call_id}/events"
            readers = [
                asyncio.ensure_future(read_sse(http, a.url + path, admin, here)),
                asyncio.ensure_future(read_sse(http, b.url + path, admin, there)),
            ]
            await asyncio.sleep(1.0)
            for i in range(presses):
                await caller.dtmf(str(i % 10))
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            for task in readers:
                task.cancel()
            await caller.close()
        on_a = [t for t, e in here if e["type"] == "dtmf"]
        on_b = [t for t, e in there if e["type"] == "dtmf"]
        hops = [(tb - ta) * 1000 for ta, tb in zip(on_a, on_b, strict=False)]
        report(
            "cross_node_hop",
            events=len(hops),
            lost=presses - len(on_b),
            extra_ms_p50=round(pct(hops, 0.5), 2),
            extra_ms_p95=round(pct(hops, 0.95), 2),
            extra_ms_p99=round(pct(hops, 0.99), 2),
        )
    finally:
        stop(nodes)


# -- takeover ----------------------------------------------------------------------------------


async def bench_takeover(backends: Backends, ttl_s: float, runs: int) -> None:
    for _ in range(runs):
        nodes, _ = await start_nodes(backends, 2, CALLASSIST_NODE_TTL_S=str(ttl_s))
        a, b = nodes
        try:
            async with aiohttp.ClientSession() as http:
                agent_token = await login(http, a.url, "bench", PASSWORD)
                cust = await customer_session(http, a.url, "Bench caller")
                customer = Participant(a.url, cust["token"], "customer", decode=False, http=http)
                created = await customer.request("POST", "/api/calls", json={})
                agent = Participant(b.url, agent_token, "agent", decode=False, http=http)
                await agent.request("POST", f"/api/calls/{created['call_id']}/accept")
                await customer.connect(created["call_id"])
                await agent.connect(created["call_id"])
                await asyncio.sleep(2.0)
                killed = time.monotonic()
                a.kill()
                customer.base_url = b.url

                async def back(p: Participant, call_id: str, killed: float) -> float:
                    while True:  # the pages retry until an offer is answered
                        try:
                            await p.connect(call_id, timeout=10)
                            break
                        except Exception:
                            await asyncio.sleep(0.2)
                    start = p.received.packets
                    while p.received.packets <= start:  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                    return time.monotonic() - killed

                call_id = created["call_id"]
                heard = await asyncio.gather(
                    back(customer, call_id, killed), back(agent, call_id, killed)
                )
                await customer.close()
                await agent.close()
            report(
                "takeover_after_kill",
                node_ttl_s=ttl_s,
                kill_to_both_hear_s=round(max(heard), 2),
                note="clients reconnect at once; a browser first needs to notice the failure",
            )
        finally:
            stop(nodes)


# -- talking calls -----------------------------------------------------------------------------


def speech_lines(role: str) -> list[tuple[list[bytes], float]]:
    fixtures = json.loads((SPEECH / "fixtures.json").read_text())["fixtures"]
    return [
        (encode_wav_to_opus(SPEECH / f["file"]), speech_bounds_s(SPEECH / f["file"])[1])
        for f in fixtures
        if f["role"] == role
    ]


async def talking_calls(
    urls: list[str], calls: int, turns: int, http: aiohttp.ClientSession
) -> dict[str, Any]:
    """`calls` calls, each made on one node and answered through the next (round robin),
    both parties talking in turn: end of speech → final transcript at the other party."""
    lines = {"customer": speech_lines("customer"), "agent": speech_lines("agent")}
    token = await login(http, urls[0], "bench", PASSWORD)
    pairs = []
    for i in range(calls):
        here, there = urls[i % len(urls)], urls[(i + 1) % len(urls)]
        cust = await customer_session(http, here, f"Caller {i}", phone=f"+1555{i:07d}")
        customer = Participant(here, cust["token"], "customer", decode=False, http=http)
        created = await customer.request("POST", "/api/calls", json={})
        agent = Participant(there, token, "agent", decode=False, http=http)
        await agent.request("POST", f"/api/calls/{created['call_id']}/accept")
        await customer.connect(created["call_id"])
        await agent.connect(created["call_id"])
        pairs.append((customer, agent))
    await asyncio.sleep(1.0)
    finals: list[float] = []
    missed = 0

    async def talk(customer: Participant, agent: Participant, seed: int) -> None:
        nonlocal missed
        rng = random.Random(seed)
        await asyncio.sleep(rng.uniform(0, 2.0))
        for turn in range(turns):
            speaker, listener = (customer, agent) if turn % 2 == 0 else (agent, customer)
            packets, end_s = rng.choice(lines[speaker.role])
            mark = len(listener.events)
            speaker.track.replace(packets)
            while speaker.track.clip_started_at is None or speaker.track._index == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            spoken = speaker.track.clip_started_at + end_s
            await asyncio.sleep(len(packets) * 0.02 + 2.5)
            got = [
                t
                for e, t in zip(listener.events[mark:], listener.received_at[mark:], strict=False)
                if e["type"] == "transcript" and e.get("final") and e["speaker"] == speaker.role
            ]
            if got:
                finals.append(got[-1] - spoken)
            else:
                missed += 1
            await asyncio.sleep(rng.uniform(0.2, 0.8))

    await asyncio.gather(*(talk(c, a, i) for i, (c, a) in enumerate(pairs)))
    for c, a in pairs:
        await c.close()
        await a.close()
    return {
        "calls": calls,
        "turns": len(finals) + missed,
        "missed": missed,
        "final_p50_ms": round(pct(finals, 0.5) * 1000),
        "final_p95_ms": round(pct(finals, 0.95) * 1000),
    }


async def bench_load(backends: Backends, calls: int, minutes: float) -> None:
    nodes, database_url = await start_nodes(
        backends, 2, CALLASSIST_STT_ENGINE="local", CALLASSIST_ASSIST_ENGINE="local"
    )
    try:
        idle_s = 15.0
        r0 = backends.redis_commands()
        p0 = backends.postgres_writes(database_url)
        await asyncio.sleep(idle_s)
        r1 = backends.redis_commands()
        p1 = backends.postgres_writes(database_url)
        turns = max(2, int(minutes * 60 / 6.5))  # a turn: ~3 s of speech, 2.5 s wait, pause
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            row = await talking_calls([n.url for n in nodes], calls, turns, http)
        elapsed_min = (time.monotonic() - started) / 60
        r2 = backends.redis_commands()
        p2 = backends.postgres_writes(database_url)
        idle_redis_per_min = (r1 - r0) / idle_s * 60
        idle_commits_per_min = (p1["commits"] - p0["commits"]) / idle_s * 60
        call_minutes = calls * elapsed_min
        report(
            "cluster_load",
            calls=calls,
            call_minutes=round(call_minutes, 2),
            idle_redis_commands_per_min_2_nodes=round(idle_redis_per_min),
            redis_commands_per_call_minute=round(
                ((r2 - r1) - idle_redis_per_min * elapsed_min) / call_minutes
            ),
            postgres_commits_per_call_minute=round(
                ((p2["commits"] - p1["commits"]) - idle_commits_per_min * elapsed_min) / call_minutes
            ),
            postgres_rows_written_per_call_minute=round(
                (p2["rows_written"] - p1["rows_written"]) / call_minutes
            ),
            final_p95_ms=row["final_p95_ms"],
        )
    finally:
        stop(nodes)


async def bench_scaling(backends: Backends, one: list[int], two: list[int], turns: int) -> None:
    configurations = [
        ("one node alone, 1 core", 1, False, ["0"], one),
        ("one node of a 2-node cluster, 1 core", 2, True, ["0", "1"], one),
        ("two nodes, 1 core each", 2, True, ["0", "1"], two),
    ]
    for label, count, cluster, cpus, steps in configurations:
        capacity = 0
        for calls in steps:
            nodes, _ = await start_nodes(
                backends, count, cluster=cluster, cpus=cpus, CALLASSIST_STT_ENGINE="local"
            )
            try:
                # The single-node figures load only the first node; the second is idle.
                urls = [nodes[0].url] if label.startswith("one node") else [n.url for n in nodes]
                async with aiohttp.ClientSession() as http:
                    row = await talking_calls(urls, calls, turns, http)
            finally:
                stop(nodes)
            report("scaling_step", configuration=label, **row)
            if row["final_p95_ms"] < 1500 and row["missed"] == 0:
                capacity = calls
            else:
                break
        report("scaling", configuration=label, talking_calls_under_1_5s_p95=capacity)


async def main_async(args: argparse.Namespace) -> None:
    restrict_host_addresses(["127.0.0.1"])
    backends = Backends()
    try:
        for name in args.benchmarks:
            if name == "hop":
                await bench_hop(backends, args.presses)
            elif name == "takeover":
                await bench_takeover(backends, args.ttl, args.runs)
            elif name == "load":
                await bench_load(backends, args.load_calls, args.minutes)
            elif name == "scaling":
                await bench_scaling(
                    backends,
                    [int(c) for c in args.calls_one.split(",")],
                    [int(c) for c in args.calls_two.split(",")],
                    args.turns,
                )
    finally:
        backends.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "benchmarks", nargs="*", default=["hop", "takeover", "load", "scaling"],
        choices=["hop", "takeover", "load", "scaling"],
    )
    parser.add_argument("--presses", type=int, default=300, help="key presses for the hop")
    parser.add_argument("--ttl", type=float, default=10.0, help="CALLASSIST_NODE_TTL_S for takeover")
    parser.add_argument("--runs", type=int, default=2, help="takeover runs")
    parser.add_argument("--load-calls", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=1.0, help="talking time of the load run")
    parser.add_argument("--calls-one", default="6,9,12,15", help="call counts for one node")
    parser.add_argument("--calls-two", default="12,18,24,30", help="call counts for two nodes")
    parser.add_argument("--turns", type=int, default=6, help="turns per call in a scaling step")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
