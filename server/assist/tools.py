"""Tools the OpenAI engine offers the model, executed here against the store.

The model never sees the database: it asks (`get_order_details {"order_id": "78901"}`)
and gets back JSON computed from real rows, and every record a tool returns becomes a
source of the suggestion, so the agent can see what an answer rests on.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from sqlmodel import col, or_, select

from server.assist import fmt
from server.assist.entities import ORDER_DIGITS
from server.assist.models import Order, Ticket
from server.assist.policy import ARTICLES, TOPICS, check_policy
from server.assist.spoken import normalize_numbers
from server.models import Customer

if TYPE_CHECKING:
    from server.assist.context import ContextSnapshot
    from server.assist.knowledge import KnowledgeBase
    from server.store import Store

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_customer",
            "description": "Look up a customer by phone, email, name or customer id; with no query, the caller. "
            "Returns the profile, recent orders and open tickets.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "phone, email, name or customer id"},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_order_details",
            "description": "Full details of one order: items, amount, status, carrier, tracking and dates.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {
                        "type": "string",
                        "description": f"the {ORDER_DIGITS}-digit order number",
                    },
                },
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_knowledge",
            "description": "Search the knowledge base of policies and procedures.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                },
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "check_policy",
            "description": "Apply a policy (return window, warranty, cancellation, ...) to an order and quote the rule.",
            "parameters": {
                "type": "object",
                "properties": {
                    "topic": {"type": "string", "enum": list(TOPICS)},
                    "order_id": {"type": "string"},
                },
                "required": ["topic"],
            },
        },
    },
]


class ToolError(ValueError):
    """The model called a tool wrongly; the message goes back to it as the tool result."""


class ToolRunner:
    """Runs tool calls for one suggestion and collects the records they returned."""

    def __init__(self, store: Store, knowledge: KnowledgeBase, snapshot: ContextSnapshot) -> None:
        self._store = store
        self._knowledge = knowledge
        self._snapshot = snapshot
        self.sources: list[dict[str, Any]] = []

    def _cite(self, source: dict[str, Any]) -> None:
        if source not in self.sources:
            self.sources.append(source)

    async def run(self, name: str, arguments: str) -> str:
        """The JSON result of one call; errors become results the model can read."""
        try:
            args = json.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise ToolError("arguments must be a JSON object")
            handler = {
                "lookup_customer": self.lookup_customer,
                "get_order_details": self.get_order_details,
                "search_knowledge": self.search_knowledge,
                "check_policy": self.check_policy,
            }.get(name)
            if handler is None:
                raise ToolError(f"unknown tool {name!r}")
            result = await handler(**{k: v for k, v in args.items() if isinstance(k, str)})
        except (ToolError, TypeError, json.JSONDecodeError) as exc:
            result = {"error": str(exc)}
        return json.dumps(result, ensure_ascii=False, default=str)

    async def lookup_customer(self, query: str = "") -> dict[str, Any]:
        query = query.strip()
        async with self._store.session() as session:
            if not query:
                customer = await session.get(Customer, self._snapshot.customer_id)
            else:
                digits = re.sub(r"\D", "", query)
                clauses: list[Any] = [
                    Customer.id == query,
                    Customer.email == query.lower(),
                    col(Customer.name).ilike(f"%{query}%"),
                ]
                if len(digits) >= 7:
                    clauses.append(col(Customer.phone).like(f"%{digits[-10:]}%"))
                customer = (
                    await session.exec(select(Customer).where(or_(*clauses)).limit(1))
                ).first()
            if customer is None:
                return {"found": False}
            orders = (
                await session.exec(
                    select(Order)
                    .where(Order.customer_id == customer.id)
                    .order_by(col(Order.created_at).desc())
                    .limit(10)
                )
            ).all()
            tickets = (
                await session.exec(
                    select(Ticket).where(
                        Ticket.customer_id == customer.id,
                        col(Ticket.status).in_(("open", "pending")),
                    )
                )
            ).all()
        return {
            "found": True,
            "is_caller": customer.id == self._snapshot.customer_id,
            "customer": {**customer.public(), "notes": customer.notes},
            "orders": [
                {
                    "order_id": o.id,
                    "items": fmt.items(o.public()),
                    "amount": o.amount,
                    "currency": o.currency,
                    "status": o.status,
                }
                for o in orders
            ],
            "open_tickets": [t.public() for t in tickets],
        }

    async def _order(self, order_id: Any) -> dict[str, Any] | None:
        number = _order_number(order_id)
        async with self._store.session() as session:
            row = await session.get(Order, number)
        if row is None:
            return None
        order = {**row.public(), "belongs_to_caller": row.customer_id == self._snapshot.customer_id}
        self._cite({"type": "order", "id": row.id})
        return order

    async def get_order_details(self, order_id: Any = "") -> dict[str, Any]:
        order = await self._order(order_id)
        if order is None:
            return {"found": False, "order_id": str(order_id)}
        now = self._snapshot.now_ms
        readable = {
            key + "_date": fmt.day(order[key])
            for key in ("created_at", "shipped_at", "estimated_delivery_at", "delivered_at")
            if order.get(key)
        }
        since = fmt.days_between(order["delivered_at"], now) if order.get("delivered_at") else None
        return {
            "found": True,
            **order,
            **readable,
            "days_since_delivery": since,
            "amount_text": fmt.money(order["amount"], order["currency"]),
        }

    async def search_knowledge(self, query: str = "") -> dict[str, Any]:
        hits = self._knowledge.search(str(query), k=3)
        for hit in hits:
            self._cite(hit.source())
        return {"articles": [{"id": h.id, "title": h.title, "passage": h.passage} for h in hits]}

    async def check_policy(self, topic: str = "", order_id: Any = None) -> dict[str, Any]:
        if topic not in TOPICS:
            raise ToolError(f"topic must be one of {', '.join(TOPICS)}")
        order = await self._order(order_id) if order_id else self._snapshot.focus_order
        tier = (self._snapshot.customer or {}).get("tier")
        check = check_policy(topic, order, now_ms=self._snapshot.now_ms, tier=tier)
        result: dict[str, Any] = check.to_dict()
        article = self._knowledge.get(check.article_id or ARTICLES.get(topic, ""))
        if article is not None:
            self._cite({"type": "article", "id": article.id, "title": article.title})
            result["policy"] = {"title": article.title, "text": article.body[:1200]}
        return result


def _order_number(value: Any) -> str:
    text = normalize_numbers(str(value or ""))
    digits = re.findall(r"\d+", text)
    return "".join(digits) if digits else str(value or "").strip()
