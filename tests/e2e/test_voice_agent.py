"""The voice agent through the real call path: a real server, the real Piper voice, the real
Whisper, and a real aiortc caller whose microphone plays TTS-made speech fixtures.

What the caller hears is decoded and transcribed with the local Whisper and compared with
the `voice_agent` transcript: what the voice agent says it said is what the caller heard.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media.settings import SpeechSettings
from media.stt.local import WhisperDecoder
from media.wer import wer
from server.qa import Participant, encode_wav_to_opus
from server.voice_agent import FALLBACK, GREETING, HUMAN
from tests.conftest import Running, loopback_server, make_settings, rms, serving
from tests.media.speech import fixture

pytestmark = pytest.mark.slow

MARIA = "+12025550101"  # demo: order 78901, headphones, delivered
VOICE_FIXTURES = Path(__file__).parents[1] / "fixtures" / "voice_agent"


def voice_fixture(name: str) -> Path:
    return VOICE_FIXTURES / f"{name}.wav"


@pytest.fixture(scope="module")
def whisper() -> WhisperDecoder:
    return WhisperDecoder.load(SpeechSettings())


def heard(whisper: WhisperDecoder, pcm48k: np.ndarray) -> str:
    """What a listener hears in 48 kHz audio, transcribed by the local Whisper."""
    pcm16k = pcm48k[::3].astype(np.int16).tobytes()  # Opus is band-limited: plain decimation
    texts = []
    step = 25 * 16000 * 2
    for i in range(0, len(pcm16k), step):
        result = whisper.decode(pcm16k[i : i + step])
        if result.is_speech:
            texts.append(result.text)
    return " ".join(texts)


async def settled(p: Participant, quiet_s: float = 0.4, within_s: float = 5.0) -> None:
    """Until no audio has arrived for `quiet_s`: a final transcript is published once the
    voice agent has released its audio, which a loaded machine may deliver a little later."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    count = -1
    while count != p.received.packets and loop.time() < deadline:
        count = p.received.packets
        await asyncio.sleep(quiet_s)


async def ask_for_a_refund(customer: Participant, timeout: float) -> dict[str, Any]:
    """The caller asks for a refund of order 78901; the voice agent's final reply about it.

    The request comes in two or three turns ("Hello, I need a refund please." / "My order
    number is ..."): a reply to the first may be cut by the next; the last one answers."""
    customer.track.replace(encode_wav_to_opus(fixture("customer_refund_request").path))
    return await customer.wait_for(
        lambda e: (
            e["type"] == "transcript"
            and e["final"]
            and e["speaker"] == "voice_agent"
            and "78901" in e["text"]
        ),
        timeout=timeout,
    )


def reply_audio(customer: Participant, reply: dict[str, Any]) -> np.ndarray:
    """The last reply's audio at the caller (48 kHz): its length and half a second more."""
    return customer.received.pcm()[-int((reply["end_ms"] - reply["start_ms"] + 500) * 48) :]


def settings_env(**env: str) -> dict[str, str]:
    return {
        "CALLASSIST_STT_ENGINE": "local",
        "CALLASSIST_ASSIST_ENGINE": "local",
        "CALLASSIST_DEMO": "true",
        "CALLASSIST_VOICE_AGENT": "always",
        **env,
    }


@pytest.fixture
async def run(tmp_path: Path) -> Any:
    async with serving(make_settings(tmp_path / "data", **settings_env())) as running:
        yield running


async def caller(run: Running, phone: str = MARIA) -> tuple[str, Participant]:
    cust = await run.customer("Caller", phone=phone)
    call_id = await run.new_call(cust["token"], reason="")
    customer = run.participant(cust["token"], "customer")
    await customer.connect(call_id)
    return call_id, customer


def finals(p: Participant, speaker: str = "voice_agent") -> list[dict[str, Any]]:
    return [
        e for e in p.events if e["type"] == "transcript" and e["final"] and e["speaker"] == speaker
    ]


async def next_final(
    p: Participant, speaker: str = "voice_agent", timeout: float = 40, after: int | None = None
) -> dict[str, Any]:
    """The first final transcript of `speaker` among the events from index `after` on (by
    default: from now on)."""
    start = len(p.events) if after is None else after
    return await p.wait_for(
        lambda e: (
            e["type"] == "transcript"
            and e["final"]
            and e["speaker"] == speaker
            and p.events.index(e) >= start
        ),
        timeout=timeout,
    )


async def test_greets_answers_a_refund_and_hands_over(
    run: Running, whisper: WhisperDecoder
) -> None:
    agent_token = await run.agent()
    call_id, customer = await caller(run)
    state = await customer.wait_for(lambda e: e["type"] == "call_state" and e.get("voice_agent"))
    assert state["state"] == "waiting"

    greeting = await next_final(customer)
    assert greeting["text"] == GREETING
    await settled(customer)
    greeting_audio = customer.received.pcm()
    assert wer(GREETING, heard(whisper, greeting_audio)) <= 0.2

    # The call is still in the agents' queue while the voice agent talks.
    status, body = await run.api.call("GET", "/api/calls?state=waiting", agent_token)
    assert status == 200 and [c["call_id"] for c in body["calls"]] == [call_id]

    reply = await ask_for_a_refund(customer, timeout=90)
    assert "refund" in reply["text"].lower(), reply["text"]
    planned = [
        e["text"]
        for e in customer.events
        if e["type"] == "transcript" and e["segment_id"] == reply["segment_id"]
    ]
    assert planned[-2] == reply["text"]  # heard to the end: not cut
    await settled(customer)
    said = heard(whisper, reply_audio(customer, reply))
    assert wer(reply["text"], said) <= 0.25, (reply["text"], said)

    # An agent accepts: the voice agent falls silent, the agent gets the conversation.
    status, body = await run.api.call("POST", f"/api/calls/{call_id}/accept", agent_token)
    assert status == 200 and body["state"] == "active"
    agent = run.participant(agent_token, "agent")
    await agent.connect(call_id)
    handover = await agent.wait_for(lambda e: e["type"] == "handover")
    summary = handover["summary"]
    assert "refund" in summary["reason"].lower()
    assert any("refund" in a.lower() for a in summary["asked"])
    assert "78901" in summary["orders"]
    assert summary["text"]
    active = await customer.wait_for(lambda e: e["type"] == "call_state" and e["state"] == "active")
    assert active["voice_agent"] is False
    replayed = [e["text"] for e in finals(agent)]
    assert replayed[0] == GREETING and reply["text"] in replayed
    # handover is agent-only.
    assert not [e for e in customer.events if e["type"] == "handover"]
    status, messages = await run.api.call("GET", f"/api/calls/{call_id}/messages", customer.token)
    assert "handover" not in {m["type"] for m in messages["messages"]}

    # Silence from the voice agent (the caller now hears the agent's silent microphone);
    # the agent hears the caller.
    await asyncio.sleep(0.5)
    mark = len(customer.received.pcm())
    await asyncio.sleep(1.5)
    after = customer.received.pcm()[mark:]
    assert len(after) > 48000 and rms(after) < 50, rms(after)
    customer.track.replace(encode_wav_to_opus(fixture("customer_confirm").path))
    await agent.wait_for(
        lambda e: (
            e["type"] == "transcript"
            and e["final"]
            and e["speaker"] == "customer"
            and "correct" in e["text"].lower()
        ),
        timeout=30,
    )
    assert agent.received.packets > 50


async def test_barge_in_stops_it_and_cuts_its_transcript_but_a_backchannel_does_not(
    run: Running, whisper: WhisperDecoder
) -> None:
    call_id, customer = await caller(run)
    # A backchannel while it greets: it goes on to the end.
    await customer.wait_for(lambda e: e["type"] == "transcript" and e["speaker"] == "voice_agent")
    await asyncio.sleep(1.0)
    customer.track.replace(encode_wav_to_opus(voice_fixture("backchannel_mmhmm")))
    greeting = await next_final(customer)
    assert greeting["text"] == GREETING

    # Ask something with a long answer, then talk over it.
    customer.track.replace(encode_wav_to_opus(fixture("customer_refund_request").path))
    long_reply = await customer.wait_for(
        lambda e: (
            e["type"] == "transcript"
            and not e["final"]
            and e["speaker"] == "voice_agent"
            and "78901" in e["text"]
        ),
        timeout=40,
    )
    await asyncio.sleep(2.0)
    before = customer.received.packets
    customer.track.replace(encode_wav_to_opus(voice_fixture("interrupt_agent")))
    cut = await customer.wait_for(
        lambda e: (
            e["type"] == "transcript" and e["final"] and e["segment_id"] == long_reply["segment_id"]
        ),
        timeout=30,
    )
    stopped_at = customer.received.packets
    # Cut: the reply's final text is the start of what it planned, and shorter.
    planned = [
        e["text"]
        for e in customer.events
        if e["type"] == "transcript" and not e["final"] and e["segment_id"] == cut["segment_id"]
    ][-1]
    assert planned.startswith(cut["text"]) and len(cut["text"]) < len(planned), (cut, planned)
    assert cut["text"].startswith("I can see")
    assert stopped_at - before < 60  # under 1.2 s of audio after the interruption began
    # It answers the interruption: the caller asked for a person.
    answer = await next_final(customer)
    assert answer["text"] == HUMAN


async def test_speech_failure_plays_the_fallback_phrase_and_the_call_waits(
    tmp_path: Path, whisper: WhisperDecoder
) -> None:
    from aiohttp import web

    failures: list[str] = []

    async def speech(request: web.Request) -> web.Response:
        failures.append((await request.json())["input"])
        return web.json_response({"error": {"message": "voice crashed"}}, status=500)

    app = web.Application()
    app.router.add_post("/v1/audio/speech", speech)
    async with loopback_server(app) as base:
        env = settings_env(CALLASSIST_TTS_ENGINE="openai", CALLASSIST_TTS_BASE_URL=base)
        async with serving(make_settings(tmp_path / "data", **env)) as run:
            agent_token = await run.agent()
            call_id, customer = await caller(run)
            status = await customer.wait_for(lambda e: e["type"] == "status")
            assert status["code"] == "voice_agent_failed" and status["level"] == "error"
            assert "Traceback" not in status["message"] and "500" not in status["message"]
            said = await next_final(customer)
            assert said["text"] == FALLBACK
            await settled(customer)
            assert wer(FALLBACK, heard(whisper, customer.received.pcm())) <= 0.25
            assert failures and failures[0] == GREETING.split(". ")[0] + "."
            status_code, body = await run.api.call("GET", "/api/calls?state=waiting", agent_token)
            assert status_code == 200 and [c["call_id"] for c in body["calls"]] == [call_id]


async def test_a_phone_caller_is_answered_and_a_barge_in_clears_twilios_buffer(
    tmp_path: Path, whisper: WhisperDecoder
) -> None:
    from media.tts import PcmResampler
    from server.qa_phone import TwilioCaller, wav_to_mulaw_frames
    from tests.phone.conftest import AUTH_TOKEN, PUBLIC_URL, phone_settings

    async with serving(phone_settings(tmp_path / "data", **settings_env())) as run:
        admin = await run.agent("root", role="admin")
        caller = TwilioCaller(
            run.url, AUTH_TOKEN, public_url=PUBLIC_URL, http=run.http, caller=MARIA
        )
        try:
            await caller.dial()

            async def messages() -> list[dict[str, Any]]:
                status, body = await run.api.call(
                    "GET", f"/api/calls/{caller.call_id}/messages", admin
                )
                assert status == 200
                return list(body["messages"])

            async def voice_agent_finals(n: int, timeout: float = 40) -> list[dict[str, Any]]:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + timeout
                while True:
                    said = [
                        m
                        for m in await messages()
                        if m["type"] == "transcript" and m["speaker"] == "voice_agent"
                    ]
                    if len(said) >= n:
                        return said
                    assert loop.time() < deadline, said
                    await asyncio.sleep(0.2)

            # It greets the phone caller; the caller talks over the greeting 4 s in.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while len(caller.heard.payloads) < 200:  # noqa: ASYNC110 - polling the simulator
                assert loop.time() < deadline, "no greeting on the phone"
                await asyncio.sleep(0.05)
            caller.play(wav_to_mulaw_frames(voice_fixture("interrupt_agent")))
            deadline = loop.time() + 10
            while caller.heard.clears == 0:  # noqa: ASYNC110 - polling the simulator
                assert loop.time() < deadline, "no clear after the caller talked over it"
                await asyncio.sleep(0.05)
            greeting, answer = await voice_agent_finals(2)
            # Cut where the caller came in; Twilio was told to drop what it held.
            assert GREETING.startswith(greeting["text"]) and len(greeting["text"]) < len(GREETING)
            assert answer["text"] == HUMAN
            # What the transcript says was said is what the caller heard (μ-law, 8 kHz).
            count = -1
            while count != len(caller.heard.payloads):  # until its audio has all arrived
                count = len(caller.heard.payloads)
                await asyncio.sleep(0.4)
            pcm8k = caller.heard.pcm().tobytes()
            pcm16k = PcmResampler(8000, 16000).resample(pcm8k, last=True)
            said = " ".join(
                r.text
                for r in (
                    whisper.decode(pcm16k[i : i + 800000]) for i in range(0, len(pcm16k), 800000)
                )
                if r.is_speech
            )
            assert wer(greeting["text"] + " " + HUMAN, said) <= 0.3, said
        finally:
            await caller.close()


async def test_openai_compatible_chat_with_tools_and_speech(
    tmp_path: Path, whisper: WhisperDecoder
) -> None:
    """Replies from an OpenAI-compatible model that calls our server-side tools, spoken by an
    OpenAI-compatible speech endpoint (both on loopback, through the real `openai` SDK)."""
    from aiohttp import web

    from media.tts import TextToSpeechSettings
    from media.tts.piper import PiperTextToSpeech
    from tests.assist.fake_llm import FakeLLM

    llm = FakeLLM()
    voice = PiperTextToSpeech(TextToSpeechSettings())
    spoken: list[dict[str, Any]] = []

    async def speech(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        spoken.append(body)
        assert body["response_format"] == "pcm"
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        async for pcm in voice.synthesize(body["input"], sample_rate=24000):
            await response.write(pcm)
        await response.write_eof()
        return response

    app = llm.app()
    app.router.add_post("/v1/audio/speech", speech)
    try:
        async with loopback_server(app) as base:
            env = settings_env(
                CALLASSIST_ASSIST_ENGINE="openai",
                CALLASSIST_LLM_BASE_URL=base,
                CALLASSIST_TTS_ENGINE="openai",
                CALLASSIST_TTS_BASE_URL=base,
                CALLASSIST_TTS_VOICE="nova",
            )
            async with serving(make_settings(tmp_path / "data", **env)) as run:
                call_id, customer = await caller(run)
                greeting = await next_final(customer)
                assert greeting["text"] == GREETING
                assert (
                    spoken[0]["voice"] == "nova"
                    and spoken[0]["input"] == "Hello, thank you for calling."
                )
                reply = await ask_for_a_refund(customer, timeout=60)
                # The model looked the order and the policy up with our tools before answering.
                tool_results = [
                    json.loads(m["content"])
                    for body in llm.requests
                    for m in body["messages"]
                    if m["role"] == "tool"
                ]
                assert any(r.get("order_id") == "78901" for r in tool_results)
                assert "we can refund it in full" in reply["text"]
                assert "noted that for my colleague" in reply["text"]  # its [action], promised
                await settled(customer)
                said = heard(whisper, reply_audio(customer, reply))
                assert wer(reply["text"], said) <= 0.25, (reply["text"], said)
                inputs = [b["input"] for b in spoken]
                assert "I can see order 78901 —" in " ".join(inputs)
    finally:
        await voice.aclose()


async def test_overflow_answers_only_calls_nobody_took_in_time(tmp_path: Path) -> None:
    env = settings_env(CALLASSIST_VOICE_AGENT="overflow", CALLASSIST_VOICE_AGENT_AFTER_S="2")
    async with serving(make_settings(tmp_path / "data", **env)) as run:
        agent_token = await run.agent()
        # Taken within the time: the voice agent never joins.
        taken_id, taken = await caller(run)
        status, _ = await run.api.call("POST", f"/api/calls/{taken_id}/accept", agent_token)
        assert status == 200
        # Nobody takes this one: after 2 s the voice agent answers it.
        waiting_id, waiting = await caller(run, phone="+12025550103")
        state = await waiting.wait_for(
            lambda e: e["type"] == "call_state" and e.get("voice_agent"), timeout=10
        )
        created = waiting.events[0]["ts"]
        assert state["state"] == "waiting" and state["ts"] - created >= 2000
        await next_final(waiting, after=0)
        await asyncio.sleep(0.5)
        assert not [e for e in taken.events if e["type"] == "call_state" and e.get("voice_agent")]
        assert not finals(taken)


async def test_hanging_up_while_it_talks_keeps_what_was_heard(run: Running) -> None:
    admin = await run.agent("root", role="admin")
    call_id, customer = await caller(run)
    await customer.wait_for(lambda e: e["type"] == "transcript" and e["speaker"] == "voice_agent")
    await asyncio.sleep(2.0)
    status, _ = await run.api.call("POST", f"/api/calls/{call_id}/end", customer.token)
    assert status == 200
    status, body = await run.api.call("GET", f"/api/calls/{call_id}/messages", admin)
    kinds = [(m["type"], m.get("speaker") or m.get("state")) for m in body["messages"]]
    said = [m for m in body["messages"] if m["type"] == "transcript"]
    assert kinds[-2:] == [("transcript", "voice_agent"), ("call_state", "ended")], kinds
    assert GREETING.startswith(said[-1]["text"]) and len(said[-1]["text"]) < len(GREETING)
    assert said[-1]["text"].startswith("Hello, thank you")
