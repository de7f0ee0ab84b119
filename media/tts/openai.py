"""Speech out through any OpenAI-compatible `/v1/audio/speech` endpoint.

OpenAI itself or a self-hosted server (Kokoro-FastAPI, openedai-speech, LocalAI, ...) given
by `openai_base_url`. The response body is streamed: audio is resampled and handed over as
it arrives, not when the whole sentence is there. `pcm` (raw s16le mono, 24 kHz at OpenAI)
has no header to wait for; `wav` is parsed as it streams (servers that stream WAV write an
unknown length into its header, so the data chunk is read to the end of the body).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from media.openai_client import import_openai, make_client

from .base import PcmResampler, TextToSpeech, TextToSpeechError, TextToSpeechSettings

if TYPE_CHECKING:
    from openai import AsyncOpenAI

READ_BYTES = 4096
"""~85 ms of 24 kHz audio per read: small enough that the first audio is not held back."""


def _import_openai() -> Any:
    return import_openai(TextToSpeechError, "text-to-speech")


class WavStreamParser:
    """A WAV file arriving in pieces → its sample rate, then its PCM as it comes."""

    def __init__(self) -> None:
        self._head = b""
        self.sample_rate = 0
        self._in_data = False

    def feed(self, data: bytes) -> bytes:
        """PCM carried by this piece (empty while the header is still incomplete)."""
        if self._in_data:
            return data
        self._head += data
        head = self._head
        if len(head) < 12:
            return b""
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise TextToSpeechError("the speech server sent something that is not WAV audio")
        pos = 12
        while len(head) >= pos + 8:
            chunk_id, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
            body = pos + 8
            if chunk_id == b"data":
                if not self.sample_rate:
                    raise TextToSpeechError("the speech server's WAV has no format chunk")
                self._in_data = True
                self._head = b""
                return head[body:]
            if len(head) < body + size:
                return b""
            if chunk_id == b"fmt ":
                fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", head[body : body + 16])
                if fmt != 1 or channels != 1 or bits != 16:
                    raise TextToSpeechError(
                        f"the speech server's WAV is not 16-bit mono PCM "
                        f"(format {fmt}, {channels} channels, {bits} bits)"
                    )
                self.sample_rate = rate
            pos = body + size + (size & 1)
        return b""


class OpenAITextToSpeech(TextToSpeech):
    def __init__(self, settings: TextToSpeechSettings) -> None:
        if settings.openai_format not in ("pcm", "wav"):
            raise TextToSpeechError(f"unsupported speech format {settings.openai_format!r}")
        self._settings = settings
        self._client: AsyncOpenAI | None = None
        self._closed = False

    async def start(self) -> None:
        if self._client is not None:
            return
        if self._closed:
            raise TextToSpeechError("text-to-speech engine is closed")
        self._client = make_client(
            api_key=self._settings.openai_api_key,
            base_url=self._settings.openai_base_url,
            timeout_s=self._settings.timeout_s,
            error=TextToSpeechError,
            what="text-to-speech",
            prefix="CALLASSIST_TTS",
        )

    async def synthesize(self, text: str, *, sample_rate: int) -> AsyncIterator[bytes]:
        if self._client is None:
            await self.start()
        client = self._client
        if client is None or self._closed:
            raise TextToSpeechError("text-to-speech engine is closed")
        openai = _import_openai()
        settings = self._settings
        wav = WavStreamParser() if settings.openai_format == "wav" else None
        resampler = PcmResampler(settings.openai_pcm_rate, sample_rate) if wav is None else None
        try:
            async with client.audio.speech.with_streaming_response.create(
                model=settings.openai_model,
                voice=settings.openai_voice,
                input=text,
                response_format=settings.openai_format,  # type: ignore[arg-type]  # checked in __init__
            ) as response:
                async for data in response.iter_bytes(READ_BYTES):
                    if wav is not None:
                        data = wav.feed(data)
                        if not data:
                            continue
                        if resampler is None:
                            resampler = PcmResampler(wav.sample_rate, sample_rate)
                    assert resampler is not None
                    pcm = resampler.resample(data)
                    if pcm:
                        yield pcm
        except openai.APITimeoutError:
            raise TextToSpeechError(
                f"text-to-speech timed out after {settings.timeout_s:g} s"
            ) from None
        except openai.APIStatusError as exc:
            raise TextToSpeechError(f"text-to-speech server answered {exc.status_code}") from exc
        except openai.APIError as exc:
            raise TextToSpeechError(f"text-to-speech request failed: {exc}") from exc
        if resampler is None:
            raise TextToSpeechError("the speech server sent no audio")
        tail = resampler.resample(b"", last=True)
        if tail:
            yield tail

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            await self._client.close()
            self._client = None
