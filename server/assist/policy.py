"""Policy rules applied to a real order: return window, warranty, cancellation, address.

The numbers live in data/policy.toml, the one source of truth: these functions apply
them to an order ("eligible until April 2" for this customer's tier), the playbooks
quote them, and a test checks the knowledge articles (knowledge/*.md) against them.
Both the local playbooks and the OpenAI `check_policy` tool use this module.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from server.assist import fmt

POLICY_FILE = Path(__file__).parent / "data" / "policy.toml"
POLICY: dict[str, Any] = tomllib.loads(POLICY_FILE.read_text())

DAY_MS = 86_400_000
RETURN_WINDOW_DAYS: int = POLICY["returns"]["window_days"]
WINDOW_BY_TIER: dict[str, int] = dict(POLICY["returns"].get("window_days_by_tier", {}))
WARRANTY_DAYS: int = POLICY["warranty"]["days"]
WARRANTY_LABEL: str = POLICY["warranty"]["label"]
LOST_AFTER_DAYS: int = POLICY["shipping"]["lost_after_days"]
"""Days after the estimated delivery before a package counts as lost."""
REFUND_TIMELINE = (
    f"issued within {POLICY['refunds']['issue_business_days']} business days of the item "
    f"arriving back with us, then usually takes {POLICY['refunds']['bank_business_days']} "
    "business days to show on your statement"
)
ARTICLES = {
    "return": "return-policy",
    "refund": "refund-policy",
    "exchange": "exchanges",
    "warranty": "warranty",
    "cancellation": "cancellation",
    "address_change": "address-change",
    "shipping_delay": "shipping-delays",
    "order_status": "order-tracking",
    "damaged_item": "damaged-items",
    "billing": "billing-disputes",
    "complaint": "complaints-escalation",
}
TOPICS = tuple(ARTICLES)


@dataclass(frozen=True)
class PolicyCheck:
    topic: str
    eligible: bool | None
    """None when the rule does not apply to this order (or there is no order)."""
    reason: str
    deadline_ms: int | None = None
    days_since_delivery: int | None = None
    article_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["deadline"] = fmt.day(self.deadline_ms) if self.deadline_ms else None
        return out


def return_window_days(tier: str | None) -> int:
    """The customer's return window: their tier's, else the standard one."""
    return int(WINDOW_BY_TIER.get((tier or "").lower(), RETURN_WINDOW_DAYS))


def policy(section: str, key: str) -> Any:
    """One number or phrase of data/policy.toml, e.g. policy("refunds", "bank_business_days")."""
    return POLICY[section][key]


def check_policy(
    topic: str, order: dict[str, Any] | None, *, now_ms: int, tier: str | None = None
) -> PolicyCheck:
    """Whether `order` qualifies under the policy for `topic`, and why."""
    article = ARTICLES.get(topic)
    if order is None:
        return PolicyCheck(topic, None, "no order identified yet", article_id=article)
    status = order.get("status", "")
    delivered = order.get("delivered_at")
    since = fmt.days_between(delivered, now_ms) if delivered else None
    oid = order.get("order_id")
    if topic in ("return", "refund", "exchange", "damaged_item"):
        if status in ("refunded", "returned"):
            return PolicyCheck(
                topic, False, f"order {oid} was already {status}", None, since, article
            )
        if status == "cancelled":
            return PolicyCheck(
                topic,
                False,
                f"order {oid} was cancelled; nothing was charged",
                None,
                since,
                article,
            )
        if status in ("placed", "processing"):
            return PolicyCheck(
                topic,
                True,
                f"order {oid} has not shipped: cancel it for an immediate refund",
                None,
                since,
                ARTICLES["cancellation"],
            )
        if not delivered:
            return PolicyCheck(
                topic,
                True,
                f"order {oid} is in transit: it can be refused at delivery or returned after",
                None,
                since,
                article,
            )
        window = return_window_days(tier)
        deadline = delivered + window * DAY_MS
        if topic == "damaged_item" or (since is not None and since <= window):
            return PolicyCheck(
                topic,
                True,
                f"delivered {since} days ago, within the {window}-day return window",
                deadline,
                since,
                article,
            )
        return PolicyCheck(
            topic,
            False,
            f"delivered {since} days ago, past the {window}-day return window"
            f" (a defect is covered by the {WARRANTY_LABEL} warranty)",
            deadline,
            since,
            article,
        )
    if topic == "warranty":
        if not delivered:
            return PolicyCheck(
                topic, None, f"order {oid} has not been delivered", None, since, article
            )
        deadline = delivered + WARRANTY_DAYS * DAY_MS
        window = return_window_days(tier)
        if since is not None and since <= window:
            return PolicyCheck(
                topic,
                True,
                f"delivered {since} days ago: still inside the {window}-day return window,"
                " so a refund or exchange is simplest",
                deadline,
                since,
                article,
            )
        if since is not None and since <= WARRANTY_DAYS:
            return PolicyCheck(
                topic,
                True,
                f"delivered {since} days ago, covered by the {WARRANTY_LABEL} warranty",
                deadline,
                since,
                article,
            )
        return PolicyCheck(
            topic,
            False,
            f"delivered {since} days ago, past the {WARRANTY_LABEL} warranty",
            deadline,
            since,
            article,
        )
    if topic == "cancellation":
        if status in ("placed", "processing"):
            return PolicyCheck(
                topic,
                True,
                f"order {oid} has not shipped yet and can be cancelled free of charge",
                None,
                since,
                article,
            )
        if status == "shipped":
            return PolicyCheck(
                topic,
                False,
                f"order {oid} has shipped: refuse the delivery or return it",
                None,
                since,
                article,
            )
        return PolicyCheck(
            topic,
            False,
            f"order {oid} is {status}; it can no longer be cancelled",
            None,
            since,
            article,
        )
    if topic == "address_change":
        if status in ("placed", "processing"):
            return PolicyCheck(
                topic,
                True,
                f"order {oid} has not shipped: the address can be changed",
                None,
                since,
                article,
            )
        if status == "shipped":
            return PolicyCheck(
                topic,
                None,
                f"order {oid} has shipped with {order.get('carrier') or 'the carrier'}:"
                " only a carrier redirect is possible",
                None,
                since,
                article,
            )
        return PolicyCheck(topic, False, f"order {oid} is {status}", None, since, article)
    if topic in ("shipping_delay", "order_status"):
        eta = order.get("estimated_delivery_at")
        if status == "delivered":
            return PolicyCheck(
                topic,
                None,
                f"order {oid} was delivered on {fmt.day(delivered)}",
                None,
                since,
                article,
            )
        if status == "shipped" and eta:
            late = fmt.days_between(eta, now_ms) if eta < now_ms else 0
            if late > LOST_AFTER_DAYS:
                return PolicyCheck(
                    topic,
                    True,
                    f"{late} days past its estimated delivery: treat as lost"
                    " (free replacement or refund)",
                    eta,
                    since,
                    article,
                )
            if late:
                return PolicyCheck(
                    topic,
                    True,
                    f"{late} days past its estimated delivery of {fmt.day(eta)}:"
                    " open a carrier trace",
                    eta,
                    since,
                    article,
                )
            return PolicyCheck(
                topic, False, f"on its way, expected {fmt.day(eta)}", eta, since, article
            )
        return PolicyCheck(topic, None, f"order {oid} is {status}", eta, since, article)
    return PolicyCheck(topic, None, "no rule for this topic", article_id=article)
