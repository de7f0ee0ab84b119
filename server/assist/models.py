"""Assist tables: orders, support tickets, knowledge articles and call summaries.

They share SQLModel's metadata with server/models.py, so `Store.create_schema()` creates
them. Times are epoch milliseconds in BigInteger columns; lists and documents are JSON.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Text
from sqlmodel import Field, SQLModel

from server.events import now_ms

ORDER_STATUSES = (
    "placed",
    "processing",
    "shipped",
    "delivered",
    "cancelled",
    "returned",
    "refunded",
)
TICKET_STATUSES = ("open", "pending", "resolved", "closed")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")


class Order(SQLModel, table=True):
    """A customer's order. `id` is the number customers read aloud ("78901")."""

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=40)
    items: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    """[{"sku", "name", "qty", "price"}], prices in `currency`."""
    amount: float = 0.0
    """Order total in `currency` units (two decimals)."""
    currency: str = Field(default="USD", max_length=3)
    status: str = Field(default="placed", max_length=20)
    shipping_address: str = ""
    carrier: str | None = Field(default=None, max_length=40)
    tracking_number: str | None = Field(default=None, max_length=80)
    created_at: int = Field(default_factory=now_ms, sa_column=Column(BigInteger, nullable=False))
    shipped_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    estimated_delivery_at: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=True)
    )
    delivered_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))

    def public(self) -> dict[str, Any]:
        return {
            "order_id": self.id,
            "customer_id": self.customer_id,
            "items": list(self.items or []),
            "amount": round(float(self.amount), 2),
            "currency": self.currency,
            "status": self.status,
            "shipping_address": self.shipping_address,
            "carrier": self.carrier,
            "tracking_number": self.tracking_number,
            "created_at": self.created_at,
            "shipped_at": self.shipped_at,
            "estimated_delivery_at": self.estimated_delivery_at,
            "delivered_at": self.delivered_at,
        }


class Ticket(SQLModel, table=True):
    """A support case opened for a customer, possibly about one order."""

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=40)
    order_id: str | None = Field(default=None, max_length=40)
    subject: str = Field(max_length=300)
    status: str = Field(default="open", max_length=20)
    priority: str = Field(default="normal", max_length=20)
    notes: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: int = Field(default_factory=now_ms, sa_column=Column(BigInteger, nullable=False))
    updated_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))

    def public(self) -> dict[str, Any]:
        return {
            "ticket_id": self.id,
            "customer_id": self.customer_id,
            "order_id": self.order_id,
            "subject": self.subject,
            "status": self.status,
            "priority": self.priority,
            "notes": self.notes,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Article(SQLModel, table=True):
    """A knowledge-base article; `id` is its slug (the Markdown file's stem)."""

    id: str = Field(primary_key=True, max_length=120)
    title: str = Field(max_length=300)
    body: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: int = Field(default_factory=now_ms, sa_column=Column(BigInteger, nullable=False))


class CallSummary(SQLModel, table=True):
    """The summary written when a call ends; one per call."""

    call_id: str = Field(primary_key=True, foreign_key="call.id", max_length=40)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=40)
    created_at: int = Field(default_factory=now_ms, sa_column=Column(BigInteger, nullable=False))
    body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
