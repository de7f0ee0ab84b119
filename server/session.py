"""One live call: its participants' peers, its event log, and its media and assist pipelines.

The audio path of a call reads top to bottom here:

    participant's Opus (media/tap.py)
      ├─► the other participant's ForwardedAudioTrack (media/relay.py), as received
      └─► InboundAudio: decode → 16 kHz mono → VAD → utterances (media/pipeline.py)
            └─► CallTranscriber: per-call speech-to-text queue (media/transcriber.py)
                  └─► `transcript` events ─► CallAssistant suggestions (server/assist/)

Every event leaves through `publish`, which persists what API.md says is persisted, numbers
it, and hands it to the recipients `events.visible_to` allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col, select

from server import events
from server.identity import is_verified
from server.models import Call, CallEvent
from server.redaction import CallRedactor
from server.store import Store
from signaling.peer import Peer

if TYPE_CHECKING:
    from server.hub import Services

log = logging.getLogger(__name__)

OTHER = {"customer": "agent", "agent": "customer"}


@dataclass
class Subscriber:
    """An SSE listener; `None` on the queue means the stream is over."""

    role: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


class CallSession:
    def __init__(self, call: Call, store: Store, services: Services) -> None:
        self.call = call
        self.call_id = call.id
        self.store = store
        self.services = services
        self.peers: dict[str, Peer] = {}
        self._live: set[Peer] = set()  # peers whose replay is done and who get live events
        self.subscribers: list[Subscriber] = []
        self._publish_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pipelines: dict[str, Any] = {}
        self._transcriber: Any = None
        self.assistant: Any = None
        self._closed = False
        self.on_closed: Callable[[CallSession], None] | None = None
        # When the caller last had a live connection (or, before any, since we know of the
        # call): the waiting-call reaper (server/waiting.py) ends calls abandoned too long.
        self.caller_seen_ms = events.now_ms()
        self.caller_verified = False
        # PII never reaches the event log, the wire, the assistant or the logs.
        self.redactor = CallRedactor(services.settings.redact)

    # -- events ---------------------------------------------------------------------------

    async def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        # Transcripts were redacted with the call's context in _emit_transcript; this pass
        # (no context) catches PII in whatever else is published: suggestions, summaries.
        event = self.redactor.scrub(event)
        async with self._publish_lock:
            if events.is_persisted(event):
                event = await self._persist(event)
            self._fan_out(event)
        return event

    async def _persist(self, event: dict[str, Any]) -> dict[str, Any]:
        async with self.store.write() as session:
            result = await session.execute(
                update(Call)
                .where(col(Call.id) == self.call_id)
                .values(last_seq=Call.last_seq + 1)
                .returning(col(Call.last_seq))
            )
            seq = int(result.scalar_one())
            event = {**event, "seq": seq}
            session.add(
                CallEvent(call_id=self.call_id, seq=seq, type=event["type"], ts=event["ts"], body=event)
            )
        return event

    def _fan_out(self, event: dict[str, Any]) -> None:
        texts: dict[str, str] = {}
        for peer in list(self._live):
            if events.visible_to(event, peer.role):  # type: ignore[arg-type]
                if peer.role not in texts:
                    texts[peer.role] = events.encode(events.for_role(event, peer.role))  # type: ignore[arg-type]
                peer.send(texts[peer.role])
        for sub in self.subscribers:
            if events.visible_to(event, sub.role):  # type: ignore[arg-type]
                sub.queue.put_nowait(event)

    def send_to(self, peer: Peer, event: dict[str, Any]) -> None:
        peer.send(events.encode(event))

    async def history(self, role: str, after: int = 0) -> list[dict[str, Any]]:
        async with self.store.session() as session:
            rows = await session.exec(
                select(CallEvent)
                .where(CallEvent.call_id == self.call_id, CallEvent.seq > after)
                .order_by(col(CallEvent.seq))
            )
            bodies = [row.body for row in rows]
        return [b for b in bodies if events.visible_to(b, role)]  # type: ignore[arg-type]

    async def subscribe(self, role: str) -> tuple[Subscriber, list[dict[str, Any]]]:
        """Register an SSE listener; returns it with the history to send first."""
        async with self._publish_lock:
            backlog = await self.history(role)
            sub = Subscriber(role=role)
            if self.call.state == "ended" or self._closed:
                sub.queue.put_nowait(None)
            else:
                self.subscribers.append(sub)
        return sub, backlog

    def unsubscribe(self, sub: Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self.subscribers.remove(sub)

    # -- peers ----------------------------------------------------------------------------

    async def connect(self, role: str, sdp: str) -> Any:
        """Answer `role`'s offer; a new offer replaces that participant's previous peer."""
        peer = Peer(
            role=role,
            configuration=self.services.rtc_configuration(),
            on_opus=lambda payload: self._on_opus(role, payload),
            on_channel_open=self._on_channel_open,
            on_message=self._on_message,
            on_closed=self._on_peer_closed,
            connect_timeout_s=self.services.settings.ice_connect_timeout_s,
        )
        try:
            answer = await peer.answer(sdp, self.services.settings.ice_gather_timeout_s)
        except BaseException:
            await peer.close()
            raise
        if self.call.state == "ended" or self._closed:
            await peer.close()
            from server.errors import conflict

            raise conflict("the call has ended", "call_ended")
        previous = self.peers.get(role)
        self.peers[role] = peer
        if previous is not None:
            self._spawn(previous.close())
        return answer

    def caller_live(self) -> bool:
        """Whether the caller is on the line now (a connected peer)."""
        peer = self.peers.get("customer")
        return peer is not None and peer.connection_state == "connected"

    def _on_peer_closed(self, peer: Peer) -> None:
        if peer.role == "customer":
            self.caller_seen_ms = events.now_ms()
        self._live.discard(peer)
        if self.peers.get(peer.role) is peer:
            del self.peers[peer.role]

    def _on_channel_open(self, peer: Peer) -> None:
        self._spawn(self._replay(peer))

    async def _replay(self, peer: Peer) -> None:
        async with self._publish_lock:
            for event in await self.history(peer.role):
                peer.send(events.encode(event))
            if self.peers.get(peer.role) is peer:
                self._live.add(peer)

    def _on_message(self, peer: Peer, raw: str | bytes) -> None:
        try:
            message = events.parse_client_message(raw, peer.role)  # type: ignore[arg-type]
        except events.ClientMessageError as exc:
            self.send_to(peer, events.status(self.call_id, "error", exc.code, str(exc)))
            return
        kind = message["type"]
        if kind == "ping":
            self.send_to(peer, events.make(events.PONG, self.call_id))
        elif kind == "stop_suggestions":
            if self.assistant is not None:
                self._spawn(self.assistant.stop())
        elif kind == "suggestion_feedback":
            self._spawn(self._feedback(peer, message["suggestion_id"], message["action"]))

    async def _feedback(self, peer: Peer, suggestion_id: str, action: str) -> None:
        if self.assistant is None:
            self.send_to(
                peer,
                events.status(self.call_id, "error", "unknown_suggestion", "no such suggestion"),
            )
            return
        try:
            await self.assistant.feedback(suggestion_id, action)
        except ValueError as exc:
            self.send_to(peer, events.status(self.call_id, "error", "unknown_suggestion", str(exc)))

    # -- media ----------------------------------------------------------------------------

    def _on_opus(self, role: str, payload: bytes) -> None:
        other = self.peers.get(OTHER[role])
        if other is not None:
            other.outbound.push(payload)
        pipeline = self._pipelines.get(role)
        if pipeline is None and not self._closed and self.call.state != "ended":
            pipeline = self._start_pipeline(role)
        if pipeline is not None:
            pipeline.feed_opus(payload)

    def _start_pipeline(self, role: str) -> Any:
        factory = self.services.speech_pipeline
        if factory is None or self.services.transcriber is None:
            return None
        if self._transcriber is None:
            self._transcriber = self.services.transcriber(
                emit_transcript=self._emit_transcript, emit_status=self._emit_status
            )
        pipeline = factory(
            speaker=role,
            call_id=self.call_id,
            clock_ms=self.clock_ms,
            on_event=self._transcriber.submit,
        )
        self._pipelines[role] = pipeline
        return pipeline

    def clock_ms(self) -> int:
        start = self.call.accepted_at or self.call.created_at
        return max(0, events.now_ms() - start)

    async def _emit_transcript(self, t: Any) -> None:
        event = events.make(
            events.TRANSCRIPT,
            self.call_id,
            speaker=t.speaker,
            segment_id=t.segment_id,
            text=t.text,
            final=t.final,
            start_ms=t.start_ms,
            end_ms=t.end_ms,
        )
        redacted = self.redactor.transcript(event)
        event = await self.publish(redacted.event)
        self.redactor.published(event, t.text)
        if t.final and self.assistant is not None:
            self.assistant.on_transcript(event)
        if redacted.revised is not None:
            await self._revise(redacted.revised)
        self._silence(redacted.silence)

    def _silence(self, spans: list[tuple[str, int, int]]) -> None:
        for speaker, start_ms, end_ms in spans:
            pipeline = self._pipelines.get(speaker)
            if pipeline is not None:
                pipeline.silence(start_ms, end_ms)

    async def _revise(self, earlier: dict[str, Any]) -> None:
        """An earlier final transcript turned out to hold card digits: rewrite the stored
        event and publish the corrected text as a revision of the same segment."""
        if "seq" in earlier:
            async with self._publish_lock, self.store.write() as session:
                await session.execute(
                    update(CallEvent)
                    .where(col(CallEvent.call_id) == self.call_id, col(CallEvent.seq) == earlier["seq"])
                    .values(body=earlier)
                )
            await self.store.forget_overwritten()
        revision = {k: v for k, v in earlier.items() if k != "seq"}
        revision.update(ts=events.now_ms(), revised=True)
        event = await self.publish(revision)
        if self.assistant is not None:
            self.assistant.on_transcript(event)

    async def _emit_status(self, level: str, code: str, message: str) -> None:
        await self.publish(events.status(self.call_id, level, code, message))

    # -- lifecycle ------------------------------------------------------------------------

    async def on_created(self) -> None:
        await self.publish(events.make(events.CALL_STATE, self.call_id, state="waiting"))

    async def on_accepted(self, call: Call) -> None:
        self.call = call
        self.caller_verified = await is_verified(self.store, self.call_id)
        await self.publish(events.make(events.CALL_STATE, self.call_id, state="active"))
        await self._start_assistant()

    async def _start_assistant(self) -> None:
        factory = self.services.assistant
        if factory is None or self.assistant is not None:
            return
        self.assistant = self._make_assistant(factory)
        await self.assistant.on_accept()

    async def on_verified(self, call: Call) -> None:
        """The agent verified the caller (maybe against another record): fresh context."""
        self.call = call
        self.caller_verified = True
        if self.assistant is not None:
            self.assistant.set_verified(True, call.customer_id)
            await self.assistant.on_accept()

    def resume(self) -> None:
        """After a server restart, an active call gets its assistant back (no new context)."""
        factory = self.services.assistant
        if self.call.state == "active" and factory is not None and self.assistant is None:
            self.assistant = self._make_assistant(factory)

    def _make_assistant(self, factory: Callable[..., Any]) -> Any:
        return factory(
            call_id=self.call_id,
            customer_id=self.call.customer_id,
            publish=self.publish,
            customer_speaking=self._customer_speaking,
            verified=self.caller_verified,
        )

    def _customer_speaking(self) -> bool:
        pipeline = self._pipelines.get("customer")
        return bool(pipeline is not None and pipeline.speaking)

    async def on_ended(self, call: Call, reason: str | None = None) -> None:
        self.call = call
        extra = {"reason": reason} if reason else {}
        await self.publish(events.make(events.CALL_STATE, self.call_id, state="ended", **extra))
        # Speech already said is transcribed, then summarised, before peers go away.
        for pipeline in list(self._pipelines.values()):
            await asyncio.to_thread(pipeline.close)
        if self._transcriber is not None:
            await self._transcriber.close(drain=True)
            self._transcriber = None
        self._silence(self.redactor.finish())
        if self.assistant is not None:
            try:
                await self.assistant.on_end()
            except Exception:
                log.exception("summary failed for %s", self.call_id)
                await self._emit_status("error", "summary_failed", "the call summary failed")
        await self.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s task failed", self.call_id, exc_info=task.exception())

    async def close(self) -> None:
        """Release everything live; the call's record and events stay. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for peer in list(self.peers.values()):
            await peer.close()
        self.peers.clear()
        self._live.clear()
        for pipeline in list(self._pipelines.values()):
            await asyncio.to_thread(pipeline.close)
        self._pipelines.clear()
        if self._transcriber is not None:
            await self._transcriber.close()
        if self.assistant is not None:
            await self.assistant.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for sub in self.subscribers:
            sub.queue.put_nowait(None)
        self.subscribers.clear()
        if self.on_closed is not None:
            self.on_closed(self)
