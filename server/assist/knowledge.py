"""Knowledge-base retrieval: BM25 (`bm25s`) over the articles, in memory, refreshable.

Words are stemmed with Snowball (`PyStemmer`) and stop words are bm25s's English list
plus a few fillers of speech (data/retrieval.toml). Title and tags are repeated into the
indexed text so they weigh more than the body; a few call-center synonyms ("money back"
→ refund) let spoken questions meet written articles. Building the index runs in a
thread; searching scores every article with one sparse lookup and stays on the loop
(~0.1 ms for 20 articles). `refresh()` swaps in a whole new index, so searches never see
a half-built one.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS
from sqlmodel import func, select

if TYPE_CHECKING:
    from server.store import Store

_DATA = tomllib.loads((Path(__file__).parent / "data" / "retrieval.toml").read_text())
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS) | frozenset(_DATA["fillers"])
_SYNONYMS: dict[str, str] = dict(_DATA["synonyms"])
_TITLE_REPEAT = 2
"""The title counts this many times in an article's text (a field weight, BM25F-style)."""
_PRIMARY_TAG_BONUS = 1.0
_TAG_BONUS = 0.3
"""Added to an article's score when its first (primary) tag, or another tag, is requested:
about the score of a title word (BM25 scores here run 0–15)."""
MIN_SCORE = 0.0
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STEMMER = Stemmer.Stemmer("english")


def stem(word: str) -> str:
    """Snowball English: returns/returned/returning → return."""
    return str(_STEMMER.stemWord(word.lower().replace("'s", "").replace("'", "")))


def tokenize(text: str) -> list[str]:
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
    return list(_STEMMER.stemWords([w.replace("'", "") for w in words]))


def _tag_terms(tags: Iterable[str]) -> list[str]:
    return tokenize(" ".join(part for tag in tags for part in re.split(r"[-_ ]", tag) if part))


def _synonyms(text: str) -> str:
    """The articles' words for what the caller said ("money back" → refund)."""
    low = " ".join(text.lower().split())
    return " ".join(value for phrase, value in _SYNONYMS.items() if phrase in low)


def expand_query(text: str) -> str:
    return f"{text} {_synonyms(text)}".strip()


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
    more: tuple[str, ...] = ()
    """The next best paragraphs, for a follow-up question on the same article."""

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
    bm25: Any = None
    vocab: frozenset[str] = frozenset()

    @classmethod
    def build(cls, docs: Sequence[ArticleDoc]) -> _Index:
        index = cls(docs=list(docs))
        if not index.docs:
            return index
        corpus = [
            tokenize(" ".join([doc.title] * _TITLE_REPEAT + [doc.body]))
            + _tag_terms(doc.tags)
            for doc in index.docs
        ]
        index.bm25 = bm25s.BM25()
        index.bm25.index(corpus, show_progress=False)
        index.vocab = frozenset(index.bm25.vocab_dict)
        return index

    def scores(self, terms: list[str]) -> np.ndarray:
        known = [t for t in terms if t in self.vocab]
        if self.bm25 is None or not known:
            return np.zeros(len(self.docs))
        return np.asarray(self.bm25.get_scores(known))


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
        self, query: str, *, k: int = 3, tags: Iterable[str] = (), min_score: float = MIN_SCORE
    ) -> list[KnowledgeHit]:
        """The best `k` articles for `query`; articles carrying any of `tags` rank higher."""
        index = self._index
        wanted = set(tags)
        said = tokenize(query)
        terms = said + tokenize(_synonyms(query)) * 2 + _tag_terms(wanted)
        if not said or not index.docs:
            return []
        scores = index.scores(terms)
        hits = []
        for doc_n, doc in enumerate(index.docs):
            score = float(scores[doc_n])
            if score <= 0:
                continue
            # The intent behind the question is a strong hint: its articles go first.
            if doc.tags and doc.tags[0] in wanted:
                score += _PRIMARY_TAG_BONUS
            score += _TAG_BONUS * len(wanted.intersection(doc.tags[1:]))
            if score >= min_score:
                hits.append((score, doc))
        hits.sort(key=lambda pair: (-pair[0], pair[1].id))
        query_terms = set(terms)
        out = []
        for score, doc in hits[:k]:
            best, *more = ranked_passages(doc, query_terms)
            out.append(KnowledgeHit(doc.id, doc.title, doc.tags, round(score, 3), best, tuple(more)))
        return out


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
    return ranked_passages(doc, query_terms, 1, max_chars)[0]


def ranked_passages(
    doc: ArticleDoc, query_terms: set[str], n: int = 3, max_chars: int = 320
) -> list[str]:
    """The paragraphs sharing most terms with the query, best first.

    The lead paragraph gets one extra point: articles state their main rule first, and a
    later paragraph should win only when it is clearly closer to the question.
    """
    paragraphs = _paragraphs(doc.body) or [doc.title]
    ranked = sorted(
        enumerate(paragraphs),
        key=lambda pair: (
            -(len(query_terms.intersection(tokenize(pair[1]))) + (pair[0] == 0)),
            pair[0],
        ),
    )
    return [_trim(text, max_chars) for _, text in ranked[:n]]


def _trim(text: str, max_chars: int) -> str:
    text = re.sub(r"\*\*|__|`", "", text)
    if len(text) <= max_chars:
        return text
    cut = text.rfind(". ", 0, max_chars)
    return text[: cut + 1] if cut > 80 else text[:max_chars].rsplit(" ", 1)[0] + "…"
