"""Speech-to-text through any OpenAI-compatible `/v1/audio/transcriptions` endpoint.

OpenAI itself, or a self-hosted server (faster-whisper-server, LocalAI, vLLM, ...) given
by `openai_base_url`. Each segment is one multipart request carrying a WAV file.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from media.openai_client import import_openai, make_client
from media.settings import SpeechSettings

from ..audio import pcm_to_wav
from .base import SpeechToText, SpeechToTextError

if TYPE_CHECKING:
    from openai import AsyncOpenAI


def _import_openai() -> Any:
    return import_openai(SpeechToTextError, "speech-to-text")


class OpenAISpeechToText(SpeechToText):
    def __init__(self, settings: SpeechSettings) -> None:
        self._settings = settings
        self._client: AsyncOpenAI | None = None
        self._in_flight = 0
        self._closed = False

    async def start(self) -> None:
        if self._client is not None:
            return
        if self._closed:
            raise SpeechToTextError("speech-to-text engine is closed")
        self._client = make_client(
            api_key=self._settings.openai_api_key,
            base_url=self._settings.openai_base_url,
            timeout_s=self._settings.timeout_s,
            error=SpeechToTextError,
            what="speech-to-text",
            prefix="CALLASSIST_STT",
        )

    async def transcribe(self, pcm: bytes, *, prompt: str | None = None) -> str:
        if self._client is None:
            await self.start()
        client = self._client
        if client is None or self._closed:
            raise SpeechToTextError("speech-to-text engine is closed")
        openai = _import_openai()
        settings = self._settings
        request: dict[str, Any] = {
            "model": settings.openai_model,
            "file": ("segment.wav", pcm_to_wav(pcm), "audio/wav"),
        }
        if settings.language:
            request["language"] = settings.language
        if prompt:
            request["prompt"] = prompt
        self._in_flight += 1
        try:
            # The SDK's timeout covers each network phase; this one the whole request.
            async with asyncio.timeout(settings.timeout_s):
                response = await client.audio.transcriptions.create(**request)
        except (TimeoutError, openai.APITimeoutError):
            raise SpeechToTextError(
                f"speech-to-text timed out after {settings.timeout_s:g} s"
            ) from None
        except openai.APIStatusError as exc:
            raise SpeechToTextError(f"speech-to-text server answered {exc.status_code}") from exc
        except openai.APIError as exc:
            raise SpeechToTextError(f"speech-to-text request failed: {exc}") from exc
        finally:
            self._in_flight -= 1
        return str(getattr(response, "text", "") or "").strip()

    @property
    def busy(self) -> bool:
        return self._in_flight > 0

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            await self._client.close()
            self._client = None
