"""The same calls on SQLite and on a real PostgreSQL: event numbering, races, restarts, audio."""

from __future__ import annotations

import asyncio

from server import events
from server.keys import HUB
from tests.conftest import PASSWORD, both_databases, serving


@both_databases
async def test_events_numbered_under_concurrency_and_kept_across_restart(settings, db) -> None:
    async with serving(settings) as run:
        assert run.store.is_sqlite == (db == "sqlite")
        alice = await run.agent("alice")
        bob = await run.agent("bob")
        cust = await run.customer("Zoë", phone="+15550002222")
        call_id = await run.new_call(cust["token"], "naïve café — 東京")

        # Two agents race for the call: the conditional UPDATE lets exactly one win.
        results = await asyncio.gather(
            run.api.call("POST", f"/api/calls/{call_id}/accept", alice),
            run.api.call("POST", f"/api/calls/{call_id}/accept", bob),
        )
        assert sorted(status for status, _ in results) == [200, 409]
        winner = alice if results[0][0] == 200 else bob

        # Concurrent publishes get distinct, gap-free seq numbers (UPDATE ... RETURNING).
        live = run.server.app[HUB].get_live(call_id)
        assert live is not None
        published = await asyncio.gather(
            *(
                live.publish(
                    events.make(
                        events.TRANSCRIPT,
                        call_id,
                        speaker="customer",
                        segment_id=f"seg-{i}",
                        text=f"utterance {i}: ünïcödé ✓",
                        final=True,
                        start_ms=i * 1000,
                        end_ms=i * 1000 + 900,
                        words=[{"w": "x", "p": 0.5}],
                    )
                )
                for i in range(20)
            )
        )
        assert sorted(e["seq"] for e in published) == list(range(3, 23))
        await run.api.call("POST", f"/api/calls/{call_id}/end", winner)

        status, before = await run.api.call("GET", f"/api/calls/{call_id}/messages", winner)
        assert status == 200
        assert [m["seq"] for m in before["messages"]] == list(range(1, 24))
        _, call_before = await run.api.call("GET", f"/api/calls/{call_id}", winner)

    # A new process on the same database finds the ended call and its events.
    async with serving(settings) as run:
        username = "alice" if winner is alice else "bob"
        status, body = await run.api.call(
            "POST", "/api/auth/login", json={"username": username, "password": PASSWORD}
        )
        assert status == 200, body
        agent = body["token"]
        status, after = await run.api.call("GET", f"/api/calls/{call_id}/messages", agent)
        assert status == 200 and after == before
        assert after["messages"][0]["state"] == "waiting"
        texts = {m["segment_id"]: m["text"] for m in after["messages"] if m["type"] == "transcript"}
        assert texts["seg-3"] == "utterance 3: ünïcödé ✓" and len(texts) == 20
        assert after["messages"][-1]["state"] == "ended"
        _, call_after = await run.api.call("GET", f"/api/calls/{call_id}", agent)
        assert call_after == call_before
        assert call_after["reason"] == "naïve café — 東京"
        assert call_after["created_at"] > 2**31  # epoch ms need BIGINT columns
        _, ended = await run.api.call("GET", "/api/calls?state=ended", agent)
        assert [c["call_id"] for c in ended["calls"]] == [call_id]

        # A new session with the same phone links to the same record; its call is numbered from 1.
        again = await run.customer("Zoë", phone="+15550002222")
        second = await run.new_call(again["token"])
        _, waiting = await run.api.call("GET", "/api/calls?state=waiting", agent)
        [linked] = waiting["calls"]
        assert linked["call_id"] == second
        assert linked["customer"]["customer_id"] == call_after["customer"]["customer_id"]
        _, body = await run.api.call("GET", f"/api/calls/{second}/messages", again["token"])
        assert [m["seq"] for m in body["messages"]] == [1]
