"""A whole call over real WebRTC: each side hears the other, events flow, reconnect works."""

from __future__ import annotations

from tests.conftest import Running, both_databases, dominant_frequency, rms, wait_for_audio


@both_databases
async def test_full_call_both_sides_hear_each_other(running: Running, tone_packets, db) -> None:
    cust = await running.customer("Ann", phone="+15550001111")
    call_id = await running.new_call(cust["token"], "my order is late")
    agent_token = await running.agent()

    customer = running.participant(cust["token"], "customer", packets=tone_packets(440))
    await customer.connect(call_id)
    state = await customer.wait_for(lambda e: e["type"] == "call_state")
    assert state == {**state, "state": "waiting", "seq": 1, "call_id": call_id}

    status, body = await running.api.call("POST", f"/api/calls/{call_id}/accept", agent_token)
    assert (status, body) == (200, {"call_id": call_id, "state": "active"})
    agent = running.participant(agent_token, "agent", packets=tone_packets(880))
    await agent.connect(call_id)

    await customer.wait_for(lambda e: e["type"] == "call_state" and e["state"] == "active")
    replayed = await agent.wait_for(lambda e: e["type"] == "call_state" and e["state"] == "active")
    assert replayed["seq"] == 2

    await wait_for_audio(agent)
    await wait_for_audio(customer)
    heard_by_agent = agent.received.pcm(since_s=0.5)
    heard_by_customer = customer.received.pcm(since_s=0.5)
    assert rms(heard_by_agent) > 2000 and rms(heard_by_customer) > 2000
    assert abs(dominant_frequency(heard_by_agent) - 440) < 10
    assert abs(dominant_frequency(heard_by_customer) - 880) < 10

    agent.send({"type": "ping"})
    pong = await agent.wait_for(lambda e: e["type"] == "pong")
    assert pong["call_id"] == call_id and "seq" not in pong

    status, body = await running.api.call("POST", f"/api/calls/{call_id}/end", cust["token"])
    assert (status, body) == (200, {"call_id": call_id, "state": "ended"})
    ended = await agent.wait_for(lambda e: e["type"] == "call_state" and e["state"] == "ended")
    assert ended["seq"] == 3

    status, body = await running.api.call("GET", f"/api/calls/{call_id}", agent_token)
    assert status == 200
    assert body["state"] == "ended" and body["agent"] == "alice"
    assert body["customer"]["name"] == "Ann"
    assert body["created_at"] <= body["accepted_at"] <= body["ended_at"]


async def test_agent_reconnect_restores_audio_and_history(running: Running, tone_packets) -> None:
    cust = await running.customer("Bob", email="bob@example.com")
    call_id = await running.new_call(cust["token"])
    agent_token = await running.agent()
    await running.api.call("POST", f"/api/calls/{call_id}/accept", agent_token)

    customer = running.participant(cust["token"], "customer", packets=tone_packets(440, 20))
    await customer.connect(call_id)
    first = running.participant(agent_token, "agent")
    await first.connect(call_id)
    await wait_for_audio(first, 50)

    second = running.participant(agent_token, "agent")
    await second.connect(call_id)  # replaces the first connection, as a page reload does
    await wait_for_audio(second, 100)
    assert abs(dominant_frequency(second.received.pcm(since_s=0.5)) - 440) < 10

    seqs = [e["seq"] for e in second.events if "seq" in e]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1
    status, body = await running.api.call("GET", f"/api/calls/{call_id}/messages?after=0", agent_token)
    assert status == 200
    assert [m["seq"] for m in body["messages"]] == seqs
    assert body["messages"] == [e for e in second.events if "seq" in e]
    status, body = await running.api.call("GET", f"/api/calls/{call_id}/messages?after=1", agent_token)
    assert [m["seq"] for m in body["messages"]] == seqs[1:]
