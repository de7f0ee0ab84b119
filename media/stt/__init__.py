"""Speech-to-text engines behind one interface, chosen by settings."""

from __future__ import annotations

from media.settings import SpeechSettings

from .base import SpeechToText, SpeechToTextError

__all__ = ["SpeechToText", "SpeechToTextError", "create_speech_to_text"]


def create_speech_to_text(settings: SpeechSettings) -> SpeechToText:
    """The engine named by `settings.engine`; its heavy imports happen here, not earlier."""
    if settings.engine == "local":
        from .local import LocalWhisper

        return LocalWhisper(settings)
    if settings.engine == "openai":
        from .openai import OpenAISpeechToText

        return OpenAISpeechToText(settings)
    raise ValueError(f"unknown speech-to-text engine {settings.engine!r}")
