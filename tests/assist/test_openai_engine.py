"""The OpenAI engine against a real OpenAI-compatible HTTP server on 127.0.0.1."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.assist import create_suggestion_engine
from server.assist.assistant import CallAssistant
from server.assist.context import CallContext
from server.assist.knowledge import KnowledgeBase
from server.assist.openai import OpenAISuggestionEngine
from server.assist.tools import ToolRunner
from server.config import AssistSettings
from server.store import Store

from .conftest import Recorder, new_call, transcript
from .fake_llm import FakeLLM


@pytest.fixture
async def llm(aiohttp_server: Any) -> AsyncIterator[tuple[FakeLLM, str]]:
    fake = FakeLLM()
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    yield fake, f"http://127.0.0.1:{server.port}/v1"
    fake.release.set()


@pytest.fixture
async def call(
    llm: tuple[FakeLLM, str], demo_store: Store, knowledge: KnowledgeBase
) -> AsyncIterator[Any]:
    fake, url = llm
    engines = []

    async def make(timeout_s: float = 3.0) -> tuple[CallAssistant, Recorder]:
        settings = AssistSettings(
            engine="openai",
            openai_base_url=url,
            openai_api_key="test-key",
            openai_model="fake-model",
            timeout_s=timeout_s,
            debounce_ms=0,
        )
        engine = create_suggestion_engine(settings, demo_store, knowledge)
        assert isinstance(engine, OpenAISuggestionEngine)
        engines.append(engine)
        recorder = Recorder(demo_store)
        assistant = CallAssistant(
            call_id=await new_call(demo_store, "cus_demo_01"),
            customer_id="cus_demo_01",
            store=demo_store,
            settings=settings,
            engine=engine,
            knowledge=knowledge,
            publish=recorder,
        )
        engines.append(assistant)
        return assistant, recorder

    yield make
    for item in reversed(engines):
        await item.close()
        await item.close()


REFUND = "Hi, I want a refund for order seven eight nine zero one."


async def test_tool_round_trip_answers_from_our_database(
    call: Any, llm: tuple[FakeLLM, str]
) -> None:
    fake, _ = llm
    assistant, recorder = await call()
    assistant.on_transcript(transcript(REFUND, "s1"))
    finals = await recorder.wait_for(lambda: len(recorder.finals()) >= 2 and recorder.finals())
    reply, action = finals
    assert reply["kind"] == "reply" and action["kind"] == "action"
    for fact in (
        "order 78901",
        "Aurora Wireless Noise-Cancelling Headphones",
        "$149.00",
        "within the 30-day return window",
        "Refund policy and timelines",
    ):
        assert fact in reply["text"]
    assert action["text"] == "Start a return for order 78901 and refund $149.00."
    assert {"type": "order", "id": "78901"} in reply["sources"]
    assert {
        "type": "article",
        "id": "refund-policy",
        "title": "Refund policy and timelines",
    } in reply["sources"]
    streamed = [
        e
        for e in recorder.of("ai_suggestion", suggestion_id=reply["suggestion_id"])
        if not e["done"]
    ]
    assert len(streamed) > 10 and streamed[-1]["text"] == reply["text"]
    assert recorder.of("status") == []
    # What went over the wire: tools offered, the spoken order resolved in the context,
    # then our tool results sent back.
    first, second = fake.requests
    assert first["model"] == "fake-model" and first["stream"] is True
    assert {t["function"]["name"] for t in first["tools"]} == {
        "lookup_customer",
        "get_order_details",
        "search_knowledge",
        "check_policy",
    }
    assert "seems to mean order 78901" in first["messages"][1]["content"]
    tool_results = [json.loads(m["content"]) for m in second["messages"] if m["role"] == "tool"]
    assert tool_results[0]["found"] is True and tool_results[0]["amount"] == 149.0
    assert tool_results[1]["eligible"] is True
    assert (
        second["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"order_id": "78901"}'
    )


async def test_service_error_falls_back_with_status(call: Any, llm: tuple[FakeLLM, str]) -> None:
    fake, _ = llm
    fake.mode = "error"
    assistant, recorder = await call()
    assistant.on_transcript(transcript(REFUND, "s1"))
    finals = await recorder.wait_for(lambda: len(recorder.finals()) >= 3 and recorder.finals())
    status = recorder.of("status")
    assert len(status) == 1 and status[0]["level"] == "warning"
    assert (
        status[0]["code"] == "suggestion_engine_fallback"
        and "InternalServerError" in status[0]["message"]
    )
    assert recorder.events.index(status[0]) < recorder.events.index(recorder.of("ai_suggestion")[0])
    assert (
        "78901" in finals[0]["text"] and "30-day return window" in finals[0]["text"]
    )  # the local engine
    assert len(fake.requests) == 1  # no retries while the agent waits


async def test_timeout_falls_back_quickly(call: Any, llm: tuple[FakeLLM, str]) -> None:
    fake, _ = llm
    fake.mode = "hang"
    assistant, recorder = await call(timeout_s=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assistant.on_transcript(transcript(REFUND, "s1"))
    await recorder.wait_for(lambda: recorder.finals())
    assert loop.time() - started < 1.5
    assert recorder.of("status")[0]["message"].startswith(
        "AI suggestion service unavailable (timed out)"
    )


async def test_broken_stream_ends_the_partial_suggestion(
    call: Any, llm: tuple[FakeLLM, str]
) -> None:
    fake, _ = llm
    fake.mode = "broken"
    assistant, recorder = await call()
    assistant.on_transcript(transcript(REFUND, "s1"))
    await recorder.wait_for(lambda: len(recorder.finals()) >= 4)
    partial = recorder.finals()[0]
    assert partial["text"] == "Let me check" and "stopped" not in partial
    assert recorder.of("status")[0]["code"] == "suggestion_engine_fallback"
    assert "78901" in recorder.finals()[1]["text"]


async def test_stop_mid_stream_closes_the_request(call: Any, llm: tuple[FakeLLM, str]) -> None:
    fake, _ = llm
    fake.mode = "slow"
    assistant, recorder = await call()
    assistant.on_transcript(transcript(REFUND, "s1"))
    await recorder.wait_for(lambda: len(recorder.of("ai_suggestion")) >= 3)
    await assistant.stop()
    final = recorder.finals()[0]
    sent = [e for e in recorder.of("ai_suggestion") if not e["done"]]
    assert (
        final["stopped"] is True
        and final["text"] == sent[-1]["text"]
        and final["text"].startswith("w0 w1")
    )
    await asyncio.wait_for(fake.disconnected.wait(), 10)
    count = len(recorder.events)
    await asyncio.sleep(0.1)
    assert len(recorder.events) == count


async def test_summary_from_the_model_and_its_fallback(call: Any, llm: tuple[FakeLLM, str]) -> None:
    fake, _ = llm
    assistant, recorder = await call()
    assistant.on_transcript(transcript(REFUND, "s1"))
    await recorder.wait_for(lambda: len(recorder.finals()) >= 2)
    summary = await assistant.on_end()
    assert (
        summary["engine"] == "openai"
        and summary["text"] == "LLM: customer asked for a refund of order 78901."
    )
    assert summary["follow_up"] == ["Check the return arrives"] and summary["entities"][
        "order_numbers"
    ] == ["78901"]

    fake.mode = "error"
    other, recorder2 = await call()
    other.on_transcript(transcript("thanks, bye", "s1"))
    summary = await other.on_end()
    assert summary["engine"] == "local" and "engine_status" not in summary
    assert recorder2.of("status")[-1]["code"] == "suggestion_engine_fallback"
    assert recorder2.of("summary")[0]["summary"]["text"].startswith("Maria Garcia called")


async def test_tools_run_against_the_store(demo_store: Store, knowledge: KnowledgeBase) -> None:
    context = CallContext(await new_call(demo_store, "cus_demo_01"), "cus_demo_01")
    await context.load(demo_store)
    runner = ToolRunner(demo_store, knowledge, context.snapshot(knowledge))
    found = json.loads(await runner.run("lookup_customer", '{"query": "(202) 555-0103"}'))
    assert found["customer"]["name"] == "Priya Patel" and found["is_caller"] is False
    order = json.loads(
        await runner.run("get_order_details", '{"order_id": "seven eight nine oh one"}')
    )
    assert order["order_id"] == "78901" and order["belongs_to_caller"] is True
    assert (
        json.loads(await runner.run("get_order_details", '{"order_id": "11111"}'))["found"] is False
    )
    hits = json.loads(
        await runner.run("search_knowledge", '{"query": "warranty for broken headphones"}')
    )
    assert hits["articles"][0]["id"] == "warranty"
    assert "error" in json.loads(await runner.run("check_policy", '{"topic": "vibes"}'))
    assert "error" in json.loads(await runner.run("drop_tables", "{}"))
    assert "error" in json.loads(await runner.run("get_order_details", "[1]"))
    assert {"type": "order", "id": "78901"} in runner.sources
    assert {
        "type": "article",
        "id": "warranty",
        "title": "Manufacturer warranty (1 year)",
    } in runner.sources


def test_factory_choices(demo_store: Store) -> None:
    assert create_suggestion_engine(AssistSettings(), demo_store).name == "local"
    assert (
        create_suggestion_engine(AssistSettings(engine="openai"), demo_store).name == "local"
    )  # no key/url
    with pytest.raises(ValueError, match="unknown suggestion engine"):
        create_suggestion_engine(AssistSettings(engine="magic"), demo_store)
