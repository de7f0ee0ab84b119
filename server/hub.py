"""The live calls of this process and the services they share (engines, ICE settings)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration
from sqlalchemy import update
from sqlmodel import col

from server.config import Settings
from server.errors import not_found
from server.events import now_ms
from server.identity import is_verified
from server.models import Call
from server.session import CallSession
from server.store import Store
from signaling.ice import ice_servers, rtc_configuration


@dataclass
class Services:
    """What a CallSession needs from the process; `None` factories switch a stage off."""

    settings: Settings
    speech_pipeline: Callable[..., Any] | None = None
    transcriber: Callable[..., Any] | None = None
    assistant: Callable[..., Any] | None = None

    def rtc_configuration(self) -> RTCConfiguration:
        s = self.settings
        servers = ice_servers(s.stun_urls, s.turn_urls, s.turn_secret, s.turn_ttl_s, "callassist-server")
        return rtc_configuration(servers, s.ice_transport_policy)


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
        """End a call that is not ended yet (False if it already was)."""
        async with self.store.write() as session:
            result = await session.execute(
                update(Call)
                .where(col(Call.id) == call_id, col(Call.state) != "ended")
                .values(state="ended", ended_at=now_ms())
            )
            changed = result.rowcount == 1  # type: ignore[attr-defined]
        if changed:
            live = await self.session(call_id)
            await live.on_ended(await self.load_call(call_id), reason=reason)
        return changed

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
