"""The SSE listeners of every call on this node, fed by the call's owner wherever it runs.

A call's session (on the node that holds its media) hands every event to `publish`: this
node's listeners get it at once, and with a cluster it goes out on the call's Redis channel
to the listeners on the other nodes. A listener subscribes before it reads the call's
history, so nothing falls between the two; it drops what the history already had by `seq`.

When the fan-out lost messages (Redis went away), every remote listener of the call gets
`None` (its stream ends): the client reconnects and reads the history again instead of
silently missing events.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from server.cluster import Cluster, ClusterUnavailable
from server.events import visible_to


@dataclass(eq=False)
class Subscriber:
    """An SSE listener; `None` on the queue means the stream is over."""

    call_id: str
    role: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


class EventBus:
    def __init__(self, cluster: Cluster | None = None) -> None:
        self.cluster = cluster
        self._subscribers: dict[str, list[Subscriber]] = {}
        if cluster is not None:
            cluster.on_message = self._on_remote
            cluster.on_reconnect = self._reset_all

    def count(self, call_id: str) -> int:
        return len(self._subscribers.get(call_id, ()))

    async def subscribe(self, call_id: str, role: str) -> Subscriber:
        sub = Subscriber(call_id, role)
        subs = self._subscribers.setdefault(call_id, [])
        subs.append(sub)
        if self.cluster is not None and len(subs) == 1:
            try:
                await self.cluster.listen(call_id)
            except ClusterUnavailable:
                self.unsubscribe(sub)
                raise
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subscribers.get(sub.call_id, [])
        with contextlib.suppress(ValueError):
            subs.remove(sub)
        if not subs and self._subscribers.pop(sub.call_id, None) is not None and self.cluster:
            task = asyncio.ensure_future(self.cluster.unlisten(sub.call_id))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def publish(self, call_id: str, event: dict[str, Any]) -> None:
        self._deliver(call_id, event)
        if self.cluster is not None:
            self.cluster.publish(call_id, {"e": event})

    def end(self, call_id: str) -> None:
        """The call is over: its streams end, here and on every node."""
        self._end_local(call_id)
        if self.cluster is not None:
            self.cluster.publish(call_id, {"end": True})

    def close(self) -> None:
        for call_id in list(self._subscribers):
            self._end_local(call_id)

    def _deliver(self, call_id: str, event: dict[str, Any]) -> None:
        for sub in self._subscribers.get(call_id, ()):
            if visible_to(event, sub.role):  # type: ignore[arg-type]
                sub.queue.put_nowait(event)

    def _end_local(self, call_id: str) -> None:
        for sub in self._subscribers.get(call_id, ()):
            sub.queue.put_nowait(None)

    def _on_remote(self, call_id: str, message: dict[str, Any]) -> None:
        if "e" in message:
            self._deliver(call_id, message["e"])
        elif message.get("end") or message.get("reset"):
            self._end_local(call_id)

    def _reset_all(self) -> None:
        self.close()
