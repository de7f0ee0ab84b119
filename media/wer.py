"""Word error rate, with the normalisation that makes speech-to-text output comparable.

Whisper writes "78901" where the reference says "seven eight nine zero one", "I'm" where a
voice said "I am", and punctuates freely; none of that is a recognition error. Both sides
are lowercased, stripped of punctuation, have common contractions expanded, and have every
number (written in digits or in words) spelled as its single digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_CONTRACTIONS = {
    "i'm": "i am", "you're": "you are", "we're": "we are", "they're": "they are",
    "it's": "it is", "that's": "that is", "there's": "there is", "what's": "what is",
    "i've": "i have", "you've": "you have", "we've": "we have", "i'll": "i will",
    "you'll": "you will", "we'll": "we will", "i'd": "i would", "you'd": "you would",
    "don't": "do not", "doesn't": "does not", "didn't": "did not", "can't": "cannot",
    "won't": "will not", "isn't": "is not", "aren't": "are not", "wasn't": "was not",
    "haven't": "have not", "couldn't": "could not", "wouldn't": "would not",
    "let's": "let us",
}  # fmt: skip
# "oh" is only a digit between other digits ("seven oh one"); alone it is a word.
_TOKEN = re.compile(r"[a-z0-9']+")
_HYPHENATED = re.compile(r"([a-z]+)-(?=[a-z])")


def normalize(text: str) -> list[str]:
    """The comparable words of a text."""
    text = text.lower().replace("\u2019", "'")
    # "e-mail" is "email", but "twenty-one" is "twenty one"; "3-5" falls apart as "3 5".
    text = _HYPHENATED.sub(_unhyphenate, text)
    words: list[str] = []
    for token in _TOKEN.findall(text):
        token = token.strip("'")
        if not token:
            continue
        words.extend(_CONTRACTIONS.get(token, token).split())
    return _spell_numbers(words)


def _unhyphenate(match: re.Match[str]) -> str:
    word = match[1]
    return word + " " if word in _TENS else word


def _spell_numbers(words: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.isdigit():
            out.extend(word)
            i += 1
            continue
        value, used = _parse_number(words, i)
        if used:
            out.extend(str(value))
            i += used
        else:
            out.append(word)
            i += 1
    return out


def _parse_number(words: Sequence[str], i: int) -> tuple[int, int]:
    """A number spoken as words at words[i]: (value, words used), or (0, 0)."""
    word = words[i]
    nxt = words[i + 1] if i + 1 < len(words) else ""
    if word == "oh" and not (_is_digit_word(nxt) or (i > 0 and _is_digit_word(words[i - 1]))):
        return 0, 0
    if word in _TENS:
        if nxt in _UNITS and 0 < _UNITS[nxt] < 10:
            return _TENS[word] + _UNITS[nxt], 2
        return _TENS[word], 1
    if word in _UNITS:
        value = _UNITS[word]
        if nxt == "hundred":
            return value * 100, 2
        return value, 1
    return 0, 0


def _is_digit_word(word: str) -> bool:
    return word.isdigit() or word in _UNITS or word in _TENS


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Substitutions + deletions + insertions turning ref into hyp."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one hypothesis; 0.0 for an empty reference and hypothesis."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Word error rate of many (reference, hypothesis) pairs: total errors / total words."""
    errors = words = 0
    for reference, hypothesis in pairs:
        ref = normalize(reference)
        errors += edit_distance(ref, normalize(hypothesis))
        words += len(ref)
    return errors / words if words else 0.0
