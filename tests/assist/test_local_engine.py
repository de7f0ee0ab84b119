"""The local engine's suggestions, filled from the demo database's real rows."""

from typing import Any

from server.assist.context import CallContext, ContextSnapshot
from server.assist.engine import SuggestionChunk
from server.assist.knowledge import KnowledgeBase
from server.assist.local import LocalSuggestionEngine
from server.assist.models import Order
from server.assist.playbooks import Draft, build_drafts
from server.assist.summary import build_summary
from server.store import Store

from .conftest import new_call, transcript


async def snapshot_after(
    store: Store, kb: KnowledgeBase, customer_id: str, *said: str
) -> ContextSnapshot:
    context = CallContext(await new_call(store, customer_id), customer_id)
    await context.load(store)
    for n, text in enumerate(said):
        context.add_turn(transcript(text, f"s{n}"))
    await context.resolve_orders(store)
    return context.snapshot(kb)


def by_kind(drafts: list[Draft]) -> dict[str, Draft]:
    return {d.kind: d for d in drafts}


async def test_refund_for_spoken_order_uses_the_real_order(
    demo_store: Store, knowledge: KnowledgeBase
) -> None:
    snap = await snapshot_after(
        demo_store,
        knowledge,
        "cus_demo_01",
        "Hi, I'd like a refund for order seven eight nine zero one please",
    )
    assert snap.intent == "refund" and snap.focus_order["order_id"] == "78901"
    drafts = by_kind(build_drafts(snap, knowledge))
    reply = drafts["reply"]
    for fact in (
        "78901",
        "Aurora Wireless Noise-Cancelling Headphones",
        "$149.00",
        "30-day return window",
        "refund policy",
    ):
        assert fact in reply.text
    assert {"type": "order", "id": "78901"} in reply.sources
    assert {
        "type": "article",
        "id": "refund-policy",
        "title": "Refund policy and timelines",
    } in reply.sources
    assert "Start a return for order 78901" in drafts["action"].text
    assert drafts["knowledge"].text.startswith("Refund policy and timelines:")
    assert drafts["knowledge"].sources[0]["id"] == "refund-policy"
    assert reply.confidence > 0.7


async def test_warranty_claim_cites_the_warranty_article(
    demo_store: Store, knowledge: KnowledgeBase
) -> None:
    snap = await snapshot_after(
        demo_store,
        knowledge,
        "cus_demo_03",
        "My laptop stopped working, is it still under warranty?",
    )
    drafts = by_kind(build_drafts(snap, knowledge))
    assert snap.focus_reason == "item" and snap.focus_order["order_id"] == "65230"
    assert "1-year warranty" in drafts["reply"].text and "Nimbus 14 Laptop" in drafts["reply"].text
    assert drafts["knowledge"].sources == (
        {"type": "article", "id": "warranty", "title": "Manufacturer warranty (1 year)"},
    )
    assert "warranty claim for order 65230" in drafts["action"].text


async def test_angry_customer_gets_empathy_first(
    demo_store: Store, knowledge: KnowledgeBase
) -> None:
    snap = await snapshot_after(
        demo_store,
        knowledge,
        "cus_demo_01",
        "This is RIDICULOUS! My headphones stopped working and nobody helps me!",
    )
    reply = build_drafts(snap, knowledge)[0]
    assert reply.kind == "reply"
    assert reply.text.startswith("I'm really sorry about this, Maria")
    assert "78901" in reply.text  # and then the concrete fix for the real order
    calm = await snapshot_after(
        demo_store, knowledge, "cus_demo_01", "I want a refund for order 78901"
    )
    assert not build_drafts(calm, knowledge)[0].text.startswith("I'm")


async def test_order_of_another_customer_needs_verification(
    demo_store: Store, knowledge: KnowledgeBase
) -> None:
    snap = await snapshot_after(
        demo_store, knowledge, "cus_demo_07", "refund for order 78901 please"
    )
    drafts = by_kind(build_drafts(snap, knowledge))
    assert snap.focus_order["belongs_to_caller"] is False
    assert drafts["action"].text.startswith("Verify identity first")
    assert "confirm a few details" in drafts["reply"].text


async def test_unknown_order_number_is_questioned(
    demo_store: Store, knowledge: KnowledgeBase
) -> None:
    snap = await snapshot_after(
        demo_store, knowledge, "cus_demo_01", "where is order one two three four five"
    )
    assert snap.unknown_order_numbers == ("12345",)
    assert "couldn't find an order 12345" in build_drafts(snap, knowledge)[0].text


async def test_inferred_order_is_confirmed(demo_store: Store, knowledge: KnowledgeBase) -> None:
    snap = await snapshot_after(demo_store, knowledge, "cus_demo_04", "I need to cancel my order")
    reply = build_drafts(snap, knowledge)[0].text
    assert reply.startswith("Is this about order 81544")
    assert "cancel it free of charge" in reply


async def test_late_delivery_opens_a_trace(demo_store: Store, knowledge: KnowledgeBase) -> None:
    snap = await snapshot_after(
        demo_store, knowledge, "cus_demo_02", "Where is my desk? It still hasn't arrived"
    )
    drafts = by_kind(build_drafts(snap, knowledge))
    async with demo_store.session() as session:
        order = await session.get(Order, "80112")
    assert order.tracking_number in drafts["reply"].text
    assert "carrier trace for order 80112" in drafts["action"].text


async def test_repeats_are_not_suggested_again(demo_store: Store, knowledge: KnowledgeBase) -> None:
    context = CallContext(await new_call(demo_store, "cus_demo_01"), "cus_demo_01")
    await context.load(demo_store)
    context.add_turn(transcript("I want a refund for order 78901", "s1"))
    first = build_drafts(context.snapshot(knowledge), knowledge)
    for n, draft in enumerate(first):
        context.record_suggestion(
            {
                "suggestion_id": f"x{n}",
                "kind": draft.kind,
                "text": draft.text,
                "sources": list(draft.sources),
            }
        )
    context.add_turn(transcript("yes, a refund for 78901", "s2"))
    again = build_drafts(context.snapshot(knowledge), knowledge)
    # Nothing shown is shown again; the follow-up gets something new (issue 13).
    assert not {(d.kind, d.text) for d in again} & {(d.kind, d.text) for d in first}


async def test_greeting_when_nothing_is_asked_yet(
    demo_store: Store, knowledge: KnowledgeBase
) -> None:
    snap = await snapshot_after(demo_store, knowledge, "cus_demo_07", "hello, this is Sofia")
    assert [d.text for d in build_drafts(snap, knowledge)] == [
        "Thanks for calling, Sofia. How can I help you today?"
    ]


async def test_engine_streams_word_chunks(demo_store: Store, knowledge: KnowledgeBase) -> None:
    snap = await snapshot_after(
        demo_store, knowledge, "cus_demo_01", "I want a refund for order 78901"
    )
    chunks: list[Any] = [c async for c in LocalSuggestionEngine(knowledge).suggest(snap)]
    assert all(isinstance(c, SuggestionChunk) for c in chunks)
    reply = [c for c in chunks if c.key == chunks[0].key]
    assert len(reply) > 10 and reply[-1].done and not any(c.done for c in reply[:-1])
    assert "".join(c.delta for c in reply) == build_drafts(snap, knowledge)[0].text


async def test_local_summary(demo_store: Store, knowledge: KnowledgeBase) -> None:
    context = CallContext(await new_call(demo_store, "cus_demo_01"), "cus_demo_01")
    await context.load(demo_store)
    context.add_turn(
        transcript("I'm so frustrated, I want a refund for order seven eight nine oh one", "s1")
    )
    context.add_turn(transcript("I can start the return now", "a1", speaker="agent", start_ms=4000))
    context.record_suggestion(
        {
            "suggestion_id": "s",
            "kind": "action",
            "text": "Start a return for order 78901.",
            "sources": [],
        }
    )
    context.record_feedback("s", "used")
    context.add_turn(transcript("Perfect, thank you so much!", "s2", start_ms=9000))
    summary = build_summary(context.snapshot(knowledge))
    assert summary["reason"] == "Refund request" and summary["orders"] == ["78901"]
    assert summary["outcome"] == "resolved"
    assert summary["sentiment"]["direction"] == "improving"
    assert summary["suggestions"] == {"shown": 1, "used": 1, "dismissed": 0}
    assert summary["duration_ms"] == 10500
    assert summary["text"].startswith("Maria Garcia called about a refund request for order 78901")
    assert "negative to positive" in summary["text"]
