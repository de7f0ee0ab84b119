"""Voice agent benchmark (issue 11): how soon it answers, how soon it yields, how many at once.

A real server process (`--demo`, local Whisper, local suggestion engine, Piper voice) with
CALLASSIST_VOICE_AGENT=always, and in this process aiortc callers (no human agent). Each
caller waits for the greeting to end, then, line after line, says a customer fixture and:

- reply latency: the end of its speech → the first voice-agent audio packet at the caller;
- backchannel: 1 s into the reply it says "Mm-hmm.": the voice agent may pause (the first
  gap of GAP_S in its audio after the "Mm-hmm." starts: `backchannel_pause_*` is when,
  `backchannel_silence_*` how long) and must go on (audio flowing again 2.2 s after it
  began: `backchannel_kept`; `_resumed` of them had paused);
- short words: 2.2 s after that it talks over the reply with "Wait, sorry, that is not
  what I asked about." (short words, no run of speech long enough to interrupt on its
  own); `short_words_p*`: the start of that speech → the last packet of the reply at the
  caller (the packet before the first gap of GAP_S; it pauses there);
  `short_words_confirm_p*`: the start of that speech → the reply's final (cut) transcript
  at the caller; `short_words_resumed`: the audio came back before that transcript (it took
  the interruption for a backchannel, or a stall of the machine made a gap); `_no_stop`: no
  gap within 3 s; `_over`: the reply had ended before;
- barge-in: 1 s into its answer to that, it says "Can I please talk to a real person
  instead?": the same figures as `barge_in_*`;
- then it waits until that is transcribed, answered ("Of course. You're in the queue ...")
  and its audio quiet for 1.5 s.

The server's log gives `caller_audio_late_*`: at each pause and interruption, how late the
caller's audio that decided it reached the voice agent (server/voice_agent.py `_InputClock`):
a late decision on late audio (busy audio thread, starved loop) or a slow detector.

Run for 1 call, then several callers talking at once, to find how many concurrent voice-agent
calls keep the reply p95 under 1.5 s. The machine's load (`uptime`) is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.latency import SPEECH, pct, speech_bounds_s
from bench.relay import ROOT, _free_port, _wait_health
from server.qa import Participant, customer_session, encode_wav_to_opus
from signaling.ice import restrict_host_addresses

VOICE = ROOT / "tests" / "fixtures" / "voice_agent"
LINES = [
    "customer_refund.wav",
    "customer_warranty.wav",
    "customer_delivery.wav",
    "customer_double_charge.wav",
    "customer_cancel.wav",
    "customer_angry.wav",
]
GAP_S = 0.2
"""No packet for this long: the voice agent's audio has stopped at the caller."""
LOG = str(Path(tempfile.gettempdir()) / "callassist-bench-voice-agent-{calls}-calls.log")
"""The server's log of each step (its pause/stop lines give `caller_audio_late_*`)."""
_LATE = re.compile(r"voice agent (?:paused|stopped \(barge_in).*caller audio (\d+) ms late")
DEMO_PHONES = ["+12025550101", "+12025550102", "+12025550103", "+12025550104"]


class Arrivals:
    """A tap on the caller's received audio: when each packet arrived."""

    def __init__(self) -> None:
        self.times: list[float] = []

    @property
    def packets(self) -> int:
        return len(self.times)

    def __call__(self, payload: bytes) -> None:
        self.times.append(time.monotonic())

    def first_after(self, t: float) -> float | None:
        return next((x for x in self.times if x >= t), None)

    def gap_after(self, t: float, now: float) -> tuple[float, float | None] | None:
        """The first gap of GAP_S in the audio after `t`, as seen by `now`: (the last
        packet before it, the first packet after it or None while it lasts)."""
        after = [x for x in self.times if t - GAP_S <= x <= now]
        for a, b in zip(after, [*after[1:], None], strict=False):
            if a < t:
                continue
            if b is None:
                return (a, None) if now - a >= GAP_S else None
            if b - a >= GAP_S:
                return a, b
        return None

    def stopped_after(self, t: float, now: float) -> float | None:
        """The last packet before the first gap of GAP_S after `t` (the audio may have
        stopped for good: a gap that lasts until `now` counts)."""
        gap = self.gap_after(t, now)
        return gap[0] if gap is not None else None


async def wait_final(p: Participant, start: int, timeout: float) -> bool:
    try:
        await p.wait_for(
            lambda e: e["type"] == "transcript"
            and e["final"]
            and e["speaker"] == "voice_agent"
            and p.events.index(e) >= start,
            timeout=timeout,
        )
        return True
    except TimeoutError:
        return False


async def settle(
    p: Participant, arrivals: Arrivals, last_word: str, since: int, quiet_s: float = 1.5,
    timeout: float = 20,
) -> None:
    """Until the caller's last clip (said after event `since`) is transcribed up to its
    `last_word` (seconds late when speech-to-text is busy, maybe in two finals), a reply
    begun after that is over, and the voice agent's audio has been quiet for `quiet_s`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        spoken = [e for e in p.events[since:] if e["type"] == "transcript"]
        ends = [
            i for i, e in enumerate(spoken)
            if e["speaker"] == "customer" and e["final"] and last_word in e["text"].lower()
        ]
        if not ends:
            continue
        before = {e["segment_id"] for e in spoken[: ends[0]]}
        answered = any(
            e["speaker"] == "voice_agent" and e["final"] and e["segment_id"] not in before
            for e in spoken[ends[0] :]
        )
        last = arrivals.times[-1] if arrivals.times else 0.0
        if answered and time.monotonic() - last >= quiet_s:
            return


async def play(p: Participant, packets: list[bytes]) -> float:
    """Start a clip on the caller's microphone; when its first packet went out."""
    p.track.replace(packets)
    while p.track.clip_started_at is None or p.track._index == 0:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    return p.track.clip_started_at


def trace(enabled: bool, call_id: str, what: str, at: float, **times: float | str | None) -> None:
    """One line on stderr: wall clock (as in the server's log) when `what` began, and the
    monotonic `times` as ms after it."""
    if enabled:
        wall = time.strftime("%H:%M:%S", time.localtime(time.time() - (time.monotonic() - at)))
        shown = " ".join(
            f"{k}=+{round((v - at) * 1000)}" if isinstance(v, float) else f"{k}={v}"
            for k, v in times.items()
        )
        print(f"{wall} {call_id} {what} {shown}", file=sys.stderr, flush=True)


async def run_calls(
    url: str, calls: int, rounds: int, http: aiohttp.ClientSession, *, verbose: bool = False
) -> dict:
    lines = [(name, encode_wav_to_opus(SPEECH / name), *speech_bounds_s(SPEECH / name)) for name in LINES]
    mmhmm_path = VOICE / "backchannel_mmhmm.wav"
    mmhmm = encode_wav_to_opus(mmhmm_path)
    mmhmm_start_s = speech_bounds_s(mmhmm_path)[0]
    interrupt_path = VOICE / "interrupt_agent.wav"
    interrupt = encode_wav_to_opus(interrupt_path)
    interrupt_start_s = speech_bounds_s(interrupt_path)[0]
    short_path = VOICE / "interrupt_wait.wav"
    short = encode_wav_to_opus(short_path)
    short_start_s = speech_bounds_s(short_path)[0]
    last_words = {
        entry["file"]: (entry["text"].lower().strip(".?!").split() or [""])[-1]
        for folder in (SPEECH, VOICE)
        for entry in json.loads((folder / "fixtures.json").read_text())["fixtures"]
    }
    samples: dict[str, list[float]] = {
        k: []
        for k in ("reply", "greeting", "bc_pause", "bc_silence", "barge_in", "barge_in_confirm",
                  "short_words", "short_words_confirm")
    }
    counts = {"lines": 0, "no_reply": 0, "early": 0, "backchannel_kept": 0,
              "backchannel_resumed": 0, "backchannel_stopped": 0}
    for kind in ("barge_in", "short_words"):
        counts.update({f"{kind}_over": 0, f"{kind}_no_stop": 0, f"{kind}_not_cut": 0, f"{kind}_resumed": 0})

    async def interrupt_it(
        p: Participant, arrivals: Arrivals, packets: list[bytes], onset_s: float, kind: str
    ) -> int:
        """Talk over the reply now playing: when its audio stopped at the caller, when its
        cut transcript came. Returns the number of events before it."""
        mark = len(p.events)
        talking = await play(p, packets) + onset_s
        await asyncio.sleep(3.0)
        now = time.monotonic()
        gap = arrivals.gap_after(talking, now)
        cut = next(
            (
                at
                for e, at in zip(p.events[mark:], p.received_at[mark:], strict=True)
                if e["type"] == "transcript" and e["final"] and e["speaker"] == "voice_agent"
            ),
            None,
        )
        trace(verbose, p.call_id or "", kind, talking, stopped=gap[0] if gap else None,
              resumed=gap[1] if gap else None, cut=cut)
        if not [t for t in arrivals.times if talking - GAP_S <= t < talking]:
            counts[f"{kind}_over"] += 1  # the reply had ended
        elif gap is None:
            counts[f"{kind}_no_stop"] += 1
        else:
            samples[kind].append(max(0.0, gap[0] - talking))
            if cut is None:
                counts[f"{kind}_not_cut"] += 1
            else:
                samples[f"{kind}_confirm"].append(max(0.0, cut - talking))
                if gap[1] is not None and gap[1] < cut:
                    counts[f"{kind}_resumed"] += 1  # it took it for a backchannel
        return mark

    async def caller(i: int) -> None:
        rng = random.Random(i)
        phone = DEMO_PHONES[i % len(DEMO_PHONES)] if i < len(DEMO_PHONES) else f"+1555{i:07d}"
        cust = await customer_session(http, url, "Bench caller", phone=phone)
        p = Participant(url, cust["token"], "customer", decode=False, http=http)
        arrivals = Arrivals()
        p.received = arrivals  # type: ignore[assignment]
        created = await p.request("POST", "/api/calls", json={"reason": "bench"})
        await asyncio.sleep(rng.uniform(0, 1.0))
        connected = time.monotonic()
        await p.connect(created["call_id"])
        if not await wait_final(p, 0, 60):
            raise RuntimeError("no greeting")
        first = arrivals.first_after(connected)
        if first is not None:
            samples["greeting"].append(first - connected)
        # Its final comes once the greeting is released, a moment before it is all heard.
        while time.monotonic() - arrivals.times[-1] < 1.0:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        try:
            for _ in range(rounds):
                for _name, packets, _start_s, end_s in rng.sample(lines, len(lines)):
                    counts["lines"] += 1
                    mark, last_word = len(p.events), last_words[_name]
                    started = await play(p, packets)
                    spoken = started + end_s
                    await asyncio.sleep(len(packets) * 0.02)
                    deadline = time.monotonic() + 10
                    while arrivals.first_after(started) is None and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                    reply_at = arrivals.first_after(started)
                    trace(verbose, created["call_id"], f"line {_name}", started, spoken=spoken,
                          reply=reply_at)
                    if reply_at is None:
                        counts["no_reply"] += 1
                        continue
                    if reply_at < spoken:
                        counts["early"] += 1  # it answered a pause inside the line
                    else:
                        samples["reply"].append(reply_at - spoken)
                    await asyncio.sleep(max(0.0, reply_at + 1.0 - time.monotonic()))
                    listening = await play(p, mmhmm) + mmhmm_start_s
                    await asyncio.sleep(2.2)
                    now = time.monotonic()
                    if arrivals.times and now - arrivals.times[-1] < GAP_S:
                        counts["backchannel_kept"] += 1
                        gap = arrivals.gap_after(listening, now)
                        trace(verbose, created["call_id"], "backchannel", listening,
                              stopped=gap[0] if gap else None, resumed=gap[1] if gap else None)
                        if gap is not None and gap[1] is not None:
                            counts["backchannel_resumed"] += 1
                            samples["bc_pause"].append(max(0.0, gap[0] - listening))
                            samples["bc_silence"].append(gap[1] - gap[0])
                        said = {e.get("segment_id") for e in p.events}
                        mark = await interrupt_it(p, arrivals, short, short_start_s, "short_words")
                        last_word = last_words[short_path.name]
                        # Its answer to that: 1 s in, the caller talks over it.
                        try:
                            await p.wait_for(
                                lambda e, said=said: e["type"] == "transcript"  # type: ignore[misc]
                                and e["speaker"] == "voice_agent" and e["segment_id"] not in said,
                                timeout=15,
                            )
                        except TimeoutError:
                            counts["barge_in_over"] += 1
                        else:
                            await asyncio.sleep(1.0)
                            mark = await interrupt_it(p, arrivals, interrupt, interrupt_start_s, "barge_in")
                            last_word = last_words[interrupt_path.name]
                    else:
                        trace(verbose, created["call_id"], "backchannel-stopped", listening,
                              last=arrivals.times[-1] if arrivals.times else None)
                        counts["backchannel_stopped"] += 1  # or the reply was that short
                    # Its answer to the last thing the caller said, before the next line (an
                    # answer still going would be taken for a reply to it).
                    await settle(p, arrivals, last_word, mark)
                    await asyncio.sleep(rng.uniform(0.3, 1.0))
        finally:
            await p.close()

    await asyncio.gather(*(caller(i) for i in range(calls)))
    return {
        "calls": calls,
        **counts,
        "greeting_after_connect_p50_ms": ms(pct(samples["greeting"], 0.5)),
        "reply_p50_ms": ms(pct(samples["reply"], 0.5)),
        "reply_p95_ms": ms(pct(samples["reply"], 0.95)),
        **{
            f"{k}_{name}_ms": ms(pct(samples[k], q))
            for k in ("barge_in", "barge_in_confirm", "short_words", "short_words_confirm")
            for name, q in (("p50", 0.5), ("p95", 0.95))
        },
        "backchannel_pause_p50_ms": ms(pct(samples["bc_pause"], 0.5)),
        "backchannel_silence_p50_ms": ms(pct(samples["bc_silence"], 0.5)),
        "backchannel_silence_p95_ms": ms(pct(samples["bc_silence"], 0.95)),
        "load": os.getloadavg()[0],
    }


def ms(seconds: float) -> int | None:
    return None if math.isnan(seconds) else round(seconds * 1000)


def caller_audio_late(log: Path) -> dict:
    """How late the caller's audio reached the voice agent at its pauses and interruptions."""
    late = [float(m.group(1)) for m in _LATE.finditer(log.read_text(errors="replace"))]
    return {
        "decisions": len(late),
        "caller_audio_late_p50_ms": ms(pct(late, 0.5) / 1000),
        "caller_audio_late_p95_ms": ms(pct(late, 0.95) / 1000),
        "caller_audio_late_max_ms": ms(max(late, default=math.nan) / 1000),
    }


async def main_async(steps: list[int], rounds: int, verbose: bool = False) -> list[dict]:
    restrict_host_addresses(["127.0.0.1"])
    rows = []
    for calls in steps:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(LOG.format(calls=calls))
        log = await asyncio.to_thread(log_path.open, "wb")
        with tempfile.TemporaryDirectory() as data, log:
            env = {
                **os.environ,
                "CALLASSIST_ICE_HOSTS": "127.0.0.1",
                "CALLASSIST_DATA_DIR": data,
                "CALLASSIST_VOICE_AGENT": "always",
            }
            server = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "server", "serve", "--demo", "--port", str(port)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
            )
            try:
                await asyncio.to_thread(_wait_health, url, server)
                async with aiohttp.ClientSession() as http:
                    row = await run_calls(url, calls, rounds, http, verbose=verbose)
            finally:
                server.terminate()
                await asyncio.to_thread(server.wait, 30)
        row.update(caller_audio_late(log_path))
        uptime = await asyncio.to_thread(subprocess.run, ["uptime"], capture_output=True, text=True)
        row["uptime"] = uptime.stdout.strip()
        rows.append(row)
        print(json.dumps(row), flush=True)
    ok = [r["calls"] for r in rows if r["reply_p95_ms"] is not None and r["reply_p95_ms"] < 1500]
    print(json.dumps({"max_calls_with_reply_p95_under_1500_ms": max(ok) if ok else 0}), flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", default="1,3,6", help="comma-separated concurrent call counts")
    parser.add_argument("--rounds", type=int, default=1, help="times each caller says every line")
    parser.add_argument(
        "--verbose", action="store_true", help="each backchannel and interruption on stderr"
    )
    args = parser.parse_args(argv)
    steps = [int(c) for c in args.calls.split(",")]
    return asyncio.run(main_async(steps, args.rounds, args.verbose))


if __name__ == "__main__":
    main()
