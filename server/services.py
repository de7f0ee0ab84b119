"""Builds the engines a process shares (speech-to-text, suggestions) from the settings."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from server.config import Settings
from server.files import new_recording_part
from server.hub import Services
from server.store import Store


async def build_services(
    settings: Settings, store: Store
) -> tuple[Services, Callable[[], Awaitable[None]]]:
    services = Services(settings=settings)
    closers: list[Callable[[], Awaitable[None]]] = []

    if settings.speech.engine != "off":
        from media.pipeline import AudioThread, InboundAudio
        from media.stt import create_speech_to_text
        from media.transcriber import CallTranscriber

        stt = create_speech_to_text(settings.speech)
        await stt.start()
        closers.append(stt.aclose)
        loop = asyncio.get_running_loop()
        recordings = settings.data_dir / "recordings"
        audio_thread = AudioThread()

        async def close_audio() -> None:
            await asyncio.to_thread(audio_thread.close)

        closers.append(close_audio)

        def speech_pipeline(*, speaker: str, call_id: str, **kwargs: Any) -> InboundAudio:
            record_path = None
            if settings.speech.record_audio:
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
        services.transcriber = functools.partial(
            CallTranscriber, engine=stt, settings=settings.speech
        )

    if settings.assist.engine != "off":
        from server.assist import create_assistant_factory

        factory, close_assist = await create_assistant_factory(settings.assist, store)
        services.assistant = factory
        closers.append(close_assist)

    async def close() -> None:
        for closer in reversed(closers):
            await closer()

    return services, close
