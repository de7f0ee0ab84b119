"""Voice agent and speech-out settings: defaults, the demo's default, errors that name the
variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, load_settings


def test_defaults_are_offline_and_the_voice_agent_is_off() -> None:
    settings = load_settings(env={})
    assert settings.voice_agent.mode == "off"
    assert settings.voice_agent.after_s == 20.0
    assert settings.tts.engine == "local"
    assert settings.tts.model_path == ""
    assert settings.tts.openai_format == "pcm"


def test_the_demo_answers_overflow_calls_unless_told_otherwise(tmp_path: Path) -> None:
    assert load_settings(env={}, demo=True).voice_agent.mode == "overflow"
    assert load_settings(env={"CALLASSIST_DEMO": "1"}).voice_agent.mode == "overflow"
    told = load_settings(env={"CALLASSIST_VOICE_AGENT": "off"}, demo=True)
    assert told.voice_agent.mode == "off"


def test_settings_are_read_from_the_environment() -> None:
    settings = load_settings(
        env={
            "CALLASSIST_VOICE_AGENT": "Always",
            "CALLASSIST_VOICE_AGENT_AFTER_S": "5.5",
            "CALLASSIST_TTS_ENGINE": "openai",
            "CALLASSIST_TTS_BASE_URL": "http://127.0.0.1:9/v1",
            "CALLASSIST_TTS_VOICE": "nova",
            "CALLASSIST_TTS_FORMAT": "wav",
            "OPENAI_API_KEY": "k",
        }
    )
    assert settings.voice_agent.mode == "always"
    assert settings.voice_agent.after_s == 5.5
    assert settings.tts.engine == "openai"
    assert settings.tts.openai_base_url == "http://127.0.0.1:9/v1"
    assert settings.tts.openai_voice == "nova"
    assert settings.tts.openai_format == "wav"
    assert settings.tts.openai_api_key == "k"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CALLASSIST_VOICE_AGENT", "sometimes", "must be one of off, overflow, always"),
        ("CALLASSIST_VOICE_AGENT_AFTER_S", "soon", "must be a number"),
        ("CALLASSIST_VOICE_AGENT_AFTER_S", "-1", "must be 0..86400 seconds"),
        ("CALLASSIST_TTS_ENGINE", "espeak", "must be one of local, openai"),
        ("CALLASSIST_TTS_FORMAT", "mp3", "must be one of pcm, wav"),
        ("CALLASSIST_TTS_PCM_RATE", "4000", "must be 8000..48000 Hz"),
        ("CALLASSIST_TTS_THREADS", "0", "must be at least 1"),
        ("CALLASSIST_TTS_TIMEOUT", "0", "must be a positive number"),
    ],
)
def test_bad_values_are_errors_that_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name} {message}"):
        load_settings(env={name: value})
