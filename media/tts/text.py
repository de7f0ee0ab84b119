"""Cutting a reply into what is spoken at once: sentences, as the text streams in.

Piper speaks one sentence per inference and a remote engine one request per piece, so the
first sentence can be playing while the reply is still being written. A very long first
sentence is cut at a clause (a comma, a semicolon) so that the caller does not wait for
all of it; later ones stay whole, which sounds better.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[\u2014\u2013-])\s+")

FIRST_CLAUSE_MIN_CHARS = 20
"""A first sentence longer than FIRST_SENTENCE_MAX_CHARS is cut at its first clause end
after this many characters: Piper's time to the first audio grows with the piece (a
74-character sentence took 0.3 s on an idle core, 0.8 s on a loaded one)."""
FIRST_SENTENCE_MAX_CHARS = 50


def _is_abbreviation(text: str, end: int) -> bool:
    """`Mr.`, `e.g.`, `No. 5`: a full stop that ends no sentence."""
    word = text[:end].rsplit(maxsplit=1)[-1].lower() if text[:end].strip() else ""
    return word in {"mr.", "mrs.", "ms.", "dr.", "e.g.", "i.e.", "no.", "st.", "vs.", "etc."}


class SentenceSplitter:
    """Feed text deltas; get back the pieces complete enough to speak."""

    def __init__(self) -> None:
        self._buffer = ""
        self._first = True

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        pieces: list[str] = []
        while (piece := self._next_piece()) is not None:
            if piece:
                pieces.append(piece)
        return pieces

    def flush(self) -> list[str]:
        """What is left at the end of the reply."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _next_piece(self) -> str | None:
        text = self._buffer
        end = None
        for match in _SENTENCE_END.finditer(text):
            if not _is_abbreviation(text, match.start() + 1):
                end = match.end()
                break
        sentence = text if end is None else text[:end]
        if self._first and len(sentence.rstrip()) > FIRST_SENTENCE_MAX_CHARS:
            clause = _CLAUSE_END.search(sentence, FIRST_CLAUSE_MIN_CHARS)
            if clause is not None:
                return self._take(clause.end())
        return None if end is None else self._take(end)

    def _take(self, end: int) -> str:
        piece, self._buffer = self._buffer[:end].strip(), self._buffer[end:]
        if piece.strip(".!?,;: "):
            self._first = False
        return piece


def split_sentences(text: str) -> list[str]:
    """A whole text, cut as SentenceSplitter would cut it streaming."""
    splitter = SentenceSplitter()
    return splitter.feed(text) + splitter.flush()
