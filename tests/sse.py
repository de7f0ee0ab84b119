"""A Server-Sent Events client for the tests: a call's stream or the calls list's stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp


class SseReader:
    """Reads `url` with a bearer token in the background, collecting the events' data."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.ended = asyncio.Event()
        self.opened = asyncio.Event()
        """Set once the server answered 200 (the stream is subscribed)."""
        self.answered = asyncio.Event()
        self.status: int | None = None
        self.error: Any = None
        self._changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._read(http, url, token))

    async def _read(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        try:
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                self.status = r.status
                if r.status != 200:
                    self.error = await r.json(content_type=None)
                    return
                self.opened.set()
                self.answered.set()
                async for raw in r.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
                        self._changed.set()
        finally:
            self.answered.set()
            self.ended.set()
            self._changed.set()

    async def wait_open(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.answered.wait(), timeout)
        assert self.status == 200, (self.status, self.error)

    async def wait_for(self, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first event (already read or still to come) for which `check` is true."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if check(event):
                        return event
                assert not self.ended.is_set(), f"the stream ended: {self.events}"
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await self._task
