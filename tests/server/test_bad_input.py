"""Bad input gets a clear error, changes nothing, and the server goes on serving calls."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import Running, wait_for_audio
from tests.server.test_auth import assert_error

BAD_SDPS = [
    "",
    "hello",
    "v=0\r\n",
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:x\r\na=fingerprint:sha-256 00\r\n"
    "a=rtpmap:111 opus/48000/2\r\nc=IN IP4 1.2.3.4\r\nm=garbage\r\n",
]


async def test_bad_bodies_and_queries(running: Running) -> None:
    agent = await running.agent()
    cust = await running.customer("Ann", phone="+15550001111")
    call_id = await running.new_call(cust["token"])
    api = running.api

    for body in (b"{not json", b"[1, 2]", b'"text"'):
        status, data = await api.call("POST", "/api/auth/login", data=body)
        assert_error(status, data, 400)
    status, data = await api.call("POST", "/api/auth/login", json={"username": "a"})
    assert_error(status, data, 400)
    status, data = await api.call("POST", "/api/auth/customer", json={"phone": "+15550001111"})
    assert_error(status, data, 400)
    status, data = await api.call("POST", "/api/auth/customer", json={"name": "X", "email": "nope"})
    assert_error(status, data, 400)
    status, data = await api.call("GET", "/api/calls?state=bogus", agent)
    assert_error(status, data, 400)
    status, data = await api.call("GET", f"/api/calls/{call_id}/messages?after=abc", cust["token"])
    assert_error(status, data, 400)
    status, data = await api.call("GET", f"/api/calls/{call_id}/messages?after=-1", cust["token"])
    assert_error(status, data, 400)
    huge = json.dumps({"name": "x" * (300 * 1024)})
    status, data = await api.call(
        "POST", "/api/auth/customer", data=huge, headers={"Content-Type": "application/json"}
    )
    assert_error(status, data, 413)
    status, data = await api.call("GET", "/api/nothing-here")
    assert_error(status, data, 404)
    status, data = await api.call("DELETE", "/api/calls", agent)
    assert_error(status, data, 405)

    for sdp in BAD_SDPS:
        status, data = await api.call(
            "POST", f"/api/calls/{call_id}/offer", cust["token"], json={"type": "offer", "sdp": sdp}
        )
        assert_error(status, data, 400)
    status, data = await api.call(
        "POST", f"/api/calls/{call_id}/offer", cust["token"], json={"type": "answer", "sdp": "v=0"}
    )
    assert_error(status, data, 400)

    # Nothing changed: the call is still waiting with its one event.
    status, data = await api.call("GET", f"/api/calls/{call_id}/messages", cust["token"])
    assert [m["type"] for m in data["messages"]] == ["call_state"]
    status, data = await api.call("GET", "/api/health")
    status, data = await api.call("GET", "/health")
    assert (status, data["status"]) == (200, "ok")


async def test_offer_to_ended_call_is_409_and_agent_before_accept(running: Running) -> None:
    agent = await running.agent()
    cust = await running.customer("Ann", phone="+15550001111")
    call_id = await running.new_call(cust["token"])
    p = running.participant(agent, "agent")
    # An agent who has not accepted is a stranger to the call.
    status, data = await running.api.call("POST", f"/api/calls/{call_id}/accept", agent)
    assert status == 200
    await running.api.call("POST", f"/api/calls/{call_id}/end", agent)
    try:
        await p.connect(call_id)
    except Exception as exc:  # QaError carries the status
        assert "409" in str(exc)
    else:
        raise AssertionError("offer to an ended call was accepted")


async def test_garbage_on_the_data_channel(running: Running, tone_packets) -> None:
    agent_token = await running.agent()
    cust = await running.customer("Ann", phone="+15550001111")
    call_id = await running.new_call(cust["token"])
    await running.api.call("POST", f"/api/calls/{call_id}/accept", agent_token)
    customer = running.participant(cust["token"], "customer", packets=tone_packets(440))
    agent = running.participant(agent_token, "agent")
    await customer.connect(call_id)
    await agent.connect(call_id)
    await customer.wait_for(lambda e: e["type"] == "call_state" and e["state"] == "active")

    cases = [
        ("{nope", "invalid_json"),
        ("[1,2,3]", "invalid_message"),
        (json.dumps({"type": "launch_missiles"}), "unknown_type"),
        (json.dumps({"type": "ping", "pad": "x" * (70 * 1024)}), "message_too_large"),
        (json.dumps({"type": "stop_suggestions"}), "forbidden"),
        (json.dumps({"type": "suggestion_feedback", "suggestion_id": "s", "action": "used"}), "forbidden"),
    ]
    for raw, code in cases:
        customer.send(raw)
        err = await customer.wait_for(
            lambda e, code=code: e["type"] == "status" and e.get("code") == code
        )
        assert err["level"] == "error"
    agent.send(json.dumps({"type": "suggestion_feedback", "suggestion_id": "nope", "action": "maybe"}))
    await agent.wait_for(lambda e: e["type"] == "status" and e["code"] == "invalid_message")
    # Errors went to the sender only, and the channel still works.
    assert not [e for e in agent.events if e["type"] == "status" and e["code"] == "unknown_type"]
    customer.send({"type": "ping"})
    await customer.wait_for(lambda e: e["type"] == "pong")
    await wait_for_audio(agent)
    status, data = await running.api.call("GET", f"/api/calls/{call_id}/messages", agent_token)
    assert [m["type"] for m in data["messages"]] == ["call_state", "call_state"]

    # The server still serves the next call.
    await running.api.call("POST", f"/api/calls/{call_id}/end", agent_token)
    await asyncio.sleep(0.1)
    next_call = await running.new_call(cust["token"])
    again = running.participant(cust["token"], "customer")
    await again.connect(next_call)
    await again.wait_for(lambda e: e["type"] == "call_state")
