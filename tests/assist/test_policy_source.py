"""One source of truth for policy numbers: data/policy.toml.

policy.py and the playbooks read it; the knowledge articles are prose for agents, so this
test checks every number they state against it. Changing a window in policy.toml without
the article (or the other way round) fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.assist.policy import (
    POLICY,
    RETURN_WINDOW_DAYS,
    WARRANTY_DAYS,
    check_policy,
    return_window_days,
)

KNOWLEDGE = Path(__file__).parents[2] / "server" / "assist" / "knowledge"
P = POLICY


def article(name: str) -> str:
    return (KNOWLEDGE / f"{name}.md").read_text()


def money(value: float) -> str:
    return f"${value:,.2f}".replace(".00", "")


# (article, sentence it must contain, rendered from policy.toml)
STATEMENTS = [
    ("return-policy", f"returned within {P['returns']['window_days']} days of delivery"),
    ("return-policy", f"a {money(P['returns']['label_fee'])} label fee"),
    ("return-policy", f"within {P['returns']['label_email_within']}"),
    ("return-policy", f"After {P['returns']['window_days']} days, a defective item is handled under the {P['warranty']['label']} warranty"),
    ("loyalty-tiers", f"a {P['returns']['window_days_by_tier']['platinum']}-day return window"),
    ("exchanges", f"free within {P['returns']['window_days']} days of delivery"),
    ("cancellation", f"return it within {P['returns']['window_days']} days of delivery"),
    ("warranty", f"{P['warranty']['label']} limited warranty"),
    ("warranty", f"Within {P['returns']['window_days']} days of delivery, a defective item"),
    ("warranty", f"ship within {P['warranty']['replacement_ships_business_days']} business days"),
    ("warranty", f"add {P['warranty']['extended_plan_years']} more years"),
    ("refund-policy", f"issued within {P['refunds']['issue_business_days']} business days"),
    ("refund-policy", f"within {P['refunds']['bank_business_days']} business days"),
    ("refund-policy", f"within {P['refunds']['authorisation_release_business_days']} business days"),
    ("refund-policy", f"after {P['refunds']['missing_after_business_days']} business days"),
    ("cancellation", f"within {P['refunds']['authorisation_release_business_days']} business days"),
    ("billing-disputes", f"within {P['refunds']['authorisation_release_business_days']} business days"),
    ("billing-disputes", f"by up to {P['billing']['chargeback_delay_days']} days"),
    ("billing-disputes", f"within {P['billing']['price_drop_days']} days of purchase"),
    ("price-adjustment", f"within {P['billing']['price_drop_days']} days of purchase"),
    ("shipping-delays", f"{P['shipping']['lost_after_days']} business days past its estimate"),
    ("shipping-delays", f"within {P['shipping']['trace_update_business_days']} business day"),
    ("shipping-times", f"before {P['shipping']['same_day_cutoff']} ship the same business day"),
    ("shipping-times", f"Express {P['shipping']['express_business_days']} business days"),
    ("shipping-times", f"Standard shipping takes {P['shipping']['standard_business_days']} business days"),
    ("international-orders", f"takes {P['shipping']['international_business_days']} business days"),
    ("address-change", f"a {money(P['address']['redirect_fee'])} fee"),
    ("account-security", f"valid for {P['account']['reset_link_minutes']} minutes"),
    ("complaints-escalation", f"up to {money(P['escalation']['goodwill_credit_max'])}"),
    ("complaints-escalation", f"within {P['escalation']['callback_business_hours']} business hours"),
    ("payment-methods", f"for {P['payments']['declined_hold_hours']} hours"),
]


@pytest.mark.parametrize(("name", "sentence"), STATEMENTS)
def test_articles_state_the_policy_numbers(name: str, sentence: str) -> None:
    assert sentence in " ".join(article(name).split()), f"{name}.md should say {sentence!r}"


def test_no_article_states_another_window() -> None:
    windows = {P["returns"]["window_days"], *P["returns"]["window_days_by_tier"].values()}
    for path in KNOWLEDGE.glob("*.md"):
        text = path.read_text()
        for m in re.finditer(r"(\d+)[- ]day return window|return window of (\d+) days|Return policy \((\d+) days\)", text):
            days = int(next(g for g in m.groups() if g))
            assert days in windows, f"{path.name}: {m.group(0)!r} is not a window in policy.toml"
        for m in re.finditer(r"(\d+)-year (?:limited )?warranty", text):
            assert int(m.group(1)) * 365 == WARRANTY_DAYS, f"{path.name}: {m.group(0)!r}"


def test_the_rules_read_the_file() -> None:
    assert return_window_days("platinum") == P["returns"]["window_days_by_tier"]["platinum"] == 60
    assert return_window_days("gold") == return_window_days(None) == RETURN_WINDOW_DAYS == 30
    day = 86_400_000
    now = 1_000 * day
    order = {"order_id": "1", "status": "delivered", "delivered_at": now - 45 * day}
    assert check_policy("refund", order, now_ms=now, tier="platinum").eligible is True
    assert check_policy("refund", order, now_ms=now, tier="standard").eligible is False
    warranty = check_policy("warranty", order, now_ms=now, tier="platinum")
    assert "60-day return window" in warranty.reason
