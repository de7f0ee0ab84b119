"""The kept libraries against labelled data (issue 13): quality and cost per turn.

  sentiment  VADER (+ data/sentiment.toml) vs a support lead's labels (bench/sentiment_set.py)
  retrieval  bm25s + PyStemmer: the article a question should cite, top-1
  phones     phonenumbers: E.164 numbers found in written and spoken turns

    python -m bench.nlp
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.sentiment_set import TURNS
from server.assist.demo import KNOWLEDGE_DIR
from server.assist.entities import extract_entities
from server.assist.importer import import_kb
from server.assist.knowledge import KnowledgeBase
from server.assist.sentiment import score_text
from server.store import Store

RETRIEVAL: list[tuple[str, tuple[str, ...], str | None]] = [
    ("I want my money back for order seven eight nine zero one", (), "refund-policy"),
    ("my headphones stopped working after two months", (), "warranty"),
    ("I was charged twice for the same thing", (), "billing-disputes"),
    ("my package hasn't arrived and it's a week late", (), "shipping-delays"),
    ("I need to change the delivery address", (), "address-change"),
    ("can I cancel the order I placed this morning", (), "cancellation"),
    ("I want to speak to your supervisor", (), "complaints-escalation"),
    ("how long do I have to return something", (), "return-policy"),
    ("how long does it take", ("refund",), "refund-policy"),
    ("um yes hello okay", (), None),
    ("Do I have to pay for the return label?", ("return",), "return-policy"),
    ("How long will it take to show up on my card?", ("refund",), "refund-policy"),
    ("I lost a gift card my sister gave me, can it be replaced?", ("gift-card",), "gift-cards"),
    ("How long does shipping to Poland take, and do I pay customs?", ("international",), "international-orders"),
    ("Should I call my bank and dispute it?", ("billing",), "billing-disputes"),
    ("I think someone else got into my account.", ("account",), "account-security"),
    ("Thanks a lot", (), None),
    ("I moved last month", ("address",), "address-change"),
    ("what are the benefits of my gold tier", (), "loyalty-tiers"),
    ("the price dropped after I bought it", (), "price-adjustment"),
    ("how quickly does express shipping arrive", (), "shipping-times"),
    ("my payment was declined", (), "payment-methods"),
    ("the box was crushed and the screen is cracked", (), "damaged-items"),
    ("can I exchange it for a different size", (), "exchanges"),
    ("where is my parcel, can you track it", (), "order-tracking"),
]

PHONES: list[tuple[str, tuple[str, ...]]] = [
    ("call me at 202 555 0101", ("+12025550101",)),
    ("my number is (202) 555-0102", ("+12025550102",)),
    ("it's 2025550103", ("+12025550103",)),
    ("my number is two zero two five five five zero one zero four", ("+12025550104",)),
    ("1-202-555-0105 is my cell", ("+12025550105",)),
    ("+44 20 7946 0958 is my UK number", ("+442079460958",)),
    ("order 78901 cost $149.00", ()),
    ("it was delivered on 12/03/2025", ()),
    ("tracking 1Z550013773100", ()),
    ("my zip code is 97205", ()),
]


def timed(fn, items, rounds: int = 20):  # type: ignore[no-untyped-def]
    """Results, and warm milliseconds per item (after one pass to load lazy data)."""
    out = [fn(x) for x in items]
    started = time.perf_counter()
    for _ in range(rounds):
        for x in items:
            fn(x)
    return out, (time.perf_counter() - started) * 1000 / max(1, rounds * len(items))


async def main() -> None:
    scores, ms = timed(score_text, [t for t, _, _ in TURNS])
    labels = sum(s.label == label for s, (_, label, _) in zip(scores, TURNS, strict=True))
    angry = sum(s.angry == a for s, (_, _, a) in zip(scores, TURNS, strict=True))
    print(f"sentiment: label {labels}/{len(TURNS)}, anger {angry}/{len(TURNS)}, {ms:.2f} ms a turn")

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite+aiosqlite:///{Path(tmp) / 'kb.db'}")
        await store.create_schema()
        await import_kb(store, KNOWLEDGE_DIR)
        kb = KnowledgeBase()
        await kb.refresh(store)
        await store.close()
    hits, ms = timed(lambda q: kb.search(q[0], k=3, tags=q[1]), RETRIEVAL)
    top1 = sum(
        (bool(h) and h[0].id == want) or (want is None and not h)
        for h, (_, _, want) in zip(hits, RETRIEVAL, strict=True)
    )
    misses = [q for h, (q, _, want) in zip(hits, RETRIEVAL, strict=True) if want and (not h or h[0].id != want)]
    print(f"retrieval: top-1 {top1}/{len(RETRIEVAL)}, {ms:.2f} ms a query; misses: {misses}")

    found, ms = timed(lambda t: extract_entities(t).phones, [t for t, _ in PHONES])
    right = sum(tuple(f) == want for f, (_, want) in zip(found, PHONES, strict=True))
    print(f"phones: {right}/{len(PHONES)} turns exactly right, entities {ms:.2f} ms a turn")


if __name__ == "__main__":
    asyncio.run(main())
