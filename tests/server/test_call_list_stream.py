"""The calls list live (`GET /api/calls/events`, docs/api.md): the open calls first, then
every change of every call, in order, on a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Running, make_settings, serving
from tests.sse import SseReader


def changes(sse: SseReader) -> list[tuple[str, str, str, int]]:
    return [
        (e["change"], e["call_id"], e["call"]["state"], e["seq"])
        for e in sse.events
        if e["type"] == "call_update"
    ]


async def test_the_list_stream_sees_calls_created_accepted_and_ended(running: Running) -> None:
    agent = await running.agent()
    admin = await running.agent("root", role="admin")
    ann = await running.customer("Ann", phone="+15550001111")
    first = await running.new_call(ann["token"], "refund")

    url = f"{running.url}/api/calls/events"
    sse = SseReader(running.http, url, agent)
    late: SseReader | None = None
    try:
        await sse.wait_open()
        snapshot = await sse.wait_for(lambda e: e["type"] == "call_list")
        assert sse.events[0] is snapshot  # the list comes first
        _, listed = await running.api.call("GET", "/api/calls?state=waiting", agent)
        assert snapshot["calls"] == listed["calls"]
        assert [c["call_id"] for c in snapshot["calls"]] == [first]
        assert snapshot["calls"][0]["voice_agent"] is False

        dan = await running.customer("Dan", email="dan@example.com")
        second = await running.new_call(dan["token"], "delivery")
        status, _ = await running.api.call("POST", f"/api/calls/{first}/accept", agent)
        assert status == 200
        status, _ = await running.api.call("POST", f"/api/calls/{first}/end", ann["token"])
        assert status == 200
        await sse.wait_for(lambda e: e.get("change") == "ended")
        assert changes(sse) == [
            ("created", second, "waiting", 1),
            ("accepted", first, "active", 2),
            ("ended", first, "ended", 3),
        ]
        created, accepted, ended = (e for e in sse.events if e["type"] == "call_update")
        # Each change carries the call as the list shows it after the change.
        _, now = await running.api.call("GET", f"/api/calls/{second}", admin)
        assert created["call"] == {**now, "voice_agent": False}
        assert created["call"]["customer"]["claimed"] == {"name": "Dan", "email": "dan@example.com"}
        assert accepted["call"]["agent"] == "alice" and accepted["call"]["accepted_at"]
        assert ended["call"]["ended_at"] and ended["call"]["customer"]["name"] == "Ann"

        # A stream opened now lists what is open, and repeats nothing it listed.
        late = SseReader(running.http, url, admin)
        await late.wait_open()
        listing = await late.wait_for(lambda e: e["type"] == "call_list")
        assert [c["call_id"] for c in listing["calls"]] == [second]
        status, _ = await running.api.call("POST", f"/api/calls/{second}/end", dan["token"])
        assert status == 200
        for stream in (sse, late):
            await stream.wait_for(lambda e: e.get("call_id") == second and e.get("change") == "ended")
        assert changes(late) == [("ended", second, "ended", 2)]
        assert changes(sse)[-1] == ("ended", second, "ended", 2)
        assert all(e["type"] in ("call_list", "call_update") for e in sse.events + late.events)
    finally:
        await sse.close()
        if late is not None:
            await late.close()


async def test_the_list_stream_is_for_staff_only(running: Running) -> None:
    ann = await running.customer("Ann")
    for token, expected in ((ann["token"], 403), ("not-a-token", 401)):
        sse = SseReader(running.http, f"{running.url}/api/calls/events", token)
        await sse.ended.wait()
        assert (sse.status, sse.error["error"]["code"]) == (
            expected,
            "forbidden" if expected == 403 else "unauthorized",
        )
    agent = await running.agent()
    status, body = await running.api.call("GET", "/api/calls/events?limit=0", agent)
    assert (status, body["error"]["code"]) == (400, "invalid_query")


async def test_an_abandoned_call_leaves_the_list(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", CALLASSIST_WAITING_TIMEOUT_S="1")
    async with serving(settings) as run:
        agent = await run.agent()
        sse = SseReader(run.http, f"{run.url}/api/calls/events", agent)
        try:
            await sse.wait_open()
            ann = await run.customer("Ann")
            call_id = await run.new_call(ann["token"])  # nobody ever connects
            update: dict[str, Any] = await sse.wait_for(
                lambda e: e.get("change") == "abandoned", timeout=15
            )
            assert changes(sse) == [
                ("created", call_id, "waiting", 1),
                ("abandoned", call_id, "ended", 2),
            ]
            assert update["call"]["ended_at"]
        finally:
            await sse.close()
