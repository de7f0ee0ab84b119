"""Calls and their events outlive the server process; SSE streams the agent's events."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.conftest import PASSWORD, Running, make_settings, serving


async def test_restart_keeps_calls_and_events(tmp_path) -> None:
    settings = make_settings(tmp_path / "data")
    async with serving(settings) as run:
        agent = await run.agent()
        cust = await run.customer("Ann", phone="+15550001111")
        ended = await run.new_call(cust["token"])
        await run.api.call("POST", f"/api/calls/{ended}/accept", agent)
        await run.api.call("POST", f"/api/calls/{ended}/end", agent)
        other = await run.customer("Dan", email="dan@example.com")
        active = await run.new_call(other["token"])
        await run.api.call("POST", f"/api/calls/{active}/accept", agent)
        _, before = await run.api.call("GET", f"/api/calls/{ended}/messages", agent)

    async with serving(settings) as run:
        status, body = await run.api.call(
            "POST", "/api/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        assert status == 200
        agent = body["token"]
        # Tokens issued before the restart still work (the key is kept).
        status, after = await run.api.call("GET", f"/api/calls/{ended}/messages", agent)
        assert status == 200 and after == before
        assert [m["state"] for m in after["messages"]] == ["waiting", "active", "ended"]
        status, body = await run.api.call("GET", "/api/calls?state=ended", agent)
        assert [c["call_id"] for c in body["calls"]] == [ended]
        # The active call goes on: its customer reconnects and seq continues.
        customer = run.participant(other["token"], "customer")
        await customer.connect(active)
        await customer.wait_for(lambda e: e.get("state") == "active")
        await run.api.call("POST", f"/api/calls/{active}/end", agent)
        last = await customer.wait_for(lambda e: e.get("state") == "ended")
        assert last["seq"] == 3


async def read_sse(response: aiohttp.ClientResponse, count: int) -> list[dict]:
    events: list[dict] = []
    async for raw in response.content:
        line = raw.decode().strip()
        if line.startswith("data: "):
            events.append(json.loads(line[6:]))
            if len(events) == count:
                break
    return events


async def test_sse_stream_replays_then_goes_live(running: Running) -> None:
    agent = await running.agent()
    admin = await running.agent("root", role="admin")
    cust = await running.customer("Ann", phone="+15550001111")
    call_id = await running.new_call(cust["token"])
    await running.api.call("POST", f"/api/calls/{call_id}/accept", agent)

    async with running.http.get(
        f"{running.url}/api/calls/{call_id}/events", headers={"Authorization": f"Bearer {admin}"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        replay = await read_sse(response, 2)
        assert [e["seq"] for e in replay] == [1, 2]
        reader = asyncio.ensure_future(read_sse(response, 1))
        await asyncio.sleep(0.2)
        await running.api.call("POST", f"/api/calls/{call_id}/end", agent)
        live = await asyncio.wait_for(reader, 10)
        assert live[0]["state"] == "ended" and live[0]["seq"] == 3
        # The stream closes once the call has ended.
        rest = await asyncio.wait_for(response.content.read(), 10)
        assert b"data:" not in rest
