"""The assistant and caller verification (issue 9, item 1): while the caller is unverified
its first suggestion is to verify identity, and replies that would disclose account details
say so; once the agent verifies, neither."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from server.assist.assistant import CallAssistant
from server.assist.context import ContextSnapshot
from server.assist.engine import EngineEvent, SuggestionChunk, SuggestionEngine
from server.assist.knowledge import KnowledgeBase
from server.assist.summary import build_summary
from server.assist.verification import CAVEAT, VERIFY_ACTION
from server.config import AssistSettings
from server.store import Store

from .conftest import Recorder, new_call, transcript


class ScriptedEngine(SuggestionEngine):
    """A reply that names the caller's order, and a knowledge hint that names nothing."""

    name = "scripted"

    async def suggest(self, snapshot: ContextSnapshot) -> AsyncGenerator[EngineEvent, None]:
        yield SuggestionChunk("r", "reply", "Your order 78901 ", 0.8)
        yield SuggestionChunk("r", "reply", "shipped on Monday.", 0.8, done=True)
        yield SuggestionChunk("k", "knowledge", "Refunds take five business days.", 0.7, done=True)

    async def summarize(self, snapshot: ContextSnapshot) -> dict[str, Any]:
        return build_summary(snapshot)


async def _assistant(store: Store, knowledge: KnowledgeBase, verified: bool) -> tuple[CallAssistant, Recorder]:
    recorder = Recorder(store)
    assistant = CallAssistant(
        call_id=await new_call(store, "cus_demo_01"),
        customer_id="cus_demo_01",
        store=store,
        settings=AssistSettings(debounce_ms=0),
        engine=ScriptedEngine(),
        knowledge=knowledge,
        publish=recorder,
        verified=verified,
    )
    return assistant, recorder


async def test_unverified_caller_verify_first_and_account_replies_caveated(
    demo_store: Store, knowledge: KnowledgeBase
) -> None:
    assistant, recorder = await _assistant(demo_store, knowledge, verified=False)
    try:
        context = await assistant.on_accept()
        assert context["customer"]["verified"] is False
        [first] = recorder.finals()
        assert first["kind"] == "action" and first["text"] == VERIFY_ACTION

        assistant.on_transcript(transcript("where is my order seven eight nine zero one", "s1"))
        finals = await recorder.wait_for(lambda: len(recorder.finals()) >= 3 and recorder.finals())
        reply = next(f for f in finals if f["kind"] == "reply")
        hint = next(f for f in finals if f["kind"] == "knowledge")
        assert reply["text"] == "Your order 78901 shipped on Monday." + CAVEAT
        assert hint["text"] == "Refunds take five business days."
        # The streamed deltas add up to the final text: the caveat is a delta of its own.
        deltas = [e["delta"] for e in recorder.events
                  if e.get("suggestion_id") == reply["suggestion_id"] and not e["done"]]
        assert "".join(deltas) == reply["text"] and deltas[-1] == CAVEAT

        # Verified: fresh context, no second "verify", replies as the engine wrote them.
        assistant.set_verified(True)
        context = await assistant.on_accept()
        assert context["customer"]["verified"] is True
        assert [f["text"] for f in recorder.finals()].count(VERIFY_ACTION) == 1
        assistant.on_transcript(transcript("and my other order", "s2"))
        finals = await recorder.wait_for(lambda: len(recorder.finals()) >= 5 and recorder.finals())
        assert finals[-2]["text"] == "Your order 78901 shipped on Monday."
    finally:
        await assistant.close()


async def test_verified_caller_gets_no_verify_prompt(demo_store: Store, knowledge: KnowledgeBase) -> None:
    assistant, recorder = await _assistant(demo_store, knowledge, verified=True)
    try:
        context = await assistant.on_accept()
        assert context["customer"]["verified"] is True and recorder.finals() == []
    finally:
        await assistant.close()


async def test_verifying_as_another_customer_reloads_the_context(
    demo_store: Store, knowledge: KnowledgeBase
) -> None:
    assistant, recorder = await _assistant(demo_store, knowledge, verified=False)
    try:
        first = await assistant.on_accept()
        assistant.set_verified(True, "cus_demo_02")
        second = await assistant.on_accept()
        assert first["customer"]["customer_id"] == "cus_demo_01"
        assert second["customer"]["customer_id"] == "cus_demo_02"
        assert second["customer"]["name"] != first["customer"]["name"]
    finally:
        await assistant.close()
