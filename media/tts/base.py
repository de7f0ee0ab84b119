"""The speech-out interface: text → PCM at the rate the caller's transport wants.

Engines synthesize one piece of text at a time (the voice agent feeds them sentence by
sentence as its reply is generated, media/tts/text.py) and hand the audio over in pieces as
soon as each is ready, so the caller hears the first sentence while the rest is made.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

import numpy as np
import soxr

from ..settings import TextToSpeechSettings

__all__ = ["PcmResampler", "TextToSpeech", "TextToSpeechError", "TextToSpeechSettings"]


class TextToSpeechError(Exception):
    """Text could not be spoken (engine down, timeout, bad model); the message is short
    and safe to show to an agent."""


class TextToSpeech(ABC):
    """One engine serves every call of the process; `start` once (engines may start
    lazily too), `aclose` once at shutdown."""

    async def start(self) -> None:  # noqa: B027 - engines without setup need not override
        """Load models, open clients. Idempotent."""

    @abstractmethod
    def synthesize(self, text: str, *, sample_rate: int) -> AsyncIterator[bytes]:
        """Mono s16 PCM of `text` at `sample_rate`, in pieces as they are ready.

        Raises TextToSpeechError (from the iteration) when the text cannot be spoken.
        Closing the iterator early (barge-in) stops the work that is left.
        """

    async def aclose(self) -> None:  # noqa: B027 - engines without resources need not override
        """Release models and connections. Idempotent."""


class PcmResampler:
    """Mono s16 PCM from one rate to another, keeping filter state between pieces (a stream
    cut into pieces resamples without clicks at their edges). One per stream of audio."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
            if in_rate != out_rate
            else None
        )
        self._odd = b""

    def resample(self, pcm: bytes, *, last: bool = False) -> bytes:
        """The output for this piece; `last` flushes what the filter still holds."""
        data = self._odd + pcm
        # A network read can end inside a sample.
        cut = len(data) - len(data) % 2
        data, self._odd = data[:cut], data[cut:]
        if self._stream is None:
            return data
        samples = np.frombuffer(data, dtype=np.int16)
        return self._stream.resample_chunk(samples, last=last).tobytes()
