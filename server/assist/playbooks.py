"""Intent playbooks: what an agent could say and do next, filled from the real records.

Each playbook turns a snapshot into a reply (words for the agent to say) and an action
(what to do in the back office), using the order the customer is talking about and the
policy rules in policy.py. Negative sentiment puts empathy first. A knowledge suggestion
cites the best article the context retrieved.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.assist import fmt
from server.assist.context import ContextSnapshot
from server.assist.knowledge import KnowledgeBase
from server.assist.policy import (
    POLICY,
    REFUND_TIMELINE,
    WARRANTY_LABEL,
    PolicyCheck,
    check_policy,
    return_window_days,
)
from server.assist.sentiment import NEGATIVE_AT
from server.assist.topics import intent_label, intent_tags

_P = POLICY
KNOWLEDGE_MIN_SCORE = 1.0
"""Weaker matches are not worth an agent's attention."""


@dataclass(frozen=True)
class Draft:
    kind: str
    text: str
    confidence: float
    sources: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class _Case:
    """What a playbook knows: the snapshot plus the resolved order and its policy check."""

    snap: ContextSnapshot
    intent: str
    order: dict[str, Any] | None
    check: PolicyCheck
    name: str

    @property
    def oid(self) -> str:
        return self.order["order_id"] if self.order else ""

    @property
    def item(self) -> str:
        return fmt.items(self.order) if self.order else "your order"

    @property
    def amount(self) -> str:
        return (
            fmt.money(self.order.get("amount"), self.order.get("currency", "USD"))
            if self.order
            else "the amount"
        )

    @property
    def deadline(self) -> str:
        return fmt.day(self.check.deadline_ms)

    @property
    def window(self) -> int:
        """This customer's return window in days (their tier's)."""
        return return_window_days((self.snap.customer or {}).get("tier"))


Playbook = Callable[[_Case], tuple[str, str]]
"""(reply body, action) for one intent; either may be empty."""


NEEDS_HELP = frozenset({"question", "complaint", "closing", "small_talk", "statement"})
"""Acts whose turn always gets a suggestion; only a plain "okay" / "yes" may go without."""


def build_drafts(snap: ContextSnapshot, knowledge: KnowledgeBase | None = None) -> list[Draft]:
    """The suggestions for this moment, reply first; repeats of shown ones are dropped.

    Every turn that asks, complains, closes or tells something new gets at least one: when
    the playbook's answer was already shown (a follow-up on the same topic), the knowledge
    base answers the follow-up itself, and failing that the agent gets a next step.
    """
    act = snap.act
    drafts: list[Draft] = []
    if act == "closing":
        drafts += _wrap_up(snap)
    elif act == "small_talk" and not snap.turn_topics:
        drafts.append(Draft("reply", _small_talk(snap), 0.6))
    else:
        drafts += _playbook(snap, knowledge)
    drafts += _pii_notes(snap)
    if act not in ("closing", "small_talk"):
        drafts += _knowledge(snap)
    out = _drop_repeats(drafts, snap)
    if act in NEEDS_HELP and not any(d.kind == "reply" for d in out):
        # The playbook's answer was shown already: answer the follow-up itself.
        out = _drop_repeats(_follow_up(snap), snap) + out
    return out


def _playbook(snap: ContextSnapshot, knowledge: KnowledgeBase | None) -> list[Draft]:
    intent = playbook_intent(snap)
    if intent is None and (snap.focus_reason == "mentioned" or snap.unknown_order_numbers):
        intent = "order_status"  # an order number on its own: say what we know about it
    drafts: list[Draft] = []
    order = snap.focus_order
    tier = (snap.customer or {}).get("tier")
    if intent in _PLAYBOOKS:
        check = check_policy(
            _POLICY_TOPIC.get(intent, intent), order, now_ms=snap.now_ms, tier=tier
        )
        case = _Case(snap, intent, order, check, fmt.first_name(snap.customer))
        body, action = _PLAYBOOKS[intent](case)
        opener = _order_opener(case) if intent in _ORDER_PLAYBOOKS else ""
        reply = " ".join(p for p in (empathy(snap), opener, body) if p)
        sources = _order_sources(order) + _article_sources(check.article_id, knowledge)
        confidence = _confidence(snap)
        drafts.append(Draft("reply", reply, confidence, sources))
        verify = _verification(case)
        if verify:
            action = f"{verify} {action}".strip()
        if intent != "complaint" and any(t.name == "complaint" for t in snap.topics):
            action = f"{action} Log the complaint in a ticket{' for order ' + case.oid if order else ''}.".strip()
        if action:
            drafts.append(
                Draft(
                    "action", action, round(max(0.3, confidence - 0.05), 2), _order_sources(order)
                )
            )
    elif not snap.suggestions:
        greeting = f"Thanks for calling, {case_name(snap)}. How can I help you today?"
        reply = " ".join(p for p in (empathy(snap), greeting) if p)
        drafts.append(Draft("reply", reply, 0.5))
    return drafts


def _knowledge(snap: ContextSnapshot) -> list[Draft]:
    # Without an intent to go on, only a strong match is worth the agent's attention.
    if snap.topics and not intent_tags(snap.topics[0].name):
        return []  # no article answers it (a subscription is not an order to cancel)
    least = KNOWLEDGE_MIN_SCORE if snap.topics else 2 * KNOWLEDGE_MIN_SCORE
    for hit in snap.knowledge[:1]:
        if hit.score >= least:
            confidence = round(0.4 + 0.55 * (1 - math.exp(-hit.score / 6)), 2)
            return [Draft("knowledge", f"{hit.title}: {hit.passage}", confidence, (hit.source(),))]
    return []


def _follow_up(snap: ContextSnapshot) -> list[Draft]:
    """A turn on a topic already answered: the next step in words, and an unseen passage."""
    name = fmt.first_name(snap.customer)
    you = f", {name}" if name else ""
    intent = playbook_intent(snap)
    step = _next_step(snap, intent)
    if snap.act == "complaint" or (
        snap.sentiment is not None and snap.sentiment.score <= NEGATIVE_AT
    ):
        text = f"I'm sorry{you} — {_lower_first(step)}"
    elif snap.act == "question":
        text = step
    else:
        text = f"I understand{you} — {_lower_first(step)}"
    drafts = [Draft("reply", text, 0.55)]
    shown = {s.get("text") for s in snap.suggestions}
    tags = set(intent_tags(intent)) if intent else set()
    unseen = [
        (hit, f"{hit.title}: {passage}")
        for hit in snap.knowledge
        if hit.score >= KNOWLEDGE_MIN_SCORE and (not tags or tags & set(hit.tags))
        for passage in (hit.passage, *hit.more)
    ]
    for hit, passage in unseen:
        if passage not in shown:
            drafts.append(Draft("knowledge", passage, 0.5, (hit.source(),)))
            break
    if text in shown and len(drafts) == 1:
        # Said already, and nothing new to read: ask what is still open.
        label = intent_label(intent).lower() if intent else "this"
        drafts.append(
            Draft(
                "reply",
                f"Of course{you}. Is there anything else about the {label} you'd like me to check "
                "while I have it open?",
                0.45,
            )
        )
    return drafts


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != "I " else text


def _next_step(snap: ContextSnapshot, intent: str | None) -> str:
    """What happens next on this topic, said to the customer."""
    order = snap.focus_order
    if intent in _ORDER_PLAYBOOKS and order is None and intent not in ("complaint", "address_change"):
        return (
            "I can find the order with the email address you used, or you'll see its 5-digit "
            "number in your confirmation email."
        )
    step = _NEXT_STEPS.get(intent or "")
    if step is not None:
        return step(snap)
    text = snap.last_customer_text.lower()
    if "order" in text and snap.orders:
        latest = snap.orders[0]
        return (
            f"Of course — which order is it? The most recent one on your account is the "
            f"{fmt.items(latest)} from {fmt.day(latest.get('created_at'))}."
        )
    return "Could you tell me a little more about it, so I check the right thing for you?"


_STREET = re.compile(
    r"\b\d+\s+\w+(?:\s\w+)?\s(?:street|st|avenue|ave|road|rd|lane|ln|drive|dr|way|boulevard|blvd|court|ct|place|pl)\b",
    re.IGNORECASE,
)
"""An address said in the turn ("12 Oak Street"): then the agent reads it back."""


_NEXT_STEPS: dict[str, Callable[[ContextSnapshot], str]] = {
    "refund": lambda s: (
        f"I'll start it now and email you the prepaid return label within "
        f"{_P['returns']['label_email_within']}. The refund is issued within "
        f"{_P['refunds']['issue_business_days']} business days of the item arriving back with us, "
        f"and your bank usually shows it within {_P['refunds']['bank_business_days']} business days."
    ),
    "return": lambda s: (
        f"I'll email you the prepaid return label within {_P['returns']['label_email_within']}; "
        "print it, pack the item with its accessories, and drop it off with the carrier."
    ),
    "damaged_item": lambda s: (
        "You don't need to wait for the damaged one to come back — the replacement ships by "
        "Express right away, and I'll send a prepaid label for the old one."
    ),
    "warranty": lambda s: (
        f"I'll open the warranty claim now; once it's approved, the replacement ships within "
        f"{_P['warranty']['replacement_ships_business_days']} business days."
    ),
    "shipping_delay": lambda s: (
        f"I'm opening a trace with the carrier right now and I'll update you within "
        f"{_P['shipping']['trace_update_business_days']} business day — and if it turns out "
        "to be lost, I'll send a replacement by Express."
    ),
    "order_status": lambda s: (
        f"I'll keep an eye on it and update you within "
        f"{_P['shipping']['trace_update_business_days']} business day if anything changes."
    ),
    "cancellation": lambda s: (
        "I'll cancel it now; the payment authorisation drops off your statement within "
        f"{_P['refunds']['authorisation_release_business_days']} business days."
    ),
    "address_change": lambda s: (
        "Thanks — let me read that back to you to confirm before I update the address."
        if _STREET.search(s.last_customer_text)
        else "What's the new address? I'll read it back to you to confirm before I update it."
    ),
    "billing": lambda s: (
        "I'll check both charges now; if both have posted, I'll refund the duplicate and give you "
        "the reference. Please hold off on a chargeback with your bank while we look — it "
        f"freezes the order and can delay the refund by up to {_P['billing']['chargeback_delay_days']} days."
    ),
    "complaint": lambda s: (
        "I'm opening an escalation ticket now, and a team lead will call you back within "
        f"{_P['escalation']['callback_business_hours']} business hours."
    ),
    "account": lambda s: (
        "If you think someone else got in, I'll lock the account right now and our security "
        "team will contact you; any unshipped orders from the last 48 hours will be cancelled."
    ),
    "subscription": lambda s: "You'll get the cancellation confirmation by email within a few minutes.",
    "payment": lambda s: (
        "I've sent you a secure payment link by text — please enter the card details there rather "
        "than reading them out."
    ),
    "gift_card": lambda s: (
        "Gift cards never expire, so there's no rush — once I have the receipt or the card number, "
        "I'll issue the replacement."
    ),
}


def _wrap_up(snap: ContextSnapshot) -> list[Draft]:
    name = fmt.first_name(snap.customer)
    you = f", {name}" if name else ""
    reply = f"You're welcome{you}! Before you go, is there anything else I can help you with today?"
    topics = [t.label.lower() for t in snap.call_topics[:2] if t.name != "complaint"]
    order = snap.focus_order or (snap.mentioned_orders[0] if snap.mentioned_orders else None)
    recap = " and ".join(topics) if topics else "the call"
    about = f" for order {order['order_id']}" if order and topics else ""
    action = (
        f"Wrap up: recap the next steps on {recap}{about}, mention the short satisfaction survey "
        "that follows by email, and end the call — the summary is written for you when it ends."
    )
    return [Draft("reply", reply, 0.7), Draft("action", action, 0.65)]


def _small_talk(snap: ContextSnapshot) -> str:
    name = fmt.first_name(snap.customer)
    you = f", {name}" if name else ""
    return f"I'm doing well, thanks for asking{you}! How can I help you today?"


def _pii_notes(snap: ContextSnapshot) -> list[Draft]:
    """What the customer gave that redaction took out of the transcript, as an action."""
    latest = next((t for t in reversed(snap.turns) if t.speaker == "customer"), None)
    if latest is None or not latest.entities.redacted:
        return []
    kinds = set(latest.entities.redacted)
    notes = []
    cards = [k.removeprefix("card ending ") for k in kinds if k.startswith("card ending ")]
    if cards or "card number" in kinds:
        ending = f" (ending {cards[0]})" if cards else ""
        notes.append(
            f"The customer read out a card number{ending}; it was redacted from the transcript "
            "and the recording. Never repeat it back or write it down — take any payment through "
            "the secure payment link."
        )
    if "security code" in kinds:
        notes.append("The card's security code was redacted: never take or note a CVV on a call.")
    if "SSN redacted" in kinds:
        notes.append(
            "The customer said a Social Security number; it was redacted. We never need an SSN — "
            "don't ask for it or note it."
        )
    drafts = [Draft("action", " ".join(notes), 0.8)]
    if cards or "card number" in kinds:
        name = fmt.first_name(snap.customer)
        you = f", {name}" if name else ""
        drafts.insert(
            0,
            Draft(
                "reply",
                f"Thank you{you}. For your security, please don't read out the rest of the card "
                "details — I'll text you a secure payment link and you can enter them there.",
                0.75,
            ),
        )
    elif "SSN redacted" in kinds:
        drafts.insert(
            0,
            Draft(
                "reply",
                "Thanks, but we don't need your Social Security number for this — and I've made "
                "sure it isn't kept in our records.",
                0.75,
            ),
        )
    return drafts


def playbook_intent(snap: ContextSnapshot) -> str | None:
    """The intent to act on: an upset customer's concrete problem beats "complaint"."""
    for topic in snap.topics:
        if topic.name != "complaint" and topic.score >= 1.0:
            return topic.name
    return snap.intent


def case_name(snap: ContextSnapshot) -> str:
    return fmt.first_name(snap.customer) or "and welcome"


def empathy(snap: ContextSnapshot) -> str:
    """An empathetic opening when the customer's latest turn is negative, else ''."""
    mood = snap.sentiment
    if mood is None or mood.score > NEGATIVE_AT:
        return ""
    name = fmt.first_name(snap.customer)
    you = f", {name}" if name else ""
    intent = playbook_intent(snap)
    if mood.angry:
        if intent == "complaint":
            return (
                f"I'm truly sorry{you}. You shouldn't have had to go through this, "
                "and I'm going to take care of it personally, right now."
            )
        return (
            f"I'm really sorry about this{you} — I completely understand your frustration, "
            "and I'll get it sorted for you now."
        )
    sure = snap.focus_order is not None and snap.focus_reason in ("mentioned", "item")
    item = f"the {fmt.items(snap.focus_order)}" if sure and snap.focus_order else "it"
    return {
        "warranty": f"I'm sorry to hear {item} isn't working properly{you}.",
        "shipping_delay": f"I'm sorry your order hasn't arrived yet{you} — I know you've been waiting.",
        "damaged_item": f"I'm so sorry it arrived damaged{you}.",
        "billing": f"I'm sorry about the confusion with your bill{you}.",
        "complaint": f"I'm sorry{you} — that's not the experience we want for you.",
    }.get(intent or "", f"I'm sorry to hear that{you}.")


def _confidence(snap: ContextSnapshot) -> float:
    top = snap.topics[0].score if snap.topics else 0.0
    value = 0.45 + min(0.3, 0.08 * top)
    if (
        snap.focus_reason == "mentioned"
        and snap.focus_order
        and snap.focus_order.get("belongs_to_caller")
    ):
        value += 0.15
    elif snap.focus_reason == "inferred":
        value -= 0.1
    return round(min(0.95, max(0.2, value)), 2)


def _order_sources(order: dict[str, Any] | None) -> tuple[dict[str, Any], ...]:
    return ({"type": "order", "id": order["order_id"]},) if order else ()


def _article_sources(
    article_id: str | None, knowledge: KnowledgeBase | None
) -> tuple[dict[str, Any], ...]:
    doc = knowledge.get(article_id) if knowledge is not None and article_id else None
    return ({"type": "article", "id": doc.id, "title": doc.title},) if doc else ()


def _order_opener(case: _Case) -> str:
    snap, order = case.snap, case.order
    if snap.unknown_order_numbers and (order is None or snap.focus_reason != "mentioned"):
        number = snap.unknown_order_numbers[0]
        if order is not None and snap.focus_reason == "item":
            return (
                f"I couldn't find an order {number}, but I can see your {case.item} on order "
                f"{case.oid} — is that the one?"
            )
        return f"I couldn't find an order {number} — could you read me the number once more?"
    if order is None:
        if case.intent in ("complaint", "account", "address_change"):
            return ""
        if snap.orders:
            return (
                "Which order is this about? The 5-digit order number is in your confirmation email."
            )
        return "Could you give me the 5-digit order number? It's in your confirmation email."
    if not order.get("belongs_to_caller", True):
        return f"I can help with order {case.oid}; first I just need to confirm a few details on the account it was placed with."
    when = _status_phrase(order)
    if snap.focus_reason == "inferred":
        return f"Is this about order {case.oid} — the {case.item} ({case.amount}), {when}?"
    return f"I can see order {case.oid} — the {case.item}, {case.amount}, {when}."


def _status_phrase(order: dict[str, Any]) -> str:
    status = order.get("status")
    if status == "delivered":
        return f"delivered on {fmt.day(order.get('delivered_at'))}"
    if status == "shipped":
        return f"shipped on {fmt.day(order.get('shipped_at'))}"
    if status in ("placed", "processing"):
        return f"ordered on {fmt.day(order.get('created_at'))}"
    return f"{status} (ordered {fmt.day(order.get('created_at'))})"


def _verification(case: _Case) -> str:
    order = case.order
    if order is not None and not order.get("belongs_to_caller", True):
        return (
            f"Verify identity first: order {case.oid} belongs to a different customer account "
            f"({order.get('customer_id')}); confirm the email or phone on that account."
        )
    return ""


_APOLOGY = re.compile(r"^I'm (?:so |truly |really )?sorry[^.!?]*[.!?]\s*(?:You shouldn't[^.!?]*[.!?]\s*)?")


def _core(text: str) -> str:
    """A reply without its opening apology: the same answer said again is a repeat."""
    return _APOLOGY.sub("", text)


def _drop_repeats(drafts: list[Draft], snap: ContextSnapshot) -> list[Draft]:
    """Nothing the agent was already shown: the same text, or the same answer re-apologised."""
    shown_text = {(s.get("kind"), s.get("text")) for s in snap.suggestions}
    shown_core = {_core(str(s.get("text"))) for s in snap.suggestions if s.get("kind") == "reply"}
    return [
        d
        for d in drafts
        if (d.kind, d.text) not in shown_text and not (d.kind == "reply" and _core(d.text) in shown_core)
    ]


# --- the playbooks ---------------------------------------------------------------------


def _refund(c: _Case) -> tuple[str, str]:
    return _money_back(c, "refund")


def _return(c: _Case) -> tuple[str, str]:
    return _money_back(c, "return")


def _money_back(c: _Case, want: str) -> tuple[str, str]:
    order, check = c.order, c.check
    if order is None:
        return (f"Once I have it, I'll check the {want} options for you right away.", "")
    status = order.get("status")
    if status in ("refunded", "returned"):
        return (
            f"Good news: order {c.oid} has already been refunded ({c.amount}). It can take {_P['refunds']['bank_business_days']} "
            "business days to show on your statement.",
            f"Confirm the refund reference on order {c.oid} and read it to the customer.",
        )
    if status == "cancelled":
        return (
            f"Order {c.oid} was cancelled, so you weren't charged for it; any pending authorisation "
            f"drops off within {_P['refunds']['authorisation_release_business_days']} business days.",
            "",
        )
    if status in ("placed", "processing"):
        return (
            f"It hasn't shipped yet, so I can cancel it now and refund the full {c.amount} right away.",
            f"Cancel order {c.oid} and release the {c.amount} authorisation.",
        )
    if status == "shipped":
        return (
            f"It's on its way with {order.get('carrier') or 'the carrier'}. You can refuse the delivery, "
            f"or return it once it arrives, and we'll refund the full {c.amount}.",
            f"Note on order {c.oid}: customer will refuse delivery or return it; refund {c.amount} on receipt.",
        )
    if check.eligible:
        lead = (
            f"you're within your {c.window}-day return window, so I can refund the full {c.amount}"
            if want == "refund"
            else f"you're within your {c.window}-day return window, so you can return it for a full refund of {c.amount}"
        )
        return (
            f"Since it was delivered {check.days_since_delivery} days ago, {lead}. I'll email you a prepaid "
            f"return label; under our refund policy the refund is {REFUND_TIMELINE}.",
            f"Start a return for order {c.oid} ({c.item}, {c.amount}): send the prepaid label and refund "
            f"{c.amount} to the original payment method on receipt. Eligible until {c.deadline}.",
        )
    return (
        f"It was delivered {check.days_since_delivery} days ago, which is past your {c.window}-day return window. "
        f"If something is wrong with it, it's covered by our {WARRANTY_LABEL} warranty and I can arrange a free replacement.",
        f"Order {c.oid} is outside the return window: check for a defect and offer a warranty replacement.",
    )


def _warranty(c: _Case) -> tuple[str, str]:
    order, check = c.order, c.check
    if order is None:
        return ("Once I have it, I'll check your warranty coverage.", "")
    if check.eligible and (check.days_since_delivery or 0) <= c.window:
        return (
            f"It was delivered {check.days_since_delivery} days ago, so you're still within your "
            f"{c.window}-day return window and I can offer a full refund of {c.amount} or an exchange — whichever you prefer.",
            f"Offer refund or exchange for order {c.oid} ({c.item}); log the fault description.",
        )
    if check.eligible:
        return (
            f"Good news: it's covered by our {WARRANTY_LABEL} warranty until {c.deadline}. I can send you a free "
            f"replacement — it ships within {_P['warranty']['replacement_ships_business_days']} business days of approval, "
            "with a prepaid label to send the faulty one back.",
            f"Open a warranty claim for order {c.oid} ({c.item}): record the fault, ask for a photo or video, "
            "approve the replacement.",
        )
    if order.get("status") != "delivered":
        return (
            f"Order {c.oid} hasn't been delivered yet, so let's look at its delivery first.",
            "",
        )
    return (
        f"It was delivered on {fmt.day(order.get('delivered_at'))}, so unfortunately it's outside the {WARRANTY_LABEL} "
        "warranty. I can check repair options or a discount on a replacement for you.",
        f"Order {c.oid} is out of warranty: check for an extended protection plan before offering alternatives.",
    )


def _damaged(c: _Case) -> tuple[str, str]:
    if c.order is None:
        return (
            "I'll make this right with a replacement or a refund as soon as I find the order.",
            "",
        )
    return (
        f"I'll send a replacement {c.item} by Express right away at no cost — you don't need to wait for "
        f"the damaged one to come back. Or, if you prefer, a full refund of {c.amount}.",
        f"Send an Express replacement for order {c.oid} (no return needed first); ask for a photo of the "
        "item and box for the carrier claim.",
    )


def _delivery(c: _Case) -> tuple[str, str]:
    order, check = c.order, c.check
    if order is None:
        return ("Once I have it, I'll check exactly where it is.", "")
    status = order.get("status")
    carrier = order.get("carrier") or "the carrier"
    tracking = order.get("tracking_number")
    track = f" The tracking number is {tracking}." if tracking else ""
    if status in ("placed", "processing"):
        return (
            f"It's being prepared and should ship within {_P['shipping']['ships_within_business_days']} business day; you'll get the tracking number "
            "by email as soon as it does.",
            "",
        )
    if status == "delivered":
        return (
            f"The carrier shows it was delivered on {fmt.day(order.get('delivered_at'))} to "
            f"{order.get('shipping_address') or 'your address'}. Could you check with neighbours and around the "
            "property? If it's not there within 24 hours, I'll send a replacement.",
            f"If not found within 24 hours, treat order {c.oid} as lost and send a replacement.",
        )
    if status == "shipped" and check.eligible and "lost" in check.reason:
        return (
            f"It's well past its estimated delivery, so I'll treat it as lost and send you a free replacement "
            f"by Express — or refund the full {c.amount}, whichever you prefer.",
            f"Order {c.oid} ({carrier} {tracking or ''}) is lost: ship an Express replacement or refund {c.amount}; "
            "refund any shipping charge.",
        )
    if status == "shipped" and check.eligible:
        return (
            f"It shipped with {carrier} on {fmt.day(order.get('shipped_at'))} and was expected on {c.deadline}. "
            f"I'm opening a trace with {carrier} now and I'll update you within {_P['shipping']['trace_update_business_days']} business day.{track}",
            f"Open a carrier trace for order {c.oid} ({carrier} {tracking or ''}); follow up with the customer "
            f"within {_P['shipping']['trace_update_business_days']} business day.",
        )
    if status == "shipped":
        return (
            f"It shipped with {carrier} on {fmt.day(order.get('shipped_at'))} and is expected on "
            f"{c.deadline}.{track}",
            "",
        )
    return (f"Order {c.oid} is {status}.", "")


def _cancellation(c: _Case) -> tuple[str, str]:
    order, check = c.order, c.check
    if order is None:
        return ("Once I have it, I'll check whether it can still be cancelled.", "")
    if check.eligible:
        return (
            f"It hasn't shipped yet, so I can cancel it free of charge right now. The {c.amount} authorisation "
            f"is released immediately and drops off your statement within {_P['refunds']['authorisation_release_business_days']} business days.",
            f"Cancel order {c.oid} and confirm the {c.amount} authorisation release to the customer.",
        )
    if order.get("status") == "shipped":
        return (
            f"It has already shipped with {order.get('carrier') or 'the carrier'}, so I can't cancel it, but you "
            f"can refuse the delivery or return it within {c.window} days of delivery for a full refund.",
            f"Note on order {c.oid}: customer will refuse delivery; refund {c.amount} when it's back.",
        )
    return (f"Order {c.oid} is {order.get('status')}, so there's nothing left to cancel.", "")


def _address(c: _Case) -> tuple[str, str]:
    order, check = c.order, c.check
    if order is None:
        return (
            "I can update the address on your account right away — what's the new address? And if "
            "an order is already on its way, give me its 5-digit number and I'll change that one too.",
            "Verify identity (name plus the email or phone on the account), then update the default "
            "address; orders already placed keep theirs unless changed one by one.",
        )
    current = order.get("shipping_address") or "the current address"
    if check.eligible:
        return (
            "It hasn't shipped yet, so I can update the address now. What's the new address? I'll read it "
            "back to you to confirm.",
            f"Verify identity, then update the shipping address on order {c.oid} (currently {current}).",
        )
    if order.get("status") == "shipped":
        carrier = order.get("carrier") or "the carrier"
        if carrier == "USPS":
            return (
                "It has already shipped with USPS; you can request a Package Intercept with them to redirect it. "
                "I'll send you the tracking number so you can do that.",
                "",
            )
        return (
            f"It has already shipped with {carrier}, but I can request a redirect to your new address — "
            f"there's a {fmt.money(_P['address']['redirect_fee'], 'USD')} carrier fee, and it has to stay within the same country.",
            f"Request a {carrier} redirect for order {c.oid} ({fmt.money(_P['address']['redirect_fee'], 'USD')} fee) after confirming the new address.",
        )
    return (
        f"Order {c.oid} was already delivered to {current}; I can update your account address for future orders.",
        "Update the default address on the customer's account.",
    )


def _billing(c: _Case) -> tuple[str, str]:
    snap = c.snap
    ticket = next(
        (
            t
            for t in snap.tickets
            if t.get("status") in ("open", "pending")
            and "charge" in str(t.get("subject", "")).lower()
        ),
        None,
    )
    ref = f" I can see your open case {ticket['ticket_id']} about this." if ticket else ""
    amount = f" of {c.amount}" if c.order else ""
    order_ref = f" on order {c.oid}" if c.order else ""
    return (
        f"Let me look at the charges{amount}.{ref} Often one of them is a pending authorisation that drops off "
        f"within {_P['refunds']['authorisation_release_business_days']} business days; if both have posted, I'll refund the duplicate right away and give you the reference.",
        f"Check whether both charges{order_ref} have posted; if so refund the duplicate{amount}"
        + (
            f" and update ticket {ticket['ticket_id']}."
            if ticket
            else " and open a billing ticket."
        ),
    )


def _complaint(c: _Case) -> tuple[str, str]:
    order = f" about order {c.oid}" if c.order else ""
    look = (
        f"Let me look into order {c.oid} and fix this now."
        if c.order
        else "Let me fix this for you now."
    )
    return (
        f"{look} If you'd still like to speak to a supervisor, I'll arrange a call back "
        f"from a team lead within {_P['escalation']['callback_business_hours']} business hours.",
        f"Open a high-priority escalation ticket{order} with a short case summary; a goodwill credit of up to "
        f"{fmt.money(_P['escalation']['goodwill_credit_max'], 'USD')} is at your discretion.",
    )


def _account(c: _Case) -> tuple[str, str]:
    return (
        "I can help with that. For security I'll send a password reset link to the email on your account — "
        f"it's valid for {_P['account']['reset_link_minutes']} minutes.",
        "Verify identity (phone on file plus two recent order numbers) before changing the account email.",
    )


def _subscription(c: _Case) -> tuple[str, str]:
    return (
        "I can cancel your subscription right now. It stays active until the end of the period "
        "you've already paid for, and you won't be charged again — I'll email you the confirmation.",
        "Cancel the subscription on the customer's account (not an order): confirm the last billing "
        "date and send the cancellation confirmation by email.",
    )


def _payment(c: _Case) -> tuple[str, str]:
    hours = _P["payments"]["declined_hold_hours"]
    return (
        f"No problem — when a payment is declined, we hold the order for {hours} hours so you can "
        "update the card. I'll text you a secure link to enter the new card details; please don't "
        "read them out on the call.",
        f"Send the secure payment link; the order stays in placed status for {hours} hours. "
        "Never take a full card number or security code by voice.",
    )


def _price_adjustment(c: _Case) -> tuple[str, str]:
    days = _P["billing"]["price_drop_days"]
    if c.order is None:
        return (
            f"If the price dropped within {days} days of your purchase, I can refund the difference — "
            "which order was it?",
            "",
        )
    placed = fmt.day(c.order.get("created_at"))
    return (
        f"You bought the {c.item} on {placed}. If the price dropped within {days} days of that, "
        "I'll refund the difference to your original payment method within "
        f"{_P['refunds']['issue_business_days']} business days.",
        f"Check the price history of the {c.item} for order {c.oid}: if it dropped within {days} days "
        "of purchase (not a clearance or flash sale), refund the difference once.",
    )


def _loyalty(c: _Case) -> tuple[str, str]:
    tier = str((c.snap.customer or {}).get("tier") or "standard").lower()
    perks = list(_P["loyalty"]["benefits"].get(tier, []))
    name = f", {c.name}" if c.name else ""
    if not perks:
        return (
            f"You're on our Standard tier{name}. Spend over $500 in 12 months and you move up to Silver, "
            "with free Express upgrades twice a year.",
            "",
        )
    listed = ", ".join(perks[:-1]) + (" and " if len(perks) > 1 else "") + perks[-1]
    return (f"As a {tier.capitalize()} member{name}, you get {listed}.", "")


def _gift_card(c: _Case) -> tuple[str, str]:
    return (
        "Gift cards never expire, and a lost one can be replaced if you have the purchase receipt or "
        "the card number — do you have either of those?",
        "Replace the lost gift card once the receipt or the card number is confirmed.",
    )


def _shipping_times(c: _Case) -> tuple[str, str]:
    sh = _P["shipping"]
    return (
        f"Orders placed before {sh['same_day_cutoff']} ship the same business day. Express takes "
        f"{sh['express_business_days']} business days, and Standard {sh['standard_business_days']}.",
        "",
    )


def _international(c: _Case) -> tuple[str, str]:
    return (
        f"International delivery takes {_P['shipping']['international_business_days']} business days, "
        "and customs can add a few more. Import duties and taxes are paid at delivery unless the order "
        "is placed with duties prepaid.",
        "",
    )


_PLAYBOOKS: dict[str, Playbook] = {
    "subscription": _subscription,
    "payment": _payment,
    "price_adjustment": _price_adjustment,
    "loyalty": _loyalty,
    "gift_card": _gift_card,
    "international": _international,
    "shipping_times": _shipping_times,
    "refund": _refund,
    "return": _return,
    "warranty": _warranty,
    "damaged_item": _damaged,
    "order_status": _delivery,
    "shipping_delay": _delivery,
    "cancellation": _cancellation,
    "address_change": _address,
    "billing": _billing,
    "complaint": _complaint,
    "account": _account,
}
_POLICY_TOPIC = {"order_status": "shipping_delay"}
_ORDER_PLAYBOOKS = frozenset(
    {
        "refund",
        "return",
        "warranty",
        "damaged_item",
        "order_status",
        "shipping_delay",
        "cancellation",
        "address_change",
        "billing",
        "complaint",
        "price_adjustment",
    }
)
"""Playbooks about one order: their reply opens with it, or asks which one it is."""
