"""What the customer is calling about: intents detected from weighted cue phrases.

Each intent has cue patterns with weights; a turn's score for an intent is the sum of
its matched cues. Over a call, turns are combined with a decay so the latest request
leads but earlier context still counts ("it's broken" ... "can I get my money back?").
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

INTENTS_FILE = Path(__file__).parent / "data" / "intents.toml"
_DATA = tomllib.loads(INTENTS_FILE.read_text())
# intent: (human label, knowledge tags, [(pattern, weight), ...])
_INTENTS: dict[str, tuple[str, tuple[str, ...], list[tuple[str, float]]]] = {
    name: (spec["label"], tuple(spec["tags"]), [(p, float(w)) for p, w in spec["cues"]])
    for name, spec in _DATA["intents"].items()
}
_COMPILED = {
    name: [(re.compile(p, re.IGNORECASE), w) for p, w in cues]
    for name, (_, _, cues) in _INTENTS.items()
}
_ACTS = {
    name: [(re.compile(p, re.IGNORECASE), float(w)) for p, w in spec["cues"]]
    for name, spec in _DATA["acts"].items()
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


_FAMILIES = {
    "refund": "item",
    "return": "item",
    "damaged_item": "item",
    "warranty": "item",
    "order_status": "delivery",
    "shipping_delay": "delivery",
    "billing": "billing",
    "payment": "billing",
    "price_adjustment": "billing",
}


def family(name: str) -> str:
    """Intents about the same problem ("it's broken" … "can I get my money back?") share one."""
    return _FAMILIES.get(name, name)


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


ACT_MIN_SCORE = 1.0
ACK_MAX_WORDS = 5
FRAGMENT_WORDS = 3
"""A short turn with no topic and no question ("okay", "yes, that's right") needs no help."""


def detect_act(text: str) -> str:
    """What a customer turn does: closing | small_talk | question | complaint | statement | ack.

    Closing wins over the rest ("thanks, that's all"); a question or request beats small
    talk ("hi, how are you? I have a question about my order" asks).
    """
    text = " ".join(text.split())
    scores = {
        name: sum(w for pattern, w in cues if pattern.search(text)) for name, cues in _ACTS.items()
    }
    topics = detect(text)
    substantive = [t for t in topics if t.score >= _MIN_SCORE]
    if scores.get("closing", 0) >= ACT_MIN_SCORE + 0.4 or (
        scores.get("closing", 0) >= ACT_MIN_SCORE and not substantive
    ):
        return "closing"
    if any(t.name == "complaint" for t in substantive):
        return "complaint"
    if not substantive and "?" not in text and len(text.split()) <= FRAGMENT_WORDS:
        return "ack"  # "Hello I need" — the rest of the sentence is coming
    if scores.get("small_talk", 0) >= 2 * ACT_MIN_SCORE and not substantive:
        return "small_talk"
    if scores.get("question", 0) >= ACT_MIN_SCORE or substantive:
        return "question"
    if scores.get("small_talk", 0) >= ACT_MIN_SCORE:
        return "small_talk"
    if len(text.split()) <= ACK_MAX_WORDS:
        return "ack"
    return "statement"


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
