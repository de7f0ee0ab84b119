"""The live calls of this process; each is a CallSession, made on first use."""

from __future__ import annotations

import asyncio

from server.errors import not_found
from server.identity import is_verified
from server.models import Call
from server.services import Services
from server.session import CallSession
from server.store import Store

__all__ = ["CallHub", "Services"]


class CallHub:
    def __init__(self, store: Store, services: Services) -> None:
        self.store = store
        self.services = services
        self._sessions: dict[str, CallSession] = {}
        self._lock = asyncio.Lock()

    async def load_call(self, call_id: str) -> Call:
        async with self.store.session() as session:
            call = await session.get(Call, call_id)
        if call is None:
            raise not_found(f"no call {call_id!r}", "call_not_found")
        return call

    async def session(self, call_id: str) -> CallSession:
        """The live session of a call, created on first use (also after a restart)."""
        live = self._sessions.get(call_id)
        if live is not None:
            return live
        async with self._lock:
            live = self._sessions.get(call_id)
            if live is not None:
                return live
            call = await self.load_call(call_id)
            live = CallSession(call, self.store, self.services)
            if call.state != "ended":
                live.on_closed = self._forget
                self._sessions[call_id] = live
                live.caller_verified = await is_verified(self.store, call_id)
                live.resume()
            return live

    async def end_call(self, call_id: str, reason: str | None = None) -> bool:
        """End a call that is not ended yet (False if it already was); the session does it."""
        live = await self.session(call_id)
        return await live.end(reason)

    def get_live(self, call_id: str) -> CallSession | None:
        return self._sessions.get(call_id)

    def _forget(self, live: CallSession) -> None:
        if self._sessions.get(live.call_id) is live:
            del self._sessions[live.call_id]

    @property
    def live_count(self) -> int:
        return len(self._sessions)

    async def close(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
