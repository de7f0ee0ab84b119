"""Abandoned waiting calls: a waiting call whose caller has had no live connection for
`CALLASSIST_WAITING_TIMEOUT_S` ends with `call_state` `{"state": "ended", "reason":
"abandoned"}`, so that the queue holds only callers who are still there.

A caller on the line is never dropped, however long it waits. A call this process holds no
live session for (created before a restart, or by another process) counts from its
creation or from this process's start, whichever is later: we cannot know more.
"""

from __future__ import annotations

import asyncio
import logging

from sqlmodel import col, select

from server.cluster import Elsewhere
from server.events import now_ms
from server.hub import CallHub
from server.models import Call

log = logging.getLogger(__name__)


class WaitingReaper:
    def __init__(self, hub: CallHub, timeout_s: float) -> None:
        self._hub = hub
        self._timeout_ms = int(timeout_s * 1000)
        # Sweeps often enough that a call outlives its timeout by at most a quarter of it.
        self._interval_s = min(30.0, max(0.2, timeout_s / 4))
        self._started_ms = now_ms()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweeping abandoned waiting calls failed; trying again later")

    async def sweep(self) -> list[str]:
        """End the abandoned waiting calls; returns their ids."""
        cutoff = now_ms() - self._timeout_ms
        async with self._hub.store.session() as session:
            rows = (
                await session.exec(
                    select(Call.id, Call.created_at).where(
                        Call.state == "waiting", col(Call.created_at) < cutoff
                    )
                )
            ).all()
        ended = []
        for call_id, created_at in rows:
            live = self._hub.get_live(call_id)
            if live is not None:
                if live.caller_live():
                    continue
                seen = live.caller_seen_ms
            else:
                seen = max(created_at, self._started_ms)
            if seen >= cutoff:
                continue
            try:
                if await self._hub.end_call(call_id, reason="abandoned"):
                    log.info("call %s: abandoned in the queue; ended", call_id)
                    ended.append(call_id)
            except Elsewhere:
                continue  # a live node holds it: its own sweep decides
        return ended
