"""Fixtures that build real things: a server on a free loopback port, real aiortc peers."""

from __future__ import annotations

import asyncio
import math
import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from server.app import create_app
from server.auth import add_user
from server.config import Settings, load_settings
from server.keys import STORE
from server.qa import Participant, customer_session, encode_wav_to_opus, login
from signaling.ice import restrict_host_addresses
from tests.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures

FIXTURES = Path(__file__).parent / "fixtures"
PASSWORD = "correct horse battery"

BASE_ENV = {
    "CALLASSIST_ICE_HOSTS": "127.0.0.1",
    "CALLASSIST_STT_ENGINE": "off",
    "CALLASSIST_ASSIST_ENGINE": "off",
    "CALLASSIST_SECRET_KEY": "test-secret-key-0123456789abcdef",
}


@pytest.fixture(autouse=True)
def _loopback_only() -> None:
    # Media in tests stays on loopback (the server sets this too, from its settings).
    restrict_host_addresses(["127.0.0.1"])


def make_settings(data_dir: Path, **env: str) -> Settings:
    return load_settings(env={**BASE_ENV, **env}, data_dir=data_dir, port=0)


# Runs a test on SQLite and on a real PostgreSQL (tests/postgres.py): its `settings` (and so
# `running`) use the database named by the `db` parameter.
both_databases = pytest.mark.parametrize(
    "db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def db(request: pytest.FixtureRequest) -> str:
    """`sqlite` unless the test is marked `@both_databases`."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def database_env(db: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that selects the database: nothing for SQLite in the data dir."""
    if db == "postgres":
        return {"DATABASE_URL": request.getfixturevalue("postgres_url")}
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_env: dict[str, str]) -> Settings:
    return make_settings(tmp_path / "data", **database_env)


class Api:
    """A thin JSON client for the REST API."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url

    async def call(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base_url + path, headers=headers, **kwargs) as r:
            return r.status, await r.json(content_type=None)


class Running:
    """A running server with helpers to create accounts and join calls."""

    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.url = str(server.make_url("")).rstrip("/")
        self.api = Api(http, self.url)
        self._participants: list[Participant] = []

    @property
    def store(self) -> Any:
        return self.server.app[STORE]

    async def agent(self, name: str = "alice", role: str = "agent") -> str:
        await add_user(self.store, name, PASSWORD, role)
        return await login(self.http, self.url, name, PASSWORD)

    async def customer(self, name: str = "Ann", **kwargs: Any) -> dict[str, Any]:
        return await customer_session(self.http, self.url, name, **kwargs)

    async def new_call(self, customer_token: str, reason: str = "help") -> str:
        status, body = await self.api.call("POST", "/api/calls", customer_token, json={"reason": reason})
        assert status == 201, body
        return str(body["call_id"])

    def participant(self, token: str, role: str, **kwargs: Any) -> Participant:
        p = Participant(self.url, token, role, http=self.http, **kwargs)
        self._participants.append(p)
        return p

    async def close(self) -> None:
        for p in self._participants:
            await p.close()


async def start_server(settings: Settings) -> TestServer:
    server = TestServer(create_app(settings), host="127.0.0.1", port=0)
    await server.start_server()
    return server


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Running]:
    """A real server on a free loopback port for the duration of the block."""
    server = await start_server(settings)
    try:
        async with aiohttp.ClientSession() as http:
            run = Running(server, http)
            try:
                yield run
            finally:
                await run.close()
    finally:
        await server.close()


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[Running]:
    async with serving(settings) as run:
        yield run


async def wait_for_audio(participant: Participant, min_packets: int = 100, within_s: float = 15.0) -> None:
    """Until `participant` has received `min_packets` audio packets (asserts within time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while participant.received.packets < min_packets:  # noqa: ASYNC110 - counting packets
        assert loop.time() < deadline, (
            f"{participant.role} received only {participant.received.packets} packets"
        )
        await asyncio.sleep(0.1)


def write_tone(path: Path, freq: float, seconds: float, rate: int = 48000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    data = (0.4 * 32767 * np.sin(2 * math.pi * freq * t)).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data.tobytes())
    return path


@pytest.fixture
def tone_packets(tmp_path: Path) -> Callable[[float, float], list[bytes]]:
    def make(freq: float, seconds: float = 6.0) -> list[bytes]:
        return encode_wav_to_opus(write_tone(tmp_path / f"tone{freq}.wav", freq, seconds))

    return make


def dominant_frequency(pcm: np.ndarray, rate: int = 48000) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


@asynccontextmanager
async def loopback_server(app: Any) -> AsyncIterator[str]:
    """An aiohttp app (an OpenAI-compatible stand-in, ...) on a free loopback port, for the
    block; yields its `/v1` base URL."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()
