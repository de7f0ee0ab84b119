"""Demo data for `serve --demo`: customers, orders, tickets (data/demo.json) and the
knowledge base (knowledge/*.md).

Loading is idempotent: rows are keyed by fixed ids and only missing ones are added, so
restarting with --demo keeps whatever the demo calls changed. Times in demo.json are
days before the first load ("delivered_days_ago": 12), so the scenarios stay meaningful:

- Maria Garcia (+12025550101, gold): order 78901, wireless headphones ($149.00) delivered
  12 days ago — refund / return within 30 days.
- James Wilson (+12025550102): order 80112, standing desk, 3 days past its estimate.
- Priya Patel (+12025550103): order 65230, laptop delivered 8 months ago — warranty.
- Chen Wei (+12025550104): order 81544 still processing — cancel or change address.
- Olivia Brown (+12025550105): order 79320 with a duplicate-charge ticket.
- Ahmed Hassan (+12025550106, platinum): order 81020 shipped yesterday — address change;
  order 77310 delivered 45 days ago — inside his 60-day return window, outside 30.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from server.assist.importer import import_kb
from server.assist.models import Order, Ticket
from server.events import now_ms
from server.models import Customer

if TYPE_CHECKING:
    from server.store import Store

KNOWLEDGE_DIR = Path(__file__).parent / "knowledge"
DEMO_RECORDS = Path(__file__).parent / "data" / "demo.json"
DAY_MS = 86_400_000


def _ago(now: int, days: float | None) -> int | None:
    return None if days is None else now - int(days * DAY_MS)


def _at(now: int, days: float) -> int:
    return now - int(days * DAY_MS)


def demo_records(now: int, path: Path = DEMO_RECORDS) -> tuple[list[Customer], list[Order], list[Ticket]]:
    data: dict[str, list[dict[str, Any]]] = json.loads(path.read_text())
    customers = [
        Customer(
            id=c["id"],
            name=c["name"],
            phone=c.get("phone"),
            email=c.get("email"),
            tier=c.get("tier", "standard"),
            notes=c.get("notes", ""),
            created_at=_at(now, c.get("customer_since_days", 0)),
        )
        for c in data["customers"]
    ]
    orders = [
        Order(
            id=o["id"],
            customer_id=o["customer_id"],
            items=o["items"],
            amount=round(sum(i["price"] * i.get("qty", 1) for i in o["items"]), 2),
            currency=o.get("currency", "USD"),
            status=o["status"],
            shipping_address=o.get("shipping_address", ""),
            carrier=o.get("carrier"),
            tracking_number=o.get("tracking_number"),
            created_at=_at(now, o["created_days_ago"]),
            shipped_at=_ago(now, o.get("shipped_days_ago")),
            estimated_delivery_at=_ago(now, o.get("eta_days_ago")),
            delivered_at=_ago(now, o.get("delivered_days_ago")),
        )
        for o in data["orders"]
    ]
    tickets = [
        Ticket(
            id=t["id"],
            customer_id=t["customer_id"],
            order_id=t.get("order_id"),
            subject=t["subject"],
            status=t["status"],
            priority=t["priority"],
            notes=t.get("notes", ""),
            created_at=_at(now, t["created_days_ago"]),
            updated_at=_ago(now, t.get("updated_days_ago")),
        )
        for t in data["tickets"]
    ]
    return customers, orders, tickets


async def load_demo(store: Store, knowledge_dir: Path = KNOWLEDGE_DIR) -> None:
    """Add the demo customers, orders, tickets and articles that are not there yet."""
    customers, orders, tickets = demo_records(now_ms())
    async with store.write() as session:
        for model, rows in ((Customer, customers), (Order, orders), (Ticket, tickets)):
            ids = [row.id for row in rows]
            existing = set(
                (await session.exec(select(model.id).where(col(model.id).in_(ids)))).all()
            )
            for row in rows:
                if row.id not in existing:
                    session.add(row)
            # Customers first: orders and tickets reference them.
            await session.flush()
    await import_kb(store, knowledge_dir)
