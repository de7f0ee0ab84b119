"""Settings: one frozen dataclass, read once from flags and the environment.

Flags win over the environment, the environment over the defaults. Every field is
documented in docs/configuration.md.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from media.settings import SpeechSettings, TextToSpeechSettings

__all__ = [
    "AssistSettings",
    "ConfigError",
    "Settings",
    "SpeechSettings",
    "TextToSpeechSettings",
    "VoiceAgentSettings",
    "load_settings",
]

MIN_SECRET_BYTES = 32


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True)
class AssistSettings:
    """Suggestion engine and summaries."""

    engine: str = "local"
    """`local` (retrieval + playbooks, offline), `openai` (chat completions with tools) or `off`."""
    openai_model: str = "gpt-4o-mini"
    openai_base_url: str = ""
    openai_api_key: str = ""
    timeout_s: float = 8.0
    debounce_ms: int = 500
    """Final customer transcripts closer together than this produce one suggestion; the
    longest a suggestion waits while the customer is still speaking."""
    settle_ms: int = 60
    """The wait after a final customer transcript when the VAD says the customer is silent."""
    history_turns: int = 12
    """Turns of the conversation the engines see."""


VOICE_AGENT_MODES = ("off", "overflow", "always")


@dataclass(frozen=True)
class VoiceAgentSettings:
    """The AI voice agent that answers callers no human has taken (API.md, Voice agent)."""

    mode: str = "off"
    """`off`, `overflow` (answers a call that has waited `after_s` without an agent) or
    `always` (answers every call at once). `--demo` makes the default `overflow`."""
    after_s: float = 20.0
    """Overflow: seconds a call waits for a human before the voice agent answers."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    demo: bool = False
    database_url: str = ""
    """SQLAlchemy async URL; empty means SQLite (aiosqlite) in the data dir."""
    secret_key: str = ""
    """Signs session tokens; empty means generated once and kept in the data dir."""
    token_ttl_s: int = 12 * 3600
    max_body_bytes: int = 256 * 1024
    ice_hosts: tuple[str, ...] = ()
    """Host addresses the server's peers gather; empty means every interface."""
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl_s: int = 3600
    ice_transport_policy: str = "all"
    """`all` or `relay` for the server's own peer connections."""
    ice_gather_timeout_s: float = 10.0
    ice_connect_timeout_s: float = 30.0
    """A server peer whose ICE has not connected this long after its answer is closed."""
    waiting_timeout_s: float = 900.0
    """A waiting call whose caller has had no live connection this long ends as abandoned."""
    max_waiting: int = 500
    """Waiting calls beyond this are refused with 503 queue_full."""
    rate_limit_storage: str = "memory://"
    """Where rate-limit counters live (a `limits` storage URI: memory://, redis://host:port)."""
    login_limit_user: str = "5/minute"
    """Failed logins allowed per username (a `limits` string: N/second|minute|hour)."""
    login_limit_address: str = "20/minute"
    """Failed logins allowed per client address."""
    customer_limit_address: str = "30/minute"
    """Customer sessions, and separately calls, created per client address."""
    trusted_proxies: tuple[str, ...] = ()
    """Reverse proxies whose X-Forwarded-For names the client address."""
    max_streams_per_call: int = 10
    """Concurrent SSE streams of one call."""
    redact: bool = True
    """Redact card numbers, security codes and SSNs from everything stored or sent, and
    silence them in recordings (`CALLASSIST_REDACT=off` to keep them; server/redaction.py)."""
    public_url: str = ""
    """The base URL the outside world uses (`https://cc.example.com`): Twilio signs its
    webhooks against it and the phone stream URL is built from it."""
    twilio_auth_token: str = ""
    """The Twilio account's auth token; empty switches the `/twilio/` routes off (404)."""
    redis_url: str = ""
    """`redis://host:port/db`: this process is one node of a cluster (docs/scaling.md);
    empty means it runs alone."""
    node_url: str = ""
    """This node's base URL as the other nodes reach it; empty means `http://HOST:PORT`."""
    node_ttl_s: float = 10.0
    """A node that has not refreshed its presence this long is dead; its calls' leases
    lapse with it and any node may take them over."""
    metrics_address: str = ""
    """`host:port` for an unauthenticated `/metrics` listener; empty: `/metrics` on the main
    port needs an admin token."""
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    assist: AssistSettings = field(default_factory=AssistSettings)
    tts: TextToSpeechSettings = field(default_factory=TextToSpeechSettings)
    voice_agent: VoiceAgentSettings = field(default_factory=VoiceAgentSettings)

    @property
    def clustered(self) -> bool:
        return bool(self.redis_url)

    @property
    def own_url(self) -> str:
        return self.node_url or f"http://{self.host}:{self.port}"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'callassist.db').resolve()}"

    def with_overrides(self, **kwargs: Any) -> Settings:
        return replace(self, **kwargs)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    from limits import parse

    raw = env.get(name, "").strip() or default
    try:
        parse(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a rate such as 5/minute, got {raw!r}") from None
    return raw


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def load_settings(
    env: Mapping[str, str] | None = None, **flags: Any
) -> Settings:
    """Build Settings from the environment; keyword flags (not None) win."""
    env = os.environ if env is None else env
    openai_key = env.get("OPENAI_API_KEY", "")
    openai_base = env.get("OPENAI_BASE_URL", "")
    speech = SpeechSettings(
        engine=_choice(env, "CALLASSIST_STT_ENGINE", "local", ("local", "openai", "off")),
        model_path=env.get("CALLASSIST_STT_MODEL_PATH", ""),
        compute_type=env.get("CALLASSIST_STT_COMPUTE_TYPE", "int8"),
        threads=_int(env, "CALLASSIST_STT_THREADS", 1),
        workers=_int(env, "CALLASSIST_STT_WORKERS", 1),
        batch_max=_int(env, "CALLASSIST_STT_BATCH_MAX", 8),
        batch_wait_ms=_int(env, "CALLASSIST_STT_BATCH_WAIT_MS", 10),
        beam_size=_int(env, "CALLASSIST_STT_BEAM_SIZE", 1),
        language=env.get("CALLASSIST_STT_LANGUAGE", "en"),
        local_decoding=_choice(
            env, "CALLASSIST_STT_LOCAL_DECODING", "real_length", ("real_length", "padded")
        ),
        openai_model=env.get("CALLASSIST_STT_OPENAI_MODEL", "whisper-1"),
        openai_base_url=env.get("CALLASSIST_STT_BASE_URL", openai_base),
        openai_api_key=env.get("CALLASSIST_STT_API_KEY", openai_key),
        timeout_s=_float(env, "CALLASSIST_STT_TIMEOUT", 10.0),
        vad_aggressiveness=_int(env, "CALLASSIST_VAD_AGGRESSIVENESS", 2),
        silence_ms=_int(env, "CALLASSIST_VAD_SILENCE_MS", 300),
        endpoint_silence_ms=_int(env, "CALLASSIST_ENDPOINT_SILENCE_MS", 180),
        preroll_ms=_int(env, "CALLASSIST_VAD_PREROLL_MS", 200),
        max_segment_ms=_int(env, "CALLASSIST_MAX_SEGMENT_MS", 15000),
        interim_interval_ms=_int(env, "CALLASSIST_INTERIM_INTERVAL_MS", 1000),
        queue_max_segments=_int(env, "CALLASSIST_STT_QUEUE_MAX", 6),
        record_audio=_bool(env, "CALLASSIST_RECORD_AUDIO", False),
    )
    if not 0 <= speech.vad_aggressiveness <= 3:
        raise ConfigError("CALLASSIST_VAD_AGGRESSIVENESS must be 0..3")
    assist = AssistSettings(
        engine=_choice(env, "CALLASSIST_ASSIST_ENGINE", "local", ("local", "openai", "off")),
        openai_model=env.get("CALLASSIST_LLM_MODEL", "gpt-4o-mini"),
        openai_base_url=env.get("CALLASSIST_LLM_BASE_URL", openai_base),
        openai_api_key=env.get("CALLASSIST_LLM_API_KEY", openai_key),
        timeout_s=_float(env, "CALLASSIST_LLM_TIMEOUT", 8.0),
        debounce_ms=_int(env, "CALLASSIST_SUGGEST_DEBOUNCE_MS", 500),
        settle_ms=_int(env, "CALLASSIST_SUGGEST_SETTLE_MS", 60),
        history_turns=_int(env, "CALLASSIST_HISTORY_TURNS", 12),
    )
    tts = TextToSpeechSettings(
        engine=_choice(env, "CALLASSIST_TTS_ENGINE", "local", ("local", "openai")),
        model_path=env.get("CALLASSIST_TTS_MODEL_PATH", ""),
        threads=_int(env, "CALLASSIST_TTS_THREADS", 1),
        length_scale=_float(env, "CALLASSIST_TTS_LENGTH_SCALE", 0.0),
        openai_model=env.get("CALLASSIST_TTS_OPENAI_MODEL", "tts-1"),
        openai_voice=env.get("CALLASSIST_TTS_VOICE", "alloy"),
        openai_base_url=env.get("CALLASSIST_TTS_BASE_URL", openai_base),
        openai_api_key=env.get("CALLASSIST_TTS_API_KEY", openai_key),
        openai_format=_choice(env, "CALLASSIST_TTS_FORMAT", "pcm", ("pcm", "wav")),
        openai_pcm_rate=_int(env, "CALLASSIST_TTS_PCM_RATE", 24000),
        timeout_s=_float(env, "CALLASSIST_TTS_TIMEOUT", 10.0),
    )
    if tts.threads < 1:
        raise ConfigError(f"CALLASSIST_TTS_THREADS must be at least 1, got {tts.threads}")
    if tts.length_scale < 0:
        raise ConfigError("CALLASSIST_TTS_LENGTH_SCALE must be 0 (the voice's own) or more")
    if not 8000 <= tts.openai_pcm_rate <= 48000:
        raise ConfigError(
            f"CALLASSIST_TTS_PCM_RATE must be 8000..48000 Hz, got {tts.openai_pcm_rate}"
        )
    if tts.timeout_s <= 0:
        raise ConfigError("CALLASSIST_TTS_TIMEOUT must be a positive number of seconds")
    demo = flags.get("demo")
    demo = _bool(env, "CALLASSIST_DEMO", False) if demo is None else bool(demo)
    voice_agent = VoiceAgentSettings(
        # The demo shows the whole product: a caller nobody takes meets the voice agent.
        mode=_choice(
            env, "CALLASSIST_VOICE_AGENT", "overflow" if demo else "off", VOICE_AGENT_MODES
        ),
        after_s=_float(env, "CALLASSIST_VOICE_AGENT_AFTER_S", 20.0),
    )
    if not 0 <= voice_agent.after_s <= 24 * 3600:
        raise ConfigError(
            "CALLASSIST_VOICE_AGENT_AFTER_S must be 0..86400 seconds, "
            f"got {voice_agent.after_s:g}"
        )
    settings = Settings(
        host=env.get("CALLASSIST_HOST", "127.0.0.1"),
        port=_int(env, "CALLASSIST_PORT", 8080),
        data_dir=Path(env.get("CALLASSIST_DATA_DIR", "./data")),
        demo=_bool(env, "CALLASSIST_DEMO", False),
        database_url=env.get("DATABASE_URL", env.get("CALLASSIST_DATABASE_URL", "")),
        secret_key=env.get("CALLASSIST_SECRET_KEY", ""),
        token_ttl_s=_int(env, "CALLASSIST_TOKEN_TTL", 12 * 3600),
        max_body_bytes=_int(env, "CALLASSIST_MAX_BODY_BYTES", 256 * 1024),
        ice_hosts=_csv(env.get("CALLASSIST_ICE_HOSTS", "")),
        stun_urls=_csv(env.get("CALLASSIST_STUN_URLS", "")),
        turn_urls=_csv(env.get("CALLASSIST_TURN_URLS", "")),
        turn_secret=env.get("CALLASSIST_TURN_SECRET", ""),
        turn_ttl_s=_int(env, "CALLASSIST_TURN_TTL", 3600),
        ice_transport_policy=_choice(
            env, "CALLASSIST_ICE_TRANSPORT_POLICY", "all", ("all", "relay")
        ),
        ice_gather_timeout_s=_float(env, "CALLASSIST_ICE_GATHER_TIMEOUT", 10.0),
        ice_connect_timeout_s=_float(env, "CALLASSIST_ICE_CONNECT_TIMEOUT_S", 30.0),
        waiting_timeout_s=_float(env, "CALLASSIST_WAITING_TIMEOUT_S", 900.0),
        max_waiting=_int(env, "CALLASSIST_MAX_WAITING", 500),
        # Several nodes count together in their Redis unless told otherwise.
        rate_limit_storage=env.get("CALLASSIST_RATE_LIMIT_STORAGE", "")
        or env.get("CALLASSIST_REDIS_URL", "").strip()
        or "memory://",
        login_limit_user=_rate(env, "CALLASSIST_LOGIN_LIMIT_USER", "5/minute"),
        login_limit_address=_rate(env, "CALLASSIST_LOGIN_LIMIT_ADDRESS", "20/minute"),
        customer_limit_address=_rate(env, "CALLASSIST_CUSTOMER_LIMIT_ADDRESS", "30/minute"),
        trusted_proxies=_csv(env.get("CALLASSIST_TRUSTED_PROXIES", "")),
        max_streams_per_call=_int(env, "CALLASSIST_MAX_STREAMS_PER_CALL", 10),
        redact=_bool(env, "CALLASSIST_REDACT", True),
        public_url=env.get("CALLASSIST_PUBLIC_URL", "").strip().rstrip("/"),
        twilio_auth_token=env.get("CALLASSIST_TWILIO_AUTH_TOKEN", "").strip(),
        redis_url=env.get("CALLASSIST_REDIS_URL", "").strip(),
        node_url=env.get("CALLASSIST_NODE_URL", "").strip().rstrip("/"),
        node_ttl_s=_float(env, "CALLASSIST_NODE_TTL_S", 10.0),
        metrics_address=env.get("CALLASSIST_METRICS_ADDRESS", "").strip(),
        speech=speech,
        assist=assist,
        tts=tts,
        voice_agent=voice_agent,
    )
    for url in settings.stun_urls + settings.turn_urls:
        if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
            raise ConfigError(f"ICE server URL must start with stun: or turn:, got {url!r}")
    if settings.secret_key and len(settings.secret_key.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"CALLASSIST_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes "
            "(e.g. the output of: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    if settings.ice_connect_timeout_s <= 0 or settings.waiting_timeout_s <= 0:
        raise ConfigError(
            "CALLASSIST_ICE_CONNECT_TIMEOUT_S and CALLASSIST_WAITING_TIMEOUT_S must be positive"
        )
    if settings.max_waiting < 1 or settings.max_streams_per_call < 1:
        raise ConfigError("CALLASSIST_MAX_WAITING and CALLASSIST_MAX_STREAMS_PER_CALL must be at least 1")
    if settings.turn_urls and not settings.turn_secret:
        raise ConfigError(
            "CALLASSIST_TURN_SECRET is required with CALLASSIST_TURN_URLS "
            "(the same value as coturn's static-auth-secret)"
        )
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"CALLASSIST_PUBLIC_URL must start with http:// or https://, got {settings.public_url!r}"
        )
    if settings.twilio_auth_token and not settings.public_url:
        raise ConfigError(
            "CALLASSIST_PUBLIC_URL is required with CALLASSIST_TWILIO_AUTH_TOKEN "
            "(Twilio signs its webhooks against the public URL)"
        )
    _check_cluster(settings)
    overrides = {k: v for k, v in flags.items() if v is not None}
    if "data_dir" in overrides:
        overrides["data_dir"] = Path(overrides["data_dir"])
    return replace(settings, **overrides)


def _check_cluster(settings: Settings) -> None:
    if settings.metrics_address:
        host, _, port = settings.metrics_address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"CALLASSIST_METRICS_ADDRESS must be host:port, got {settings.metrics_address!r}"
            )
    if not settings.redis_url:
        return
    if not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"CALLASSIST_REDIS_URL must start with redis://, rediss:// or unix://, "
            f"got {settings.redis_url!r}"
        )
    if not settings.secret_key:
        raise ConfigError(
            "CALLASSIST_SECRET_KEY is required with CALLASSIST_REDIS_URL: every node signs "
            "and checks tokens with the same key"
        )
    if settings.node_url and not settings.node_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"CALLASSIST_NODE_URL must start with http:// or https://, got {settings.node_url!r}"
        )
    if settings.node_ttl_s < 1:
        raise ConfigError("CALLASSIST_NODE_TTL_S must be at least 1 (seconds)")
    if not settings.database_url or settings.database_url.startswith("sqlite"):
        raise ConfigError(
            "DATABASE_URL must name a shared database (postgresql+asyncpg://...) with "
            "CALLASSIST_REDIS_URL: the nodes share one store"
        )


def resolve_secret_key(settings: Settings) -> str:
    """The token signing key: from settings, else generated once and kept in the data dir.

    A kept key that is empty or short (a truncated write, a hand edit) is refused rather
    than used: signing with it would make every login fail while /health says ok.
    """
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    try:
        return _checked_key(path, path.read_text().strip())
    except FileNotFoundError:
        pass
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Written whole to a private temp file, then linked into place: link() fails if the
    # name exists, so when two processes race one key wins and nobody reads half a file.
    fd, tmp = tempfile.mkstemp(dir=settings.data_dir, prefix=".secret_key.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _checked_key(path, path.read_text().strip())
    finally:
        os.unlink(tmp)
    return key


def _checked_key(path: Path, key: str) -> str:
    if len(key.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{path} holds {'no' if not key else 'a too short'} token signing key "
            f"(at least {MIN_SECRET_BYTES} bytes are needed): delete the file to generate a "
            "new key (everyone logs in again), or set CALLASSIST_SECRET_KEY"
        )
    return key
