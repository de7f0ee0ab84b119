"""A server with Twilio configured, and the Twilio simulator (server/qa_phone.py) against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from server.qa_phone import TwilioCaller
from tests.conftest import Running, make_settings, serving

AUTH_TOKEN = "twilio-test-auth-token-0123456789"
PUBLIC_URL = "http://callassist.test"  # what Twilio sees; the proxy in front is loopback here


def phone_settings(data_dir: Path, **env: str) -> Any:
    return make_settings(
        data_dir,
        CALLASSIST_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        CALLASSIST_PUBLIC_URL=PUBLIC_URL,
        **env,
    )


@pytest.fixture
async def phone_server(tmp_path: Path) -> AsyncIterator[Running]:
    async with serving(phone_settings(tmp_path / "data")) as run:
        yield run


@pytest.fixture
async def make_caller(phone_server: Running) -> AsyncIterator[Callable[..., TwilioCaller]]:
    callers: list[TwilioCaller] = []

    def make(**kwargs: Any) -> TwilioCaller:
        caller = TwilioCaller(
            phone_server.url, AUTH_TOKEN, public_url=PUBLIC_URL, http=phone_server.http, **kwargs
        )
        callers.append(caller)
        return caller

    yield make
    for caller in callers:
        await caller.close()
