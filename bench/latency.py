"""Speech-to-suggestion latency over real WebRTC, with the local engines (issues 3 and 4).

A real server process (local Whisper, local suggestion engine, demo data) and, in this
process, customer and agent peers. Customers say the speech fixtures in turn; for every
line we time, on the *agent's* data channel:

- end of speech → the line's final transcript (p50/p95), and → its first interim;
- end of speech → the first `ai_suggestion` it led to;
- final transcript → first `ai_suggestion` (the assist engine and its turn-taking);

for 1 call, then for several calls whose customers talk at the same time, to find how
many concurrently talking calls keep the transcript p95 under 1.5 s.
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
import wave
from pathlib import Path

import aiohttp
import numpy as np

from bench.relay import _free_port, _wait_health
from server.qa import Participant, customer_session, encode_wav_to_opus, login
from signaling.ice import restrict_host_addresses

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "fixtures" / "speech"
DEMO_PHONES = ["+12025550101", "+12025550102", "+12025550103", "+12025550104",
               "+12025550105", "+12025550106"]


SPEECH_DBFS = -50.0
"""A 20 ms frame louder than this is speech. The fixtures speak at -15 to -20 dBFS and are
digitally silent (-95) between lines; the last sounds of a word lie 25-35 dB below its
vowels: the release of a final stop after its closure (the k of "back" in
customer_double_charge: -45 dBFS, after a 120 ms closure), the fading of a nasal. A -40
threshold cut them off and put the end of speech up to 140 ms early, which counted time
the customer was still speaking as latency; the server's VAD hears them as speech."""


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


def customer_lines() -> list[tuple[str, list[bytes], float, float]]:
    fixtures = json.loads((SPEECH / "fixtures.json").read_text())["fixtures"]
    lines = []
    for f in fixtures:
        if f["role"] == "customer":
            path = SPEECH / f["file"]
            lines.append((f["file"], encode_wav_to_opus(path), *speech_bounds_s(path)))
    return lines


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_calls(url: str, calls: int, rounds: int, http: aiohttp.ClientSession) -> dict:
    lines = customer_lines()
    token = await login(http, url, "bench", "bench-password")
    pairs = []
    for i in range(calls):
        cust = await customer_session(http, url, "Bench caller", phone=DEMO_PHONES[i % len(DEMO_PHONES)] if i < len(DEMO_PHONES) else f"+1555{i:07d}")
        customer = Participant(url, cust["token"], "customer", decode=False, http=http)
        created = await customer.request("POST", "/api/calls", json={"reason": "bench"})
        agent = Participant(url, token, "agent", decode=False, http=http)
        await agent.request("POST", f"/api/calls/{created['call_id']}/accept")
        await customer.connect(created["call_id"])
        await agent.connect(created["call_id"])
        pairs.append((customer, agent))
    await asyncio.sleep(1.0)

    samples: dict[str, list[float]] = {"final": [], "interim": [], "suggestion": [], "engine": []}
    missed = 0

    async def talk(customer: Participant, agent: Participant, seed: int) -> None:
        nonlocal missed
        rng = random.Random(seed)
        await asyncio.sleep(rng.uniform(0, 1.5))  # calls do not talk in lockstep
        for _ in range(rounds):
            for _name, packets, start_s, end_s in rng.sample(lines, len(lines)):
                mark = len(agent.events)
                customer.track.replace(packets)
                # The track has no event for it: poll until the clip's first packet is out.
                while customer.track.clip_started_at is None or customer.track._index == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                started = customer.track.clip_started_at
                spoken = started + end_s
                await asyncio.sleep(len(packets) * 0.02 + 2.5)
                new = agent.events[mark:]
                when = dict(zip(map(id, new), agent.received_at[mark:], strict=False))
                at = lambda e, w=when: w[id(e)]  # noqa: E731
                finals = [e for e in new if e["type"] == "transcript" and e["final"] and e["speaker"] == "customer"]
                interims = [e for e in new if e["type"] == "transcript" and not e["final"] and e["speaker"] == "customer"]
                suggestions = [e for e in new if e["type"] == "ai_suggestion"]
                if not finals:
                    missed += 1
                    continue
                last_final = at(finals[-1])
                samples["final"].append(last_final - spoken)
                if interims:
                    samples["interim"].append(at(interims[0]) - (started + start_s))
                later = [at(s) for s in suggestions if at(s) >= last_final]
                if later:
                    samples["suggestion"].append(min(later) - spoken)
                    samples["engine"].append(min(later) - last_final)
                await asyncio.sleep(rng.uniform(0.2, 1.0))

    await asyncio.gather(*(talk(c, a, i) for i, (c, a) in enumerate(pairs)))
    for c, a in pairs:
        await c.close()
        await a.close()
    ms = lambda v: round(v * 1000)  # noqa: E731
    return {
        "calls": calls,
        "lines": len(samples["final"]) + missed,
        "missed": missed,
        "final_p50_ms": ms(pct(samples["final"], 0.5)),
        "final_p95_ms": ms(pct(samples["final"], 0.95)),
        "first_interim_after_speech_start_p50_ms": ms(pct(samples["interim"], 0.5)),
        "suggestion_p50_ms": ms(pct(samples["suggestion"], 0.5)),
        "suggestion_p95_ms": ms(pct(samples["suggestion"], 0.95)),
        "transcript_to_suggestion_p50_ms": ms(pct(samples["engine"], 0.5)),
        "transcript_to_suggestion_p95_ms": ms(pct(samples["engine"], 0.95)),
    }


async def main_async(steps: list[int], rounds: int) -> list[dict]:
    restrict_host_addresses(["127.0.0.1"])
    rows = []
    for calls in steps:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as data:
            env = {**os.environ, "CALLASSIST_ICE_HOSTS": "127.0.0.1", "CALLASSIST_DATA_DIR": data}
            await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "server", "user", "add", "bench", "--role", "agent",
                 "--password-stdin"],
                input=b"bench-password", cwd=ROOT, env=env, check=True, capture_output=True,
            )
            server = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "server", "serve", "--demo", "--port", str(port)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            try:
                await asyncio.to_thread(_wait_health, url, server)
                async with aiohttp.ClientSession() as http:
                    row = await run_calls(url, calls, rounds, http)
            finally:
                server.terminate()
                await asyncio.to_thread(server.wait, 30)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", default="1,4,10,16,24", help="comma-separated concurrent call counts")
    parser.add_argument("--rounds", type=int, default=2, help="times each customer says every line")
    args = parser.parse_args(argv)
    return asyncio.run(main_async([int(c) for c in args.calls.split(",")], args.rounds))


if __name__ == "__main__":
    main()
