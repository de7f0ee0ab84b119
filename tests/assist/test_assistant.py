"""CallAssistant with a recording publish: debounce, cancellation, stop, feedback, summary."""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from sqlmodel import select

from server.assist.assistant import (
    CallAssistant,
    InvalidFeedbackError,
    UnknownSuggestionError,
    feedback_stats,
    load_summary,
)
from server.assist.context import ContextSnapshot
from server.assist.engine import EngineEvent, SuggestionChunk, SuggestionEngine
from server.assist.knowledge import KnowledgeBase
from server.assist.local import LocalSuggestionEngine
from server.assist.models import CallSummary
from server.assist.summary import build_summary
from server.config import AssistSettings
from server.store import Store

from .conftest import Recorder, new_call, transcript


class SlowEngine(SuggestionEngine):
    """Streams one word every `delay` seconds, like a slow model."""

    name = "slow"

    def __init__(
        self, words: int = 200, delay: float = 0.01, fail_after: int | None = None
    ) -> None:
        self.words, self.delay, self.fail_after = words, delay, fail_after
        self.started = 0
        self.closed_streams = 0

    async def suggest(self, snapshot: ContextSnapshot) -> AsyncGenerator[EngineEvent, None]:
        self.started += 1
        try:
            for i in range(self.words):
                if self.fail_after is not None and i == self.fail_after:
                    raise RuntimeError("model exploded")
                await asyncio.sleep(self.delay)
                yield SuggestionChunk(
                    "slow",
                    "reply",
                    ("" if i == 0 else " ") + f"w{i}",
                    0.5,
                    ({"type": "order", "id": "78901"},),
                    done=i == self.words - 1,
                )
        finally:
            self.closed_streams += 1

    async def summarize(self, snapshot: ContextSnapshot) -> dict[str, Any]:
        return build_summary(snapshot)


@pytest.fixture
async def make_assistant(demo_store: Store, knowledge: KnowledgeBase) -> AsyncIterator[Any]:
    made: list[CallAssistant] = []

    async def make(
        engine: SuggestionEngine | None = None,
        customer_id: str = "cus_demo_01",
        debounce_ms: int = 0,
        call_id: str | None = None,
        customer_speaking: Any = None,
    ) -> tuple[CallAssistant, Recorder]:
        recorder = Recorder(demo_store)
        assistant = CallAssistant(
            call_id=call_id or await new_call(demo_store, customer_id),
            customer_id=customer_id,
            store=demo_store,
            settings=AssistSettings(debounce_ms=debounce_ms),
            engine=engine or LocalSuggestionEngine(knowledge),
            knowledge=knowledge,
            publish=recorder,
            customer_speaking=customer_speaking,
        )
        made.append(assistant)
        return assistant, recorder

    yield make
    for assistant in made:
        await assistant.close()


async def test_on_accept_publishes_customer_context(make_assistant: Any, demo_store: Store) -> None:
    earlier = await new_call(demo_store, "cus_demo_01")
    async with demo_store.write() as session:
        session.add(
            CallSummary(
                call_id=earlier,
                customer_id="cus_demo_01",
                body={
                    "reason": "Return",
                    "outcome": "resolved",
                    "text": "Maria returned a phone case.",
                },
            )
        )
    assistant, recorder = await make_assistant()
    event = await assistant.on_accept()
    assert event["type"] == "customer_context" and event["seq"] == 1
    assert (
        event["customer"]["name"] == "Maria Garcia" and event["customer"]["phone"] == "+12025550101"
    )
    assert "78901" in [o["order_id"] for o in event["orders"]]
    assert [t["ticket_id"] for t in event["tickets"]] == ["TCK-1001"]
    assert event["previous_calls"][0]["text"] == "Maria returned a phone case."


async def test_quick_transcripts_make_one_suggestion(make_assistant: Any) -> None:
    assistant, recorder = await make_assistant(debounce_ms=150)
    loop = asyncio.get_running_loop()
    for n, text in enumerate(
        [
            "Hi, it's Maria Garcia.",
            "I bought the Aurora headphones.",
            "I want a refund for order seven eight nine zero one.",
        ],
        start=1,
    ):
        assistant.on_transcript(transcript(text, f"s{n}"))
        last_at = loop.time()
        await asyncio.sleep(0.03)
    await recorder.wait_for(lambda: len(recorder.finals()) >= 3)
    first_at = loop.time()
    await asyncio.sleep(0.3)
    suggestions = recorder.of("ai_suggestion")
    assert {e["in_reply_to"] for e in suggestions} == {"s3"}
    assert [e["kind"] for e in recorder.finals()] == ["reply", "action", "knowledge"]
    assert first_at - last_at >= 0.1
    reply = [e for e in suggestions if e["suggestion_id"] == recorder.finals()[0]["suggestion_id"]]
    streaming, final = reply[:-1], reply[-1]
    assert len(streaming) > 5 and all(not e["done"] and e["delta"] for e in streaming)
    assert all(
        len(a["text"]) < len(b["text"]) for a, b in zip(streaming, streaming[1:], strict=False)
    )
    assert final["text"] == "".join(e["delta"] for e in streaming) == streaming[-1]["text"]
    assert "78901" in final["text"] and "seq" in final and "seq" not in streaming[0]
    assert {
        "type": "article",
        "id": "refund-policy",
        "title": "Refund policy and timelines",
    } in final["sources"]


async def test_suggestion_waits_for_the_end_of_the_customers_turn(make_assistant: Any) -> None:
    speaking = {"now": False}
    assistant, recorder = await make_assistant(
        debounce_ms=2000, customer_speaking=lambda: speaking["now"]
    )
    loop = asyncio.get_running_loop()
    # Silent customer: only the short settle, not the 2 s debounce.
    started = loop.time()
    assistant.on_transcript(transcript("I want a refund for order seven eight nine zero one.", "s1"))
    await recorder.wait_for(lambda: len(recorder.finals()) >= 1)
    assert loop.time() - started < 0.5
    # Still speaking: the suggestion waits until the turn ends, then covers the whole turn.
    await asyncio.sleep(0.3)
    before = len(recorder.of("ai_suggestion"))
    speaking["now"] = True
    assistant.on_transcript(transcript("And my headphones stopped working,", "s2"))
    await asyncio.sleep(0.4)
    assert len(recorder.of("ai_suggestion")) == before
    assistant.on_transcript(transcript("I need a warranty claim.", "s3"))
    await asyncio.sleep(0.3)
    assert len(recorder.of("ai_suggestion")) == before
    speaking["now"] = False
    await recorder.wait_for(lambda: len(recorder.of("ai_suggestion")) > before)
    assert {e["in_reply_to"] for e in recorder.of("ai_suggestion")[before:]} == {"s3"}


async def test_angry_customer_hears_empathy_first(make_assistant: Any) -> None:
    assistant, recorder = await make_assistant()
    assistant.on_transcript(
        transcript(
            "This is unacceptable! My headphones broke after a week and nobody answers my emails!",
            "s1",
        )
    )
    first = await recorder.wait_for(lambda: recorder.finals())
    assert first[0]["kind"] == "reply"
    assert first[0]["text"].startswith(
        "I'm really sorry about this, Maria — I completely understand"
    )
    assert "order 78901" in first[0]["text"]  # then the fix, for the order of the headphones


async def test_new_customer_speech_cancels_the_stale_generation(make_assistant: Any) -> None:
    engine = SlowEngine()
    assistant, recorder = await make_assistant(engine)
    assistant.on_transcript(transcript("my headphones are broken", "s1"))
    await recorder.wait_for(lambda: len(recorder.of("ai_suggestion")) >= 3)
    assistant.on_transcript(transcript("actually I just want a refund", "s2"))
    assistant.on_transcript(transcript("agent speech never cancels", "a1", speaker="agent"))
    stale = (await recorder.wait_for(lambda: recorder.finals(in_reply_to="s1")))[0]
    assert stale["stopped"] is True and stale["stop_reason"] == "superseded"
    await recorder.wait_for(lambda: recorder.of("ai_suggestion", in_reply_to="s2"))
    order = [e.get("in_reply_to") for e in recorder.of("ai_suggestion")]
    assert order.index("s2") > max(
        i for i, r in enumerate(order) if r == "s1"
    )  # stale final comes first
    assert engine.started == 2 and engine.closed_streams >= 1
    sent = [e for e in recorder.of("ai_suggestion", in_reply_to="s1") if not e["done"]]
    assert stale["text"] == sent[-1]["text"]


async def test_stop_mid_stream_keeps_what_was_sent(make_assistant: Any) -> None:
    engine = SlowEngine()
    assistant, recorder = await make_assistant(engine)
    assistant.on_transcript(transcript("my headphones are broken", "s1"))
    await recorder.wait_for(lambda: len(recorder.of("ai_suggestion")) >= 4)
    stopped_ids = await assistant.stop()
    final = recorder.finals()[0]
    assert stopped_ids == [final["suggestion_id"]]
    sent = [e for e in recorder.of("ai_suggestion") if not e["done"]]
    assert final["stopped"] is True and final["stop_reason"] == "agent" and final["seq"] >= 1
    assert final["text"] == sent[-1]["text"] and final["text"].startswith("w0 w1 w2")
    assert final["sources"] == [{"type": "order", "id": "78901"}]
    count = len(recorder.events)
    await asyncio.sleep(0.1)
    assert len(recorder.events) == count and engine.closed_streams == 1
    assert await assistant.stop() == []  # nothing running: a no-op


async def test_engine_failure_is_reported(make_assistant: Any) -> None:
    assistant, recorder = await make_assistant(SlowEngine(fail_after=3))
    assistant.on_transcript(transcript("hello", "s1"))
    status = (await recorder.wait_for(lambda: recorder.of("status")))[0]
    assert status["level"] == "warning" and status["code"] == "suggestion_failed"
    assert recorder.finals()[0]["stop_reason"] == "error"


async def test_feedback(make_assistant: Any, demo_store: Store) -> None:
    assistant, recorder = await make_assistant()
    assistant.on_transcript(transcript("I want a refund for order 78901", "s1"))
    finals = await recorder.wait_for(lambda: len(recorder.finals()) >= 3 and recorder.finals())
    reply, action = finals[0], finals[1]
    event = await assistant.feedback(action["suggestion_id"], "used")
    assert (
        event["type"] == "suggestion_feedback"
        and event["kind"] == "action"
        and event["seq"] > action["seq"]
    )
    await assistant.feedback(reply["suggestion_id"], "dismissed")
    with pytest.raises(UnknownSuggestionError) as err:
        await assistant.feedback("sug_nope", "used")
    assert isinstance(err.value, ValueError) and err.value.code == "unknown_suggestion"
    with pytest.raises(InvalidFeedbackError):
        await assistant.feedback(reply["suggestion_id"], "loved")
    # After a restart the suggestion is only in the event log; feedback still works.
    again, recorder2 = await make_assistant(call_id=assistant.call_id)
    assert (await again.feedback(reply["suggestion_id"], "used"))["kind"] == "reply"
    stats = await feedback_stats(demo_store)
    assert stats["by_kind"]["action"] == {"shown": 1, "used": 1, "dismissed": 0, "use_rate": 1.0}
    assert stats["by_kind"]["reply"]["used"] == 1 and stats["by_kind"]["reply"]["dismissed"] == 0
    assert stats["total"]["shown"] == 3 and stats["total"]["used"] == 2


async def test_summary_is_stored_and_published_once(make_assistant: Any, demo_store: Store) -> None:
    assistant, recorder = await make_assistant()
    await assistant.on_accept()
    assistant.on_transcript(
        transcript("I'm upset, the headphones from order seven eight nine oh one broke", "s1")
    )
    finals = await recorder.wait_for(lambda: len(recorder.finals()) >= 2 and recorder.finals())
    await assistant.feedback(finals[1]["suggestion_id"], "used")
    assistant.on_transcript(
        transcript("I can send you a replacement today", "a1", speaker="agent", start_ms=3000)
    )
    assistant.on_transcript(transcript("great, thank you so much", "s2", start_ms=6000))
    summary = await assistant.on_end()
    assert summary["orders"] == ["78901"] and summary["outcome"] == "resolved"
    assert summary["text"].startswith("Maria Garcia called about")
    assert summary["actions"][0]["suggestion_id"] == finals[1]["suggestion_id"]
    published = recorder.of("summary")
    assert len(published) == 1 and published[0]["summary"] == summary and published[0]["seq"]
    async with demo_store.session() as session:
        row = (
            await session.exec(select(CallSummary).where(CallSummary.call_id == assistant.call_id))
        ).one()
    assert row.body == summary and await load_summary(demo_store, assistant.call_id) == summary
    count = len(recorder.events)
    assert await assistant.on_end() == summary
    assistant.on_transcript(transcript("one more thing", "s3"))
    await asyncio.sleep(0.05)
    assert len(recorder.events) == count
    # The next call of this customer shows it as a previous call.
    nxt, _ = await make_assistant()
    context = await nxt.on_accept()
    assert context["previous_calls"][0]["call_id"] == assistant.call_id


async def test_close_cancels_pending_work_and_is_idempotent(make_assistant: Any) -> None:
    assistant, recorder = await make_assistant(debounce_ms=1000)
    assistant.on_transcript(transcript("I want a refund", "s1"))
    await assistant.close()
    await assistant.close()
    assistant.on_transcript(transcript("hello?", "s2"))
    await asyncio.sleep(0.05)
    assert recorder.of("ai_suggestion") == []


async def test_close_ends_a_streaming_suggestion(make_assistant: Any) -> None:
    assistant, recorder = await make_assistant(SlowEngine())
    assistant.on_transcript(transcript("hello", "s1"))
    await recorder.wait_for(lambda: len(recorder.of("ai_suggestion")) >= 2)
    await assistant.close()
    assert recorder.finals()[0]["stop_reason"] == "call_closed"
