"""The OpenAI engine, with the real SDK, against a small OpenAI-compatible server run here."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from media.audio import BYTES_PER_MS, SAMPLE_RATE, SegmentEvent, Transcript
from media.stt import SpeechToTextError, create_speech_to_text
from media.stt.openai import OpenAISpeechToText
from media.transcriber import CallTranscriber
from server.config import SpeechSettings

API_KEY = "test-key-123"


@dataclass
class Received:
    headers: dict[str, str]
    fields: dict[str, str]
    filename: str
    content_type: str
    audio: bytes


@dataclass
class FakeOpenAI:
    """POST /v1/audio/transcriptions. Each request takes the next action of `script`:
    "ok" answers with text, "error" with a 500, "hang" never answers (until teardown)."""

    script: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""

    async def transcriptions(self, request: web.Request) -> web.Response:
        fields: dict[str, str] = {}
        filename = content_type = ""
        audio = b""
        async for part in await request.multipart():
            if part.name == "file":
                filename = part.filename or ""
                content_type = part.headers.get("Content-Type", "")
                audio = await part.read()
            elif part.name:
                fields[part.name] = await part.text()
        self.received.append(Received(dict(request.headers), fields, filename, content_type, audio))
        action = self.script.pop(0) if self.script else "ok"
        if action == "error":
            return web.json_response(
                {"error": {"message": "model crashed", "type": "server_error"}}, status=500
            )
        if action == "hang":
            await self.release.wait()
        return web.json_response({"text": f" heard {len(self.received)} "})


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", server.transcriptions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.base_url = f"http://127.0.0.1:{port}/v1"
    yield server
    server.release.set()
    await runner.cleanup()


def settings_for(server: FakeOpenAI, **overrides: Any) -> SpeechSettings:
    values: dict[str, Any] = {
        "engine": "openai",
        "openai_base_url": server.base_url,
        "openai_api_key": API_KEY,
        "openai_model": "whisper-large-test",
        "language": "en",
        "timeout_s": 5.0,
    }
    return SpeechSettings(**{**values, **overrides})


def tone(ms: int) -> bytes:
    return bytes(range(256)) * (ms * BYTES_PER_MS // 256)


async def test_request_carries_the_wav_model_language_and_key(fake_openai: FakeOpenAI) -> None:
    engine = create_speech_to_text(settings_for(fake_openai))
    assert isinstance(engine, OpenAISpeechToText)
    pcm = tone(1200)
    try:
        text = await engine.transcribe(pcm, prompt="I want a refund")
    finally:
        await engine.aclose()
        await engine.aclose()
    assert text == "heard 1"
    [request] = fake_openai.received
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.fields["model"] == "whisper-large-test"
    assert request.fields["language"] == "en"
    assert request.fields["prompt"] == "I want a refund"
    assert request.filename == "segment.wav" and request.content_type == "audio/wav"
    with wave.open(io.BytesIO(request.audio), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        assert wav.readframes(wav.getnframes()) == pcm


async def test_no_language_and_no_prompt_are_left_out(fake_openai: FakeOpenAI) -> None:
    engine = OpenAISpeechToText(settings_for(fake_openai, language="", openai_api_key=""))
    try:
        await engine.transcribe(tone(300))
    finally:
        await engine.aclose()
    [request] = fake_openai.received
    assert "language" not in request.fields and "prompt" not in request.fields


async def test_errors_and_timeouts_skip_a_segment_and_later_ones_arrive(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.script = ["ok", "error", "ok", "hang", "ok"]
    settings = settings_for(fake_openai, timeout_s=0.5)
    engine = create_speech_to_text(settings)
    transcripts: list[Transcript] = []
    statuses: list[tuple[str, str, str]] = []
    done = asyncio.Event()

    async def emit_transcript(t: Transcript) -> None:
        transcripts.append(t)
        if len(transcripts) == 3:
            done.set()

    async def emit_status(level: str, code: str, message: str) -> None:
        statuses.append((level, code, message))

    transcriber = CallTranscriber(
        engine=engine, settings=settings, emit_transcript=emit_transcript, emit_status=emit_status
    )
    try:
        for i in range(5):
            transcriber.submit(
                SegmentEvent(
                    "agent", f"agent-{i * 3000}", tone(600), i * 3000, i * 3000 + 600, True
                )
            )
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        await transcriber.close()
        await engine.aclose()
    assert [t.segment_id for t in transcripts] == ["agent-0", "agent-6000", "agent-12000"]
    assert [t.text for t in transcripts] == ["heard 1", "heard 3", "heard 5"]
    assert [(level, code) for level, code, _ in statuses] == [
        ("warning", "stt_segment_skipped"),
        ("warning", "stt_segment_skipped"),
    ]
    assert "500" in statuses[0][2]
    assert "timed out" in statuses[1][2]
    assert len(fake_openai.received) == 5  # no retries: a late segment is skipped, not resent


async def test_a_key_is_needed_for_openai_itself() -> None:
    engine = OpenAISpeechToText(SpeechSettings(engine="openai", openai_api_key=""))
    with pytest.raises(SpeechToTextError, match="API_KEY"):
        await engine.start()
    await engine.aclose()


async def test_a_closed_engine_refuses_work(fake_openai: FakeOpenAI) -> None:
    engine = OpenAISpeechToText(settings_for(fake_openai))
    await engine.start()
    await engine.aclose()
    with pytest.raises(SpeechToTextError):
        await engine.transcribe(tone(100))
    assert fake_openai.received == []
