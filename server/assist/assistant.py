"""`CallAssistant`: the agent-assist side of one call, driven by the call session.

The call session calls `on_accept()`, `on_transcript()` for every final transcript,
`stop()` / `feedback()` for the agent's data-channel messages, `on_end()` when the call
ends and `close()` when it tears the call down. Everything the assistant says goes out
through the session's `publish(event)`, which persists, numbers and routes events.

Suggestions: a customer's final transcript (re)starts a debounce timer; when it fires,
one generation runs: context snapshot → engine stream → `ai_suggestion` events. New
customer speech cancels the generation in flight (its suggestions end with
`stopped: true`), so the agent always sees help for what was said last.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from server import events
from server.assist import verification
from server.assist.context import CallContext
from server.assist.engine import KINDS, EngineStatus, SuggestionChunk, SuggestionEngine
from server.assist.models import CallSummary
from server.assist.summary import build_summary
from server.models import CallEvent

if TYPE_CHECKING:
    from server.assist.knowledge import KnowledgeBase
    from server.config import AssistSettings
    from server.store import Store

log = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
FEEDBACK_ACTIONS = ("used", "dismissed")
MAX_WAIT_FACTOR = 3
"""A customer who keeps talking still gets a suggestion after this many debounce periods."""


SPEAKING_POLL_S = 0.05
"""How often a pending suggestion checks whether the customer is still speaking."""


class AssistError(ValueError):
    """A request the assistant refuses; `code` is the status event's code."""

    code = "assist_error"


class UnknownSuggestionError(AssistError):
    code = "unknown_suggestion"


class InvalidFeedbackError(AssistError):
    code = "invalid_feedback"


@dataclass
class _Streaming:
    """A suggestion being streamed."""

    suggestion_id: str
    kind: str
    in_reply_to: str | None
    text: str = ""
    confidence: float = 0.0
    sources: list[dict[str, Any]] = field(default_factory=list)
    published: bool = False


@dataclass
class _Generation:
    """One debounce-then-generate run: its task, why it was stopped, what it has open."""

    in_reply_to: str | None
    task: asyncio.Task[None] | None = None
    stop_reason: str = "superseded"
    open: dict[str, _Streaming] = field(default_factory=dict)


class CallAssistant:
    def __init__(
        self,
        *,
        call_id: str,
        customer_id: str,
        store: Store,
        settings: AssistSettings,
        engine: SuggestionEngine,
        knowledge: KnowledgeBase,
        publish: Publish,
        customer_speaking: Callable[[], bool] | None = None,
        verified: bool = False,
    ) -> None:
        self.call_id = call_id
        # Whether the agent verified the caller's identity (server/identity.py); until then
        # server/assist/verification.py leads with "verify" and caveats account details.
        self.verified = verified
        self._verify_prompted = False
        # Whether the customer's voice is active right now (from the VAD); without it the
        # assistant debounces blindly.
        self._customer_speaking = customer_speaking
        self.customer_id = customer_id
        self._store = store
        self._settings = settings
        self._engine = engine
        self._knowledge = knowledge
        self._publish = publish
        self.context = CallContext(call_id, customer_id, history_turns=settings.history_turns)
        self._generation: _Generation | None = None
        self._pending_since: float | None = None
        self._suggestions: dict[str, _Streaming] = {}
        self._load_lock = asyncio.Lock()
        self._end_lock = asyncio.Lock()
        self._summary: dict[str, Any] | None = None
        self._ended = False
        self._closed = False

    # --- call lifecycle ----------------------------------------------------------

    async def on_accept(self) -> dict[str, Any]:
        """Load the customer's records and publish `customer_context` to the agent."""
        await self._load(refresh=True)
        # Articles imported while the server runs (`kb import`) are picked up per call.
        await self._knowledge.refresh_if_changed(self._store)
        body = self.context.customer_context()
        body["customer"] = {**body["customer"], "verified": self.verified}
        event = await self._publish(events.make(events.CUSTOMER_CONTEXT, self.call_id, **body))
        if not self.verified and not self._verify_prompted:
            self._verify_prompted = True
            await self._publish_whole("action", verification.VERIFY_ACTION)
        return event

    def set_verified(self, verified: bool, customer_id: str | None = None) -> None:
        """The agent verified the caller, maybe as another customer (then on_accept() again)."""
        self.verified = verified
        if customer_id is not None and customer_id != self.customer_id:
            self.customer_id = self.context.customer_id = customer_id
            self.context.loaded = False

    async def _publish_whole(self, kind: str, text: str) -> None:
        """One complete suggestion of the assistant's own (not the engine's)."""
        s = _Streaming(f"sug_{uuid.uuid4().hex[:16]}", kind, None, text=text, confidence=1.0)
        s.published = True
        self._suggestions[s.suggestion_id] = s
        await self._publish(self._event(s, done=False, delta=text))
        await self._publish(self._event(s, done=True))
        self.context.record_suggestion(self._record(s))

    def on_transcript(self, event: dict[str, Any]) -> None:
        """Take one final transcript (either speaker); customer speech schedules a suggestion."""
        if self._closed or self._ended or event.get("final") is False:
            return
        turn = self.context.add_turn(event)
        if turn is None or turn.speaker != "customer":
            return
        self._schedule(turn.segment_id)

    async def idle(self, timeout: float | None = None) -> bool:
        """Wait until no suggestion is pending or streaming; False if `timeout` ran out."""
        generation = self._generation
        if generation is None or generation.task is None or generation.task.done():
            return True
        done, _ = await asyncio.wait({generation.task}, timeout=timeout)
        return bool(done) and (self._generation is generation or await self.idle(timeout))

    async def stop(self) -> list[str]:
        """Stop the suggestion being generated (and a pending one); returns the stopped ids.

        What was already sent stays: each open suggestion gets a last `done: true`
        message with its text so far and `stopped: true`.
        """
        generation = self._generation
        stopped = (
            [s.suggestion_id for s in generation.open.values() if s.published] if generation else []
        )
        await self._cancel("agent")
        return stopped

    async def feedback(self, suggestion_id: str, action: str) -> dict[str, Any]:
        """Record the agent's use or dismissal of a suggestion; returns the published event."""
        if action not in FEEDBACK_ACTIONS:
            raise InvalidFeedbackError(f"action must be used or dismissed, got {action!r}")
        kind = await self._suggestion_kind(suggestion_id)
        if kind is None:
            raise UnknownSuggestionError(f"no suggestion {suggestion_id!r} in this call")
        self.context.record_feedback(suggestion_id, action)
        event = events.make(
            events.SUGGESTION_FEEDBACK,
            self.call_id,
            suggestion_id=suggestion_id,
            action=action,
            kind=kind,
        )
        return await self._publish(event)

    async def on_end(self) -> dict[str, Any]:
        """Stop suggesting, build and store the summary, publish `summary`; returns it.

        Calling it again returns the same summary without publishing it twice.
        """
        async with self._end_lock:
            if self._summary is not None:
                return self._summary
            self._ended = True
            await self._cancel("call_ended")
            await self._load()
            await self.context.resolve_orders(self._store)
            snapshot = self.context.snapshot(self._knowledge)
            try:
                summary = await self._engine.summarize(snapshot)
            except Exception:
                log.exception(
                    "call %s: summary engine failed; using the local summary", self.call_id
                )
                summary = build_summary(snapshot)
            status = summary.pop("engine_status", None)
            if isinstance(status, EngineStatus):
                await self._publish(
                    events.status(self.call_id, status.level, status.code, status.message)
                )
            async with self._store.write() as session:
                row = await session.get(CallSummary, self.call_id)
                if row is None:
                    row = CallSummary(
                        call_id=self.call_id, customer_id=self.customer_id, body=summary
                    )
                else:
                    row.body = summary
                session.add(row)
            self._summary = summary
            await self._publish(events.make(events.SUMMARY, self.call_id, summary=summary))
            return summary

    async def close(self) -> None:
        """Cancel everything this assistant runs; idempotent.

        A suggestion still streaming gets its last `done: true` message (`stopped: true`,
        `stop_reason: "call_closed"`), so no suggestion is left open in the event log.
        """
        if self._closed:
            return
        self._closed = True
        await self._cancel("call_closed")

    # --- scheduling ----------------------------------------------------------------

    def _schedule(self, segment_id: str | None) -> None:
        previous = self._generation
        if previous is not None and previous.task is not None and not previous.task.done():
            previous.stop_reason = "superseded"
            previous.task.cancel()
        loop = asyncio.get_running_loop()
        now = loop.time()
        debounce = max(0, self._settings.debounce_ms) / 1000
        if self._pending_since is None:
            self._pending_since = now
        delay = max(0.0, min(debounce, self._pending_since + MAX_WAIT_FACTOR * debounce - now))
        generation = _Generation(in_reply_to=segment_id)
        generation.task = loop.create_task(
            self._run(generation, previous.task if previous else None, delay),
            name=f"assist-suggest-{self.call_id}",
        )
        self._generation = generation

    async def _await_turn_end(self, cap: float) -> None:
        """Wait until the customer has finished their turn, at most `cap` seconds.

        The debounce exists so that a customer who is still talking gets one suggestion
        for the whole turn. When the VAD says they are silent, the final transcript already
        came after `silence_ms` of silence, so a short settle is enough; while they speak
        on, wait up to the debounce (a new final transcript reschedules anyway).
        """
        if self._customer_speaking is None:
            await asyncio.sleep(cap)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cap
        await asyncio.sleep(min(cap, max(0, self._settings.settle_ms) / 1000))
        # A poll: the VAD state lives on the audio thread, which has no loop to signal.
        while self._customer_speaking() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(min(SPEAKING_POLL_S, max(0.0, deadline - loop.time())))

    async def _cancel(self, reason: str) -> None:
        generation = self._generation
        self._pending_since = None
        if generation is None or generation.task is None or generation.task.done():
            return
        generation.stop_reason = reason
        generation.task.cancel()
        await asyncio.wait({generation.task})

    async def _run(
        self, generation: _Generation, previous: asyncio.Task[None] | None, delay: float
    ) -> None:
        if previous is not None:
            # The superseded run publishes its last messages first, keeping seq order.
            await asyncio.wait({previous})
        await self._await_turn_end(delay)
        self._pending_since = None
        try:
            await self._generate(generation)
        except asyncio.CancelledError:
            await self._finish_open(generation, stopped=True)
            raise
        except Exception:
            log.exception("call %s: suggestion generation failed", self.call_id)
            await self._finish_open(generation, stopped=True, reason="error")
            await self._safe_publish(
                events.status(
                    self.call_id,
                    "warning",
                    "suggestion_failed",
                    "the suggestion could not be completed",
                )
            )

    async def _generate(self, generation: _Generation) -> None:
        await self._load()
        await self._knowledge.ensure_loaded(self._store)
        await self.context.resolve_orders(self._store)
        snapshot = self.context.snapshot(self._knowledge)
        async with aclosing(self._engine.suggest(snapshot)) as stream:
            async for item in stream:
                if isinstance(item, EngineStatus):
                    await self._publish(
                        events.status(self.call_id, item.level, item.code, item.message)
                    )
                elif isinstance(item, SuggestionChunk):
                    await self._on_chunk(generation, item)
        await self._finish_open(generation)

    # --- streaming suggestions ---------------------------------------------------------

    async def _on_chunk(self, generation: _Generation, chunk: SuggestionChunk) -> None:
        s = generation.open.get(chunk.key)
        if s is None:
            kind = chunk.kind if chunk.kind in KINDS else "reply"
            s = _Streaming(f"sug_{uuid.uuid4().hex[:16]}", kind, generation.in_reply_to)
            generation.open[chunk.key] = s
        s.text += chunk.delta
        s.confidence = round(max(0.0, min(1.0, chunk.confidence)), 2)
        if chunk.sources:
            s.sources = [dict(src) for src in chunk.sources]
        if chunk.delta:
            if not s.published:
                s.published = True
                self._suggestions[s.suggestion_id] = s
                self.context.record_suggestion(self._record(s))
            await self._publish(self._event(s, done=False, delta=chunk.delta))
        if chunk.done:
            await self._finish(generation, chunk.key)

    async def _finish_open(
        self, generation: _Generation, *, stopped: bool = False, reason: str | None = None
    ) -> None:
        for key in list(generation.open):
            try:
                await self._finish(
                    generation, key, stopped=stopped, reason=reason or generation.stop_reason
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning(
                    "call %s: could not publish the end of a suggestion",
                    self.call_id,
                    exc_info=True,
                )
                generation.open.pop(key, None)

    async def _finish(
        self, generation: _Generation, key: str, *, stopped: bool = False, reason: str = ""
    ) -> None:
        s = generation.open[key]
        if not s.published:  # nothing of it reached the agent
            generation.open.pop(key)
            return
        if not self.verified:
            c = self.context
            caveat = verification.caveat_for(
                s.kind, s.text, verification.account_values(c.customer, c.orders, c.tickets)
            )
            if caveat:
                s.text += caveat
                await self._publish(self._event(s, done=False, delta=caveat))
        extra: dict[str, Any] = {"stopped": True, "stop_reason": reason} if stopped else {}
        # The final message is persisted: shield it so a cancel cannot cut the write in half.
        task = asyncio.ensure_future(self._publish(self._event(s, done=True, **extra)))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                log.warning(
                    "call %s: final suggestion message failed: %r", self.call_id, task.exception()
                )
            generation.open.pop(key, None)
            raise
        generation.open.pop(key, None)
        self.context.record_suggestion(self._record(s))

    def _event(
        self, s: _Streaming, *, done: bool, delta: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "suggestion_id": s.suggestion_id,
            "kind": s.kind,
            "text": s.text,
            "done": done,
            "confidence": s.confidence,
            "sources": list(s.sources),
        }
        if delta is not None:
            fields["delta"] = delta
        if s.in_reply_to is not None:
            fields["in_reply_to"] = s.in_reply_to
        fields.update(extra)
        return events.make(events.AI_SUGGESTION, self.call_id, **fields)

    @staticmethod
    def _record(s: _Streaming) -> dict[str, Any]:
        return {
            "suggestion_id": s.suggestion_id,
            "kind": s.kind,
            "text": s.text,
            "sources": list(s.sources),
        }

    # --- helpers -------------------------------------------------------------------------

    async def _load(self, *, refresh: bool = False) -> None:
        async with self._load_lock:
            if refresh or not self.context.loaded:
                await self.context.load(self._store)

    async def _suggestion_kind(self, suggestion_id: str) -> str | None:
        known = self._suggestions.get(suggestion_id)
        if known is not None:
            return known.kind
        # A suggestion from before a server restart is only in the event log.
        async with self._store.session() as session:
            rows = (
                await session.exec(
                    select(CallEvent.body).where(
                        CallEvent.call_id == self.call_id, CallEvent.type == events.AI_SUGGESTION
                    )
                )
            ).all()
        for body in rows:
            if body.get("suggestion_id") == suggestion_id:
                return str(body.get("kind"))
        return None

    async def _safe_publish(self, event: dict[str, Any]) -> None:
        try:
            await self._publish(event)
        except Exception:
            log.warning(
                "call %s: could not publish %s", self.call_id, event.get("type"), exc_info=True
            )


async def load_summary(store: Store, call_id: str) -> dict[str, Any] | None:
    """The stored summary of a call, or None before it ended."""
    async with store.session() as session:
        row = await session.get(CallSummary, call_id)
    return dict(row.body) if row is not None else None


async def feedback_stats(store: Store, *, since_ms: int | None = None) -> dict[str, Any]:
    """How agents received suggestions: shown / used / dismissed, in total and per kind.

    A suggestion's latest feedback counts (used, then dismissed → dismissed).
    """
    query = select(CallEvent.call_id, CallEvent.type, CallEvent.body).where(
        col(CallEvent.type).in_((events.AI_SUGGESTION, events.SUGGESTION_FEEDBACK))
    )
    if since_ms is not None:
        query = query.where(CallEvent.ts >= since_ms)
    async with store.session() as session:
        rows = (await session.exec(query.order_by(col(CallEvent.id)))).all()
    kinds: dict[tuple[str, str], str] = {}
    actions: dict[tuple[str, str], str] = {}
    for call_id, kind, body in rows:
        key = (call_id, str(body.get("suggestion_id")))
        if kind == events.AI_SUGGESTION:
            kinds[key] = str(body.get("kind"))
        else:
            actions[key] = str(body.get("action"))
            if body.get("kind"):
                kinds.setdefault(key, str(body["kind"]))
    by_kind: dict[str, dict[str, Any]] = {}

    def bucket(kind: str) -> dict[str, Any]:
        return by_kind.setdefault(kind, {"shown": 0, "used": 0, "dismissed": 0})

    for kind in kinds.values():
        bucket(kind)["shown"] += 1
    for key, action in actions.items():
        if action in FEEDBACK_ACTIONS:
            bucket(kinds.get(key, "unknown"))[action] += 1
    total = {
        name: sum(b[name] for b in by_kind.values()) for name in ("shown", "used", "dismissed")
    }
    for b in [*by_kind.values(), total]:
        b["use_rate"] = round(b["used"] / b["shown"], 3) if b["shown"] else 0.0
    return {"total": total, "by_kind": dict(sorted(by_kind.items()))}
