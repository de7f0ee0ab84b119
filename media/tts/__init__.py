"""Speech-out engines (the voice agent's voice) behind one interface, chosen by settings."""

from __future__ import annotations

from .base import PcmResampler, TextToSpeech, TextToSpeechError, TextToSpeechSettings
from .text import SentenceSplitter, split_sentences

__all__ = [
    "PcmResampler",
    "SentenceSplitter",
    "TextToSpeech",
    "TextToSpeechError",
    "TextToSpeechSettings",
    "create_text_to_speech",
    "split_sentences",
]


def create_text_to_speech(settings: TextToSpeechSettings) -> TextToSpeech:
    """The engine named by `settings.engine`; its heavy imports happen here, not earlier."""
    if settings.engine == "local":
        from .piper import PiperTextToSpeech

        return PiperTextToSpeech(settings)
    if settings.engine == "openai":
        from .openai import OpenAITextToSpeech

        return OpenAITextToSpeech(settings)
    raise ValueError(f"unknown text-to-speech engine {settings.engine!r}")
