"""Redaction where transcripts are published: a real server, the OpenAI engine talking to
an OpenAI-compatible server on loopback, transcripts handed over as the transcriber does.

What the transcriber produced holds a card number split over two utterances and an SSN;
nothing of them may reach `/messages`, the SSE stream's history, the prompts the model
received, the summary or the logs. With `CALLASSIST_REDACT=off` they stay (the switch).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from server.keys import HUB
from tests.conftest import make_settings, serving

from .fake_llm import FakeLLM

CARD = re.compile(r"4000\W?0566|5566\W?5556|4000056655665556|123-45-6789")
ASKED = [
    ("customer", "I want to pay for the replacement."),
    ("agent", "Sure. What's the card number?"),
    ("customer", "It's 4000 0566"),
    ("customer", "5566 5556. And my social is 123-45-6789."),
]
# No cue at all: the first half is only recognised as card digits when the second comes.
UNASKED = [ASKED[0], ("customer", "It's 4000 0566"), ASKED[3]]


@pytest.fixture
async def llm(aiohttp_server: Any) -> Any:
    fake = FakeLLM()
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    yield fake, f"http://127.0.0.1:{server.port}/v1"
    fake.release.set()


async def run_call(
    tmp_path: Path, llm_url: str, said: list[tuple[str, str]] = ASKED, **env: str
) -> tuple[list[dict[str, Any]], str]:
    settings = make_settings(
        tmp_path / "data",
        CALLASSIST_ASSIST_ENGINE="openai",
        CALLASSIST_LLM_BASE_URL=llm_url,
        CALLASSIST_LLM_API_KEY="test",
        CALLASSIST_DEMO="true",
        **env,
    )
    async with serving(settings) as run:
        agent = await run.agent()
        customer = await run.customer("Olivia", phone="+12025550105")
        call_id = await run.new_call(customer["token"])
        status, _ = await run.api.call("POST", f"/api/calls/{call_id}/accept", agent)
        assert status == 200
        session = run.server.app[HUB].get_live(call_id)
        assert session is not None and session.assistant is not None
        for n, (speaker, text) in enumerate(said):
            await session._emit_transcript(  # what media/transcriber.py hands over
                SimpleNamespace(
                    speaker=speaker, segment_id=f"{speaker}-{n}", text=text, final=True,
                    start_ms=n * 3000, end_ms=n * 3000 + 2000,
                )
            )
            await session.assistant.idle(timeout=10)
        status, _ = await run.api.call("POST", f"/api/calls/{call_id}/end", agent)
        assert status == 200
        status, body = await run.api.call("GET", f"/api/calls/{call_id}/messages", agent)
        assert status == 200
        db = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("callassist.db*"))
    return body["messages"], db.decode("latin-1")


async def test_nothing_of_the_card_or_ssn_reaches_messages_prompts_or_logs(
    tmp_path: Path, llm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, url = llm
    messages, db = await run_call(tmp_path, url)
    finals = {m["segment_id"]: m["text"] for m in messages if m["type"] == "transcript"}
    assert finals["customer-2"] == "It's [card number]"  # the agent asked: card digits
    assert finals["customer-3"] == "[card ending 5556]. And my social is [SSN redacted]."
    assert any(m["type"] == "summary" for m in messages)
    assert not CARD.search(json.dumps(messages)), messages
    assert not CARD.search(db)
    assert fake.requests, "the model was never asked"
    assert not CARD.search(json.dumps(fake.requests))
    for record in caplog.records:
        assert not CARD.search(record.getMessage()), record.getMessage()


async def test_the_first_half_of_a_split_number_is_revised(tmp_path: Path, llm: Any) -> None:
    fake, url = llm
    messages, db = await run_call(tmp_path, url, UNASKED)
    # The first final was rewritten in place, and its revision published after it.
    earlier = [m for m in messages if m.get("segment_id") == "customer-1"]
    assert [(m["text"], m.get("revised")) for m in earlier] == [
        ("It's [card number]", None),
        ("It's [card number]", True),
    ]
    assert not CARD.search(json.dumps(messages)) and not CARD.search(db)
    # Until the second half came, the model saw the first eight digits (what PCI DSS lets
    # a receipt show), never the whole number.
    assert "4000056655665556" not in json.dumps(fake.requests).replace(" ", "")
    assert "5566" not in json.dumps(fake.requests)


async def test_redaction_can_be_turned_off(tmp_path: Path, llm: Any) -> None:
    _, url = llm
    messages, _ = await run_call(tmp_path, url, CALLASSIST_REDACT="off")
    finals = [m["text"] for m in messages if m["type"] == "transcript"]
    assert "5566 5556. And my social is 123-45-6789." in finals
    await asyncio.sleep(0)
