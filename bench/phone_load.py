"""Load generator for the phone benchmark: N Twilio callers, each with a browser agent.

Runs in its own process. Every call: a simulated Twilio caller (server/qa_phone.py) says a
fixture in a loop as 20 ms μ-law messages in real time; an aiortc agent accepts the call and
talks back with another fixture in a loop. Over the measuring window it counts, per caller,
the `media` messages the server sent (its outbound pacing) and their gaps. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import aiohttp

from server.qa import Participant, encode_wav_to_opus, login
from server.qa_phone import TwilioCaller, wav_to_mulaw_frames
from signaling.ice import restrict_host_addresses


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(url: str, token: str, calls: int, seconds: float, caller_wav: str, agent_wav: str) -> dict:
    frames = wav_to_mulaw_frames(caller_wav, seconds_of_silence=0.5)
    packets = encode_wav_to_opus(agent_wav, seconds_of_silence=0.5)
    connector = aiohttp.TCPConnector(limit=100)
    callers: list[TwilioCaller] = []
    agents: list[Participant] = []
    async with aiohttp.ClientSession(connector=connector) as http:
        agent_token = await login(http, url, "bench", "bench-password")
        t0 = time.monotonic()
        for i in range(calls):
            caller = TwilioCaller(url, token, caller=f"+1555{i:07d}", http=http)
            await caller.dial()
            caller.loop_clip = True
            caller.play(frames)
            agent = Participant(url, agent_token, "agent", packets=packets, decode=False, http=http)
            agent.track._loop_audio = True
            await agent.request("POST", f"/api/calls/{caller.call_id}/accept")
            await agent.connect(caller.call_id)
            callers.append(caller)
            agents.append(agent)
        setup_s = time.monotonic() - t0
        await asyncio.sleep(2.0)
        async with http.get(f"{url}/bench/lag") as r:
            await r.json()
        marks = [len(c.heard.arrivals) for c in callers]
        agent_before = [a.received.packets for a in agents]
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        print("WINDOW_START", flush=True)
        w0 = time.monotonic()
        await asyncio.sleep(seconds)
        window = time.monotonic() - w0
        print("WINDOW_END", flush=True)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        async with http.get(f"{url}/bench/lag") as r:
            lag = await r.json()
        gaps: list[float] = []
        rates = []
        for caller, mark in zip(callers, marks, strict=True):
            arrivals = caller.heard.arrivals[mark:]
            rates.append(len(arrivals) / window)
            gaps += [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:], strict=False)]
        agent_rates = [(a.received.packets - b) / window for a, b in zip(agents, agent_before, strict=True)]
        for caller in callers:
            await caller.stop()
        for agent in agents:
            await agent.close()
    return {
        "calls": calls,
        "setup_s": round(setup_s, 2),
        "window_s": round(window, 2),
        "out_msgs_per_s": round(sum(rates) / len(rates), 2),
        "out_msgs_per_s_min": round(min(rates), 2),
        "gap_p50_ms": round(pct(gaps, 0.5), 1),
        "gap_p99_ms": round(pct(gaps, 0.99), 1),
        "gap_max_ms": round(max(gaps), 1) if gaps else None,
        "agent_pkts_per_s": round(sum(agent_rates) / len(agent_rates), 2),
        "loop_lag_ms": lag,
        "loadgen_cores": round(
            (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / window, 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--caller-wav", required=True)
    parser.add_argument("--agent-wav", required=True)
    args = parser.parse_args()
    restrict_host_addresses(["127.0.0.1"])
    result = asyncio.run(
        run(args.url, args.auth_token, args.calls, args.seconds, args.caller_wav, args.agent_wav)
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
