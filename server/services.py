"""What calls share in a process (audio thread, speech-to-text, suggestions, ICE settings),
and the one place that builds those engines from the settings."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration

from server.config import Settings
from server.files import new_recording_part
from server.store import Store
from signaling.ice import ice_servers, rtc_configuration

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What a CallSession needs from the process; `None` factories switch a stage off.

    `speech_pipeline` decodes a participant's inbound audio (and segments it when the
    session passes `on_event`); `transcriber` turns segments into transcripts.
    """

    settings: Settings
    speech_pipeline: Callable[..., Any] | None = None
    transcriber: Callable[..., Any] | None = None
    assistant: Callable[..., Any] | None = None
    voice_agent: Callable[..., Any] | None = None
    """Makes a call's VoiceAgent (server/voice_agent.py); None when it is off."""

    def rtc_configuration(self) -> RTCConfiguration:
        s = self.settings
        servers = ice_servers(s.stun_urls, s.turn_urls, s.turn_secret, s.turn_ttl_s, "callassist-server")
        return rtc_configuration(servers, s.ice_transport_policy)


async def build_services(
    settings: Settings, store: Store
) -> tuple[Services, Callable[[], Awaitable[None]]]:
    services = Services(settings=settings)
    closers: list[Callable[[], Awaitable[None]]] = []

    # Decoding runs whatever the speech-to-text setting: a phone caller's μ-law must become
    # PCM for a browser agent to hear it. The thread only works for calls that need it.
    from media.pipeline import AudioThread, InboundAudio

    loop = asyncio.get_running_loop()
    recordings = settings.data_dir / "recordings"
    audio_thread = AudioThread()

    async def close_audio() -> None:
        await asyncio.to_thread(audio_thread.close)

    closers.append(close_audio)

    def speech_pipeline(*, speaker: str, call_id: str, **kwargs: Any) -> InboundAudio:
        record_path = None
        if settings.speech.record_audio and kwargs.get("on_event") is not None:
            record_path = new_recording_part(recordings / call_id, speaker)
        return InboundAudio(
            speaker=speaker,
            settings=settings.speech,
            loop=loop,
            record_path=record_path,
            audio_thread=audio_thread,
            **kwargs,
        )

    services.speech_pipeline = speech_pipeline

    if settings.speech.engine != "off":
        from media.stt import create_speech_to_text
        from media.transcriber import CallTranscriber

        stt = create_speech_to_text(settings.speech)
        await stt.start()
        closers.append(stt.aclose)
        services.transcriber = functools.partial(
            CallTranscriber, engine=stt, settings=settings.speech
        )

    if settings.assist.engine != "off":
        from server.assist import create_assistant_factory

        factory, close_assist = await create_assistant_factory(settings.assist, store)
        services.assistant = factory
        closers.append(close_assist)

    if settings.voice_agent.mode != "off":
        if services.transcriber is None:
            # It answers what it hears: without speech-to-text it would only ever greet.
            log.warning("CALLASSIST_VOICE_AGENT is on but speech-to-text is off; no voice agent")
        else:
            factory, close_voice = await build_voice_agent(settings, store)
            services.voice_agent = factory
            closers.append(close_voice)

    async def close() -> None:
        for closer in reversed(closers):
            await closer()

    return services, close


async def build_voice_agent(
    settings: Settings, store: Store
) -> tuple[Callable[..., Any], Callable[[], Awaitable[None]]]:
    """The voice agent's speech engine, reply engine and fallback phrase, shared by every
    call; replies come from the suggestion engine in use (the local one when suggestions
    are off)."""
    from dataclasses import replace

    from media.tts import create_text_to_speech, split_sentences
    from media.tts.piper import PiperTextToSpeech
    from server.assist import create_suggestion_engine
    from server.assist.knowledge import KnowledgeBase
    from server.voice_agent import FALLBACK, SAMPLE_RATE, VoiceAgent, VoiceAgentServices

    tts = create_text_to_speech(settings.tts)
    await tts.start()
    # The fallback phrase is made by the offline voice once, now: it must play even when
    # the configured speech engine is what failed.
    local = tts if isinstance(tts, PiperTextToSpeech) else PiperTextToSpeech(replace(settings.tts, engine="local"))
    fallback = bytearray()
    for sentence in split_sentences(FALLBACK):
        async for pcm in local.synthesize(sentence, sample_rate=SAMPLE_RATE):
            fallback += pcm
    if local is not tts:
        await local.aclose()
    knowledge = KnowledgeBase()
    await knowledge.refresh_if_changed(store)
    assist = settings.assist
    engine = create_suggestion_engine(
        assist if assist.engine != "off" else replace(assist, engine="local"), store, knowledge
    )
    shared = VoiceAgentServices(
        tts=tts,
        engine=engine,
        knowledge=knowledge,
        store=store,
        fallback_pcm=bytes(fallback),
        history_turns=assist.history_turns,
    )

    # The fixed phrases are made while the server starts taking calls (a few seconds).
    prepare = asyncio.get_running_loop().create_task(shared.render_phrases())

    def factory(**kwargs: Any) -> VoiceAgent:
        return VoiceAgent(services=shared, **kwargs)

    async def close() -> None:
        prepare.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prepare
        await engine.close()
        await tts.aclose()

    return factory, close
