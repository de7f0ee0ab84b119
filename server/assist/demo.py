"""Demo data for `serve --demo`: customers, orders, tickets and the knowledge base.

Loading is idempotent: rows are keyed by fixed ids and only missing ones are added, so
restarting with --demo keeps whatever the demo calls changed. Dates are relative to the
first load ("delivered 12 days ago"), so the scenarios below stay meaningful:

- Maria Garcia (+12025550101): order 78901, wireless headphones ($149.00) delivered 12
  days ago — refund / return within 30 days.
- James Wilson (+12025550102): order 80112, standing desk, 3 days past its estimate.
- Priya Patel (+12025550103): order 65230, laptop delivered 8 months ago — warranty.
- Chen Wei (+12025550104): order 81544 still processing — cancel or change address.
- Olivia Brown (+12025550105): order 79320 with a duplicate-charge ticket.
- Ahmed Hassan (+12025550106): order 81020 shipped yesterday — address change.
"""

from __future__ import annotations

import random
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
DAY_MS = 86_400_000

_FIRST = [
    "Maria",
    "James",
    "Priya",
    "Chen",
    "Olivia",
    "Ahmed",
    "Sofia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Lucas",
    "Mia",
    "Ethan",
    "Amara",
    "Mateo",
    "Hannah",
    "Kenji",
    "Chloe",
    "Daniel",
    "Fatima",
    "Oliver",
    "Grace",
    "Ravi",
    "Isabella",
    "Samuel",
    "Zoe",
    "Diego",
    "Leah",
    "Tomasz",
    "Nadia",
    "Marcus",
    "Elena",
    "Yusuf",
    "Ruby",
    "Kwame",
]
_LAST = [
    "Garcia",
    "Wilson",
    "Patel",
    "Wei",
    "Brown",
    "Hassan",
    "Rossi",
    "Murphy",
    "Schmidt",
    "Johnson",
    "Okafor",
    "Silva",
    "Novak",
    "Nguyen",
    "Martin",
    "Lopez",
    "Cohen",
    "Tanaka",
    "Dubois",
    "Kim",
    "Khan",
    "Smith",
    "Taylor",
    "Sharma",
    "Costa",
    "Adeyemi",
    "Clarke",
    "Fernandez",
    "Levi",
    "Kowalski",
    "Petrova",
    "Reed",
    "Popescu",
    "Demir",
    "Walsh",
    "Mensah",
]
_STREETS = ("Maple Ave", "Oak St", "Pine Rd", "Cedar Ln", "Elm St", "Lakeview Dr", "Hillcrest Rd")
_CITIES = (
    "Springfield, IL 62701",
    "Portland, OR 97205",
    "Austin, TX 78701",
    "Columbus, OH 43215",
    "Denver, CO 80202",
    "Raleigh, NC 27601",
)
_CATALOG = (
    ("HP-200", "Aurora Wireless Noise-Cancelling Headphones", 149.00),
    ("DK-400", "ErgoLift Standing Desk", 429.00),
    ("LT-140", "Nimbus 14 Laptop", 899.00),
    ("CG-010", "BrewMaster Burr Coffee Grinder", 89.00),
    ("SW-300", "Pulse Smart Watch", 249.00),
    ("PC-015", "Slim Phone Case", 19.99),
    ("SP-120", "Echo Mini Bluetooth Speaker", 59.99),
    ("KB-075", "Tactile Mechanical Keyboard", 119.00),
    ("MS-020", "Glide Wireless Mouse", 29.99),
    ("CH-060", "65W USB-C Charger", 39.99),
    ("BK-500", "Trailhead Hiking Backpack", 84.50),
    ("LM-090", "Lumen Desk Lamp", 45.00),
    ("CM-250", "Vista 4K Webcam", 129.00),
    ("TB-800", "Orbit 11 Tablet", 349.00),
)
_CARRIERS = ("UPS", "FedEx", "USPS")


def _customers() -> list[Customer]:
    tiers = ("gold", "standard", "silver", "standard", "standard", "platinum")
    notes = {
        0: "Prefers email follow-ups. Long-time customer since 2019.",
        1: "Works from home; deliveries to the side door.",
        2: "Bought extended protection on earlier orders.",
        5: "Platinum: dedicated account manager is Dana Reyes.",
    }
    out = []
    for n, (first, last) in enumerate(zip(_FIRST, _LAST, strict=True)):
        out.append(
            Customer(
                id=f"cus_demo_{n + 1:02d}",
                name=f"{first} {last}",
                phone=f"+120255501{n + 1:02d}",
                email=f"{first.lower()}.{last.lower()}@example.com",
                tier=tiers[n % len(tiers)] if n < 6 else ("silver" if n % 5 == 0 else "standard"),
                notes=notes.get(n, ""),
                created_at=now_ms() - (400 + 17 * n) * DAY_MS,
            )
        )
    return out


def _address(rng: random.Random) -> str:
    return f"{rng.randint(10, 990)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}"


def _item(sku: str, qty: int = 1) -> tuple[list[dict[str, Any]], float]:
    code, name, price = next(p for p in _CATALOG if p[0] == sku)
    return [{"sku": code, "name": name, "qty": qty, "price": price}], round(price * qty, 2)


def _order(
    oid: str,
    cid: str,
    sku: str,
    status: str,
    now: int,
    rng: random.Random,
    *,
    created_days: float,
    shipped_days: float | None = None,
    eta_days: float | None = None,
    delivered_days: float | None = None,
) -> Order:
    items, amount = _item(sku)
    shipped = shipped_days is not None
    return Order(
        id=oid,
        customer_id=cid,
        items=items,
        amount=amount,
        currency="USD",
        status=status,
        shipping_address=_address(rng),
        carrier=rng.choice(_CARRIERS) if shipped else None,
        tracking_number=f"1Z{rng.randint(10**11, 10**12 - 1)}" if shipped else None,
        created_at=now - int(created_days * DAY_MS),
        shipped_at=now - int(shipped_days * DAY_MS) if shipped_days is not None else None,
        estimated_delivery_at=now - int(eta_days * DAY_MS) if eta_days is not None else None,
        delivered_at=now - int(delivered_days * DAY_MS) if delivered_days is not None else None,
    )


def _orders(customers: list[Customer], now: int) -> list[Order]:
    rng = random.Random(78901)
    c = [cust.id for cust in customers]
    scripted = [
        _order(
            "78901",
            c[0],
            "HP-200",
            "delivered",
            now,
            rng,
            created_days=16,
            shipped_days=15,
            eta_days=12,
            delivered_days=12,
        ),
        _order(
            "78455",
            c[0],
            "PC-015",
            "delivered",
            now,
            rng,
            created_days=75,
            shipped_days=74,
            eta_days=70,
            delivered_days=70,
        ),
        _order(
            "80112", c[1], "DK-400", "shipped", now, rng, created_days=9, shipped_days=8, eta_days=3
        ),
        _order(
            "65230",
            c[2],
            "LT-140",
            "delivered",
            now,
            rng,
            created_days=245,
            shipped_days=244,
            eta_days=240,
            delivered_days=240,
        ),
        _order("81544", c[3], "CG-010", "processing", now, rng, created_days=0.3),
        _order(
            "79320",
            c[4],
            "SW-300",
            "delivered",
            now,
            rng,
            created_days=9,
            shipped_days=8,
            eta_days=5,
            delivered_days=5,
        ),
        _order(
            "81020",
            c[5],
            "TB-800",
            "shipped",
            now,
            rng,
            created_days=2,
            shipped_days=1,
            eta_days=-2,
        ),
    ]
    used = {o.id for o in scripted}
    generated = []
    for cid in c:
        for _ in range(rng.randint(1, 3)):
            oid = str(rng.randint(20000, 99999))
            while oid in used:
                oid = str(rng.randint(20000, 99999))
            used.add(oid)
            sku = rng.choice(_CATALOG)[0]
            age = rng.uniform(1, 300)
            if age < 2:
                order = _order(oid, cid, sku, "processing", now, rng, created_days=age)
            elif age < 6:
                order = _order(
                    oid,
                    cid,
                    sku,
                    "shipped",
                    now,
                    rng,
                    created_days=age,
                    shipped_days=age - 1,
                    eta_days=age - 5,
                )
            else:
                status = rng.choice(("delivered",) * 6 + ("returned", "refunded", "cancelled"))
                if status == "cancelled":
                    order = _order(oid, cid, sku, status, now, rng, created_days=age)
                else:
                    order = _order(
                        oid,
                        cid,
                        sku,
                        status,
                        now,
                        rng,
                        created_days=age,
                        shipped_days=age - 1,
                        eta_days=age - 4,
                        delivered_days=age - 4,
                    )
            generated.append(order)
    return scripted + generated


def _tickets(customers: list[Customer], now: int) -> list[Ticket]:
    c = [cust.id for cust in customers]
    rows = [
        (
            "TCK-1001",
            c[0],
            "78455",
            "Phone case colour differs from photo",
            "closed",
            "low",
            68,
            "Customer kept the case; 10% goodwill credit issued.",
        ),
        (
            "TCK-1002",
            c[1],
            "80112",
            "Standing desk delivery late",
            "open",
            "high",
            1,
            "Carrier trace requested; customer works from home and needs the desk.",
        ),
        (
            "TCK-1003",
            c[2],
            "65230",
            "Laptop fan noise",
            "resolved",
            "normal",
            120,
            "Firmware update fixed it; customer to call back if it returns.",
        ),
        (
            "TCK-1004",
            c[4],
            "79320",
            "Charged twice for smart watch",
            "open",
            "urgent",
            2,
            "Two posted charges of $249.00 on the card statement.",
        ),
        ("TCK-1005", c[5], None, "Update account email", "closed", "normal", 30, ""),
    ]
    rng = random.Random(1002)
    subjects = (
        "Question about delivery window",
        "Request invoice copy",
        "Gift wrap missing",
        "Promo code did not apply",
        "Product usage question",
        "Return label not received",
    )
    for n, cid in enumerate(c[6:], start=6):
        if n % 3 == 0:
            status = rng.choice(("open", "pending", "resolved", "closed", "closed"))
            rows.append(
                (
                    f"TCK-{1000 + n}",
                    cid,
                    None,
                    rng.choice(subjects),
                    status,
                    rng.choice(("low", "normal", "normal", "high")),
                    rng.randint(1, 200),
                    "",
                )
            )
    return [
        Ticket(
            id=tid,
            customer_id=cid,
            order_id=oid,
            subject=subject,
            status=status,
            priority=priority,
            notes=notes,
            created_at=now - days * DAY_MS,
            updated_at=now - max(0, days - 1) * DAY_MS,
        )
        for tid, cid, oid, subject, status, priority, days, notes in rows
    ]


async def load_demo(store: Store, knowledge_dir: Path = KNOWLEDGE_DIR) -> None:
    """Add the demo customers, orders, tickets and articles that are not there yet."""
    now = now_ms()
    customers = _customers()
    orders = _orders(customers, now)
    tickets = _tickets(customers, now)
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
