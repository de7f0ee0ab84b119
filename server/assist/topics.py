"""What the customer is calling about: intents detected from weighted cue phrases.

Each intent has cue patterns with weights; a turn's score for an intent is the sum of
its matched cues. Over a call, turns are combined with a decay so the latest request
leads but earlier context still counts ("it's broken" ... "can I get my money back?").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# intent: (human label, knowledge tags, [(pattern, weight), ...])
_INTENTS: dict[str, tuple[str, tuple[str, ...], list[tuple[str, float]]]] = {
    "refund": (
        "Refund request",
        ("refund",),
        [
            (r"\brefund(s|ed|ing)?\b", 2.0),
            (r"\bmoney back\b", 2.0),
            (r"\breimburse", 1.8),
            (r"\bcredit (it )?back\b", 1.2),
            (r"\bpay(ing)? me back\b", 1.5),
        ],
    ),
    "return": (
        "Return",
        ("return",),
        [
            (r"\breturn(s|ed|ing)?\b", 1.6),
            (r"\bsend (it|them) back\b", 1.8),
            (r"\bsend back\b", 1.6),
            (r"\bexchange\b", 1.4),
            (r"\bdoesn'?t fit\b", 1.2),
            (r"\bwrong (size|colou?r|item)\b", 1.4),
            (r"\breturn label\b", 1.0),
        ],
    ),
    "order_status": (
        "Order status",
        ("shipping", "tracking"),
        [
            (r"\bwhere(?:'s| is) (my |the )?(order|package|parcel|delivery)\b", 2.2),
            (r"\border status\b", 2.0),
            (r"\bstatus of (my|the) order\b", 2.0),
            (r"\btrack(ing)?\b", 1.4),
            (r"\bwhen will (it|my order|they) (arrive|come|ship)\b", 2.0),
            (r"\bhas (it|my order) shipped\b", 1.8),
            (r"\bcheck (on )?(my|an|the) order\b", 1.5),
        ],
    ),
    "shipping_delay": (
        "Shipping delay",
        ("shipping", "delay"),
        [
            (
                r"\b(hasn'?t|has not|didn'?t|did not|never|still (hasn'?t|has not|not)) (arrived|come|shown up|been delivered)\b",
                2.4,
            ),
            (r"\bnot (arrived|received|delivered)( yet)?\b", 2.2),
            (r"\bstill waiting\b", 1.8),
            (r"\b(late|delayed|delay)\b", 1.6),
            (r"\blost (package|parcel|order)\b", 2.2),
            (r"\b(package|parcel|order) (is )?(lost|stuck|missing)\b", 2.2),
            (r"\bsupposed to (arrive|be here|come)\b", 1.8),
            (r"\bdidn'?t get (it|my order|the package)\b", 2.0),
        ],
    ),
    "address_change": (
        "Address change",
        ("address",),
        [
            (r"\bchange (my|the|of) (shipping |delivery )?address\b", 2.6),
            (r"\b(new|wrong|different) (shipping |delivery )?address\b", 2.2),
            (r"\bupdate (my|the) (shipping |delivery )?address\b", 2.4),
            (r"\bi (just )?moved\b", 1.8),
            (r"\bship (it )?to (a )?different\b", 2.0),
            (r"\baddress\b", 0.8),
        ],
    ),
    "warranty": (
        "Warranty claim",
        ("warranty",),
        [
            (r"\bwarrant(y|ies)\b", 2.6),
            (r"\bguarantee\b", 1.4),
            (r"\b(stopped|quit|stops) working\b", 2.0),
            (
                r"\b(doesn'?t|does not|won'?t|isn'?t) (work|working|turn on|charge|connect|pair)\b",
                1.8,
            ),
            (r"\bnot working\b", 1.8),
            (r"\b(defective|faulty|malfunction\w*)\b", 1.8),
            (r"\bbroke(n)?\b", 1.2),
            (r"\brepair(ed)?\b", 1.6),
            (r"\breplacement\b", 1.2),
        ],
    ),
    "damaged_item": (
        "Damaged item",
        ("damaged", "return"),
        [
            (r"\b(arrived|came) (damaged|broken|cracked|smashed)\b", 2.6),
            (r"\b(damaged|cracked|smashed|dented|shattered)\b", 1.8),
            (r"\bbox was\b", 0.6),
        ],
    ),
    "cancellation": (
        "Cancellation",
        ("cancellation",),
        [
            (r"\bcancel(l?ed|l?ing|lation)?\b", 2.4),
            (r"\bdon'?t want (it|this|them) anymore\b", 1.6),
            (r"\bstop (my|the) order\b", 1.8),
            (r"\bchanged my mind\b", 1.4),
        ],
    ),
    "billing": (
        "Billing question",
        ("billing",),
        [
            (r"\b(charged|billed) (me )?(twice|two times|double)\b", 2.8),
            (r"\bdouble(-| )?charged\b", 2.8),
            (r"\bovercharged\b", 2.4),
            (r"\b(charge|charges)\b", 1.2),
            (r"\b(bill|billing|invoice)\b", 1.6),
            (r"\b(credit card|card statement|statement|payment)\b", 1.0),
            (r"\bchargeback\b", 2.0),
            (r"\bpromo(tion)? code|coupon|discount\b", 1.0),
        ],
    ),
    "complaint": (
        "Complaint",
        ("complaint", "escalation"),
        [
            (r"\bcomplain(t|ts|ing)?\b", 2.2),
            (r"\b(manager|supervisor)\b", 2.2),
            (r"\bunacceptable|ridiculous|outrageous\b", 1.8),
            (r"\b(terrible|awful|horrible|worst) (service|experience|company)\b", 2.2),
            (r"\b(third|fourth|fifth) time\b", 1.6),
            (r"\bescalate\b", 2.0),
            (r"\bnobody (helps|helped|called)\b", 1.6),
            (r"\brude\b", 1.6),
        ],
    ),
    "account": (
        "Account access",
        ("account",),
        [
            (r"\bpassword\b", 2.2),
            (r"\b(log|sign) ?in\b", 1.4),
            (r"\baccount (is )?(locked|hacked)\b", 2.4),
            (r"\breset\b", 1.0),
            (r"\b(email|phone number) on (my|the) account\b", 1.6),
        ],
    ),
}
_COMPILED = {
    name: [(re.compile(p, re.IGNORECASE), w) for p, w in cues]
    for name, (_, _, cues) in _INTENTS.items()
}
_DECAY = 0.5
_MIN_SCORE = 1.0


@dataclass(frozen=True)
class Topic:
    name: str
    score: float
    cues: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return intent_label(self.name)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "label": self.label,
            "score": self.score,
            "cues": list(self.cues),
        }


def intent_names() -> tuple[str, ...]:
    return tuple(_INTENTS)


def intent_label(name: str) -> str:
    return _INTENTS[name][0] if name in _INTENTS else name.replace("_", " ").capitalize()


def intent_tags(name: str) -> tuple[str, ...]:
    """Knowledge-article tags that answer this intent."""
    return _INTENTS[name][1] if name in _INTENTS else ()


def detect(text: str) -> list[Topic]:
    """Intents in one turn, best first."""
    found = []
    for name, cues in _COMPILED.items():
        score = 0.0
        matched: list[str] = []
        for pattern, weight in cues:
            m = pattern.search(text)
            if m:
                score += weight
                matched.append(m.group(0).lower())
        if score:
            found.append(Topic(name, round(score, 2), tuple(matched)))
    return sorted(found, key=lambda t: t.score, reverse=True)


def combine(turns: Sequence[Iterable[Topic]], *, decay: float = _DECAY) -> list[Topic]:
    """Intents over several turns (oldest first); with decay < 1 recent turns weigh more."""
    totals: dict[str, float] = {}
    cues: dict[str, list[str]] = {}
    weight = 1.0
    for topics in reversed(turns):
        for topic in topics:
            totals[topic.name] = totals.get(topic.name, 0.0) + topic.score * weight
            cues.setdefault(topic.name, []).extend(
                c for c in topic.cues if c not in cues.get(topic.name, [])
            )
        weight *= decay
    ranked = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)
    return [
        Topic(name, round(score, 2), tuple(cues[name]))
        for name, score in ranked
        if score >= _MIN_SCORE
    ]
