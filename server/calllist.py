"""The calls list of agents and supervisors: `GET /api/calls`, and its live stream
`GET /api/calls/events` (docs/api.md, an extension).

An entry is a call as staff see it in a list. The list reads the shared database, so every
node lists every call; its changes come from the `call_state` events the call's session
persists (created, the voice agent answering, accepted, ended, abandoned), on whichever
node holds the call, and reach the list streams of every node through the EventBus
(server/fanout.py: in-process alone, Redis pub/sub in a cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlmodel import col, select

from server import events, identity
from server.models import Call, CallCaller, CallerSession, CallEvent, Customer
from server.store import Store

OPEN_STATES = ("waiting", "active")
RECENTLY_ENDED_MS = 60_000
"""A list stream also learns the `seq` of calls that ended this recently before it started,
so that an older change of theirs still queued for it is not shown (server/api.py)."""


def call_json(
    call: Call,
    customer: Customer | None,
    link: CallCaller | None = None,
    caller: CallerSession | None = None,
) -> dict[str, Any]:
    return {
        "call_id": call.id,
        "state": call.state,
        "reason": call.reason,
        "customer": {**identity.staff_customer(customer, call, link, caller), "channel": call.channel},
        "agent": call.agent,
        "created_at": call.created_at,
        "accepted_at": call.accepted_at,
        "ended_at": call.ended_at,
    }


VoiceAgentHere = Callable[[str], bool | None]
"""Whether the voice agent talks in a call whose media this process holds (None: not held
here)."""


async def entries(
    store: Store,
    state: str | None,
    limit: int,
    voice_agent_here: VoiceAgentHere,
    *,
    clustered: bool,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The calls in `state` (any state: None), oldest first, at most `limit`; and each
    one's `last_seq` as it was read."""
    query = (
        select(Call, Customer, CallCaller, CallerSession)
        .join(Customer, col(Customer.id) == col(Call.customer_id))
        .outerjoin(CallCaller, col(CallCaller.call_id) == col(Call.id))
        .outerjoin(CallerSession, col(CallerSession.id) == col(CallCaller.session_id))
    )
    if state:
        query = query.where(Call.state == state)
    # Oldest first, as queues are served; a limit keeps the oldest, so that no flood of new
    # calls hides the caller who has waited longest.
    query = query.order_by(col(Call.created_at), col(Call.id)).limit(limit)
    async with store.session() as session:
        rows = (await session.exec(query)).all()
    listed = [call_json(*row) for row in rows]
    seqs = {row[0].id: row[0].last_seq for row in rows}
    await _mark_voice_agent(store, listed, voice_agent_here, clustered=clustered)
    return listed, seqs


async def entry(store: Store, call: Call, voice_agent: bool) -> dict[str, Any]:
    """One call's entry, as the list shows it after the change the session just made."""
    async with store.session() as session:
        customer = await session.get(Customer, call.customer_id)
        link = await session.get(CallCaller, call.id)
        caller = await session.get(CallerSession, link.session_id) if link else None
    return {**call_json(call, customer, link, caller), "voice_agent": voice_agent}


async def recently_ended_seqs(store: Store, since_ms: int) -> dict[str, int]:
    async with store.session() as session:
        rows = (
            await session.exec(
                select(Call.id, Call.last_seq).where(
                    Call.state == "ended", col(Call.ended_at) >= since_ms
                )
            )
        ).all()
    return dict(rows)


async def _mark_voice_agent(
    store: Store, listed: list[dict[str, Any]], here: VoiceAgentHere, *, clustered: bool
) -> None:
    """Agents see which waiting callers the voice agent is talking with (an extension).
    This process knows for the calls it holds; in a cluster, the others' last `call_state`
    says it (alone, a call nobody holds has no voice agent)."""
    elsewhere = []
    for item in listed:
        held = here(item["call_id"])
        item["voice_agent"] = bool(held)
        if held is None and clustered and item["state"] == "waiting":
            elsewhere.append(item)
    if elsewhere:
        flags = await _last_voice_agent_flags(store, [item["call_id"] for item in elsewhere])
        for item in elsewhere:
            item["voice_agent"] = flags.get(item["call_id"], False)


async def _last_voice_agent_flags(store: Store, call_ids: Iterable[str]) -> dict[str, bool]:
    async with store.session() as session:
        rows = (
            await session.exec(
                select(CallEvent.call_id, CallEvent.body)
                .where(
                    col(CallEvent.call_id).in_(list(call_ids)),
                    CallEvent.type == events.CALL_STATE,
                )
                .order_by(col(CallEvent.seq))
            )
        ).all()
    flags: dict[str, bool] = {}
    for call_id, body in rows:
        flags[call_id] = bool(body.get("voice_agent"))
    return flags

