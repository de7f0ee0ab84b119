"""The speech-to-text engine interface: the local model, remote APIs and test fakes."""

from __future__ import annotations

from abc import ABC, abstractmethod


class SpeechToTextError(Exception):
    """A segment could not be transcribed (engine down, timeout, bad model); the message
    is short and safe to show to an agent."""


class SpeechToText(ABC):
    """Transcribes one utterance at a time: 16 kHz mono s16 PCM → text.

    One engine serves every call of the process; `start` once before use (engines may
    start lazily too), `aclose` once at shutdown. An empty string means "nothing was
    said": silence, noise, or a hallucination the engine recognised as such.
    """

    async def start(self) -> None:  # noqa: B027 - engines without setup need not override
        """Load models, open clients. Idempotent."""

    @abstractmethod
    async def transcribe(self, pcm: bytes, *, prompt: str | None = None) -> str:
        """Text of one segment. `prompt` is earlier text of the same speaker, for context.

        Raises SpeechToTextError (or TimeoutError) when the segment cannot be done.
        """

    async def transcribe_interim(self, pcm: bytes, *, prompt: str | None = None) -> str:
        """Text of an utterance still in progress, for an interim transcript; an engine
        may trade accuracy for speed here (its final is coming). By default `transcribe`."""
        return await self.transcribe(pcm, prompt=prompt)

    async def aclose(self) -> None:  # noqa: B027 - engines without resources need not override
        """Release models and connections. Idempotent."""

    @property
    def busy(self) -> bool:
        """Work is in flight. Interim transcripts are only requested from an idle engine,
        so that they never delay a final one."""
        return False

    @property
    def saturated(self) -> bool:
        """Finals wait for the engine, or it has had no headroom lately. Speculative work
        (an endpoint snapshot that may turn out mid-sentence) is then not asked for."""
        return False
