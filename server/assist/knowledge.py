"""Knowledge-base retrieval: Okapi BM25 over the articles, in memory, refreshable.

Title and tags are repeated into the indexed text so they weigh more than the body;
a light suffix stemmer and a few call-center synonyms ("money back" → refund) let
spoken questions meet written articles. Building the index runs in a thread (a large
knowledge base takes a while); searching is a few dictionary lookups and stays on the
loop. `refresh()` swaps in a whole new index, so searches never see a half-built one.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlmodel import func, select

if TYPE_CHECKING:
    from server.store import Store

_K1 = 1.2
_B = 0.75
_TITLE_BONUS = 1.5
"""A query term in the title adds this many times its idf (BM25F-style field weight)."""
_TAG_BONUS = 1.0
_PRIMARY_TAG_BOOST = 0.5
_TAG_BOOST = 0.2
"""Score multipliers when an article's first (primary) tag, or another tag, is requested."""

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "would",
        "you",
        "your",
        "can",
        "could",
        "do",
        "does",
        "did",
        "just",
        "am",
        "been",
        "being",
        "about",
        "hi",
        "hello",
        "okay",
        "ok",
        "yes",
        "yeah",
        "um",
        "uh",
        "please",
        "want",
        "need",
        "get",
        "got",
        "know",
        "thing",
        "back",
        "like",
        "also",
        "still",
        "really",
        "very",
        "much",
        "i'd",
        "i'm",
        "i've",
        "i'll",
        "it's",
        "that's",
        "don't",
        "zero",
        "oh",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "hundred",
        "thousand",
    ]
)
_SYNONYMS = {
    "money back": "refund",
    "send back": "return",
    "send it back": "return",
    "charged twice": "duplicate charge billing",
    "double charged": "duplicate charge billing",
    "stopped working": "defective warranty",
    "doesn't work": "defective warranty",
    "not working": "defective warranty",
    "broken": "defective warranty",
    "moved": "address change",
    "where is my order": "order status tracking",
    "hasn't arrived": "delivery delay",
    "not arrived": "delivery delay",
    "late": "delay",
    "manager": "escalation complaint",
    "supervisor": "escalation complaint",
}
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def stem(word: str) -> str:
    """A light English suffix stripper: returns/returned/returning → return."""
    w = word.lower().replace("'s", "").replace("'", "")
    if len(w) <= 3:
        return w
    for suffix, repl, min_len in (
        ("ies", "y", 4),
        ("sses", "ss", 5),
        ("ation", "", 7),
        ("ments", "", 7),
        ("ment", "", 6),
        ("ing", "", 5),
        ("ed", "", 4),
        ("ly", "", 5),
        ("es", "", 5),
        ("s", "", 4),
    ):
        if w.endswith(suffix) and len(w) >= min_len and not w.endswith(("ss", "us", "is")):
            w = w[: len(w) - len(suffix)] + repl
            break
    if len(w) > 4 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]  # shipp → ship
    if len(w) > 4 and w.endswith("ll"):
        w = w[:-1]  # cancell → cancel
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]  # charge → charg, matches charged
    return w


def tokenize(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def _tag_terms(tags: Iterable[str]) -> list[str]:
    return [stem(part) for tag in tags for part in re.split(r"[-_ ]", tag) if part]


def expand_query(text: str) -> str:
    low = " ".join(text.lower().split())
    extra = [value for phrase, value in _SYNONYMS.items() if phrase in low]
    return " ".join([low, *extra])


@dataclass(frozen=True)
class ArticleDoc:
    id: str
    title: str
    body: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class KnowledgeHit:
    id: str
    title: str
    tags: tuple[str, ...]
    score: float
    passage: str
    """The paragraph of the article that best answers the query."""

    def source(self) -> dict[str, Any]:
        return {"type": "article", "id": self.id, "title": self.title}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "tags": list(self.tags),
            "score": self.score,
            "passage": self.passage,
        }


@dataclass
class _Index:
    docs: list[ArticleDoc] = field(default_factory=list)
    postings: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)
    titles: list[frozenset[str]] = field(default_factory=list)
    tags: list[frozenset[str]] = field(default_factory=list)
    avg_len: float = 1.0

    @classmethod
    def build(cls, docs: Sequence[ArticleDoc]) -> _Index:
        index = cls(docs=list(docs))
        for n, doc in enumerate(index.docs):
            title = tokenize(doc.title)
            tags = _tag_terms(doc.tags)
            terms = tokenize(doc.body) + title + tags
            index.lengths.append(len(terms))
            index.titles.append(frozenset(title))
            index.tags.append(frozenset(tags))
            for term, tf in Counter(terms).items():
                index.postings.setdefault(term, []).append((n, tf))
        index.avg_len = (sum(index.lengths) / len(index.lengths)) if index.lengths else 1.0
        return index


class KnowledgeBase:
    """The articles of the store, searchable. One per server, shared by all calls."""

    def __init__(self, articles: Iterable[ArticleDoc] = ()) -> None:
        self._index = _Index.build(list(articles))
        self._by_id = {doc.id: doc for doc in self._index.docs}
        self._loaded = bool(self._index.docs)
        self._version: tuple[int, int] | None = None
        self._refresh_lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._index.docs)

    def get(self, article_id: str) -> ArticleDoc | None:
        return self._by_id.get(article_id)

    async def refresh(self, store: Store) -> int:
        """Re-read every article from the store and rebuild the index; returns the count."""
        from server.assist.models import Article

        async with self._refresh_lock:
            async with store.session() as session:
                rows = (await session.exec(select(Article))).all()
            docs = [ArticleDoc(r.id, r.title, r.body, tuple(r.tags or ())) for r in rows]
            index = await asyncio.to_thread(_Index.build, docs)
            self._index, self._by_id = index, {doc.id: doc for doc in docs}
            self._loaded = True
            return len(docs)

    async def ensure_loaded(self, store: Store) -> None:
        if not self._loaded:
            await self.refresh(store)

    async def refresh_if_changed(self, store: Store) -> bool:
        """Rebuild when articles were imported since the last build (one cheap query)."""
        from server.assist.models import Article

        async with store.session() as session:
            count, newest = (
                await session.exec(
                    select(func.count(), func.max(Article.updated_at)).select_from(Article)
                )
            ).one()
        version = (int(count or 0), int(newest or 0))
        if self._loaded and version == self._version:
            return False
        await self.refresh(store)
        self._version = version
        return True

    def search(
        self, query: str, *, k: int = 3, tags: Iterable[str] = (), min_score: float = 0.5
    ) -> list[KnowledgeHit]:
        """The best `k` articles for `query`; articles carrying any of `tags` rank higher."""
        index = self._index
        wanted = set(tags)
        terms = tokenize(expand_query(query)) + _tag_terms(wanted)
        if not terms or not index.docs:
            return []
        n_docs = len(index.docs)
        scores: dict[int, float] = {}
        for term in set(terms):
            postings = index.postings.get(term)
            if not postings:
                continue
            idf = math.log(1 + (n_docs - len(postings) + 0.5) / (len(postings) + 0.5))
            for n, tf in postings:
                norm = (
                    tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * index.lengths[n] / index.avg_len))
                )
                bonus = _TITLE_BONUS * (term in index.titles[n]) + _TAG_BONUS * (
                    term in index.tags[n]
                )
                scores[n] = scores.get(n, 0.0) + idf * (norm + bonus)
        hits = []
        for doc_n, score in scores.items():
            doc = index.docs[doc_n]
            if doc.tags and doc.tags[0] in wanted:
                score *= 1 + _PRIMARY_TAG_BOOST
            score *= 1 + _TAG_BOOST * len(wanted.intersection(doc.tags[1:]))
            if score >= min_score:
                hits.append((score, doc))
        hits.sort(key=lambda pair: (-pair[0], pair[1].id))
        query_terms = set(terms)
        return [
            KnowledgeHit(
                doc.id, doc.title, doc.tags, round(score, 3), best_passage(doc, query_terms)
            )
            for score, doc in hits[:k]
        ]


def _paragraphs(body: str) -> list[str]:
    parts = []
    for block in re.split(r"\n\s*\n", body):
        block = block.strip()
        if not block or block.startswith("#"):
            continue
        # A list is several answers; each item stands alone.
        items = [
            line.strip()[2:].strip()
            for line in block.splitlines()
            if line.strip()[:2] in ("- ", "* ")
        ]
        if items and len(items) == len(block.splitlines()):
            parts.extend(items)
        else:
            parts.append(" ".join(line.strip() for line in block.splitlines()))
    return parts


def best_passage(doc: ArticleDoc, query_terms: set[str], max_chars: int = 320) -> str:
    """The paragraph sharing most terms with the query.

    The lead paragraph gets one extra point: articles state their main rule first, and a
    later paragraph should win only when it is clearly closer to the question.
    """
    paragraphs = _paragraphs(doc.body) or [doc.title]
    best = max(
        enumerate(paragraphs),
        key=lambda pair: (
            len(query_terms.intersection(tokenize(pair[1]))) + (pair[0] == 0),
            -pair[0],
        ),
    )[1]
    best = re.sub(r"\*\*|__|`", "", best)
    if len(best) <= max_chars:
        return best
    cut = best.rfind(". ", 0, max_chars)
    return best[: cut + 1] if cut > 80 else best[:max_chars].rsplit(" ", 1)[0] + "…"
