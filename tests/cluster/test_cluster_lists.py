"""The calls list live on every node (`GET /api/calls/events`), and the limits that must
count across nodes: SSE streams per call, the waiting queue reached through the phone
webhook, a Twilio stream token's single use. Real node processes over a real PostgreSQL and
a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.qa import customer_session
from tests.cluster.conftest import NODE_TTL_S, Cluster, eventually
from tests.sse import SseReader

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LIST_DELAY_MAX_S = 2.0
"""A change made on one node reaches another node's list stream within this (measured:
one Redis hop, a few ms on an idle machine)."""


def changes(sse: SseReader) -> list[tuple[str, str, str, int]]:
    return [
        (e["change"], e["call_id"], e["call"]["state"], e["seq"])
        for e in sse.events
        if e["type"] == "call_update"
    ]


async def test_the_calls_list_updates_live_on_every_node(cluster: Cluster) -> None:
    """A call created through node A appears on node B's list stream at once, and its
    accept (through B, served by A) and end follow, in order, on both nodes' streams; a call
    node B holds reaches node A's stream the same way. A Redis restart ends the streams
    (their clients list again) instead of letting them miss a change."""
    a, b = await cluster.start(2)
    agent = await cluster.add_user("alice")
    admin = await cluster.add_user("root", "admin")
    on_a = SseReader(cluster.http, f"{a.url}/api/calls/events", admin)
    on_b = SseReader(cluster.http, f"{b.url}/api/calls/events", agent)
    again: SseReader | None = None
    try:
        await asyncio.gather(on_a.wait_open(), on_b.wait_open())
        for sse in (on_a, on_b):
            assert (await sse.wait_for(lambda e: e["type"] == "call_list"))["calls"] == []

        ann = await customer_session(cluster.http, a.url, "Ann", phone="+15550001111")
        loop = asyncio.get_running_loop()
        sent = loop.time()
        status, body = await cluster.api(a).call("POST", "/api/calls", ann["token"], json={})
        assert status == 201, body
        first = body["call_id"]
        await on_b.wait_for(lambda e: e.get("call_id") == first, timeout=LIST_DELAY_MAX_S + 5)
        delay = loop.time() - sent
        assert delay < LIST_DELAY_MAX_S, delay
        created = on_b.events[-1]
        assert created["call"]["customer"]["claimed"] == {"name": "Ann", "phone": "+15550001111"}
        assert created["call"]["voice_agent"] is False

        status, _ = await cluster.api(b).call("POST", f"/api/calls/{first}/accept", agent)
        assert status == 200
        status, _ = await cluster.api(b).call("POST", f"/api/calls/{first}/end", agent)
        assert status == 200

        dan = await customer_session(cluster.http, b.url, "Dan", email="dan@example.com")
        status, body = await cluster.api(b).call("POST", "/api/calls", dan["token"], json={})
        assert status == 201, body
        second = body["call_id"]
        expected = [
            ("created", first, "waiting", 1),
            ("accepted", first, "active", 2),
            ("ended", first, "ended", 3),
            ("created", second, "waiting", 1),
        ]
        for sse in (on_a, on_b):
            await sse.wait_for(lambda e: e.get("call_id") == second)
            assert changes(sse) == expected
        _, health_a = await cluster.api(a).call("GET", "/health")
        _, health_b = await cluster.api(b).call("GET", "/health")
        assert (health_a["live_calls"], health_b["live_calls"]) == (0, 1)  # B holds the second

        cluster.redis.restart()
        await asyncio.wait_for(asyncio.gather(on_a.ended.wait(), on_b.ended.wait()), 10)

        async def both_nodes_back() -> bool:
            _, health = await cluster.api(a).call("GET", "/health")
            return len(health["nodes"]) == 2

        await eventually(both_nodes_back, 10, "presence after restart")
        again = SseReader(cluster.http, f"{a.url}/api/calls/events", agent)
        await again.wait_open()
        listing = await again.wait_for(lambda e: e["type"] == "call_list")
        assert [c["call_id"] for c in listing["calls"]] == [second]
        status, _ = await cluster.api(a).call("POST", f"/api/calls/{second}/end", dan["token"])
        assert status == 200
        await again.wait_for(lambda e: e.get("change") == "ended")
        assert changes(again) == [("ended", second, "ended", 2)]
    finally:
        for sse in (on_a, on_b, again):
            if sse is not None:
                await sse.close()


async def test_event_streams_per_call_count_across_nodes(cluster: Cluster) -> None:
    """CALLASSIST_MAX_STREAMS_PER_CALL holds for the cluster: streams on two nodes count
    together; a closed stream frees its place for any node; a dead node's streams stop
    counting once its presence lapses."""
    a, b, c = await cluster.start(3, CALLASSIST_MAX_STREAMS_PER_CALL="3")
    admin = await cluster.add_user("root", "admin")
    ann = await customer_session(cluster.http, a.url, "Ann")
    _, body = await cluster.api(a).call("POST", "/api/calls", ann["token"], json={})
    call_id = body["call_id"]

    def stream(node: Any) -> SseReader:
        return SseReader(cluster.http, f"{node.url}/api/calls/{call_id}/events", admin)

    streams: list[SseReader] = []
    try:
        for node in (a, b, c):
            streams.append(stream(node))
            await streams[-1].wait_open()
        for node in (a, b, c):
            refused = stream(node)
            await refused.ended.wait()
            assert (refused.status, refused.error["error"]["code"]) == (429, "too_many_streams")

        await streams.pop(0).close()  # A's stream ends: its place is free, for B
        await eventually(lambda: _opens(stream(b), streams), 10, "a free place after a close")
        assert len(streams) == 3
        refused = stream(a)
        await refused.ended.wait()
        assert refused.status == 429

        # C dies with its stream: once its presence lapses, its stream no longer counts.
        c.kill()
        await eventually(lambda: _opens(stream(a), streams), 15, "C's place after its death")
        refused = stream(b)
        await refused.ended.wait()
        assert refused.status == 429
    finally:
        for sse in streams:
            await sse.close()


async def _opens(sse: SseReader, opened: list[SseReader]) -> bool:
    await sse.answered.wait()
    if sse.status == 200:
        opened.append(sse)
        return True
    await sse.close()
    return False


AUTH_TOKEN, PUBLIC_URL = "twilio-test-auth-token-0123456789", "http://callassist.test"
TWILIO = {"CALLASSIST_TWILIO_AUTH_TOKEN": AUTH_TOKEN, "CALLASSIST_PUBLIC_URL": PUBLIC_URL}


async def test_the_queue_cap_holds_for_phone_and_browser_calls_racing(cluster: Cluster) -> None:
    """Phone webhooks and browser calls race for the last places of the queue through two
    nodes: both paths count and add under one lock, so exactly CALLASSIST_MAX_WAITING calls
    are created; the other phone callers hear busy, the other browsers get queue_full."""
    from server.qa_phone import TwilioCaller

    a, b = await cluster.start(2, CALLASSIST_MAX_WAITING="3", **TWILIO)
    agent = await cluster.add_user("alice")
    phones = [
        TwilioCaller((a, b)[i % 2].url, AUTH_TOKEN, public_url=PUBLIC_URL, caller=f"+1555010010{i}", http=cluster.http)
        for i in range(4)
    ]
    browsers = [await customer_session(cluster.http, (b, a)[i % 2].url, f"Web {i}") for i in range(4)]
    results = await asyncio.gather(
        *(p.post_webhook() for p in phones),
        *(
            cluster.api((b, a)[i % 2]).call("POST", "/api/calls", c["token"], json={})
            for i, c in enumerate(browsers)
        ),
    )
    phone_results, web_results = results[:4], results[4:]
    assert all(status == 200 for status, _ in phone_results), phone_results
    connected = [twiml for _, twiml in phone_results if "<Connect>" in twiml]
    busy = [twiml for _, twiml in phone_results if '<Reject reason="busy"' in twiml]
    assert len(connected) + len(busy) == 4, phone_results
    created = [body for status, body in web_results if status == 201]
    refused = [body["error"]["code"] for status, body in web_results if status != 201]
    assert len(connected) + len(created) == 3, results
    assert refused == ["queue_full"] * (4 - len(created)), web_results
    _, listed = await cluster.api(a).call("GET", "/api/calls?state=waiting", agent)
    assert len(listed["calls"]) == 3
    assert sorted(c["customer"]["channel"] for c in listed["calls"]) == sorted(
        ["phone"] * len(connected) + ["web"] * len(created)
    )


async def test_a_stream_token_works_once_in_the_cluster(cluster: Cluster) -> None:
    """A Twilio stream token used on node A cannot be replayed on node B within its life:
    A dies with the caller's stream, and a replay of the same `start` reaches B, which takes
    the call over (as it must for a stream that races a node's death) but refuses the used
    token: the socket closes (1008) and no caller joins."""
    from server.qa_phone import TwilioCaller

    a, b = await cluster.start(2, **TWILIO)
    admin = await cluster.add_user("root", "admin")
    caller = TwilioCaller(a.url, AUTH_TOKEN, public_url=PUBLIC_URL, http=cluster.http)
    replay = TwilioCaller(b.url, AUTH_TOKEN, public_url=PUBLIC_URL, http=cluster.http)

    async def phone_stats(node: Any) -> dict[str, Any]:
        status, body = await cluster.api(node).call("GET", "/api/stats", admin)
        assert status == 200, body
        return dict(body["phone"])

    try:
        status, twiml = await caller.post_webhook()
        assert status == 200, twiml
        caller.read_twiml(twiml)
        await caller.open_stream()  # to A, which holds the call: the token is used there
        await eventually(lambda: _streams(phone_stats(a), 1), 10, "the stream joined on A")

        a.kill()
        await caller.wait_closed(10)
        replay.stream_url, replay.parameters = caller.stream_url, dict(caller.parameters)
        await replay.open_stream()
        await replay.wait_closed(NODE_TTL_S + 15)
        assert replay.ws is not None and replay.ws.close_code == 1008
        stats = await phone_stats(b)
        assert (stats["streams"], stats["rejected"]) == (0, 1), stats
        _, health = await cluster.api(b).call("GET", "/health")
        assert health["live_calls"] == 1  # B took the call over; no caller is in it
    finally:
        await replay.close()
        await caller.close()


async def _streams(stats: Any, expected: int) -> bool:
    return bool((await stats)["streams"] == expected)
