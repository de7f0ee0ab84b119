"""Abuse limits (API.md "Identity and limits"): failed logins per username and per client
address, customer sessions and calls per client address.

The counters are fixed windows of the `limits` library. They live in the storage that
`CALLASSIST_RATE_LIMIT_STORAGE` names: `memory://` (this process) by default; a
`redis://host:port/db` URI shares them between server processes, which several nodes need.
A refused request changes nothing and gets 429 `rate_limited` with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import time
from collections.abc import AsyncIterator

from aiohttp import web
from limits import RateLimitItem, parse
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from server.config import Settings
from server.errors import ApiError


class RateLimited(ApiError):
    def __init__(self, retry_after_s: int, what: str) -> None:
        super().__init__(429, "rate_limited", f"too many {what}; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(retry_after_s)}


class Limits:
    def __init__(self, settings: Settings) -> None:
        uri = settings.rate_limit_storage
        # The asyncio flavour of each storage: a Redis round trip must not block the loop.
        if not uri.startswith("async+"):
            uri = f"async+{uri}"
        options = {"implementation": "redispy"} if uri.startswith(("async+redis", "async+rediss")) else {}
        self._storage = storage_from_string(uri, **options)
        self._limiter = FixedWindowRateLimiter(self._storage)  # type: ignore[arg-type]
        self.login_user = parse(settings.login_limit_user)
        self.login_address = parse(settings.login_limit_address)
        self.customer_address = parse(settings.customer_limit_address)

    async def hit(self, item: RateLimitItem, scope: str, key: str, what: str) -> None:
        """Count one request; past the limit, undo the count and raise RateLimited."""
        if not await self._limiter.hit(item, scope, key):
            await self._limiter.hit(item, scope, key, cost=-1)
            raise await self._limited(item, scope, key, what)

    @contextlib.asynccontextmanager
    async def login_attempt(self, username: str, address: str) -> AsyncIterator[None]:
        """Counts the attempt as a failure up front, so that a burst of concurrent guesses
        cannot all start before the first one fails; a login that succeeds (or is refused
        for another reason than its credentials) gives its count back."""
        counted: list[tuple[RateLimitItem, str, str]] = []
        try:
            for item, scope, key in (
                (self.login_address, "login-address", address),
                (self.login_user, "login-user", username),
            ):
                await self.hit(item, scope, key, "failed logins")
                counted.append((item, scope, key))
            yield
        except ApiError as exc:
            if exc.status == 401:
                raise  # a wrong password: it stays counted
            await self._give_back(counted)
            raise
        except BaseException:
            await self._give_back(counted)
            raise
        else:
            await self._give_back(counted)

    async def _give_back(self, counted: list[tuple[RateLimitItem, str, str]]) -> None:
        for item, scope, key in counted:
            await self._limiter.hit(item, scope, key, cost=-1)

    async def _limited(self, item: RateLimitItem, scope: str, key: str, what: str) -> RateLimited:
        stats = await self._limiter.get_window_stats(item, scope, key)
        return RateLimited(max(1, math.ceil(stats.reset_time - time.time())), what)

    async def close(self) -> None:
        # The memory storage expires counters from a task of its own.
        timer = getattr(self._storage, "timer", None)
        if isinstance(timer, asyncio.Task) and not timer.done():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer


def client_address(request: web.Request, trusted_proxies: tuple[str, ...]) -> str:
    """The client's IP: the peer's address, or, when the peer is a trusted reverse proxy,
    the last address in X-Forwarded-For that is not one of our proxies."""
    peer = request.remote or "unknown"
    if peer not in trusted_proxies:
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop in trusted_proxies:
            continue
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            break  # a forged or garbled entry: the proxy's own view is all we trust
    return peer
