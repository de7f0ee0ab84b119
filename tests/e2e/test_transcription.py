"""Live transcription through the whole WebRTC path with the local Whisper model.

Speech fixtures play as each side's microphone in turn; both peers receive the transcripts
of both speakers; word error rate is measured per speaker against the reference texts.
"""

from __future__ import annotations

import asyncio

import pytest

from media.wer import wer as word_error_rate
from server.qa import Participant, encode_wav_to_opus
from tests.conftest import make_settings, serving
from tests.media.speech import fixture

CONVERSATION = [
    "agent_greeting",
    "customer_refund",
    "agent_lookup",
    "customer_warranty",
    "agent_verify",
    "customer_angry",
    "agent_escalate",
    "customer_cancel",
]

pytestmark = pytest.mark.slow


def finals(p: Participant, speaker: str | None = None) -> list[dict]:
    return [
        e for e in p.events
        if e["type"] == "transcript" and e["final"] and speaker in (None, e["speaker"])
    ]


@pytest.fixture
async def call(tmp_path):
    settings = make_settings(
        tmp_path / "data", CALLASSIST_STT_ENGINE="local", CALLASSIST_ASSIST_ENGINE="off"
    )
    async with serving(settings) as run:
        agent_token = await run.agent()
        cust = await run.customer("Ann", phone="+15550001111")
        call_id = await run.new_call(cust["token"])
        await run.api.call("POST", f"/api/calls/{call_id}/accept", agent_token)
        customer = run.participant(cust["token"], "customer")
        agent = run.participant(agent_token, "agent")
        await customer.connect(call_id)
        await agent.connect(call_id)
        yield run, call_id, customer, agent, agent_token


async def play_and_wait(speaker: Participant, listener: Participant, name: str) -> None:
    """Play one fixture and wait for its final transcript at the *other* peer.

    (Latency is measured fairly, from the end of the speech itself, by bench/latency.py.)
    """
    packets = encode_wav_to_opus(fixture(name).path)
    before = len(finals(listener, speaker.role))
    speaker.track.replace(packets)
    await listener.wait_for(
        lambda e: e["type"] == "transcript" and e["final"] and e["speaker"] == speaker.role
        and len(finals(listener, speaker.role)) > before,
        timeout=len(packets) * 0.02 + 8,
    )
    # A comma pause may split a line in two segments: let the rest arrive before going on.
    await asyncio.sleep(1.5)


async def test_conversation_is_transcribed_per_speaker(call) -> None:
    run, call_id, customer, agent, agent_token = call
    # Silence and steady noise first: nothing is transcribed.
    for name in ("silence", "noise"):
        packets = encode_wav_to_opus(fixture(name).path)
        customer.track.replace(packets)
        await asyncio.sleep(len(packets) * 0.02 + 1.0)
    assert not [e for e in agent.events if e["type"] == "transcript"]

    for name in CONVERSATION:
        speaker = customer if name.startswith("customer") else agent
        listener = agent if speaker is customer else customer
        await play_and_wait(speaker, listener, name)

    for role in ("customer", "agent"):
        refs = [fixture(n).text for n in CONVERSATION if n.startswith(role)]
        hyp = " ".join(e["text"] for e in finals(agent, role))
        wer = word_error_rate(" ".join(refs), hyp)
        print(f"{role}: WER {wer:.1%}\n  ref: {' '.join(refs)}\n  hyp: {hyp}")
        assert wer <= 0.15, (role, wer, hyp)
        # Segments are sane: ordered, non-overlapping, within the call's clock.
        segs = finals(agent, role)
        for seg in segs:
            assert 0 <= seg["start_ms"] < seg["end_ms"]
        for a, b in zip(segs, segs[1:], strict=False):
            assert a["end_ms"] <= b["start_ms"]
    # Both participants got the same final transcripts of both speakers.
    strip = lambda e: {k: e[k] for k in ("seq", "speaker", "segment_id", "text", "start_ms", "end_ms")}  # noqa: E731
    assert [strip(e) for e in finals(agent)] == [strip(e) for e in finals(customer)]
    # Interim transcripts came first for longer lines, each settled by its final.
    interims = [e for e in agent.events if e["type"] == "transcript" and not e["final"]]
    final_ids = {e["segment_id"] for e in finals(agent)}
    assert interims and all("seq" not in e for e in interims)
    assert sum(e["segment_id"] in final_ids for e in interims) >= len(interims) // 2

    # Finals are persisted; /messages restores them for both roles, interims are not there.
    status, body = await run.api.call("GET", f"/api/calls/{call_id}/messages", agent_token)
    stored = [m for m in body["messages"] if m["type"] == "transcript"]
    assert stored == finals(agent)
