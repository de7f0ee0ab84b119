"""How records read in suggestions: money, days, item lists, names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def money(amount: float | None, currency: str = "USD") -> str:
    if amount is None:
        return "the amount"
    symbol = _SYMBOLS.get(currency.upper())
    return f"{symbol}{amount:,.2f}" if symbol else f"{amount:,.2f} {currency.upper()}"


def day(ms: int | None) -> str:
    """'March 3' (UTC); the year only when it is not the current one."""
    if ms is None:
        return "an unknown date"
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = f"{when:%B} {when.day}"
    if when.year != datetime.now(UTC).year:
        text += f", {when.year}"
    return text


def days_between(earlier_ms: int, later_ms: int) -> int:
    return max(0, (later_ms - earlier_ms) // 86_400_000)


def items(order: dict[str, Any]) -> str:
    """'Aurora Headphones' / '2 × Slim Case' / 'Aurora Headphones and 2 more items'."""
    entries = order.get("items") or []
    if not entries:
        return "the items"
    first = entries[0]
    name = str(first.get("name", "item"))
    qty = int(first.get("qty") or 1)
    text = f"{qty} × {name}" if qty > 1 else name
    if len(entries) > 1:
        rest = len(entries) - 1
        text += f" and {rest} more item{'s' if rest > 1 else ''}"
    return text


def first_name(customer: dict[str, Any] | None) -> str:
    if not customer or not customer.get("name"):
        return ""
    return str(customer["name"]).split()[0]
