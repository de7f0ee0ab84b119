"""Lexicon-based sentiment of one turn, with negation and intensifiers, and its trend.

A small VADER-style scorer: each known word or phrase has a valence (-4..4); words up to
three before it may intensify ("really"), soften ("a bit") or negate ("not") it; a clause
after "but" counts more than the one before; exclamation marks and SHOUTING amplify.
The sum is squashed into -1..1. It is cheap enough to run on every final transcript.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

NEGATIVE_AT = -0.25
"""A turn at or below this score is negative: suggestions open with empathy."""
ANGRY_AT = -0.7
"""At or below this (or with anger cues) the customer is upset: apologise first."""
POSITIVE_AT = 0.25

_LEXICON_TEXT = """
good:1.9 great:3.1 excellent:3.2 amazing:3.1 awesome:3.1 perfect:2.9 fantastic:3.2
love:3.0 loved:2.9 happy:2.7 glad:2.0 pleased:2.2 thanks:1.9 thank:1.5
appreciate:2.2 appreciated:2.2 helpful:2.0 wonderful:3.0 nice:1.8 fine:0.8 fair:1.1
resolved:1.8 fixed:1.4 quick:1.2 easy:1.5 satisfied:2.0 relieved:1.8 brilliant:2.8
works:1.0 working:0.8 sorted:1.4 reasonable:1.2 kind:1.8 patient:1.4 best:2.8
bad:-2.5 terrible:-3.1 awful:-3.1 horrible:-3.1 worst:-3.2 poor:-2.1 disappointed:-2.3
disappointing:-2.3 frustrated:-2.4 frustrating:-2.4 annoyed:-2.2 annoying:-2.2
angry:-2.9 furious:-3.4 upset:-2.3 unhappy:-2.2 sad:-2.0 ridiculous:-2.5
unacceptable:-2.9 useless:-2.6 broken:-1.9 broke:-1.7 defective:-2.0 damaged:-2.0
faulty:-2.0 wrong:-1.8 late:-1.4 delayed:-1.4 missing:-1.6 lost:-1.5 never:-0.6
problem:-1.7 problems:-1.7 issue:-1.3 issues:-1.3 complaint:-2.0 complain:-1.9
scam:-3.2 fraud:-3.1 cheated:-3.0 lied:-2.9 lying:-2.8 incompetent:-3.0 rude:-2.6
waiting:-0.8 waited:-1.0 hate:-3.0 hated:-3.0 disgusting:-3.0 pathetic:-3.0
nightmare:-3.0 mess:-2.0 worried:-1.8 concerned:-1.4 confused:-1.2 stuck:-1.5
cracked:-1.9 refuse:-1.5 charged:-0.6 overcharged:-2.4 ignored:-2.4 joke:-1.6
again:-0.4 still:-0.4 disaster:-3.1 ruined:-2.8 sucks:-2.6 crap:-2.6 stupid:-2.6
shocking:-2.4 outrageous:-3.0 wasted:-2.4 nobody:-1.0 hassle:-1.8 inconvenient:-1.6
"""
_PHRASES_TEXT = """
fed up:-3.0
sick of:-2.8
sick and tired:-3.2
waste of time:-2.8
waste of money:-2.8
rip off:-3.0
ripped off:-3.0
third time:-2.2
second time:-1.4
still waiting:-2.2
still not:-1.2
stopped working:-2.0
doesn't work:-2.0
does not work:-2.0
not working:-2.0
won't turn on:-2.0
never arrived:-2.4
no one:-1.2
how many times:-2.4
speak to a manager:-2.0
speak to your manager:-2.0
speak to a supervisor:-2.0
cancel my account:-1.5
thank you:2.2
thanks a lot:2.4
thank you so much:3.0
that helps:1.8
that's great:2.8
makes sense:1.2
no problem:1.4
no worries:1.4
"""

_NEGATORS = frozenset(
    [
        "not",
        "no",
        "never",
        "none",
        "nothing",
        "nobody",
        "neither",
        "nor",
        "cannot",
        "can't",
        "won't",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "haven't",
        "hasn't",
        "hadn't",
        "shouldn't",
        "wouldn't",
        "couldn't",
        "without",
        "hardly",
        "barely",
    ]
)
_BOOSTERS = {
    "very": 0.3,
    "really": 0.3,
    "so": 0.25,
    "extremely": 0.45,
    "absolutely": 0.4,
    "totally": 0.35,
    "completely": 0.35,
    "incredibly": 0.4,
    "truly": 0.3,
    "utterly": 0.45,
    "super": 0.3,
    "too": 0.2,
    "most": 0.3,
    "such": 0.2,
    "seriously": 0.35,
}
_DAMPENERS = {
    "slightly": 0.5,
    "somewhat": 0.5,
    "little": 0.6,
    "bit": 0.6,
    "kinda": 0.6,
    "kind of": 0.6,
    "fairly": 0.7,
    "quite": 0.85,
    "barely": 0.5,
}
_ANGER_CUES = frozenset(
    [
        "furious",
        "angry",
        "unacceptable",
        "ridiculous",
        "outrageous",
        "scam",
        "fraud",
        "incompetent",
        "pathetic",
        "disgusting",
        "lied",
    ]
)
_NEGATION_SCALE = -0.6
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|!")


def _parse(text: str) -> dict[str, float]:
    out = {}
    for item in text.replace("\n", " ").split(" "):
        if item:
            word, _, value = item.rpartition(":")
            out[word] = float(value)
    return out


def _parse_lines(text: str) -> dict[tuple[str, ...], float]:
    out = {}
    for line in text.strip().splitlines():
        words, _, value = line.rpartition(":")
        out[tuple(words.split())] = float(value)
    return out


_LEXICON = _parse(_LEXICON_TEXT)
_PHRASES = _parse_lines(_PHRASES_TEXT)
_MAX_PHRASE = max(len(p) for p in _PHRASES)


@dataclass(frozen=True)
class SentimentScore:
    score: float
    """-1 (very negative) .. 1 (very positive)."""
    label: str
    """negative | neutral | positive"""
    angry: bool
    cues: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "label": self.label,
            "angry": self.angry,
            "cues": list(self.cues),
        }


def label_for(score: float) -> str:
    if score <= NEGATIVE_AT:
        return "negative"
    if score >= POSITIVE_AT:
        return "positive"
    return "neutral"


def score_text(text: str) -> SentimentScore:
    """Sentiment of one turn."""
    raw_tokens = _WORD.findall(text)
    exclamations = sum(1 for t in raw_tokens if t == "!")
    words = [t for t in raw_tokens if t != "!"]
    lower = [w.lower() for w in words]
    has_lower = any(w != w.upper() for w in words)
    values: list[float] = []
    cues: list[str] = []
    i = 0
    while i < len(lower):
        span, valence = _match(lower, i)
        if valence == 0.0:
            values.append(0.0)
            i += 1
            continue
        valence = _modify(valence, lower, i)
        if has_lower and len(words[i]) > 2 and words[i].isupper():
            valence *= 1.3  # shouting
        cues.append(" ".join(lower[i : i + span]))
        values.extend([valence] + [0.0] * (span - 1))
        i += span
    if "but" in lower:
        cut = lower.index("but")
        values = [v * 0.5 for v in values[:cut]] + [v * 1.5 for v in values[cut:]]
    total = sum(values)
    if total and exclamations:
        total += math.copysign(0.3 * min(exclamations, 3), total)
    score = round(max(-1.0, min(1.0, total / math.sqrt(total * total + 15))), 3)
    angry = score <= ANGRY_AT or (score < 0 and any(c in _ANGER_CUES for c in cues))
    return SentimentScore(score, label_for(score), angry, tuple(cues))


def _match(lower: list[str], i: int) -> tuple[int, float]:
    for size in range(min(_MAX_PHRASE, len(lower) - i), 1, -1):
        value = _PHRASES.get(tuple(lower[i : i + size]))
        if value is not None:
            return size, value
    return 1, _LEXICON.get(lower[i], 0.0)


def _modify(valence: float, lower: list[str], i: int) -> float:
    negated = False
    for distance, j in enumerate(range(i - 1, max(-1, i - 4), -1), start=1):
        word = lower[j]
        fade = 1.0 if distance == 1 else 0.8 if distance == 2 else 0.6
        if word in _BOOSTERS:
            valence *= 1 + _BOOSTERS[word] * fade
        elif word in _DAMPENERS:
            valence *= _DAMPENERS[word]
        elif word in _NEGATORS:
            negated = True
        elif word in (".", "but"):
            break
    # A negated phrase that already contains its negation ("doesn't work") is not flipped.
    if negated and lower[i] not in _NEGATORS:
        valence *= _NEGATION_SCALE
    return valence


@dataclass(frozen=True)
class SentimentTrend:
    start: float
    end: float
    average: float
    direction: str
    """improving | worsening | steady"""

    def to_dict(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "average": self.average,
            "direction": self.direction,
        }


def trend(scores: Sequence[float]) -> SentimentTrend:
    """How the customer's mood moved over the call (their turns' scores, in order)."""
    if not scores:
        return SentimentTrend(0.0, 0.0, 0.0, "steady")
    window = max(1, min(2, len(scores) // 2))
    start = sum(scores[:window]) / window
    end = sum(scores[-window:]) / window
    delta = end - start
    direction = "steady"
    if len(scores) >= 2 and delta >= 0.25:
        direction = "improving"
    elif len(scores) >= 2 and delta <= -0.25:
        direction = "worsening"
    return SentimentTrend(
        round(start, 3), round(end, 3), round(sum(scores) / len(scores), 3), direction
    )
