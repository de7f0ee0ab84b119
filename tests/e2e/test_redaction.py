"""PII redaction end to end: a caller reads a card number into a real call.

Real server, real aiortc peers, local Whisper, local assistant, recordings on. The
number is 4242 4242 4242 4242 (a test card), read in groups, so speech-to-text splits it
over several utterances. Nothing of it may reach the database file, the logs, `/messages`
or the recording; the agent still learns that a card was given.
"""

from __future__ import annotations

import asyncio
import logging
import re
import wave
from pathlib import Path

import numpy as np
import pytest

from server.qa import encode_wav_to_opus
from server.redaction import REDACTED_TOKEN
from tests.conftest import make_settings, rms, serving
from tests.e2e.test_assist import start_call
from tests.media.speech import fixture

pytestmark = pytest.mark.slow

OLIVIA = "+12025550105"  # demo: duplicate-charge ticket
# In the logs, RTP timestamps and ids are long random digit strings: look for longer pieces.
LOGGED_PIECES = re.compile(r"4\W?2\W?4\W?2\W?4\W?2|2\W?4\W?2\W?4\W?2\W?4|four two|forty[- ]two", re.IGNORECASE)
CLOCKS_AND_IDS = (
    "ts", "seq", "call_id", "segment_id", "start_ms", "end_ms", "suggestion_id", "in_reply_to",
)
CARD_PIECES = re.compile(r"4\W?2\W?4\W?2|2\W?4\W?2\W?4|four two|forty[- ]two", re.IGNORECASE)


def digits_outside_labels(text: str) -> str:
    return "".join(re.findall(r"\d", REDACTED_TOKEN.sub("", text)))


async def test_a_card_number_read_aloud_is_redacted_everywhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    data = tmp_path / "data"
    settings = make_settings(
        data,
        CALLASSIST_STT_ENGINE="local",
        CALLASSIST_ASSIST_ENGINE="local",
        CALLASSIST_DEMO="true",
        CALLASSIST_RECORD_AUDIO="true",
    )
    async with serving(settings) as run:
        agent_token = await run.agent()
        call_id, _, customer, agent = await start_call(run, OLIVIA, agent_token)
        await agent.wait_for(lambda e: e["type"] == "customer_context")

        card = fixture("customer_card_number")
        customer.track.replace(encode_wav_to_opus(card.path))
        await agent.wait_for(
            lambda e: e["type"] == "transcript" and e["final"] and "[card" in e["text"], timeout=30
        )
        await asyncio.sleep(6.0)  # the rest of the number, and its suggestions
        status, _ = await run.api.call("POST", f"/api/calls/{call_id}/end", agent_token)
        assert status == 200
        summary = await agent.wait_for(lambda e: e["type"] == "summary", timeout=30)
        status, body = await run.api.call("GET", f"/api/calls/{call_id}/messages", agent_token)
        assert status == 200
        messages = body["messages"]

    transcripts = [e for e in agent.events + customer.events if e["type"] == "transcript"]
    finals = [e for e in messages if e["type"] == "transcript" and e["speaker"] == "customer"]
    assert len(finals) >= 2, [(e["text"], e["start_ms"], e["end_ms"]) for e in finals]  # the number came in pieces
    heard = " ".join(e["text"] for e in finals)
    assert "card number" in heard.lower() and "[card" in heard, heard
    # Live (interims included), persisted, suggestions and summary: no digit of it.
    for event in transcripts + messages + [summary]:
        # Times and ids are numbers of our own: a `ts` of ...424274 is no card digit.
        text = str({k: v for k, v in event.items() if k not in CLOCKS_AND_IDS})
        assert not CARD_PIECES.search(text), event
    for event in transcripts + finals:
        assert digits_outside_labels(event["text"]) == "", event
    # The agent is told a card was given, without the number.
    suggestions = [e for e in messages if e["type"] == "ai_suggestion"]
    assert any("card" in s["text"].lower() for s in suggestions), [s["text"] for s in suggestions]

    # The database file (and its WAL) hold nothing of it; neither do the logs.
    for db_file in data.glob("callassist.db*"):
        raw = db_file.read_bytes()
        assert b"4242" not in raw and b"2424" not in raw and b"four two" not in raw, db_file
    for record in caplog.records:
        assert not LOGGED_PIECES.search(record.getMessage()), record.getMessage()

    # The recording is silent where the number was read: the line was nothing but the
    # number, so no 50 ms of it may be louder than the noise floor.
    with wave.open(str(data / "recordings" / call_id / "customer.wav"), "rb") as rec:
        rate = rec.getframerate()
        samples = np.frombuffer(rec.readframes(rec.getnframes()), dtype=np.int16)
    assert len(samples) > rate * 4, "the recording is too short"
    window = rate // 20
    loud = [
        n * 50
        for n in range(len(samples) // window)
        if rms(samples[n * window : (n + 1) * window]) > 500
    ]
    assert len(loud) <= 2, (f"speech left in the recording at ms {loud[:40]}", [(e["text"], e["start_ms"], e["end_ms"]) for e in finals])
