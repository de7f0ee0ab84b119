"""The calls whose media this process holds; each is a CallSession, made on first use.

Alone, a process holds every call it touches. As a node of a cluster (server/cluster.py) it
holds a call only with the call's lease: `session()` takes it (or takes it over from a dead
node) and raises Elsewhere when a live node holds it, so that the request goes there.
"""

from __future__ import annotations

import asyncio
import logging

from server.cluster import Cluster
from server.errors import not_found
from server.fanout import EventBus
from server.identity import is_verified
from server.metrics import Metrics
from server.models import Call
from server.services import Services
from server.session import CallSession
from server.store import Store

__all__ = ["CallHub", "Services"]

log = logging.getLogger(__name__)

PHONE_STREAM_GRACE_S = 15.0
"""After taking over a phone call: how long a Twilio stream may take to join (Twilio opens
it within seconds of the webhook) before the call ends as lost."""


class CallHub:
    def __init__(
        self,
        store: Store,
        services: Services,
        *,
        bus: EventBus | None = None,
        cluster: Cluster | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.services = services
        self.cluster = cluster
        self.bus = bus if bus is not None else EventBus(cluster)
        self.metrics = metrics
        self._sessions: dict[str, CallSession] = {}
        self._lock = asyncio.Lock()
        if cluster is not None:
            cluster.on_lost = self._lost

    async def load_call(self, call_id: str) -> Call:
        async with self.store.session() as session:
            call = await session.get(Call, call_id)
        if call is None:
            raise not_found(f"no call {call_id!r}", "call_not_found")
        return call

    async def session(self, call_id: str) -> CallSession:
        """The live session of a call, created on first use (also after a restart, or when
        taking over a dead node's call). Raises Elsewhere if another live node holds it."""
        live = self._sessions.get(call_id)
        if live is not None:
            return live
        async with self._lock:
            live = self._sessions.get(call_id)
            if live is not None:
                return live
            call = await self.load_call(call_id)
            if call.state == "ended":
                return self._new(call)
            dead_owner = None
            if self.cluster is not None:
                dead_owner = await self.cluster.acquire(call_id)  # Elsewhere: not ours
                call = await self.load_call(call_id)  # as the last owner left it
            live = self._new(call)
            live.on_closed = self._forget
            self._sessions[call_id] = live
            live.caller_verified = await is_verified(self.store, call_id)
            await live.restore()
            live.resume()
            if dead_owner is not None:
                log.warning("took call %s over from node %s, which died", call_id, dead_owner)
                if self.metrics is not None:
                    self.metrics.takeovers.inc()
                if call.channel == "phone":
                    live.expect_phone_caller(PHONE_STREAM_GRACE_S)
            return live

    def _new(self, call: Call) -> CallSession:
        return CallSession(call, self.store, self.services, bus=self.bus, metrics=self.metrics)

    async def end_call(self, call_id: str, reason: str | None = None) -> bool:
        """End a call that is not ended yet (False if it already was); the session does it.
        Raises Elsewhere when another node holds the call."""
        live = await self.session(call_id)
        return await live.end(reason)

    def get_live(self, call_id: str) -> CallSession | None:
        return self._sessions.get(call_id)

    def voice_agent_here(self, call_id: str) -> bool | None:
        """Whether the voice agent talks in a call this process holds; None if it holds none."""
        live = self._sessions.get(call_id)
        return None if live is None else live.voice_agent is not None

    def live_sessions(self) -> list[CallSession]:
        return list(self._sessions.values())

    def _forget(self, live: CallSession) -> None:
        if self._sessions.get(live.call_id) is live:
            del self._sessions[live.call_id]
            if self.cluster is not None and live.call_id in self.cluster.owned:
                task = asyncio.ensure_future(self.cluster.release(live.call_id))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _lost(self, call_id: str, why: str) -> None:
        live = self._sessions.pop(call_id, None)
        if live is None:
            return
        if self.metrics is not None:
            self.metrics.dropped.labels(why).inc()
        await live.drop(
            "call_moved",
            "this server lost the call to another one; reconnecting moves you there",
        )

    @property
    def live_count(self) -> int:
        return len(self._sessions)

    async def close(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        if self.cluster is not None:
            for session in sessions:
                await self.cluster.release(session.call_id)
        self.bus.close()
