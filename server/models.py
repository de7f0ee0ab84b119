"""Tables of the call backbone: accounts, customers, calls and the per-call event log.

Assist data (orders, tickets, knowledge articles, summaries) lives in server/assist/models.py
on the same metadata.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.events import now_ms


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class User(SQLModel, table=True):
    """A staff account: an agent or an admin."""

    username: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=16)
    password_hash: str
    created_at: int = Field(default_factory=now_ms, sa_column=Column(BigInteger, nullable=False))


class Customer(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("cus"), primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    phone: str | None = Field(default=None, index=True, max_length=40)
    email: str | None = Field(default=None, index=True, max_length=200)
    tier: str = Field(default="standard", max_length=20)
    notes: str = ""
    created_at: int = Field(default_factory=now_ms, sa_column=Column(BigInteger, nullable=False))

    def public(self) -> dict[str, Any]:
        return {
            "customer_id": self.id,
            "name": self.name,
            "phone": self.phone,
            "email": self.email,
            "tier": self.tier,
        }


class Call(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("call"), primary_key=True, max_length=40)
    state: str = Field(default="waiting", index=True, max_length=16)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=40)
    agent: str | None = Field(default=None, max_length=64)
    channel: str = Field(default="web", max_length=16)
    """How the customer reached us: `web` (browser) or `phone`."""
    reason: str = ""
    created_at: int = Field(default_factory=now_ms, sa_column=Column(BigInteger, nullable=False))
    accepted_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    ended_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    last_seq: int = 0


class CallEvent(SQLModel, table=True):
    """One persisted event, exactly as it was sent (`body`), numbered per call by `seq`."""

    __table_args__ = (
        UniqueConstraint("call_id", "seq", name="uq_callevent_call_seq"),
        Index("ix_callevent_call_type", "call_id", "type"),
    )

    id: int | None = Field(default=None, primary_key=True)
    call_id: str = Field(foreign_key="call.id", max_length=40)
    seq: int
    type: str = Field(max_length=32)
    ts: int = Field(sa_column=Column(BigInteger, nullable=False))
    body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class CallerSession(SQLModel, table=True):
    """One customer session: a browser tab (or a phone call) and what the caller typed.

    `customer_id` links it to the CRM record with the same phone or email (or to one made
    for it). The link is a claim: it feeds the agent's context, shown unverified until the
    agent verifies the caller; it never gives the session another session's calls.
    """

    id: str = Field(default_factory=lambda: new_id("ses"), primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=40)
    name: str = Field(max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=200)
    created_at: int = Field(default_factory=now_ms, sa_column=Column(BigInteger, nullable=False))

    def typed(self) -> dict[str, Any]:
        """What the caller typed, and nothing from the CRM record."""
        fields = {"customer_id": self.id, "name": self.name, "phone": self.phone, "email": self.email}
        return {k: v for k, v in fields.items() if v is not None}


class CallCaller(SQLModel, table=True):
    """Which session placed a call, and whether its agent verified the caller's identity."""

    call_id: str = Field(foreign_key="call.id", primary_key=True, max_length=40)
    session_id: str = Field(foreign_key="callersession.id", index=True, max_length=40)
    verified: bool = False
    verified_by: str | None = Field(default=None, max_length=64)
    verified_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class UserAccess(SQLModel, table=True):
    """A staff account's revocation state (`user disable` / `user enable`).

    Tokens issued before `revoked_at` stop working; `disabled` also refuses new logins.
    """

    username: str = Field(foreign_key="user.username", primary_key=True, max_length=64)
    disabled: bool = False
    revoked_at: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
