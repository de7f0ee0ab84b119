"""Caller verification in the assistant: the one place that adds the verify action and the
caveat on replies that would disclose account details while the caller is unverified.

A customer's phone or email is a claim (server/identity.py): until the agent verifies the
caller, the linked record may belong to someone else. So the first suggestion is to verify,
and a reply that mentions the record's details says it must wait for verification.
"""

from __future__ import annotations

import re
from typing import Any

VERIFY_ACTION = (
    "Verify the caller's identity before discussing the account: ask for the order number "
    "or the email on file and a detail only the account holder knows, then press Verify."
)
CAVEAT = " (Caller not verified yet: verify identity before sharing these account details.)"

_ACCOUNT_WORDS = re.compile(
    r"\byour (order|orders|account|address|card|payment|balance|ticket|tickets|refund|"
    r"subscription|email|phone|tier|delivery|tracking|purchase)\b|\btracking number\b",
    re.IGNORECASE,
)


def account_values(customer: dict[str, Any] | None, orders: list[dict[str, Any]],
                   tickets: list[dict[str, Any]]) -> set[str]:
    """Strings from the linked record whose mention in a reply discloses it."""
    values: set[str] = set()
    for key in ("email", "phone"):
        value = (customer or {}).get(key)
        if isinstance(value, str) and value:
            values.add(value.lower())
    for record in [*orders, *tickets]:
        for key in ("order_id", "ticket_id", "id", "tracking_number"):
            value = record.get(key)
            if isinstance(value, str) and len(value) >= 4:
                values.add(value.lower())
    return values


def discloses(text: str, values: set[str]) -> bool:
    lowered = text.lower()
    return bool(_ACCOUNT_WORDS.search(text)) or any(v in lowered for v in values)


def caveat_for(kind: str, text: str, values: set[str]) -> str:
    """The text to append to a finished suggestion for an unverified caller ('' if none)."""
    if kind != "reply" or CAVEAT.strip() in text or not discloses(text, values):
        return ""
    return CAVEAT
