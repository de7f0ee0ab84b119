"""Speech out: the real Piper voice (heard back by the real Whisper), the OpenAI engine with
the real SDK against an OpenAI-compatible server run here, sentence cutting, resampling."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from media.audio import SAMPLE_RATE
from media.stt.local import WhisperDecoder
from media.tts import (
    PcmResampler,
    SentenceSplitter,
    TextToSpeechError,
    TextToSpeechSettings,
    create_text_to_speech,
    split_sentences,
)
from media.tts.openai import OpenAITextToSpeech, WavStreamParser
from media.tts.piper import PiperTextToSpeech
from media.wer import wer
from server.config import SpeechSettings
from tests.conftest import loopback_server

API_KEY = "tts-test-key"
SENTENCES = [
    "Thank you for calling, how can I help you today?",
    "Your refund for order seven eight nine zero one has been approved.",
]


def seconds(pcm: bytes, rate: int) -> float:
    return len(pcm) / 2 / rate


def tone(rate: int, ms: int, hz: float = 440.0) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * hz * t) * 12000).astype(np.int16).tobytes()


# --- sentence cutting ---------------------------------------------------------------------


def test_sentences_are_cut_at_their_ends_and_not_at_abbreviations() -> None:
    assert split_sentences("Hi Mr. Smith. I can help! Is it order 42? Yes.") == [
        "Hi Mr. Smith.",
        "I can help!",
        "Is it order 42?",
        "Yes.",
    ]
    assert split_sentences("") == []
    assert split_sentences("No full stop at the end") == ["No full stop at the end"]


def test_streamed_deltas_give_each_sentence_once_it_is_complete() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("I can") == []
    assert splitter.feed(" help. Your ord") == ["I can help."]
    assert splitter.feed("er is on its way") == []
    assert splitter.feed(".\nAnything else?") == ["Your order is on its way."]
    assert splitter.flush() == ["Anything else?"]
    assert splitter.flush() == []


def test_a_long_first_sentence_is_cut_at_a_clause_so_speech_starts_early() -> None:
    text = (
        "I have looked at your account and your recent orders, and the refund for the "
        "blender you returned was approved yesterday, so it should reach your card soon. "
        "After that, a second long sentence stays whole, because the caller is already "
        "listening to the first one by then."
    )
    pieces = split_sentences(text)
    assert pieces[0] == "I have looked at your account and your recent orders,"
    assert pieces[1].startswith("and the refund") and pieces[1].endswith("card soon.")
    assert pieces[2].startswith("After that, a second") and pieces[2].endswith("by then.")
    assert len(pieces) == 3


# --- resampling ---------------------------------------------------------------------------


@pytest.mark.parametrize(("in_rate", "out_rate"), [(22050, 48000), (22050, 8000), (24000, 16000)])
def test_resampling_in_pieces_matches_one_pass_and_keeps_the_duration(
    in_rate: int, out_rate: int
) -> None:
    pcm = tone(in_rate, 1000)
    whole = PcmResampler(in_rate, out_rate).resample(pcm, last=True)
    streamed = PcmResampler(in_rate, out_rate)
    # Pieces of odd byte counts, as network reads cut them.
    out = b"".join(streamed.resample(pcm[i : i + 1001]) for i in range(0, len(pcm), 1001))
    out += streamed.resample(b"", last=True)
    assert len(out) == len(whole)
    assert abs(seconds(out, out_rate) - 1.0) <= 0.002
    a = np.frombuffer(out, dtype=np.int16).astype(np.int32)
    b = np.frombuffer(whole, dtype=np.int16).astype(np.int32)
    assert np.max(np.abs(a - b)) <= 4  # float rounding in the filter, of a 12000 peak
    # No clicks where the pieces met: the sine's sample-to-sample step stays bounded.
    step = 2 * np.pi * 440 / out_rate * 12000 * 1.05
    assert np.max(np.abs(np.diff(a[out_rate // 100 : -out_rate // 100]))) <= step


def test_same_rate_passes_through() -> None:
    resampler = PcmResampler(16000, 16000)
    assert resampler.resample(b"\x01\x02\x03") == b"\x01\x02"
    assert resampler.resample(b"\x04", last=True) == b"\x03\x04"


# --- the real Piper voice, heard by the real Whisper --------------------------------------


@pytest.fixture(scope="module")
def whisper() -> WhisperDecoder:
    return WhisperDecoder.load(SpeechSettings())


@pytest.fixture
async def piper() -> AsyncIterator[PiperTextToSpeech]:
    engine = create_text_to_speech(TextToSpeechSettings())
    assert isinstance(engine, PiperTextToSpeech)
    await engine.start()
    yield engine
    await engine.aclose()
    await engine.aclose()


async def spoken(engine: Any, text: str, rate: int) -> list[bytes]:
    return [pcm async for pcm in engine.synthesize(text, sample_rate=rate)]


@pytest.mark.slow
async def test_piper_speech_is_what_whisper_hears(
    piper: PiperTextToSpeech, whisper: WhisperDecoder
) -> None:
    assert piper.native_rate == 22050
    for text in SENTENCES:
        pcm = b"".join(await spoken(piper, text, SAMPLE_RATE))
        assert 1.5 < seconds(pcm, SAMPLE_RATE) < 6.0
        heard = await asyncio.to_thread(whisper.decode, pcm)
        assert heard.is_speech
        assert wer(text, heard.text) <= 0.15, heard.text


@pytest.mark.slow
async def test_piper_hands_over_each_sentence_as_it_is_ready(piper: PiperTextToSpeech) -> None:
    pieces = await spoken(piper, " ".join(SENTENCES), 48000)
    first = b"".join(await spoken(piper, SENTENCES[0], 48000))
    # One piece per sentence plus the resampler's flushed tail: the first piece is the first
    # sentence alone, not the whole text.
    # (Piper samples its durations: the same text comes out a few percent longer or shorter.)
    assert len(pieces) == 3
    assert seconds(pieces[0], 48000) == pytest.approx(seconds(first, 48000), rel=0.15)
    total = seconds(b"".join(pieces), 48000)
    at_8k = seconds(b"".join(await spoken(piper, " ".join(SENTENCES), 8000)), 8000)
    assert at_8k == pytest.approx(total, rel=0.15)


@pytest.mark.slow
async def test_piper_stops_synthesizing_when_the_listener_leaves(
    piper: PiperTextToSpeech,
) -> None:
    text = " ".join(["This sentence is spoken."] * 6)
    stream = piper.synthesize(text, sample_rate=SAMPLE_RATE)
    first = await anext(stream)  # type: ignore[arg-type]
    assert seconds(first, SAMPLE_RATE) > 0.8
    await stream.aclose()  # type: ignore[attr-defined]
    # The engine is free for the next caller at once.
    pcm = b"".join(await spoken(piper, "Hello again.", SAMPLE_RATE))
    assert seconds(pcm, SAMPLE_RATE) > 0.5


async def test_a_missing_local_voice_is_a_clear_error(tmp_path: Any) -> None:
    engine = create_text_to_speech(TextToSpeechSettings(model_path=str(tmp_path / "missing.onnx")))
    with pytest.raises(TextToSpeechError, match="no Piper voice model at .*missing.onnx"):
        await engine.start()
    await engine.aclose()


# --- the OpenAI engine: the real SDK against a loopback OpenAI-compatible server -----------


def wav_header(rate: int, data_bytes: int = 0xFFFFFFFF) -> bytes:
    """A streaming WAV header, as servers write it: the length is not known yet."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    riff_size = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"LIST"
        + struct.pack("<I", 4)
        + b"INFO"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


@dataclass
class SpeechServer:
    """POST /v1/audio/speech answering with real speech (Piper's, made before the test), in
    small pieces with pauses, as a streaming server does. `script` picks each answer:
    "ok", "error" (500) or "hang"."""

    audio: dict[str, bytes]
    script: list[str] = field(default_factory=list)
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""

    async def speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        action = self.script.pop(0) if self.script else "ok"
        if action == "error":
            return web.json_response({"error": {"message": "voice crashed"}}, status=500)
        if action == "hang":
            await self.release.wait()
        fmt = body.get("response_format", "mp3")
        if fmt == "pcm":
            payload = self.audio["pcm24k"]
        elif fmt == "wav":
            payload = wav_header(22050) + self.audio["pcm22k"]
        else:
            return web.json_response({"error": {"message": f"no {fmt}"}}, status=400)
        response = web.StreamResponse(headers={"Content-Type": f"audio/{fmt}"})
        await response.prepare(request)
        for i in range(0, len(payload), 3001):
            await response.write(payload[i : i + 3001])
            await asyncio.sleep(0.002)
        await response.write_eof()
        return response


@pytest.fixture(scope="module")
def real_speech() -> dict[str, bytes]:
    async def make() -> dict[str, bytes]:
        engine = PiperTextToSpeech(TextToSpeechSettings())
        try:
            return {
                "pcm24k": b"".join(await spoken(engine, SENTENCES[1], 24000)),
                "pcm22k": b"".join(await spoken(engine, SENTENCES[1], 22050)),
            }
        finally:
            await engine.aclose()

    return asyncio.run(make())


@pytest.fixture
async def speech_server(real_speech: dict[str, bytes]) -> AsyncIterator[SpeechServer]:
    server = SpeechServer(real_speech)
    app = web.Application()
    app.router.add_post("/v1/audio/speech", server.speech)
    async with loopback_server(app) as base_url:
        server.base_url = base_url
        yield server
        server.release.set()


def openai_settings(server: SpeechServer, **overrides: Any) -> TextToSpeechSettings:
    values: dict[str, Any] = {
        "engine": "openai",
        "openai_base_url": server.base_url,
        "openai_api_key": API_KEY,
        "openai_model": "tts-test",
        "openai_voice": "nova",
        "timeout_s": 5.0,
    }
    return TextToSpeechSettings(**{**values, **overrides})


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pcm", "wav"])
async def test_openai_speech_streams_real_audio_that_whisper_hears(
    speech_server: SpeechServer, whisper: WhisperDecoder, fmt: str
) -> None:
    engine = create_text_to_speech(openai_settings(speech_server, openai_format=fmt))
    assert isinstance(engine, OpenAITextToSpeech)
    try:
        pieces = await spoken(engine, SENTENCES[1], SAMPLE_RATE)
    finally:
        await engine.aclose()
        await engine.aclose()
    [(headers, body)] = speech_server.requests
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert body == {
        "model": "tts-test",
        "voice": "nova",
        "input": SENTENCES[1],
        "response_format": fmt,
    }
    # Handed over as it streamed in, not as one piece at the end.
    assert len(pieces) > 5
    pcm = b"".join(pieces)
    sent = seconds(speech_server.audio["pcm24k"], 24000) if fmt == "pcm" else None
    sent = sent or seconds(speech_server.audio["pcm22k"], 22050)
    assert abs(seconds(pcm, SAMPLE_RATE) - sent) < 0.002
    heard = await asyncio.to_thread(whisper.decode, pcm)
    assert wer(SENTENCES[1], heard.text) <= 0.15, heard.text


async def test_openai_speech_failures_are_clear_errors(speech_server: SpeechServer) -> None:
    speech_server.script = ["error", "hang"]
    engine = OpenAITextToSpeech(openai_settings(speech_server, timeout_s=0.5))
    try:
        with pytest.raises(TextToSpeechError, match="text-to-speech server answered 500"):
            await spoken(engine, "Hello.", SAMPLE_RATE)
        with pytest.raises(TextToSpeechError, match=r"timed out after 0.5 s"):
            await spoken(engine, "Hello.", SAMPLE_RATE)
    finally:
        await engine.aclose()
    assert len(speech_server.requests) == 2


async def test_openai_speech_without_key_or_server_is_refused() -> None:
    engine = OpenAITextToSpeech(TextToSpeechSettings(engine="openai"))
    with pytest.raises(TextToSpeechError, match="CALLASSIST_TTS_API_KEY"):
        await engine.start()
    await engine.aclose()


def test_wav_stream_parser_finds_the_data_across_pieces() -> None:
    data = bytes(range(200))
    wav = wav_header(24000) + data
    parser = WavStreamParser()
    out = b"".join(parser.feed(wav[i : i + 7]) for i in range(0, len(wav), 7))
    assert parser.sample_rate == 24000
    assert out == data
    with pytest.raises(TextToSpeechError, match="not WAV audio"):
        WavStreamParser().feed(b"ID3\x04" + bytes(20))
    stereo = bytearray(wav_header(24000))
    stereo[34:36] = struct.pack("<H", 2)  # channels, in the fmt chunk after the LIST chunk
    with pytest.raises(TextToSpeechError, match="not 16-bit mono PCM"):
        WavStreamParser().feed(bytes(stereo))
