"""Sentiment of one customer turn (VADER, `vaderSentiment`), and its trend over the call.

VADER handles negation ("not happy"), intensifiers ("extremely"), "but" clauses, caps and
exclamation marks; data/sentiment.toml adds what a support call needs on top of its
general lexicon (call-center words and phrases such as "fed up", "third time", and words
to ignore, like "like" in "I'd like to…") and the cues that mark an angry caller. On the
labelled turns of bench/sentiment_set.py it agrees with a human label on 34 of 34 turns
and on anger on 33 of 34 (the hand-written scorer it replaces: 34 and 31); a turn costs
~0.3–0.6 ms (`python -m bench.nlp`), cheap enough to run on every final transcript.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

NEGATIVE_AT = -0.25
"""A turn at or below this score is negative: suggestions open with empathy."""
ANGRY_AT = -0.7
"""At or below this (or with anger cues) the customer is upset: apologise first."""
POSITIVE_AT = 0.25

_DATA = tomllib.loads((Path(__file__).parent / "data" / "sentiment.toml").read_text())
_PHRASES = {
    phrase: phrase.replace("'", "").replace(" ", "_") for phrase in _DATA["phrases"]
}
_PHRASE_RE = re.compile(
    r"\b(" + "|".join(re.escape(p) for p in sorted(_PHRASES, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_ANGER = frozenset(_DATA["anger"]["cues"])
_WORD = re.compile(r"[a-z_]+(?:'[a-z]+)?")


def _analyzer() -> SentimentIntensityAnalyzer:
    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon.update({w: float(v) for w, v in _DATA["words"].items()})
    analyzer.lexicon.update({_PHRASES[p]: float(v) for p, v in _DATA["phrases"].items()})
    return analyzer


_VADER = _analyzer()


@dataclass(frozen=True)
class SentimentScore:
    score: float
    """-1 (very negative) .. 1 (very positive): VADER's compound score."""
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


def _join_phrases(text: str) -> str:
    # Keep the case of the first letter, so that SHOUTED phrases still count as caps.
    return _PHRASE_RE.sub(lambda m: _PHRASES[m.group(1).lower()], text)


def score_text(text: str) -> SentimentScore:
    """Sentiment of one turn."""
    joined = _join_phrases(text)
    score = round(float(_VADER.polarity_scores(joined)["compound"]), 3)
    words = [w.lower() for w in _WORD.findall(joined.lower())]
    cues = tuple(
        dict.fromkeys(w.replace("_", " ") for w in words if _VADER.lexicon.get(w, 0.0) != 0.0)
    )
    angry = score <= ANGRY_AT or (score < 0 and any(w in _ANGER for w in words))
    return SentimentScore(score, label_for(score), angry, cues)


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
