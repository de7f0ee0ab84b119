"""Several nodes (API.md "Several nodes"): real server processes on loopback over one real
PostgreSQL and one real Redis, with real WebRTC participants and the local Whisper model.

Clients never choose a node: each test points each participant at a different node, as a
proxy would, and checks that the call behaves as one call.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest

from server.qa import Participant, customer_session, encode_wav_to_opus
from tests.cluster.conftest import NODE_TTL_S, Cluster, Node, eventually
from tests.conftest import wait_for_audio
from tests.media.speech import fixture
from tests.sse import SseReader

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LOCAL_STT = {"CALLASSIST_STT_ENGINE": "local"}


def finals(p: Participant, speaker: str) -> list[dict[str, Any]]:
    return [
        e for e in p.events if e["type"] == "transcript" and e.get("final") and e["speaker"] == speaker
    ]


async def say(speaker: Participant, listener: Participant, name: str) -> tuple[str, dict[str, Any]]:
    """Play a speech fixture as `speaker`'s microphone: the text of the finals `listener`
    gets for it (a pause may split it in two) and the last of them."""
    before = len(finals(listener, speaker.role))
    packets = encode_wav_to_opus(fixture(name).path)
    speaker.track.replace(packets)
    await listener.wait_for(
        lambda e: e["type"] == "transcript" and e.get("final") and e["speaker"] == speaker.role
        and len(finals(listener, speaker.role)) > before,
        timeout=len(packets) * 0.02 + 20,
    )
    await asyncio.sleep(max(0.0, len(packets) * 0.02 - 1) + 2.5)  # the rest of the sentence
    heard = finals(listener, speaker.role)[before:]
    return " ".join(e["text"] for e in heard), heard[-1]


def understood(text: str, name: str) -> None:
    """At least half the words of the fixture's reference text were recognised."""
    reference = words(fixture(name).text)
    assert len(words(text) & reference) >= len(reference) // 2, (text, fixture(name).text)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


async def metric(http: aiohttp.ClientSession, node: Node, token: str, name: str) -> float:
    async with http.get(node.url + "/metrics", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_call_across_nodes(cluster: Cluster) -> None:
    """A call made through node A, accepted and answered through node B: audio both ways,
    both speakers' transcripts on both channels, SSE on B live, the waiting list on both."""
    a, b = await cluster.start(2, **LOCAL_STT)
    health = await cluster.api(a).call("GET", "/health")
    assert health[0] == 200
    assert sorted(n["url"] for n in health[1]["nodes"]) == sorted([a.url, b.url])
    assert health[1]["node"] in {n["id"] for n in health[1]["nodes"]}

    agent_token = await cluster.add_user("alice")
    admin_token = await cluster.add_user("root", "admin")
    cust = await customer_session(cluster.http, a.url, "Ann", phone="+15550001111")
    status, body = await cluster.api(a).call(
        "POST", "/api/calls", cust["token"], json={"reason": "refund"}
    )
    assert status == 201, body
    call_id = body["call_id"]

    # Every node lists the waiting call at once (the list is the shared database's).
    for node in (a, b):
        status, listed = await cluster.api(node).call("GET", "/api/calls?state=waiting", agent_token)
        assert [c["call_id"] for c in listed["calls"]] == [call_id]

    # A supervisor watches from node B before anyone accepts.
    sse = SseReader(cluster.http, f"{b.url}/api/calls/{call_id}/events", admin_token)
    await asyncio.wait_for(sse.opened.wait(), 10)

    # Accepting through B is served by A, which holds the call since it was created.
    status, body = await cluster.api(b).call("POST", f"/api/calls/{call_id}/accept", agent_token)
    assert (status, body) == (200, {"call_id": call_id, "state": "active"})
    for node in (a, b):
        _, waiting = await cluster.api(node).call("GET", "/api/calls?state=waiting", agent_token)
        assert waiting["calls"] == []
    assert await metric(cluster.http, b, admin_token, "callassist_forwarded_requests_total") == 1

    customer = Participant(a.url, cust["token"], "customer", http=cluster.http)
    agent = Participant(b.url, agent_token, "agent", http=cluster.http)
    try:
        await customer.connect(call_id)
        await agent.connect(call_id)  # an offer to B, answered by A's peer
        text, _ = await say(customer, agent, "customer_refund")
        understood(text, "customer_refund")
        text, agent_final = await say(agent, customer, "agent_lookup")
        understood(text, "agent_lookup")
        await wait_for_audio(customer, 100)
        await wait_for_audio(agent, 100)
        # Both sides get both speakers.
        assert finals(customer, "customer") and finals(agent, "agent")

        # The supervisor on B saw the same persisted events, live, in order.
        await eventually(
            lambda: any(e.get("seq") == agent_final["seq"] for e in sse.events), 10, "SSE on B"
        )
        seen = [e["seq"] for e in sse.events if "seq" in e]
        assert seen == list(range(1, agent_final["seq"] + 1))
        assert sse.events[0]["state"] == "waiting" and sse.events[1]["state"] == "active"

        # The call holds on one node: A. B holds nothing.
        _, health_a = await cluster.api(a).call("GET", "/health")
        _, health_b = await cluster.api(b).call("GET", "/health")
        assert (health_a["live_calls"], health_b["live_calls"]) == (1, 0)

        status, _ = await cluster.api(b).call("POST", f"/api/calls/{call_id}/end", agent_token)
        assert status == 200
        await asyncio.wait_for(sse.ended.wait(), 15)
        assert sse.events[-1]["type"] == "call_state" and sse.events[-1]["state"] == "ended"
    finally:
        await sse.close()
        await customer.close()
        await agent.close()

    _, history = await cluster.api(b).call("GET", f"/api/calls/{call_id}/messages", agent_token)
    seqs = [m["seq"] for m in history["messages"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e["seq"] for e in sse.events if "seq" in e] == seqs


async def test_race_to_accept_and_takeover_after_kill(cluster: Cluster) -> None:
    """Two agents race to accept through two nodes: one wins. The node holding the call is
    killed (-9) mid-call; both participants reconnect through the two survivors at once,
    which race to take the call over: exactly one does, and the call goes on with its
    history, `seq` continuing without a gap or a repeat."""
    a, b, c = await cluster.start(3, **LOCAL_STT)
    alice = await cluster.add_user("alice")
    bob = await cluster.add_user("bob")
    admin = await cluster.add_user("root", "admin")
    cust = await customer_session(cluster.http, a.url, "Ann", phone="+15550001111")
    status, body = await cluster.api(a).call("POST", "/api/calls", cust["token"], json={})
    assert status == 201, body
    call_id = body["call_id"]

    results = await asyncio.gather(
        cluster.api(b).call("POST", f"/api/calls/{call_id}/accept", alice),
        cluster.api(c).call("POST", f"/api/calls/{call_id}/accept", bob),
    )
    assert sorted(status for status, _ in results) == [200, 409], results
    agent_token = alice if results[0][0] == 200 else bob

    customer = Participant(a.url, cust["token"], "customer", http=cluster.http)
    agent = Participant(b.url, agent_token, "agent", http=cluster.http)
    try:
        await customer.connect(call_id)
        await agent.connect(call_id)
        text, _ = await say(customer, agent, "customer_refund")
        understood(text, "customer_refund")
        _, before = await cluster.api(b).call("GET", f"/api/calls/{call_id}/messages", agent_token)
        assert [m["seq"] for m in before["messages"]] == list(range(1, len(before["messages"]) + 1))

        a.kill()
        killed_at = asyncio.get_running_loop().time()
        # The pages reconnect when their connection fails; here both do it at once, through
        # different nodes (the proxy's choice), before the dead node's lease has lapsed.
        customer.base_url, agent.base_url = b.url, c.url
        await asyncio.gather(customer.connect(call_id, 30), agent.connect(call_id, 30))
        took = asyncio.get_running_loop().time() - killed_at
        assert took < NODE_TTL_S + 6, took

        holders = [(await cluster.api(n).call("GET", "/health"))[1]["live_calls"] for n in (b, c)]
        assert sorted(holders) == [0, 1], holders
        takeovers = [await metric(cluster.http, n, admin, "callassist_takeovers_total") for n in (b, c)]
        assert sorted(takeovers) == [0, 1], takeovers
        _, health = await cluster.api(b).call("GET", "/health")
        assert sorted(n["url"] for n in health["nodes"]) == sorted([b.url, c.url])

        # They hear each other again, and the agent's channel replayed the whole history.
        heard_customer, heard_agent = customer.received.packets, agent.received.packets
        await eventually(lambda: agent.received.packets > heard_agent + 50, 15, "audio at agent")
        await eventually(lambda: customer.received.packets > heard_customer + 50, 15, "audio at customer")
        replayed = [e["seq"] for e in agent.events if "seq" in e]
        assert replayed.count(before["messages"][-1]["seq"]) == 2  # before the kill, and again

        # Transcription goes on, on the new node, numbered after the last event.
        text, final = await say(agent, customer, "agent_lookup")
        understood(text, "agent_lookup")
        assert final["seq"] > before["messages"][-1]["seq"]
        status, _ = await cluster.api(c).call("POST", f"/api/calls/{call_id}/end", agent_token)
        assert status == 200
    finally:
        await customer.close()
        await agent.close()

    _, after = await cluster.api(c).call("GET", f"/api/calls/{call_id}/messages", agent_token)
    seqs = [m["seq"] for m in after["messages"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert after["messages"][: len(before["messages"])] == before["messages"]
    assert [m["state"] for m in after["messages"] if m["type"] == "call_state"] == [
        "waiting",
        "active",
        "ended",
    ]


async def test_redis_restart_mid_call(cluster: Cluster) -> None:
    """Redis comes back empty after a short crash: the call goes on on the node that held it
    (it takes its lease back), the other node's SSE stream ends instead of missing events,
    and a new one sees everything. A longer outage fails loudly: the node drops the call's
    media before its lease could lapse and says so (status event, /health 503); once Redis is
    back the participants reconnect and the call goes on, on one node."""
    a, b = await cluster.start(2)
    agent_token = await cluster.add_user("alice")
    admin = await cluster.add_user("root", "admin")
    cust = await customer_session(cluster.http, a.url, "Ann")
    _, body = await cluster.api(a).call("POST", "/api/calls", cust["token"], json={})
    call_id = body["call_id"]
    status, _ = await cluster.api(b).call("POST", f"/api/calls/{call_id}/accept", agent_token)
    assert status == 200
    customer = Participant(a.url, cust["token"], "customer", http=cluster.http)
    agent = Participant(b.url, agent_token, "agent", http=cluster.http)
    sse = SseReader(cluster.http, f"{b.url}/api/calls/{call_id}/events", admin)
    try:
        await customer.connect(call_id)
        await agent.connect(call_id)
        await wait_for_audio(agent, 50)
        await eventually(lambda: len(sse.events) >= 2, 10, "SSE backlog")

        # A crash and a quick restart, well within the fencing time (2/3 of the TTL).
        cluster.redis.restart()
        heard = agent.received.packets
        await asyncio.wait_for(sse.ended.wait(), 10)  # B missed what Redis lost: loudly
        await eventually(lambda: agent.received.packets > heard + 100, 10, "audio after restart")

        async def both_nodes_back() -> bool:
            _, health = await cluster.api(b).call("GET", "/health")
            return len(health["nodes"]) == 2

        await eventually(both_nodes_back, 10, "presence after restart")
        holders = [(await cluster.api(n).call("GET", "/health"))[1]["live_calls"] for n in (a, b)]
        assert holders == [1, 0]
        assert customer.pc is not None and customer.pc.connectionState == "connected"

        # A longer outage: A cannot renew its lease, so it drops the call's media first.
        cluster.redis.stop()
        await customer.wait_for(
            lambda e: e["type"] == "status" and e["code"] == "call_moved", NODE_TTL_S + 5
        )
        status, health = await cluster.api(a).call("GET", "/health")
        assert (status, health["status"], health["live_calls"]) == (503, "degraded", 0)
        status, body = await cluster.api(a).call(
            "POST", f"/api/calls/{call_id}/accept", agent_token
        )
        assert (status, body["error"]["code"]) == (503, "cluster_unavailable")
        # Its calls list cannot be live (the pages read GET /api/calls meanwhile).
        status, body = await cluster.api(a).call("GET", "/api/calls/events", agent_token)
        assert (status, body["error"]["code"]) == (503, "cluster_unavailable")

        cluster.redis.start()
        await eventually(both_nodes_back, 10, "presence after the outage")
        customer.base_url = b.url
        await asyncio.gather(customer.connect(call_id), agent.connect(call_id))
        heard = agent.received.packets, customer.received.packets
        await eventually(
            lambda: agent.received.packets > heard[0] + 50 and customer.received.packets > heard[1] + 50,
            15,
            "audio after the outage",
        )
        holders = [(await cluster.api(n).call("GET", "/health"))[1]["live_calls"] for n in (a, b)]
        assert sorted(holders) == [0, 1]

        # A new SSE stream on A (not the holder now) replays everything and follows live.
        again = SseReader(cluster.http, f"{a.url}/api/calls/{call_id}/events", admin)
        try:
            await asyncio.wait_for(again.opened.wait(), 10)
            status, _ = await cluster.api(a).call("POST", f"/api/calls/{call_id}/end", agent_token)
            assert status == 200
            await asyncio.wait_for(again.ended.wait(), 15)
        finally:
            await again.close()
        assert [e.get("state") for e in again.events if e["type"] == "call_state"] == [
            "waiting",
            "active",
            "ended",
        ]
        seqs = [e["seq"] for e in again.events if "seq" in e]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        await sse.close()
        await customer.close()
        await agent.close()


async def test_phone_stream_reaching_another_node(cluster: Cluster, tmp_path) -> None:
    """Twilio's webhook lands on node A (which creates the call and holds it); its media
    stream lands on node B, which relays it to A: the caller and the agent hear each other
    and a key press reaches an SSE stream on B. When A dies the phone line is lost (Twilio
    cannot move a stream): B takes the call over and ends it cleanly, saying why."""
    from server.qa_phone import TwilioCaller, wav_to_mulaw_frames
    from tests.conftest import dominant_frequency, rms, write_tone

    auth_token, public_url = "twilio-test-auth-token-0123456789", "http://callassist.test"
    a, b = await cluster.start(
        2, CALLASSIST_TWILIO_AUTH_TOKEN=auth_token, CALLASSIST_PUBLIC_URL=public_url
    )
    agent_token = await cluster.add_user("alice")
    caller = TwilioCaller(a.url, auth_token, public_url=public_url, http=cluster.http)
    agent = Participant(b.url, agent_token, "agent", http=cluster.http)
    agent.track.replace(encode_wav_to_opus(write_tone(tmp_path / "a.wav", 880, 20)))
    sse: SseReader | None = None
    try:
        status, twiml = await caller.post_webhook()
        assert status == 200, twiml
        caller.read_twiml(twiml)
        caller.base_url = b.url  # the proxy sends Twilio's WebSocket to the other node
        await caller.open_stream()
        caller.play(wav_to_mulaw_frames(write_tone(tmp_path / "c.wav", 440, 20, rate=8000)))
        call_id = caller.call_id

        status, _ = await cluster.api(b).call("POST", f"/api/calls/{call_id}/accept", agent_token)
        assert status == 200
        await agent.connect(call_id)
        sse = SseReader(cluster.http, f"{b.url}/api/calls/{call_id}/events", agent_token)
        await asyncio.wait_for(sse.opened.wait(), 10)

        await wait_for_audio(agent, 150)
        heard = agent.received.pcm(since_s=1.0)
        assert rms(heard) > 500 and abs(dominant_frequency(heard) - 440) < 15
        await eventually(lambda: len(caller.heard.payloads) >= 150, 15, "the caller hearing the agent")
        pcm = caller.heard.pcm(since_s=1.0)
        assert abs(dominant_frequency(pcm, rate=8000) - 880) < 15

        await caller.dtmf("5")
        dtmf = await eventually(lambda: [e for e in sse.events if e["type"] == "dtmf"], 10, "dtmf")
        assert dtmf[0]["digit"] == "5"
        # A holds the call, B only relays the stream.
        holders = [(await cluster.api(n).call("GET", "/health"))[1]["live_calls"] for n in (a, b)]
        assert holders == [1, 0]

        # A dies: Twilio's socket (relayed through B) dies with it, and a phone stream
        # cannot move. The agent's reconnect lands on B, which takes the call over, waits
        # for a stream that does not come, and ends the call, saying why.
        a.kill()
        await caller.wait_closed(10)
        await agent.connect(call_id, 30)
        await agent.wait_for(
            lambda e: e["type"] == "status" and e["code"] == "phone_line_lost", 30
        )
        await agent.wait_for(
            lambda e: e["type"] == "call_state" and e["state"] == "ended", 10
        )
        _, call = await cluster.api(b).call("GET", f"/api/calls/{call_id}", agent_token)
        assert call["state"] == "ended" and call["customer"]["channel"] == "phone"
    finally:
        if sse is not None:
            await sse.close()
        await agent.close()
        await caller.close()


async def test_limits_and_queue_cap_hold_across_nodes(cluster: Cluster) -> None:
    """Failed logins count in Redis for every node (no setting beyond CALLASSIST_REDIS_URL),
    and the waiting-queue cap counts every node's calls, even when they race."""
    a, b = await cluster.start(2, CALLASSIST_MAX_WAITING="2")
    await cluster.add_user("alice")
    wrong = {"username": "alice", "password": "not the password"}
    statuses = []
    for i in range(6):  # the per-username budget is 5 a minute, across both nodes
        node = (a, b)[i % 2]
        statuses.append((await cluster.api(node).call("POST", "/api/auth/login", json=wrong))[0])
    assert statuses == [401] * 5 + [429]
    status, _ = await cluster.api(a).call("POST", "/api/auth/login", json=wrong)
    assert status == 429

    customers = [await customer_session(cluster.http, (a, b)[i % 2].url, f"C{i}") for i in range(3)]
    results = await asyncio.gather(
        *(
            cluster.api((a, b)[i % 2]).call("POST", "/api/calls", c["token"], json={})
            for i, c in enumerate(customers)
        )
    )
    assert sorted(status for status, _ in results) == [201, 201, 503], results
    assert [body["error"]["code"] for status, body in results if status == 503] == ["queue_full"]
