"""What a node that takes a call over must get back from the call's history, beside the
media: the voice agent of a waiting call, and what the redactor of PII kept in memory.
Real node processes over a real PostgreSQL and a real Redis, the local Whisper and Piper."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from server.keys import HUB
from server.qa import Participant, customer_session, encode_wav_to_opus
from server.voice_agent import GREETING, RESUMED
from tests.cluster.conftest import Cluster
from tests.conftest import PASSWORD, make_settings, serving
from tests.media.speech import fixture
from tests.redis import RedisServer, redis_server  # noqa: F401 - fixture
from tests.sse import SseReader

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

VOICE = {
    "CALLASSIST_STT_ENGINE": "local",
    "CALLASSIST_VOICE_AGENT": "always",
}


def finals(p: Participant, speaker: str) -> list[dict[str, Any]]:
    return [
        e for e in p.events if e["type"] == "transcript" and e.get("final") and e["speaker"] == speaker
    ]


async def test_the_voice_agent_comes_back_after_a_takeover(cluster: Cluster) -> None:
    """A caller talks with the voice agent on node A; A dies (kill -9). The caller's
    reconnect lands on node B, which takes the call over: the voice agent is back at once,
    says it was cut off, remembers what the caller said before (its handover summary has
    it), and its clock goes on (no segment starts before the last one). Every node's list
    shows the voice agent on the call, before and after."""
    a, b = await cluster.start(2, **VOICE)
    agent_token = await cluster.add_user("alice")
    lists = SseReader(cluster.http, f"{b.url}/api/calls/events", agent_token)
    cust = await customer_session(cluster.http, a.url, "Ann", phone="+15550001111")
    customer = Participant(a.url, cust["token"], "customer", http=cluster.http)
    agent = Participant(b.url, agent_token, "agent", http=cluster.http)
    try:
        await lists.wait_open()
        status, body = await cluster.api(a).call("POST", "/api/calls", cust["token"], json={})
        assert status == 201, body
        call_id = body["call_id"]
        await customer.connect(call_id)
        # It greets (the caller talks over the rest of it below: no need to wait for its end).
        greeting = await customer.wait_for(
            lambda e: e["type"] == "transcript" and e["speaker"] == "voice_agent", timeout=60
        )
        assert GREETING.startswith(greeting["text"]), greeting
        await lists.wait_for(lambda e: e.get("change") == "voice_agent")
        _, listed = await cluster.api(b).call("GET", "/api/calls?state=waiting", agent_token)
        assert [(c["call_id"], c["voice_agent"]) for c in listed["calls"]] == [(call_id, True)]

        customer.track.replace(encode_wav_to_opus(fixture("customer_refund").path))
        said = await customer.wait_for(
            lambda e: e["type"] == "transcript" and e["final"] and e["speaker"] == "customer",
            timeout=60,
        )
        await asyncio.sleep(3)  # the rest of the sentence
        before = max(e["end_ms"] for e in finals(customer, "customer") + finals(customer, "voice_agent"))
        last_seq = max(e["seq"] for e in customer.events if "seq" in e)

        a.kill()
        customer.base_url = b.url
        mark = len(customer.events)
        await customer.connect(call_id, 30)
        back = await customer.wait_for(
            lambda e: (
                e["type"] == "transcript"
                and e["final"]
                and e["speaker"] == "voice_agent"
                and customer.events.index(e) >= mark
                and e["seq"] > last_seq
            ),
            timeout=60,
        )
        assert back["text"] == RESUMED
        assert back["start_ms"] >= before, (back, before)
        state = [
            e for e in customer.events[mark:]
            if e["type"] == "call_state" and e.get("seq", 0) > last_seq
        ]
        assert [(e["state"], e.get("voice_agent")) for e in state] == [("waiting", True)]
        await lists.wait_for(lambda e: e.get("change") == "voice_agent" and e["seq"] > last_seq)
        assert [e["change"] for e in lists.events if e["type"] == "call_update"] == [
            "created",
            "voice_agent",
            "voice_agent",
        ]
        _, listed = await cluster.api(b).call("GET", "/api/calls?state=waiting", agent_token)
        assert [(c["call_id"], c["voice_agent"]) for c in listed["calls"]] == [(call_id, True)]

        # A person accepts: the handover summary has what the caller said on node A.
        status, _ = await cluster.api(b).call("POST", f"/api/calls/{call_id}/accept", agent_token)
        assert status == 200
        await agent.connect(call_id)
        handover = await agent.wait_for(lambda e: e["type"] == "handover", timeout=20)
        assert said["text"] in handover["summary"]["asked"], (said, handover)
        seqs = [e["seq"] for e in agent.events if "seq" in e]
        assert seqs == list(range(1, len(seqs) + 1))
    except BaseException:
        print(cluster.logs())  # shown with the failure
        raise
    finally:
        await lists.close()
        await customer.close()
        await agent.close()


async def test_a_card_number_read_across_a_move_is_redacted(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer  # noqa: F811
) -> None:
    """A call moves from node A to node B in the middle of a card number: B's redactor starts
    from the call's latest transcripts. Two calls, the second half of each said on B:
    digits that only the second half shows to be a card (the first half is revised too),
    and digits that are card digits because the agent asked for the number on A. The
    speech-to-text's finals are handed over as media/transcriber.py does (in-process nodes,
    so that the words are exact)."""
    env = {
        "DATABASE_URL": postgres_url,
        "CALLASSIST_REDIS_URL": redis_server.url,
        "CALLASSIST_NODE_TTL_S": "3",
    }
    said_on_a = {
        "split": [("customer", "I want to pay for the replacement."), ("customer", "It's 4000 0566")],
        "asked": [("customer", "I want to pay for the replacement."), ("agent", "Sure. What's the card number?")],
    }
    said_on_b = {"split": [("customer", "5566 5556. Thanks.")], "asked": [("customer", "It's 4000 0566")]}
    calls: dict[str, str] = {}
    async with serving(make_settings(tmp_path / "a", **env)) as node_a:
        agent = await node_a.agent()
        for case, said in said_on_a.items():
            cust = await node_a.customer(case.title())
            call_id = calls[case] = await node_a.new_call(cust["token"])
            status, _ = await node_a.api.call("POST", f"/api/calls/{call_id}/accept", agent)
            assert status == 200
            await tell(node_a.server.app[HUB].get_live(call_id), said, 0)
    # Node A left the cluster (its leases released; a dead node's lapse the same way).
    async with serving(make_settings(tmp_path / "b", **env)) as node_b:
        status, body = await node_b.api.call(
            "POST", "/api/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        agent = body["token"]
        messages = {}
        for case, said in said_on_b.items():
            session = await node_b.server.app[HUB].session(calls[case])  # B holds it now
            await tell(session, said, len(said_on_a[case]))
            status, body = await node_b.api.call("GET", f"/api/calls/{calls[case]}/messages", agent)
            assert status == 200
            messages[case] = [m["text"] for m in body["messages"] if m["type"] == "transcript"]
            status, _ = await node_b.api.call("POST", f"/api/calls/{calls[case]}/end", agent)
            assert status == 200

    assert messages["split"] == [
        "I want to pay for the replacement.",
        "It's [card number]",  # rewritten where it is stored
        "[card ending 5556]. Thanks.",
        "It's [card number]",  # the revision, published on B
    ]
    assert messages["asked"] == [
        "I want to pay for the replacement.",
        "Sure. What's the card number?",
        "It's [card number]",
    ]


async def tell(session: Any, said: list[tuple[str, str]], first: int) -> None:
    """Final transcripts into the call's session, as the transcriber hands them over."""
    assert session is not None
    for n, (speaker, text) in enumerate(said, first):
        await session._emit_transcript(
            SimpleNamespace(
                speaker=speaker, segment_id=f"{speaker}-{n}", text=text, final=True,
                start_ms=n * 3000, end_ms=n * 3000 + 2000,
            )
        )
