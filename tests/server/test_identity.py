"""Caller identity (issue 9, item 1): a customer token is one session; knowing a customer's
phone or email gives nobody else's call, transcript, record or connection."""

from __future__ import annotations

from typing import Any

from tests.conftest import Running, dominant_frequency, make_settings, serving, wait_for_audio
from tests.server.test_auth import assert_error

PHONE = "+15550001111"


async def _victim_call(running: Running, tone_packets: Any) -> tuple[dict[str, Any], str, str, Any, Any]:
    """A live call: the victim (phone PHONE, 440 Hz) talking with agent alice (880 Hz)."""
    victim = await running.customer("Ann", phone=PHONE)
    call_id = await running.new_call(victim["token"], "my order")
    agent_token = await running.agent("alice")
    status, _ = await running.api.call("POST", f"/api/calls/{call_id}/accept", agent_token)
    assert status == 200
    customer = running.participant(victim["token"], "customer", packets=tone_packets(440, 20))
    await customer.connect(call_id)
    agent = running.participant(agent_token, "agent", packets=tone_packets(880, 20))
    await agent.connect(call_id)
    await wait_for_audio(agent, 50)
    return victim, call_id, agent_token, customer, agent


async def test_a_second_session_with_the_same_phone_gets_nothing_of_the_first(
    running: Running, tone_packets: Any
) -> None:
    # The victim's record is a CRM customer with private fields.
    victim, call_id, agent_token, customer, agent = await _victim_call(running, tone_packets)
    attacker = await running.customer("Mallory", phone=PHONE)
    assert attacker["customer_id"] != victim["customer_id"]
    token = attacker["token"]

    # Its first call is its own: 201, never a 409 naming the victim's call.
    status, body = await running.api.call("POST", "/api/calls", token, json={"reason": "x"})
    assert status == 201 and body["call_id"] != call_id
    own = body["call_id"]
    status, body = await running.api.call("POST", "/api/calls", token, json={})
    assert status == 409 and body["error"]["call_id"] == own and call_id not in str(body)

    # Nothing of the victim's call: not the call, its messages, its connection or its end.
    for method, path, kwargs in (
        ("GET", f"/api/calls/{call_id}", {}),
        ("GET", f"/api/calls/{call_id}/messages", {}),
        ("POST", f"/api/calls/{call_id}/offer", {"json": {"type": "offer", "sdp": "v=0"}}),
        ("POST", f"/api/calls/{call_id}/end", {}),
    ):
        status, body = await running.api.call(method, path, token, **kwargs)
        assert_error(status, body, 403)

    # The victim's connection is untouched: the agent still hears the victim.
    heard_before = agent.received.packets
    await wait_for_audio(agent, heard_before + 50)
    assert abs(dominant_frequency(agent.received.pcm(since_s=1.0)) - 440) < 10
    status, body = await running.api.call("GET", f"/api/calls/{call_id}", agent_token)
    assert status == 200 and body["state"] == "active"

    # A customer sees only what it typed, never the linked record's fields.
    status, body = await running.api.call("GET", f"/api/calls/{own}", token)
    assert status == 200
    assert body["customer"] == {"customer_id": attacker["customer_id"], "name": "Mallory", "phone": PHONE}
    assert body["agent"] is None and body["state"] == "waiting"
    status, body = await running.api.call("GET", f"/api/calls/{call_id}", victim["token"])
    assert status == 200 and "tier" not in body["customer"] and body["customer"]["name"] == "Ann"


async def test_agent_sees_the_link_unverified_until_it_verifies(
    running: Running, tone_packets: Any
) -> None:
    victim, call_id, agent_token, customer, agent = await _victim_call(running, tone_packets)
    status, body = await running.api.call("GET", f"/api/calls/{call_id}", agent_token)
    assert status == 200
    assert body["customer"]["verified"] is False
    assert body["customer"]["claimed"] == {"name": "Ann", "phone": PHONE}
    linked = body["customer"]["customer_id"]
    assert linked.startswith("cus_") and body["customer"]["tier"] == "standard"

    # Only its agent verifies: not the customer, not another agent.
    status, body = await running.api.call("POST", f"/api/calls/{call_id}/verify", victim["token"])
    assert_error(status, body, 403)
    bob = await running.agent("bob")
    status, body = await running.api.call("POST", f"/api/calls/{call_id}/verify", bob)
    assert_error(status, body, 403)
    status, body = await running.api.call(
        "POST", f"/api/calls/{call_id}/verify", agent_token, json={"customer_id": "cus_nobody"}
    )
    assert_error(status, body, 404)
    assert body["error"]["code"] == "customer_not_found"

    status, body = await running.api.call("POST", f"/api/calls/{call_id}/verify", agent_token)
    assert status == 200 and body["customer"]["verified"] is True
    assert body["customer"]["customer_id"] == linked
    _, listed = await running.api.call("GET", "/api/calls?state=active", agent_token)
    assert [c["customer"]["verified"] for c in listed["calls"]] == [True]

    # The agent may link the caller to another record instead.
    other = await running.customer("Ann Other", email="ann.other@example.com")
    other_call = await running.new_call(other["token"])
    admin = await running.agent("root", role="admin")
    _, other_body = await running.api.call("GET", f"/api/calls/{other_call}", admin)
    other_record = other_body["customer"]["customer_id"]
    status, body = await running.api.call(
        "POST", f"/api/calls/{call_id}/verify", agent_token, json={"customer_id": other_record}
    )
    assert status == 200 and body["customer"]["customer_id"] == other_record
    assert body["customer"]["email"] == "ann.other@example.com"


async def test_turn_credentials_only_for_a_callers_open_call(tmp_path: Any) -> None:
    settings = make_settings(
        tmp_path / "data",
        CALLASSIST_TURN_URLS="turn:127.0.0.1:3478",
        CALLASSIST_TURN_SECRET="turn-secret-for-this-test",
    )
    async with serving(settings) as run:
        session = await run.customer("Ann")
        status, body = await run.api.call("GET", "/api/webrtc/ice-servers", session["token"])
        assert status == 200 and body["iceServers"] == []
        call_id = await run.new_call(session["token"])
        status, body = await run.api.call("GET", "/api/webrtc/ice-servers", session["token"])
        [turn] = body["iceServers"]
        assert turn["username"].endswith(":" + session["customer_id"])
        await run.api.call("POST", f"/api/calls/{call_id}/end", session["token"])
        status, body = await run.api.call("GET", "/api/webrtc/ice-servers", session["token"])
        assert body["iceServers"] == []
        agent = await run.agent()
        status, body = await run.api.call("GET", "/api/webrtc/ice-servers", agent)
        assert len(body["iceServers"]) == 1
