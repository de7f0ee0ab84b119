"""Speech-to-transcript latency and capacity over real WebRTC, local engines (issues 3, 4, 14).

    python -m bench.latency                                  # 1,8,12,16,20,24,32 calls
    python -m bench.latency --calls 1,24 --rounds 2          # some steps
    CALLASSIST_STT_BATCH_MAX=1 python -m bench.latency ...   # any server setting, by env
    BENCH_LATENCY_LINES=lines.json python -m bench.latency --calls 24   # every line's record

A real server process (offline defaults: local Whisper, local suggestion engine, demo data)
and a load generator in its own process (`--client`), so that the two do not share a GIL.
In every call the customer and the agent talk in turn: each says a random fixture line of
its role, 0.2-1 s after the other finished. The load generator sends Opus encoded once and
decodes nothing it receives. For every line, on the agent's data channel:

- end of speech → the speaker's last final transcript of the line (p50/p95);
- whether the line got a final at all; interim transcripts per line;
- end of speech → first `ai_suggestion` (customer lines);

and, over the talking window, the server's CPU (from /proc) and `status` events about
speech-to-text. Prints one JSON line per step, then a table. Run it on an idle machine:
it measures latency on shared cores (the figures print the load average with them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LOG = Path(tempfile.gettempdir()) / "callassist-bench-latency-server.log"
"""The server's log of the last step, kept for a look when a figure is odd."""
SPEECH = ROOT / "tests" / "fixtures" / "speech"
STEPS = "1,8,12,16,20,24,32"

SPEECH_DBFS = -50.0
"""A 20 ms frame louder than this is speech. The fixtures speak at -15 to -20 dBFS and are
digitally silent (-95) between lines; the last sounds of a word lie 25-35 dB below its
vowels: the release of a final stop after its closure (the k of "back" in
customer_double_charge: -45 dBFS, after a 120 ms closure), the fading of a nasal. A -40
threshold cut them off and put the end of speech up to 140 ms early, which counted time
the customer was still speaking as latency; the server's VAD hears them as speech."""
SETTLE_S = 2.5
"""After a call's last line: time left for its final before the step ends."""


def speech_bounds_s(path: Path, threshold_dbfs: float = SPEECH_DBFS) -> tuple[float, float]:
    """Where the speech in a fixture starts and ends: its first and last 20 ms frames above
    the threshold."""
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(np.float64)
    frame = rate // 50
    frames = pcm[: len(pcm) // frame * frame].reshape(-1, frame)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) / 32768 + 1e-12)
    loud = np.nonzero(level > threshold_dbfs)[0]
    if not len(loud):
        return 0.0, 0.0
    return float(loud[0] * frame / rate), float((loud[-1] + 1) * frame / rate)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the load generator (its own process) ---------------------------------------------------


def role_lines(role: str) -> list[tuple[str, list[bytes], float]]:
    """(reference text, Opus packets, end of speech in s) of every fixture line of a role."""
    from server.qa import encode_wav_to_opus

    fixtures = json.loads((SPEECH / "fixtures.json").read_text())["fixtures"]
    return [
        (f["text"], encode_wav_to_opus(SPEECH / f["file"]), speech_bounds_s(SPEECH / f["file"])[1])
        for f in fixtures
        if f["role"] == role
    ]


async def run_calls(url: str, calls: int, rounds: int) -> dict:
    import aiohttp

    from server.qa import Participant, customer_session, login

    lines = {role: role_lines(role) for role in ("customer", "agent")}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as http:
        token = await login(http, url, "bench", "bench-password")
        pairs = []
        for i in range(calls):
            cust = await customer_session(http, url, f"Bench caller {i}", phone=f"+1555{i:07d}")
            customer = Participant(url, cust["token"], "customer", decode=False, http=http)
            created = await customer.request("POST", "/api/calls", json={"reason": "bench"})
            agent = Participant(url, token, "agent", decode=False, http=http)
            await agent.request("POST", f"/api/calls/{created['call_id']}/accept")
            await customer.connect(created["call_id"])
            await agent.connect(created["call_id"])
            pairs.append((customer, agent))
        await asyncio.sleep(1.0)
        print("TALK_START", flush=True)
        results = await asyncio.gather(
            *(
                talk(customer, agent, lines, rounds, seed)
                for seed, (customer, agent) in enumerate(pairs)
            )
        )
        print("TALK_END", flush=True)
        for customer, agent in pairs:
            await customer.close()
            await agent.close()
    lines_said = [line for result in results for line in result["lines"]]
    if os.environ.get("BENCH_LATENCY_LINES"):
        out = Path(os.environ["BENCH_LATENCY_LINES"])
        await asyncio.to_thread(out.write_text, json.dumps(lines_said))
    statuses = [code for result in results for code in result["statuses"]]
    finals = [line["final_s"] for line in lines_said if line["final_s"] is not None]
    suggestions = [line["suggestion_s"] for line in lines_said if line["suggestion_s"] is not None]
    ms = lambda v: round(v * 1000)  # noqa: E731
    from media.wer import corpus_wer

    heard = [line for line in lines_said if line["final_s"] is not None]
    return {
        "calls": calls,
        "lines": len(lines_said),
        "with_final": round(len(finals) / max(1, len(lines_said)), 3),
        "final_p50_ms": ms(pct(finals, 0.5)),
        "final_p95_ms": ms(pct(finals, 0.95)),
        "interims_per_line": round(
            sum(line["interims"] for line in lines_said) / max(1, len(lines_said)), 2
        ),
        "wer_heard_lines": round(corpus_wer([(x["reference"], x["heard"]) for x in heard]), 3),
        "suggestion_p50_ms": ms(pct(suggestions, 0.5)),
        "stt_status": {code: statuses.count(code) for code in sorted(set(statuses))},
        "lines_not_sent": sum(result["stalled"] for result in results),
    }


async def talk(customer, agent, lines: dict, rounds: int, seed: int) -> dict:  # noqa: ANN001
    """Customer and agent say their lines in turn; every event is read from the agent."""
    rng = random.Random(seed)
    await asyncio.sleep(rng.uniform(0, 2.0))  # calls do not talk in lockstep
    script = []
    for _ in range(rounds):
        cust = rng.sample(lines["customer"], len(lines["customer"]))
        agen = rng.sample(lines["agent"], len(lines["agent"]))
        for pair in zip(cust, agen, strict=False):
            script += [("customer", customer, pair[0]), ("agent", agent, pair[1])]
    said = []  # (speaker, monotonic start of the clip, monotonic end of speech, text)
    stalled = 0
    for speaker, party, (text, packets, end_s) in script:
        party.track.replace(packets)
        # The track has no event for it: poll until the clip's first packet is out.
        deadline = time.monotonic() + 5.0
        while party.track._index == 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        if party.track._index == 0:
            # Its peer stopped pulling audio (connection lost): say so, go on.
            print(f"no audio went out for a {speaker} line", file=sys.stderr, flush=True)
            stalled += 1
            continue
        started = party.track.clip_started_at
        said.append((speaker, started, started + end_s, text))
        await asyncio.sleep(max(0.0, started + len(packets) * 0.02 - time.monotonic()))
        await asyncio.sleep(rng.uniform(0.2, 1.0))
    await asyncio.sleep(SETTLE_S)
    # Transcripts belong to the line during which their segment started: `start_ms` counts
    # from the accept, whose `call_state` carries the server's epoch time (same machine).
    to_epoch = time.time() - time.monotonic()
    events = list(zip(agent.events, agent.received_at, strict=False))
    accepted_s = next(
        e["ts"] / 1000 for e, _ in events if e["type"] == "call_state" and e["state"] == "active"
    )
    transcripts = [(e, at) for e, at in events if e["type"] == "transcript"]
    suggestions = [at for e, at in events if e["type"] == "ai_suggestion"]
    out = []
    for speaker, started, spoken, text in said:
        first, last = started + to_epoch - 0.5, spoken + to_epoch + 0.2
        mine = [
            (e, at)
            for e, at in transcripts
            if e["speaker"] == speaker and first <= accepted_s + e["start_ms"] / 1000 <= last
        ]
        finals = [at for e, at in mine if e["final"]]
        suggestion = next((at for at in suggestions if finals and at >= finals[-1]), None)
        out.append(
            {
                "speaker": speaker,
                "final_s": max(finals) - spoken if finals else None,
                "interims": sum(1 for e, _ in mine if not e["final"]),
                "reference": text,
                "heard": " ".join(
                    e["text"] for e, _ in sorted(mine, key=lambda m: m[0]["start_ms"]) if e["final"]
                ),
                "suggestion_s": suggestion - spoken
                if suggestion and speaker == "customer" and suggestion - spoken < 5
                else None,
            }
        )
    statuses = [
        e["code"] for e, _ in events if e["type"] == "status" and e["code"].startswith("stt")
    ]
    return {"lines": out, "statuses": statuses, "stalled": stalled}


def client_main(url: str, calls: int, rounds: int) -> None:
    from signaling.ice import restrict_host_addresses

    restrict_host_addresses(["127.0.0.1"])
    print(json.dumps(asyncio.run(run_calls(url, calls, rounds))), flush=True)


# -- the driver -------------------------------------------------------------------------------


def run_step(calls: int, rounds: int) -> dict:
    from bench.relay import _children, _cpu_s, _free_port, _thread_cpu_s, _wait_health

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data, open(LOG, "wb") as log:
        env = {
            **os.environ,
            "CALLASSIST_ICE_HOSTS": "127.0.0.1",
            "CALLASSIST_DATA_DIR": data,
            # Every caller comes from one address here; the per-address cap is for the open
            # internet (32 calls are 32 sessions and 32 calls within seconds).
            "CALLASSIST_CUSTOMER_LIMIT_ADDRESS": "10000/minute",
        }
        subprocess.run(
            [sys.executable, "-m", "server", "user", "add", "bench", "--role", "agent",
             "--password-stdin"],
            input=b"bench-password", cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip
        server = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--demo", "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        try:
            _wait_health(url, server)
            client = subprocess.Popen(
                [sys.executable, "-m", "bench.latency", "--client", url, "--calls", str(calls),
                 "--rounds", str(rounds)],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert client.stdout is not None
            marks: dict[str, tuple[float, float]] = {}
            result: dict = {}
            for line in client.stdout:
                line = line.strip()
                if line in ("TALK_START", "TALK_END"):
                    marks[line] = (
                        time.monotonic(),
                        _cpu_s(server.pid),
                        _thread_cpu_s(server.pid),
                        sum(_cpu_s(child) for child in _children(server.pid)),
                        _cpu_s(client.pid),
                    )
                elif line.startswith("{"):
                    result = json.loads(line)
            client.wait()
            if client.returncode != 0 or not result:
                raise RuntimeError(f"load generator failed ({client.returncode})")
        finally:
            server.terminate()
            started = time.monotonic()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            stop_s = time.monotonic() - started
    start, end = marks["TALK_START"], marks["TALK_END"]
    seconds = end[0] - start[0]
    cores = [round((b - a) / seconds, 2) for a, b in zip(start[1:], end[1:], strict=True)]
    # The server with its speech-to-text processes; of it, the event loop's thread and those
    # processes; and the load generator, which shares the cores.
    result["server_cores"], result["loop_cores"], result["stt_cores"], result["loadgen_cores"] = (
        cores
    )
    result["load_avg"] = round(os.getloadavg()[0], 2)
    result["server_stop_s"] = round(stop_s, 1)
    return result


def print_table(rows: list[dict]) -> None:
    print(
        "\n| calls | lines | with a final | end of speech → final p50 / p95 | WER | interims "
        "per line | server cores (loop, stt) | load generator cores | stt status events "
        "| load avg |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        status = ", ".join(f"{k} {v}" for k, v in r["stt_status"].items()) or "-"
        print(
            f"| {r['calls']} | {r['lines']} | {r['with_final'] * 100:.1f}% | "
            f"{r['final_p50_ms']} / {r['final_p95_ms']} ms | {r['wer_heard_lines'] * 100:.1f}% | "
            f"{r['interims_per_line']} | "
            f"{r['server_cores']} ({r['loop_cores']}, {r['stt_cores']}) | {r['loadgen_cores']} | "
            f"{status} | {r['load_avg']} |"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default=STEPS, help="comma-separated concurrent call counts")
    parser.add_argument(
        "--rounds", type=int, default=1, help="times each party says all its lines (1 call: 2)"
    )
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    steps = [int(c) for c in args.calls.split(",")]
    if args.client:
        client_main(args.client, steps[0], args.rounds)
        return []
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()}", flush=True)
    rows = []
    for calls in steps:
        rounds = max(args.rounds, 2) if calls == 1 else args.rounds
        row = run_step(calls, rounds)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
