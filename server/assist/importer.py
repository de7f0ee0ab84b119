"""Import knowledge articles (Markdown), customers and orders (JSON or CSV) into the store.

Every file is read and validated in full before anything is written, so a bad record
leaves the database untouched; the error names the file and the record. Re-importing
updates what exists (articles and orders by id, customers by id, email or phone).
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import or_, select

from server.assist.models import ORDER_STATUSES, Article, Order
from server.events import now_ms
from server.models import Customer

if TYPE_CHECKING:
    from server.store import Store

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ImportFileError(ValueError):
    """A file (or one record in it) cannot be imported; the message says where and why."""


# --- knowledge articles -------------------------------------------------------------


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(fields, rest) of a Markdown file with optional `---` front matter.

    Supports the subset articles use: `key: value`, `key: [a, b]`, `key: a, b` and
    `- item` lists under a bare `key:`.
    """
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        raise ValueError("front matter starts with --- but never ends") from None
    fields: dict[str, Any] = {}
    key = None
    for number, line in enumerate(lines[1:end], start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        stripped = line.strip()
        if stripped.startswith("- ") and key is not None:
            current = fields.get(key)
            fields[key] = (
                [*current, _unquote(stripped[2:])]
                if isinstance(current, list)
                else [_unquote(stripped[2:])]
            )
            continue
        if ":" not in line:
            raise ValueError(f"front matter line {number} is not 'key: value': {line!r}")
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if value.startswith("[") and value.endswith("]"):
            fields[key] = [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
        elif value == "":
            fields[key] = []
        else:
            fields[key] = _unquote(value)
    return fields, "\n".join(lines[end + 1 :])


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_article(path: Path) -> Article:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ImportFileError(f"{path}: not UTF-8 text") from None
    try:
        meta, body = parse_front_matter(text)
    except ValueError as exc:
        raise ImportFileError(f"{path}: {exc}") from None
    body = body.strip()
    title = str(meta.get("title") or "").strip()
    heading = re.match(r"#\s+(.+)", body)
    if heading and (not title or heading.group(1).strip() == title):
        title = title or heading.group(1).strip()
        body = body[heading.end() :].strip()  # the title is shown separately
    if not title:
        raise ImportFileError(f"{path}: no title (front matter 'title:' or a first '# ' heading)")
    if not body:
        raise ImportFileError(f"{path}: the article has no text")
    slug = str(meta.get("id") or meta.get("slug") or path.stem).strip().lower()
    if not _SLUG.match(slug):
        raise ImportFileError(f"{path}: id {slug!r} must be lowercase letters, digits, - or _")
    tags = meta.get("tags", [])
    if isinstance(tags, str):
        tags = [t for t in tags.split(",")]
    tags = [str(t).strip().lower() for t in tags if str(t).strip()]
    return Article(id=slug, title=title[:300], body=body, tags=tags, updated_at=now_ms())


async def import_kb(store: Store, directory: Path) -> int:
    """Import every `*.md` under `directory`; returns how many articles were written."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ImportFileError(f"{directory}: not a directory")
    paths = sorted(directory.rglob("*.md"))
    if not paths:
        raise ImportFileError(f"{directory}: no Markdown (*.md) articles found")
    articles: dict[str, tuple[Path, Article]] = {}
    for path in paths:
        article = parse_article(path)
        if article.id in articles:
            raise ImportFileError(
                f"{path}: id {article.id!r} is also used by {articles[article.id][0]}"
            )
        articles[article.id] = (path, article)
    async with store.write() as session:
        for _, article in articles.values():
            existing = await session.get(Article, article.id)
            if existing is None:
                session.add(article)
            else:
                existing.title, existing.body = article.title, article.body
                existing.tags, existing.updated_at = article.tags, article.updated_at
                session.add(existing)
    return len(articles)


# --- records (customers, orders) -----------------------------------------------------


def read_records(path: Path, key: str) -> list[tuple[str, dict[str, Any]]]:
    """[(where, record)] from a JSON list (or {key: [...]}) or a CSV file with a header."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ImportFileError(f"{path}: not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFileError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        if isinstance(data, dict) and isinstance(data.get(key), list):
            data = data[key]
        if not isinstance(data, list):
            raise ImportFileError(
                f'{path}: expected a JSON list of objects (or {{"{key}": [...]}})'
            )
        out = []
        for n, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                raise ImportFileError(f"{path}: record {n} is not an object")
            out.append((f"{path}: record {n}", item))
        return out
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise ImportFileError(f"{path}: empty CSV (a header row is required)")
        out = []
        for row in reader:
            if None in row:
                raise ImportFileError(
                    f"{path}: line {reader.line_num} has more cells than the header"
                )
            clean = {
                k.strip().lower(): (v.strip() if isinstance(v, str) else v)
                for k, v in row.items()
                if k
            }
            if any(clean.values()):
                out.append(
                    (
                        f"{path}: line {reader.line_num}",
                        {k: v for k, v in clean.items() if v not in ("", None)},
                    )
                )
        return out
    raise ImportFileError(f"{path}: unsupported file type {suffix or '(none)'}; use .json or .csv")


def _text(
    record: dict[str, Any], name: str, where: str, *, required: bool = False, max_len: int = 300
) -> str | None:
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ImportFileError(f"{where}: '{name}' is required")
        return None
    if not isinstance(value, str | int):
        raise ImportFileError(f"{where}: '{name}' must be text")
    value = str(value).strip()
    if len(value) > max_len:
        raise ImportFileError(f"{where}: '{name}' is longer than {max_len} characters")
    return value


def _customer_from(record: dict[str, Any], where: str) -> dict[str, Any]:
    email = _text(record, "email", where, max_len=200)
    if email is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
        raise ImportFileError(f"{where}: email {email!r} is not an email address")
    phone = _text(record, "phone", where, max_len=40)
    if phone is not None and len(re.sub(r"\D", "", phone)) < 7:
        raise ImportFileError(f"{where}: phone {phone!r} has too few digits")
    return {
        "id": _text(record, "id", where, max_len=40)
        or _text(record, "customer_id", where, max_len=40),
        "name": _text(record, "name", where, required=True, max_len=200),
        "email": email.lower() if email else None,
        "phone": phone,
        "tier": (_text(record, "tier", where, max_len=20) or "standard").lower(),
        "notes": _text(record, "notes", where, max_len=5000) or "",
    }


async def import_customers(store: Store, path: Path) -> int:
    """Import customers; an existing one (same id, else email, else phone) is updated."""
    rows = [_customer_from(record, where) for where, record in read_records(path, "customers")]
    async with store.write() as session:
        for row in rows:
            existing = await _find_customer(session, row["id"], row["email"], row["phone"])
            if existing is None:
                fields = {k: v for k, v in row.items() if v is not None}
                session.add(Customer(**fields))
                await session.flush()
                continue
            for name in ("name", "email", "phone", "tier", "notes"):
                if row[name] is not None and (name != "notes" or row[name]):
                    setattr(existing, name, row[name])
            session.add(existing)
    return len(rows)


async def _find_customer(
    session: Any, cid: str | None, email: str | None, phone: str | None
) -> Customer | None:
    if cid:
        found = await session.get(Customer, cid)
        if found is not None:
            return found
    clauses = []
    if email:
        clauses.append(Customer.email == email)
    if phone:
        clauses.append(Customer.phone == phone)
    if not clauses:
        return None
    return (await session.exec(select(Customer).where(or_(*clauses)))).first()


def parse_time(value: Any, where: str, name: str) -> int | None:
    """Epoch ms from an int (ms, or seconds if small) or an ISO date/datetime string."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ImportFileError(f"{where}: '{name}' must be a time")
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(float(str(value)))
        return number * 1000 if number < 10_000_000_000 else number
    try:
        text = str(value).strip().replace("Z", "+00:00")
        parsed = datetime.fromisoformat(text) if "T" in text or " " in text else None
        if parsed is None:
            day = date.fromisoformat(text)
            parsed = datetime(day.year, day.month, day.day)
    except ValueError:
        raise ImportFileError(
            f"{where}: '{name}' must be epoch ms or an ISO date, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _items(value: Any, where: str) -> list[dict[str, Any]]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ImportFileError(f"{where}: 'items' is not valid JSON") from None
        else:
            # CSV shorthand: "Headphones x1 @149.00; Case x2 @9.99"
            items = []
            for part in value.split(";"):
                m = re.match(r"^\s*(.+?)(?:\s+x(\d+))?(?:\s*@\s*([\d.]+))?\s*$", part)
                if not m or not m.group(1):
                    raise ImportFileError(
                        f"{where}: cannot read item {part!r} (use 'Name x2 @9.99')"
                    )
                items.append(
                    {
                        "name": m.group(1),
                        "qty": int(m.group(2) or 1),
                        "price": float(m.group(3)) if m.group(3) else None,
                    }
                )
            return items
    if not isinstance(value, list):
        raise ImportFileError(f"{where}: 'items' must be a list")
    out = []
    for n, item in enumerate(value, start=1):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not item.get("name"):
            raise ImportFileError(f"{where}: item {n} needs a name")
        try:
            qty = int(str(item.get("qty", item.get("quantity", 1))))
            price = None if item.get("price") is None else float(item["price"])
        except (TypeError, ValueError):
            raise ImportFileError(f"{where}: item {n} has a bad qty or price") from None
        out.append({**item, "name": str(item["name"]), "qty": qty, "price": price})
    return out


def _order_from(record: dict[str, Any], where: str) -> dict[str, Any]:
    order_id = _text(record, "id", where, max_len=40) or _text(
        record, "order_id", where, required=True, max_len=40
    )
    items = _items(record.get("items"), where)
    raw_amount = record.get("amount", record.get("total"))
    try:
        if raw_amount is None:
            amount = sum((i.get("price") or 0) * i.get("qty", 1) for i in items)
        else:
            amount = float(str(raw_amount).replace("$", "").replace(",", ""))
    except ValueError:
        raise ImportFileError(f"{where}: 'amount' must be a number, got {raw_amount!r}") from None
    status = (_text(record, "status", where, max_len=20) or "placed").lower()
    if status not in ORDER_STATUSES:
        raise ImportFileError(
            f"{where}: status {status!r} is not one of {', '.join(ORDER_STATUSES)}"
        )
    currency = (_text(record, "currency", where, max_len=3) or "USD").upper()
    return {
        "id": order_id,
        "customer": (
            _text(record, "customer_id", where, max_len=40),
            (_text(record, "customer_email", where, max_len=200) or "").lower() or None,
            _text(record, "customer_phone", where, max_len=40),
        ),
        "items": items,
        "amount": round(amount, 2),
        "currency": currency,
        "status": status,
        "shipping_address": _text(record, "shipping_address", where, max_len=500) or "",
        "carrier": _text(record, "carrier", where, max_len=40),
        "tracking_number": _text(record, "tracking_number", where, max_len=80),
        "created_at": parse_time(record.get("created_at"), where, "created_at") or now_ms(),
        "shipped_at": parse_time(record.get("shipped_at"), where, "shipped_at"),
        "estimated_delivery_at": parse_time(
            record.get("estimated_delivery_at"), where, "estimated_delivery_at"
        ),
        "delivered_at": parse_time(record.get("delivered_at"), where, "delivered_at"),
        "where": where,
    }


async def import_orders(store: Store, path: Path) -> int:
    """Import orders; each names its customer by customer_id, customer_email or customer_phone."""
    rows = [_order_from(record, where) for where, record in read_records(path, "orders")]
    async with store.write() as session:
        for row in rows:
            where = row.pop("where")
            cid, email, phone = row.pop("customer")
            if not (cid or email or phone):
                raise ImportFileError(
                    f"{where}: customer_id (or customer_email / customer_phone) is required"
                )
            customer = await _find_customer(session, cid, email, phone)
            if customer is None:
                raise ImportFileError(
                    f"{where}: no customer {cid or email or phone!r}; import customers first"
                )
            existing = await session.get(Order, row["id"])
            if existing is None:
                session.add(Order(customer_id=customer.id, **row))
            else:
                for name, value in row.items():
                    setattr(existing, name, value)
                existing.customer_id = customer.id
                session.add(existing)
    return len(rows)
