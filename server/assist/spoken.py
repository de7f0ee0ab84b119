"""Numbers as people say them, rewritten as digits: "seven eight nine oh one" → "78901".

Speech-to-text writes numbers inconsistently ("78901", "7 8 9 0 1", "7-8-9-0-1",
"seven eight nine zero one", "seventy eight nine oh one"), so entity extraction first
rewrites every run of number words and digits into one digit string, then uses plain
regular expressions. A run that uses "hundred"/"thousand" is read as a quantity
("a hundred and forty nine" → "149"); any other run is read digit by digit, which is how
order numbers, phone numbers and card digits are dictated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

UNITS = {
    "zero": 0,
    "oh": 0,
    "o": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
REPEATS = {"double": 2, "triple": 3}
ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}
# "oh"/"o" are numbers only next to other numbers ("oh no" stays words).
_WEAK = {"oh", "o"}
_SUFFIX = {1: "st", 2: "nd", 3: "rd"}

# Dates and decimals are kept whole so that joining digit groups cannot mangle them.
_TOKEN = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}"
    r"|\d{1,2}/\d{1,2}(?:/\d{2,4})?"
    r"|\d{1,3}(?:,\d{3})+(?:\.\d+)?"
    r"|\d+\.\d+"
    r"|\d+(?:st|nd|rd|th)\b"
    r"|\d+"
    r"|[a-z]+(?:'[a-z]+)?"
    r"|\S",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Tok:
    text: str
    start: int
    end: int

    @property
    def low(self) -> str:
        return self.text.lower()


def ordinal_suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return _SUFFIX.get(n % 10, "th")


def _is_digits(tok: _Tok) -> bool:
    return tok.text.isdigit()


def _is_strong(tok: _Tok) -> bool:
    low = tok.low
    return _is_digits(tok) or (low in UNITS and low not in _WEAK) or low in TEENS or low in TENS


def _is_numeric(tok: _Tok) -> bool:
    return _is_strong(tok) or tok.low in _WEAK


def _single_digit(tok: _Tok) -> bool:
    return (tok.text.isdigit() and len(tok.text) == 1) or tok.low in UNITS


def _collect_run(toks: list[_Tok], i: int) -> int:
    """Index one past the end of the number run starting at toks[i] (i if none)."""
    n = len(toks)

    def numeric_at(j: int) -> bool:
        if j >= n:
            return False
        t = toks[j]
        if t.low in REPEATS:
            return j + 1 < n and _single_digit(toks[j + 1])
        if t.low == "a":
            return j + 1 < n and toks[j + 1].low in SCALES
        return _is_numeric(t)

    if not numeric_at(i):
        return i
    # A run may not start with a lone "oh": it needs a real number right after it.
    if toks[i].low in _WEAK and not (
        i + 1 < n and numeric_at(i + 1) and _is_strong_or_repeat(toks[i + 1])
    ):
        return i
    j = i
    while j < n:
        t = toks[j]
        if numeric_at(j):
            j += 1 + (1 if t.low in REPEATS else 0)
            continue
        if t.low in SCALES and j > i:
            j += 1
            continue
        # "one hundred and forty nine"
        if t.low == "and" and j > i and toks[j - 1].low in SCALES and numeric_at(j + 1):
            j += 1
            continue
        # Dictated digits: "7, 8, 9" / "7-8-9" / "555-0123".
        if t.text in ",-." and j > i and j + 1 < n and numeric_at(j + 1):
            prev, nxt = toks[j - 1], toks[j + 1]
            if (_single_digit(prev) and _single_digit(nxt)) or (
                t.text == "-" and _is_digits(prev) and _is_digits(nxt)
            ):
                j += 1
                continue
        if t.low == "dash" and j > i and numeric_at(j + 1):
            j += 1
            continue
        break
    # Trailing "oh" ("... nine oh") is part of the number; trailing separators are not.
    while j > i and (toks[j - 1].text in ",-." or toks[j - 1].low in ("and", "dash")):
        j -= 1
    return j


def _is_strong_or_repeat(tok: _Tok) -> bool:
    return _is_strong(tok) or tok.low in REPEATS or tok.low in _WEAK


def _cardinal(words: list[str]) -> int | None:
    """Value of a well-formed quantity ("one hundred forty nine"), else None."""
    total = current = 0
    last = ""  # kind of the previous word: unit|teen|tens|scale
    for w in words:
        if w == "and":
            continue
        if w.isdigit():
            if last in ("unit", "teen", "tens"):
                return None
            current += int(w)
            last = "unit"
        elif w in UNITS or w == "a":
            if last in ("unit", "teen"):
                return None
            current += 1 if w == "a" else UNITS[w]
            last = "unit"
        elif w in TEENS:
            if last in ("unit", "teen", "tens"):
                return None
            current += TEENS[w]
            last = "teen"
        elif w in TENS:
            if last in ("unit", "teen", "tens"):
                return None
            current += TENS[w]
            last = "tens"
        elif w in SCALES:
            scale = SCALES[w]
            if scale == 100:
                current = (current or 1) * 100
            else:
                total += (current or 1) * scale
                current = 0
            last = "scale"
        else:
            return None
    return total + current


def _digit_string(words: list[str]) -> str:
    """Digit-by-digit reading: "seventy eight nine oh one" → "78901"."""
    out: list[str] = []
    k = 0
    while k < len(words):
        w = words[k]
        nxt = words[k + 1] if k + 1 < len(words) else ""
        if w.isdigit():
            out.append(w)
        elif w in REPEATS and nxt in UNITS:
            out.append(str(UNITS[nxt]) * REPEATS[w])
            k += 1
        elif w in REPEATS and nxt.isdigit():
            out.append(nxt * REPEATS[w])
            k += 1
        elif w in UNITS:
            out.append(str(UNITS[w]))
        elif w in TEENS:
            out.append(str(TEENS[w]))
        elif w in TENS:
            if nxt in UNITS and UNITS[nxt] > 0 and nxt not in _WEAK:
                out.append(str(TENS[w] + UNITS[nxt]))
                k += 1
            else:
                out.append(str(TENS[w]))
        k += 1
    return "".join(out)


def _read_run(toks: list[_Tok]) -> str:
    words = [t.low for t in toks if t.text not in ",-." and t.low != "dash"]
    if any(w in SCALES for w in words):
        value = _cardinal(words)
        if value is not None:
            return str(value)
    return _digit_string(words)


def _ungroup(token: str) -> str:
    # "78,901" is a number with a thousands separator, not two numbers.
    if "," in token and "." not in token and token.replace(",", "").isdigit():
        return token.replace(",", "")
    return token


def _tokens(text: str) -> list[_Tok]:
    return [_Tok(_ungroup(m.group(0)), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _scan(toks: list[_Tok]) -> Iterator[tuple[int, int]]:
    """(start, end) for each step left to right: a number run when end > start, else
    the single token at start."""
    i = 0
    while i < len(toks):
        end = _collect_run(toks, i)
        if end > i:
            yield i, end
            i = end
        else:
            yield i, i
            i += 1


def normalize_numbers(text: str) -> str:
    """`text` with every spoken or split number rewritten as one digit string.

    Ordinals become "3rd"-style ("march twenty third" → "march 23rd"); other words
    and punctuation are kept, lowercased.
    """
    toks = _tokens(text)
    out: list[str] = []
    skip = -1
    for i, end in _scan(toks):
        if i <= skip:
            continue  # an ordinal already joined to the run before it
        if end > i:
            digits = _read_run(toks[i:end])
            # "twenty third" → 23rd
            if end < len(toks) and toks[end].low in ORDINALS and toks[end - 1].low in TENS:
                value = int(digits) + ORDINALS[toks[end].low]
                out.append(f"{value}{ordinal_suffix(value)}")
                skip = end
            else:
                out.append(digits)
            continue
        low = toks[i].low
        if low in ORDINALS:
            value = ORDINALS[low]
            out.append(f"{value}{ordinal_suffix(value)}")
        else:
            out.append(low)
    return " ".join(out)


@dataclass(frozen=True)
class NumberRun:
    """One run of number words and digits in the original text, and its digits."""

    start: int
    end: int
    digits: str


def number_runs(text: str) -> list[NumberRun]:
    """Every run `normalize_numbers` would rewrite, with its place in `text`.

    Redaction needs the characters to replace, not just the digits: "four two four two"
    and "4242-4242" are found where they were said.
    """
    toks = _tokens(text)
    runs: list[NumberRun] = []
    for i, end in _scan(toks):
        if end > i:
            digits = _read_run(toks[i:end])
            if digits.isdigit():
                runs.append(NumberRun(toks[i].start, toks[end - 1].end, digits))
    return runs
