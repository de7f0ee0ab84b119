from pathlib import Path

import pytest

from server.assist.importer import import_kb
from server.assist.knowledge import ArticleDoc, KnowledgeBase, stem
from server.store import Store


@pytest.mark.parametrize(
    ("query", "article"),
    [
        ("I want my money back for order seven eight nine zero one", "refund-policy"),
        ("my headphones stopped working after two months", "warranty"),
        ("I was charged twice for the same thing", "billing-disputes"),
        ("my package hasn't arrived and it's a week late", "shipping-delays"),
        ("I need to change the delivery address", "address-change"),
        ("can I cancel the order I placed this morning", "cancellation"),
        ("I want to speak to your supervisor", "complaints-escalation"),
        ("how long do I have to return something", "return-policy"),
    ],
)
def test_search_finds_the_right_article(knowledge: KnowledgeBase, query: str, article: str) -> None:
    hits = knowledge.search(query)
    assert hits and hits[0].id == article


def test_tags_boost_and_passage(knowledge: KnowledgeBase) -> None:
    hit = knowledge.search("how long does it take", tags=("refund",))[0]
    assert hit.id == "refund-policy"
    assert "5–7 business days" in hit.passage
    assert hit.source() == {
        "type": "article",
        "id": "refund-policy",
        "title": "Refund policy and timelines",
    }


def test_nothing_for_noise(knowledge: KnowledgeBase) -> None:
    assert knowledge.search("um yes hello okay") == []
    assert KnowledgeBase().search("refund") == []


def test_stemmer() -> None:
    assert {stem("returns"), stem("returned"), stem("returning")} == {"return"}
    assert stem("shipping") == stem("shipped") == stem("ship")
    assert stem("cancellation")[:6] == stem("cancelled")[:6]
    assert stem("warranties") == stem("warranty")


async def test_refresh_if_changed_picks_up_imports(
    knowledge: KnowledgeBase, demo_store: Store, tmp_path: Path
) -> None:
    assert await knowledge.refresh_if_changed(demo_store)  # first call records the version
    assert not await knowledge.refresh_if_changed(demo_store)
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "pet-policy.md").write_text(
        "# Pets in the showroom\n\nDogs on a leash are welcome in every store.\n"
    )
    await import_kb(demo_store, folder)
    assert await knowledge.refresh_if_changed(demo_store)
    assert knowledge.search("can I bring my dog")[0].id == "pet-policy"


def test_in_memory_articles() -> None:
    kb = KnowledgeBase(
        [
            ArticleDoc("a", "Returns", "Return within 30 days.", ("return",)),
            ArticleDoc("b", "Shipping", "Ships in 2 days.", ("shipping",)),
        ]
    )
    assert len(kb) == 2 and kb.get("a") is not None
    assert kb.search("return it", min_score=0)[0].id == "a"
