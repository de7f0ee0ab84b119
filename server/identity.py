"""Caller identity (API.md "Identity and limits"): a customer token is one session.

A phone or an email is a claim, not a proof. The session that typed it gets its own calls
only; the claim links the session to a CRM record for the agent's context, which the agent
sees unverified until it verifies the caller (`POST /api/calls/{id}/verify`). A customer
sees only what it typed, never the linked record.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from server.errors import ApiError, forbidden
from server.events import now_ms
from server.models import Call, CallCaller, CallerSession, Customer
from server.store import Store


async def open_session(store: Store, name: str, phone: str | None, email: str | None) -> CallerSession:
    """A new session linked to the customer with that phone or email, else to a new one."""
    async with store.write() as session:
        return await add_session(session, name, phone, email)


async def add_session(
    session: AsyncSession, name: str, phone: str | None, email: str | None
) -> CallerSession:
    """`open_session` within a write transaction of the caller's (committed with it)."""
    customer = None
    if phone or email:
        clauses = []
        if phone:
            clauses.append(col(Customer.phone) == phone)
        if email:
            clauses.append(col(Customer.email) == email)
        customer = (await session.exec(select(Customer).where(or_(*clauses)))).first()
    if customer is None:
        customer = Customer(name=name, phone=phone, email=email)
        session.add(customer)
        await session.flush()
    caller = CallerSession(customer_id=customer.id, name=name, phone=phone, email=email)
    session.add(caller)
    await session.flush()
    return caller


async def load_session(store: Store, session_id: str) -> CallerSession:
    async with store.session() as session:
        caller = await session.get(CallerSession, session_id)
    if caller is None:
        raise ApiError(401, "unauthorized", "this customer session no longer exists")
    return caller


async def caller_of(store: Store, call_id: str) -> tuple[CallCaller | None, CallerSession | None]:
    async with store.session() as session:
        link = await session.get(CallCaller, call_id)
        caller = await session.get(CallerSession, link.session_id) if link else None
    return link, caller


def check_owner(session_id: str, link: CallCaller | None) -> None:
    """A customer token reaches only the calls its own session made."""
    if link is None or link.session_id != session_id:
        raise forbidden("this is not your call")


def customer_call_view(call: Call, caller: CallerSession | None) -> dict[str, Any]:
    """`GET /api/calls/{id}` for its customer: what the caller typed and the call's state."""
    return {
        "call_id": call.id,
        "state": call.state,
        "reason": call.reason,
        "customer": caller.typed() if caller else {},
        "agent": None,
        "created_at": call.created_at,
        "accepted_at": call.accepted_at,
        "ended_at": call.ended_at,
    }


def staff_customer(
    customer: Customer | None, call: Call, link: CallCaller | None, caller: CallerSession | None
) -> dict[str, Any]:
    """The call's customer as staff see it: the linked record, whether the agent verified
    the caller, and what the caller typed (`claimed`), to verify against."""
    view: dict[str, Any] = customer.public() if customer else {"customer_id": call.customer_id}
    view["verified"] = bool(link and link.verified)
    if caller is not None:
        view["claimed"] = {k: v for k, v in caller.typed().items() if k != "customer_id"}
    return view


async def verify(store: Store, call_id: str, agent: str, customer_id: str | None) -> Call:
    """The agent confirms the caller is the linked customer, or links another record."""
    async with store.write() as session:
        call = await session.get(Call, call_id)
        if call is None:
            raise ApiError(404, "call_not_found", f"no call {call_id!r}")
        if call.state == "ended":
            raise ApiError(409, "call_ended", "the call has ended")
        if customer_id is not None and customer_id != call.customer_id:
            if await session.get(Customer, customer_id) is None:
                raise ApiError(404, "customer_not_found", f"no customer {customer_id!r}")
            call.customer_id = customer_id
            session.add(call)
        link = await session.get(CallCaller, call_id)
        if link is None:  # a call from before sessions existed
            raise ApiError(409, "no_caller_session", "this call has no caller session to verify")
        link.verified = True
        link.verified_by = agent
        link.verified_at = now_ms()
        session.add(link)
    return call


async def is_verified(store: Store, call_id: str) -> bool:
    async with store.session() as session:
        link = await session.get(CallCaller, call_id)
    return bool(link and link.verified)
