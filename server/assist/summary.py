"""The local call summary: reason, entities, actions, outcome, sentiment, and prose.

Built from the snapshot alone (no model), so it is always available: it is the summary
of the local engine and the fallback of the OpenAI one, whose fields it also fills in.
"""

from __future__ import annotations

import re
from typing import Any

from server.assist import fmt
from server.assist.context import ContextSnapshot

_THANKS = re.compile(
    r"\b(thank(s| you)|perfect|great|that helps|that works|appreciate|awesome|brilliant)\b", re.I
)
_ESCALATED = re.compile(r"\b(supervisor|team lead|manager|escalat\w*)\b", re.I)


def build_summary(snap: ContextSnapshot) -> dict[str, Any]:
    customer = snap.customer or {}
    reasons = [t.label for t in snap.call_topics]
    reason = reasons[0] if reasons else (snap.call_reason or "General inquiry")
    used = [s for s in snap.suggestions if s.get("feedback") == "used"]
    dismissed = [s for s in snap.suggestions if s.get("feedback") == "dismissed"]
    mentioned = [o["order_id"] for o in snap.mentioned_orders]
    outcome = _outcome(snap, used)
    starts = [t.start_ms for t in snap.turns if t.start_ms is not None]
    ends = [t.end_ms for t in snap.turns if t.end_ms is not None]
    trend = snap.sentiment_trend
    summary: dict[str, Any] = {
        "call_id": snap.call_id,
        "customer_id": snap.customer_id,
        "customer_name": customer.get("name"),
        "reason": reason,
        "intents": reasons,
        "call_reason": snap.call_reason or None,
        "orders": mentioned or ([snap.focus_order["order_id"]] if snap.focus_order else []),
        "entities": snap.entities.to_dict(),
        "actions": [
            {"suggestion_id": s["suggestion_id"], "kind": s.get("kind"), "text": s.get("text")}
            for s in used
        ],
        "suggestions": {
            "shown": len(snap.suggestions),
            "used": len(used),
            "dismissed": len(dismissed),
        },
        "outcome": outcome,
        "sentiment": {
            **trend.to_dict(),
            "label_start": _mood(trend.start),
            "label_end": _mood(trend.end),
        },
        "turns": len(snap.turns),
        "duration_ms": (max(ends) - min(starts)) if starts and ends else None,
        "follow_up": _follow_up(snap, outcome),
        "engine": "local",
    }
    summary["text"] = _prose(snap, summary)
    return summary


def _mood(score: float) -> str:
    return "negative" if score <= -0.25 else "positive" if score >= 0.25 else "neutral"


def _outcome(snap: ContextSnapshot, used: list[dict[str, Any]]) -> str:
    turns = list(snap.turns)
    if not turns:
        return "no conversation"
    agent_text = " ".join(t.text for t in turns if t.speaker == "agent")
    used_text = " ".join(str(s.get("text", "")) for s in used)
    if (
        _ESCALATED.search(agent_text)
        and re.search(r"\b(call (you )?back|escalat|ticket)\w*", agent_text, re.I)
        or re.search(r"escalation ticket", used_text, re.I)
    ):
        return "escalated"
    last_customer = next((t for t in reversed(turns) if t.speaker == "customer"), None)
    if last_customer is not None:
        if _THANKS.search(last_customer.text) or (
            last_customer.sentiment and last_customer.sentiment.score >= 0.25
        ):
            return "resolved"
        if last_customer.sentiment and last_customer.sentiment.score <= -0.25:
            return "unresolved"
    return "resolved" if used else "information provided"


def _follow_up(snap: ContextSnapshot, outcome: str) -> list[str]:
    items = [
        f"Order number {n} was not found; confirm it with the customer."
        for n in snap.unknown_order_numbers
    ]
    if outcome in ("escalated", "unresolved"):
        items.append("Call the customer back with an update.")
    items += [
        f"Open ticket {t['ticket_id']}: {t['subject']}"
        for t in snap.tickets
        if t.get("status") in ("open", "pending")
    ]
    return items


def _prose(snap: ContextSnapshot, summary: dict[str, Any]) -> str:
    who = summary["customer_name"] or "The customer"
    parts = []
    order = snap.mentioned_orders[0] if snap.mentioned_orders else snap.focus_order
    about = summary["reason"].lower()
    if order:
        parts.append(
            f"{who} called about a {about} for order {order['order_id']} "
            f"({fmt.items(order)}, {fmt.money(order.get('amount'), order.get('currency', 'USD'))}, "
            f"{order.get('status')})."
        )
    else:
        parts.append(f"{who} called about a {about}.")
    others = summary["intents"][1:3]
    if others:
        parts.append(f"Also discussed: {', '.join(i.lower() for i in others)}.")
    actions = summary["actions"]
    if actions:
        first = str(actions[0]["text"]).split(". ")[0].rstrip(".")
        more = f" and {len(actions) - 1} more" if len(actions) > 1 else ""
        parts.append(
            f'The agent used {len(actions)} suggestion{"s" if len(actions) > 1 else ""}: "{first}"{more}.'
        )
    else:
        parts.append("No suggestions were marked as used.")
    parts.append(f"Outcome: {summary['outcome']}.")
    s = summary["sentiment"]
    if summary["turns"]:
        if s["direction"] == "steady":
            parts.append(f"Customer sentiment stayed {s['label_end']}.")
        else:
            parts.append(
                f"Customer sentiment went from {s['label_start']} to {s['label_end']} ({s['direction']})."
            )
    if summary["follow_up"]:
        parts.append("Follow-up: " + " ".join(summary["follow_up"]))
    return " ".join(parts)
