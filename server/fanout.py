"""The SSE listeners of every call on this node, fed by the call's owner wherever it runs.

A call's session (on the node that holds its media) hands every event to `publish`: this
node's listeners get it at once, and with a cluster it goes out on the call's Redis channel
to the listeners on the other nodes. A listener subscribes before it reads the call's
history, so nothing falls between the two; it drops what the history already had by `seq`.

When the fan-out lost messages (Redis went away), every remote listener of the call gets
`None` (its stream ends): the client reconnects and reads the history again instead of
silently missing events.

The calls list's streams (`GET /api/calls/events`, server/calllist.py) are listeners of the
same kind for every call at once: each session hands its list changes to `publish_list`,
which reaches this node's list listeners and, with a cluster, every other node's over one
Redis channel that every node listens on.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from server.cluster import Cluster, ClusterUnavailable
from server.errors import ApiError
from server.events import visible_to


class TooManyStreams(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(429, "too_many_streams", f"this call already has {limit} event streams open")


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
        self._list_subscribers: list[Subscriber] = []
        self._listening: dict[str, asyncio.Future[None]] = {}
        self._counting = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        if cluster is not None:
            cluster.on_message = self._on_remote
            cluster.on_list_message = self._on_remote_list
            cluster.on_reconnect = self._reset_all

    def count(self, call_id: str) -> int:
        return len(self._subscribers.get(call_id, ()))

    async def subscribe(self, call_id: str, role: str, limit: int | None = None) -> Subscriber:
        """A listener of the call's events from now on. With `limit`, at most that many
        listeners of the call: on this node alone, on every node together in a cluster
        (else TooManyStreams)."""
        sub = Subscriber(call_id, role)
        subs = self._subscribers.setdefault(call_id, [])
        subs.append(sub)
        try:
            if self.cluster is not None:
                listening = self._listening.get(call_id)
                if listening is None:
                    listening = asyncio.ensure_future(self.cluster.listen(call_id))
                    self._listening[call_id] = listening
                # Every listener waits for the subscription, not only the first.
                await asyncio.shield(listening)
                if limit is not None:
                    async with self._counting:
                        fits = await self.cluster.claim_stream(call_id, self.count(call_id), limit)
                    if not fits:
                        raise TooManyStreams(limit)
            elif limit is not None and len(subs) > limit:
                raise TooManyStreams(limit)
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subscribers.get(sub.call_id, [])
        try:
            subs.remove(sub)
        except ValueError:
            return
        if self.cluster is None:
            if not subs:
                self._subscribers.pop(sub.call_id, None)
            return
        call_id = sub.call_id
        if not subs:
            self._subscribers.pop(call_id, None)
            listening = self._listening.pop(call_id, None)
            if listening is not None:
                listening.cancel()
            self._spawn(self.cluster.unlisten(call_id))
        self._spawn(self._recount(call_id))

    async def _recount(self, call_id: str) -> None:
        # One at a time, each with the count as it is then: the last write is the truth.
        assert self.cluster is not None
        async with self._counting:
            await self.cluster.count_streams(call_id, self.count(call_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
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
        self._end_lists()

    # -- the calls list -------------------------------------------------------------------

    def subscribe_list(self, role: str) -> Subscriber:
        """A listener of every call's list changes (the node listens on them from its start).
        Not while the node has lost Redis: it would hear only its own calls' changes."""
        if self.cluster is not None and self.cluster.fenced:
            raise ClusterUnavailable("this node lost Redis; the calls list is not live here")
        sub = Subscriber("", role)
        self._list_subscribers.append(sub)
        return sub

    def unsubscribe_list(self, sub: Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self._list_subscribers.remove(sub)

    def publish_list(self, update: dict[str, Any]) -> None:
        self._deliver_list(update)
        if self.cluster is not None:
            self.cluster.publish_list({"u": update})

    def _deliver_list(self, update: dict[str, Any]) -> None:
        for sub in self._list_subscribers:
            if visible_to(update, sub.role):  # type: ignore[arg-type]
                sub.queue.put_nowait(update)

    def _end_lists(self) -> None:
        for sub in self._list_subscribers:
            sub.queue.put_nowait(None)

    def _on_remote_list(self, message: dict[str, Any]) -> None:
        if "u" in message:
            self._deliver_list(message["u"])
        elif message.get("reset"):
            self._end_lists()

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
