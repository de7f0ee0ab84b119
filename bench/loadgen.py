"""Load generator: N two-party calls against a server, in its own process.

Each party sends a WAV encoded to Opus once (looped, paced in real time) and counts the
packets it receives without decoding them. Prints one JSON line of results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import aiohttp

from server.qa import Participant, customer_session, encode_wav_to_opus, login
from signaling.ice import restrict_host_addresses


async def run(url: str, calls: int, seconds: float, wav: str) -> dict:
    packets = encode_wav_to_opus(wav)
    connector = aiohttp.TCPConnector(limit=50)
    parties: list[Participant] = []
    async with aiohttp.ClientSession(connector=connector) as http:
        token = await login(http, url, "bench", "bench-password")
        t0 = time.monotonic()
        for i in range(calls):
            cust = await customer_session(http, url, f"Load {i}", phone=f"+1555{int(time.time()) % 100000:05d}{i:03d}")
            customer = Participant(url, cust["token"], "customer", packets=packets, decode=False, http=http)
            customer.track._loop_audio = True
            call = await customer.request("POST", "/api/calls", json={"reason": "load"})
            agent = Participant(url, token, "agent", packets=packets, decode=False, http=http)
            agent.track._loop_audio = True
            await agent.request("POST", f"/api/calls/{call['call_id']}/accept")
            await customer.connect(call["call_id"])
            await agent.connect(call["call_id"])
            parties += [customer, agent]
        setup_s = time.monotonic() - t0
        await asyncio.sleep(2.0)  # let jitter buffers settle
        async with http.get(f"{url}/bench/lag") as r:
            await r.json()
        # Each party hears its partner: customer i ↔ agent i (adjacent in `parties`).
        partners = [parties[i ^ 1] for i in range(len(parties))]
        before = [p.received.packets for p in parties]
        sent_before = [p.track._sent for p in partners]
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        print("WINDOW_START", flush=True)
        w0 = time.monotonic()
        await asyncio.sleep(seconds)
        window = time.monotonic() - w0
        print("WINDOW_END", flush=True)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        after = [p.received.packets for p in parties]
        sent_after = [p.track._sent for p in partners]
        async with http.get(f"{url}/bench/lag") as r:
            lag = await r.json()
        # Packets the partners sent in the window; the ones in flight at its edges even out.
        expected = sum(a - b for a, b in zip(sent_after, sent_before, strict=True))
        received = sum(a - b for a, b in zip(after, before, strict=True))
        for p in parties:
            await p.close()
    loadgen_cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / window
    return {
        "calls": calls,
        "setup_s": round(setup_s, 2),
        "window_s": round(window, 2),
        "delivered": received / expected,
        "loop_lag_ms": lag,
        "loadgen_cores": round(loadgen_cpu, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--wav", required=True)
    args = parser.parse_args()
    restrict_host_addresses(["127.0.0.1"])
    print(json.dumps(asyncio.run(run(args.url, args.calls, args.seconds, args.wav))), flush=True)


if __name__ == "__main__":
    main()
