"""Agent assist through the real call path: speech → transcripts → suggestions → summary.

Demo customers call with TTS-made lines as their microphone; the agent's data channel
must carry suggestions grounded in their real records and the knowledge base, and the
customer's must never carry agent-only events.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from server.qa import Participant, encode_wav_to_opus
from tests.conftest import Running, make_settings, serving
from tests.media.speech import fixture

pytestmark = pytest.mark.slow

AGENT_ONLY = {"ai_suggestion", "customer_context", "summary", "suggestion_feedback"}
MARIA = "+12025550101"  # demo: order 78901, headphones, delivered
PRIYA = "+12025550103"  # demo: laptop under warranty


@pytest.fixture
async def run(tmp_path):
    settings = make_settings(
        tmp_path / "data",
        CALLASSIST_STT_ENGINE="local",
        CALLASSIST_ASSIST_ENGINE="local",
        CALLASSIST_DEMO="true",
    )
    async with serving(settings) as running:
        yield running


async def start_call(run: Running, phone: str, agent_token: str) -> tuple[str, str, Participant, Participant]:
    cust = await run.customer("Caller", phone=phone)
    call_id = await run.new_call(cust["token"])
    customer = run.participant(cust["token"], "customer")
    await customer.connect(call_id)
    await run.api.call("POST", f"/api/calls/{call_id}/accept", agent_token)
    agent = run.participant(agent_token, "agent")
    await agent.connect(call_id)
    # A phone number is a claim: the assistant's first suggestion is to verify the caller,
    # and the agent does (POST /verify), which sends the context again, verified.
    first = await agent.wait_for(lambda e: e["type"] == "ai_suggestion" and e["done"])
    assert first["kind"] == "action" and first["text"].startswith("Verify the caller's identity")
    status, body = await run.api.call("POST", f"/api/calls/{call_id}/verify", agent_token)
    assert status == 200 and body["customer"]["verified"] is True
    await agent.wait_for(lambda e: e["type"] == "customer_context" and e["customer"]["verified"])
    return call_id, cust["token"], customer, agent


def done_suggestions(agent: Participant, after: int = 0) -> list[dict]:
    return [e for e in agent.events[after:] if e["type"] == "ai_suggestion" and e["done"]]


async def say(customer: Participant, agent: Participant, name: str) -> list[dict]:
    """Play a line as the customer; return the finished suggestions it led to."""
    mark = len(agent.events)
    customer.track.replace(encode_wav_to_opus(fixture(name).path))
    await agent.wait_for(
        lambda e: e["type"] == "ai_suggestion" and e["done"] and agent.events.index(e) >= mark,
        timeout=30,
    )
    await asyncio.sleep(1.0)  # the rest of this line's suggestions
    return done_suggestions(agent, mark)


def article_titles(suggestions: list[dict]) -> list[str]:
    return [s["title"] for sug in suggestions for s in sug["sources"] if s.get("type") == "article"]


async def test_refund_for_a_spoken_order_number(run: Running) -> None:
    agent_token = await run.agent()
    call_id, customer_token, customer, agent = await start_call(run, MARIA, agent_token)
    context = await agent.wait_for(lambda e: e["type"] == "customer_context")
    assert "78901" in [str(o["order_id"]) for o in context["orders"]]

    suggestions = await say(customer, agent, "customer_refund_request")
    texts = " ".join(s["text"] for s in suggestions)
    assert "78901" in texts
    assert any("refund" in t.lower() for t in article_titles(suggestions)), article_titles(suggestions)
    for s in suggestions:
        assert s["kind"] in ("reply", "knowledge", "action")
        assert 0 <= s["confidence"] <= 1 and s["sources"]
    # Streaming: each finished suggestion was preceded by chunks whose text grew.
    first = suggestions[0]
    chunks = [e for e in agent.events if e.get("suggestion_id") == first["suggestion_id"]]
    assert len(chunks) >= 2 and chunks[-1]["done"] and "seq" in chunks[-1]
    assert all("seq" not in c for c in chunks[:-1])
    assert all(b["text"].startswith(a["text"]) for a, b in zip(chunks, chunks[1:], strict=False))

    # Feedback is persisted and echoed with its seq.
    agent.send({"type": "suggestion_feedback", "suggestion_id": first["suggestion_id"], "action": "used"})
    echo = await agent.wait_for(lambda e: e["type"] == "suggestion_feedback")
    assert echo["action"] == "used" and echo["seq"] > first["seq"]
    admin = await run.agent("root", role="admin")
    status, stats = await run.api.call("GET", "/api/stats", admin)
    assert status == 200 and stats["calls"]["active"] == 1
    assert stats["suggestions"]["total"] == len(done_suggestions(agent)) >= 1
    assert stats["suggestions"]["by_kind"][first["kind"]]["used"] == 1

    status, _ = await run.api.call("POST", f"/api/calls/{call_id}/end", agent_token)
    assert status == 200
    summary = await agent.wait_for(lambda e: e["type"] == "summary")
    assert "78901" in summary["summary"]["text"]
    status, body = await run.api.call("GET", f"/api/calls/{call_id}/summary", agent_token)
    assert status == 200 and body["summary"] == summary["summary"]

    # The customer saw none of it, and cannot read it over REST or SSE.
    await asyncio.sleep(0.5)
    assert not [e for e in customer.events if e["type"] in AGENT_ONLY]
    assert [e for e in customer.events if e["type"] == "transcript"]
    status, body = await run.api.call("GET", f"/api/calls/{call_id}/messages", customer_token)
    assert status == 200 and {m["type"] for m in body["messages"]} == {"call_state", "transcript"}
    for path in ("summary", "events"):
        status, body = await run.api.call("GET", f"/api/calls/{call_id}/{path}", customer_token)
        assert status == 403, body

    # Maria's next call shows this one's summary in the customer context.
    _, _, _, agent2 = await start_call(run, MARIA, agent_token)
    context = await agent2.wait_for(lambda e: e["type"] == "customer_context")
    assert any(c.get("call_id") == call_id for c in context["previous_calls"]), context["previous_calls"]


async def test_warranty_claim_then_an_angry_customer(run: Running) -> None:
    agent_token = await run.agent()
    _, _, customer, agent = await start_call(run, PRIYA, agent_token)
    await agent.wait_for(lambda e: e["type"] == "customer_context")

    suggestions = await say(customer, agent, "customer_warranty")
    assert any("warranty" in t.lower() for t in article_titles(suggestions)), article_titles(suggestions)
    assert any(re.search(r"warrant", s["text"], re.I) for s in suggestions)

    suggestions = await say(customer, agent, "customer_angry")
    replies = [s for s in suggestions if s["kind"] == "reply"]
    assert replies, suggestions
    assert re.match(r"(I'm|I am) (so |truly |really )?sorry|I (completely )?understand|I apologi", replies[0]["text"]), replies[0]["text"]
    assert not [e for e in customer.events if e["type"] in AGENT_ONLY]
