"""PII redaction: card numbers, card security codes and US SSNs never leave the transcriber.

Contact centres must not store card data (PCI DSS) and should not spread SSNs. Every
transcript passes through one `CallRedactor` before it is published, so what is persisted,
sent on the data channel and SSE, read back from `/messages`, handed to the assistant (and
so to LLM prompts, suggestions and summaries) and logged holds `[card ending 4242]`
instead of the number. Suggestions, summaries and status messages are scrubbed again on
the way out (`scrub`), in case an engine echoes something it should not.

What is redacted:
- card numbers: 13–19 digits that pass the Luhn check and start like a card (2–6), typed
  ("4242 4242 4242 4242") or dictated ("four two four two …"), also when the caller splits
  the number over two utterances ("it's 4242 4242" … "4242 4242"): the second utterance
  completes the first, whose digits are replaced afterwards (a revised final transcript with
  the same `segment_id`; the stored event is rewritten). Digits said right after "card"
  that do not (yet) make a valid number are redacted too: a half card number is still card
  data.
- security codes: 3–4 digits after "security code", "CVV", "CVC", "digits on the back",
  also in the next utterance when a turn ends with the question ("what's the CVV?").
- SSNs: 123-45-6789 / 123 45 6789 anywhere, 9 digits after "social security" / "SSN".

Order numbers (5 digits), amounts, dates and phone numbers are not touched: the benchmark
(bench/scenarios.py) counts false redactions of them.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.assist.spoken import NumberRun, number_runs

CARD_MIN, CARD_MAX = 13, 19
_CARD_CUE = re.compile(
    r"\b(?:card|credit|debit|visa|master ?card|amex|american express|discover|long number)\b",
    re.IGNORECASE,
)
_CARD_NUMBER_CUE = re.compile(
    r"\b(?:card (?:number|details|digits|no)|card is|number on (?:my|the|your) card|long number)\b",
    re.IGNORECASE,
)
"""Words that announce a card number still to come: digits in the next utterances are card digits."""
_CODE_CUE = re.compile(
    r"\b(?:security code|cvv2?|cvc2?|card code|(?:three|four|3|4) digits? on the (?:back|front))\b",
    re.IGNORECASE,
)
_SSN_CUE = re.compile(r"\b(?:social security(?: number)?|ssn|social)\b", re.IGNORECASE)
_SSN_FORMATTED = re.compile(
    r"(?<![\d-])(?!000|666|9\d\d)(\d{3})([- ])(?!00)\d{2}\2(?!0000)(\d{4})(?![\d-])"
)
_JOIN = re.compile(r"[\s,.\-/]*")
"""What may sit between the digit groups of one number ("4242, 4242 - 4242")."""
_TRAIL = re.compile(r"[\s,.;:!?\-]*")
CUE_REACH = 60
"""Characters before a number in which a cue ("card", "CVV") counts."""
OPENING_REACH = 30
"""A number continuing the previous utterance must start within this many characters."""

CARD = "card"
CARD_PART = "card_part"
CODE = "security_code"
SSN = "ssn"
_LABELS = {CARD_PART: "[card number]", CODE: "[security code]", SSN: "[SSN redacted]"}
REDACTED_TOKEN = re.compile(r"\[(card ending (\d{4})|card number|security code|SSN redacted)\]")
"""What a redaction leaves in the text; entity extraction reads it (server/assist/entities.py)."""


def luhn_valid(digits: str) -> bool:
    total = 0
    for n, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if n % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    return CARD_MIN <= len(digits) <= CARD_MAX and digits[0] in "23456" and luhn_valid(digits)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str
    label: str


@dataclass(frozen=True)
class _Group:
    """Number runs said as one number: only separators between them."""

    start: int
    end: int
    digits: str
    runs: tuple[NumberRun, ...]


def _groups(text: str, runs: list[NumberRun]) -> list[_Group]:
    groups: list[list[NumberRun]] = []
    for run in runs:
        if groups and _JOIN.fullmatch(text[groups[-1][-1].end : run.start]):
            groups[-1].append(run)
        else:
            groups.append([run])
    return [_Group(g[0].start, g[-1].end, "".join(r.digits for r in g), tuple(g)) for g in groups]


def _cue_before(pattern: re.Pattern[str], text: str, start: int) -> bool:
    return pattern.search(text[max(0, start - CUE_REACH) : start]) is not None


def _ends_with_cue(pattern: re.Pattern[str], text: str) -> bool:
    """The text's last words ask for (or announce) a number that has not come yet."""
    tail = text[-CUE_REACH:]
    matches = list(pattern.finditer(tail))
    return bool(matches) and not re.search(r"\d", tail[matches[-1].end() :])


@dataclass
class Carry:
    """What the next utterance of the same speaker may continue (in memory only)."""

    digits: str = ""
    """Trailing digits that may be the first part of a card number."""
    card_turns: int = 0
    """Utterances left in which digits are card digits: a caller reading a card number
    pauses, and speech-to-text splits the number over several segments."""
    expect_code: bool = False


_NOT_CARD_BEFORE = re.compile(
    r"(?:\border(?: number)?(?: is)?|#|ending(?: in| with)?|last (?:four|4)(?: digits)?(?: are| is)?|[$€£])\s*$",
    re.IGNORECASE,
)
_NOT_CARD_AFTER = re.compile(
    r"^\s*(?:dollars?|bucks?|euros?|pounds?|cents?|percent|days?|weeks?|months?|years?)\b", re.I
)


def _plain_number(text: str, group: _Group) -> bool:
    """An order number, an amount, "ending in 4242": digits that are not card data."""
    if [len(r.digits) for r in group.runs] == [3, 3, 4]:
        return True  # a phone number as people say it: 202 555 0101
    return bool(
        _NOT_CARD_BEFORE.search(text[max(0, group.start - 30) : group.start])
        or _NOT_CARD_AFTER.match(text[group.end : group.end + 12])
    )


def find_pii(text: str, carry: Carry | None = None) -> tuple[list[Span], bool]:
    """The spans to redact in `text`, and whether its opening completed `carry`'s digits."""
    carry = carry or Carry()
    groups = _groups(text, number_runs(text))
    spans: list[Span] = []
    continued = False
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, kind: str, label: str | None = None) -> None:
        spans.append(Span(start, end, kind, label or _LABELS[kind]))
        taken.append((start, end))

    for m in _SSN_FORMATTED.finditer(text):
        add(m.start(), m.end(), SSN)
    cue = _CARD_CUE.search(text)
    strong = _CARD_NUMBER_CUE.search(text)  # "card number is": every digit after it
    for n, group in enumerate(groups):
        if any(a < group.end and group.start < b for a, b in taken):
            continue
        opening = n == 0 and group.start <= OPENING_REACH
        if opening and carry.digits and is_card_number(carry.digits + group.digits):
            add(group.start, group.end, CARD, f"[card ending {group.digits[-4:]}]")
            continued = True
            continue
        if is_card_number(group.digits):
            add(group.start, group.end, CARD, f"[card ending {group.digits[-4:]}]")
            continue
        cards = [r for r in group.runs if is_card_number(r.digits)]
        if cards:
            for r in cards:
                add(r.start, r.end, CARD, f"[card ending {r.digits[-4:]}]")
            continue
        digits = len(group.digits)
        if digits == 9 and _cue_before(_SSN_CUE, text, group.start):
            add(group.start, group.end, SSN)
        elif 3 <= digits <= 4 and (
            _cue_before(_CODE_CUE, text, group.start) or (opening and carry.expect_code)
        ):
            add(group.start, group.end, CODE)
        elif _plain_number(text, group):
            continue
        elif (
            (strong is not None and strong.end() <= group.start)
            or (digits >= 4 and cue is not None and cue.end() <= group.start)
            or (digits >= 2 and carry.card_turns > 0)
        ):
            add(group.start, group.end, CARD_PART)
    return sorted(spans, key=lambda s: s.start), continued


def apply_spans(text: str, spans: list[Span]) -> str:
    for span in sorted(spans, key=lambda s: s.start, reverse=True):
        text = text[: span.start] + span.label + text[span.end :]
    return text


@functools.lru_cache(maxsize=4096)
def redact_text(text: str) -> str:
    """`text` with every card number, security code and SSN in it replaced (no context).

    Pure, so cached: a streamed suggestion repeats its ids and sources in every chunk, and
    scrubbing them again was 18 % of the event loop at 16 talking calls (py-spy, bench.latency)."""
    if not text or not any(ch.isdigit() for ch in text) and not _has_number_word(text):
        return text
    spans, _ = find_pii(text)
    return apply_spans(text, spans) if spans else text


_NUMBER_WORD = re.compile(r"\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)\b", re.I)


def _has_number_word(text: str) -> bool:
    return _NUMBER_WORD.search(text) is not None


CARD_CONTEXT_TURNS = 3
SEED_TRANSCRIPTS = 12
"""Final transcripts `CallRedactor.seed` reads: more than either speaker's context reaches
(CARD_CONTEXT_TURNS utterances each, and the other speaker's turns between them)."""
END_OF_RECORDING_MS = 1 << 40


def _next_carry(text: str, spans: list[Span], previous: Carry) -> Carry:
    """What an utterance leaves open for the next one of the same speaker."""
    carded = any(s.kind in (CARD, CARD_PART) for s in spans)
    card_turns = (
        CARD_CONTEXT_TURNS
        if carded or _CARD_NUMBER_CUE.search(text)
        else max(0, previous.card_turns - 1)
    )
    carry = Carry(card_turns=card_turns, expect_code=_ends_with_cue(_CODE_CUE, text))
    groups = _groups(text, number_runs(text))
    if groups:
        last = groups[-1]
        if (
            _TRAIL.fullmatch(text[last.end :])
            and 4 <= len(last.digits) < CARD_MAX
            and not is_card_number(last.digits)
        ):
            carry.digits = last.digits
    return carry


@dataclass
class _Last:
    """A speaker's last final transcript as published, and its text before redaction."""

    event: dict[str, Any]
    raw: str


@dataclass
class Redacted:
    event: dict[str, Any]
    """The transcript to publish."""
    revised: dict[str, Any] | None = None
    """An earlier final of the same speaker that this one showed to hold card digits:
    its corrected text, to publish as a revision of that segment."""
    silence: list[tuple[str, int, int]] = field(default_factory=list)
    """(speaker, start_ms, end_ms) of audio to silence in the recording."""


class CallRedactor:
    """One call's transcript redaction; keeps what spans two utterances, in memory only."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._carry: dict[str, Carry] = {}
        self._last: dict[str, _Last] = {}
        self._expect_code = False
        self._card_asked = 0
        self._open_from: dict[str, int] = {}
        self.redacted_spans = 0

    def transcript(self, event: dict[str, Any]) -> Redacted:
        if not self.enabled:
            return Redacted(event)
        text = str(event.get("text") or "")
        speaker = str(event.get("speaker"))
        carry = self._carry.get(speaker) or Carry()
        if speaker == "customer":
            # The agent asking "what's the card number / the CVV?" opens the caller's answer.
            carry = Carry(
                carry.digits,
                max(carry.card_turns, self._card_asked),
                carry.expect_code or self._expect_code,
            )
        spans, continued = find_pii(text, carry)
        out = Redacted({**event, "text": apply_spans(text, spans)} if spans else event)
        if not event.get("final"):
            return out
        self.redacted_spans += len(spans)
        who, start_ms, end_ms = _segment_span(event)
        open_from = self._open_from.pop(speaker, None)
        if spans:
            # While a caller reads card digits, what lies between the redacted segments is
            # digits too, even when speech-to-text lost them (tiny.en drops short "4 2 4 2"
            # segments): silence from the last redacted segment on.
            out.silence.append((who, min(start_ms, open_from or start_ms), end_ms))
        elif open_from is not None:
            out.silence.append((who, open_from, start_ms))
        last = self._last.get(speaker)
        if continued and last is not None:
            revised = self._revise(last)
            if revised is not None:
                out.revised = revised
                out.silence.append(_segment_span(last.event))
        self._carry[speaker] = _next_carry(text, spans, carry)
        if spans and self._carry[speaker].card_turns > 0:
            self._open_from[speaker] = end_ms
        if speaker != "customer":
            self._expect_code = _ends_with_cue(_CODE_CUE, text)
            self._card_asked = CARD_CONTEXT_TURNS if _CARD_NUMBER_CUE.search(text) else 0
        else:
            self._expect_code = False
            self._card_asked = 0
        return out

    def seed(self, earlier: list[dict[str, Any]]) -> None:
        """Rebuild what spans utterances from the call's latest final transcripts as they
        were published (redacted), when the call comes to this process while it goes on:
        taken over from a node that died, or after a restart. A card number whose first
        digits were said before the move is still caught when the rest comes after it.

        A label a redaction left stands for card data but holds no digits here ("[card
        ending 4242]" reads as "[card number]"): its last four digits must not start a
        number of their own."""
        if not self.enabled:
            return
        counted = self.redacted_spans
        for event in earlier[-SEED_TRANSCRIPTS:]:
            text = REDACTED_TOKEN.sub(_digitless_label, str(event.get("text") or ""))
            seen = {**event, "text": text}
            self.transcript(seen)  # its silence spans were the previous holder's to apply
            self.published(seen, text)
        self.redacted_spans = counted

    def finish(self) -> list[tuple[str, int, int]]:
        """At the end of the call: a speaker still reading digits when the last transcript
        came has the rest of their recording silenced."""
        spans = [
            (speaker, start, END_OF_RECORDING_MS) for speaker, start in self._open_from.items()
        ]
        self._open_from.clear()
        return spans

    def published(self, event: dict[str, Any], raw_text: str) -> None:
        """Remember a published final (with its seq) for a later revision."""
        if self.enabled and event.get("final"):
            self._last[str(event.get("speaker"))] = _Last(event, raw_text)

    def _revise(self, last: _Last) -> dict[str, Any] | None:
        groups = _groups(last.raw, number_runs(last.raw))
        if not groups:
            return None
        tail = groups[-1]
        spans, _ = find_pii(last.raw)
        if not any(s.start <= tail.start < s.end for s in spans):
            spans.append(Span(tail.start, tail.end, CARD_PART, _LABELS[CARD_PART]))
        text = apply_spans(last.raw, spans)
        if text == last.event.get("text"):
            return None
        return {**last.event, "text": text}

    def scrub(self, event: dict[str, Any]) -> dict[str, Any]:
        """Any event with the PII in its text removed, without context (idempotent: the
        labels redaction leaves are not PII). Suggestions and summaries an engine wrote,
        status messages, and transcripts again as a last line of defence."""
        if not self.enabled or event.get("type") in _NOTHING_TO_SCRUB:
            return event
        return _scrub(event)


_NOTHING_TO_SCRUB = frozenset({"call_state", "pong", "suggestion_feedback", "customer_context"})
"""Events with no speech or engine text in them (customer_context is the CRM record)."""


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _digitless_label(match: re.Match[str]) -> str:
    return _LABELS[CARD_PART] if match.group(2) else match.group(0)


def _segment_span(event: dict[str, Any]) -> tuple[str, int, int]:
    return (
        str(event.get("speaker")),
        int(event.get("start_ms") or 0),
        int(event.get("end_ms") or event.get("start_ms") or 0),
    )


class RedactingLogFilter(logging.Filter):
    """Defence in depth for logs: a message with a card number or SSN is rewritten."""

    def __init__(self, redact: Callable[[str], str] = redact_text) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = self._redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
