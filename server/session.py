"""One live call: its lifecycle, its participants, its event log, its media and assist pipelines.

A call holds participants (media/participant.py) and knows no transport: a browser over
WebRTC and a phone caller over a media stream look the same here. The audio path of a
call reads top to bottom:

    a participant's payloads, in its own codec (`on_audio`)
      ├─► participants that play that codec, as received (Opus browser → browser)
      └─► InboundAudio: the ingress's decoder → 16 kHz mono → VAD → utterances (media/pipeline.py)
            ├─► PCM to participants that cannot take the codec (`_on_pcm` → `play_pcm`)
            └─► CallTranscriber: per-call speech-to-text queue (media/transcriber.py)
                  └─► `transcript` events ─► CallAssistant suggestions (server/assist/)
                                          └─► VoiceAgent replies, while no human has
                                              accepted (server/voice_agent.py)

Every event leaves through `publish`, which persists what API.md says is persisted, numbers
it, and hands it to the recipients `events.visible_to` allows. The state changes of a call
(created, accepted, ended) happen here and nowhere else.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col, select

from media.decode import PcmPassthrough
from media.participant import Participant
from server import calllist, events
from server.errors import conflict
from server.fanout import EventBus
from server.identity import is_verified
from server.models import Call, CallEvent
from server.redaction import CallRedactor
from server.store import Store

if TYPE_CHECKING:
    from server.metrics import Metrics
    from server.services import Services

log = logging.getLogger(__name__)

TRANSCRIBED = ("customer", "agent")
"""Roles whose voices go through speech-to-text (a voice agent's words are its own text)."""
RESTORE_EVENTS = 200
"""A call picked up while it goes on: how many of its latest transcripts and state changes
tell what the previous holder kept in memory (`restore`)."""


class CallSession:
    def __init__(
        self,
        call: Call,
        store: Store,
        services: Services,
        bus: EventBus | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.call = call
        self.call_id = call.id
        self.store = store
        self.services = services
        self.bus = bus if bus is not None else EventBus()
        self.metrics = metrics
        self.participants: dict[str, Participant] = {}
        # Participants whose replay is done and who get live events.
        self._live: set[Participant] = set()
        # When the last final customer transcript went to the assistant (for its latency).
        self._asked_at: float | None = None
        self._publish_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pipelines: dict[str, Any] = {}
        self._pipeline_codecs: dict[str, str] = {}
        self._transcriber: Any = None
        self.assistant: Any = None
        self.voice_agent: Any = None
        self._voice_agent_since: int | None = None
        self._voice_agent_earlier: list[dict[str, Any]] | None = None
        """What was said with a voice agent that talked on the node that held the call before."""
        self._voice_agent_lock = asyncio.Lock()
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
            if event["type"] == events.CALL_STATE and "seq" in event:
                await self._list_changed(event)
        return event

    async def _list_changed(self, call_state: dict[str, Any]) -> None:
        """The calls lists of every node follow the call's state (server/calllist.py); in
        `seq` order, as the publish lock keeps them."""
        try:
            entry = await calllist.entry(
                self.store, self.call, voice_agent=bool(call_state.get("voice_agent"))
            )
        except Exception:
            # The state is persisted: lists catch up when their streams reconnect.
            log.exception("call %s: the calls lists were not told of %s", self.call_id, call_state)
            return
        entry["state"] = call_state["state"]
        self.bus.publish_list(events.call_update(call_state, entry))

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
        for participant in list(self._live):
            role = participant.role
            if events.visible_to(event, role):  # type: ignore[arg-type]
                if role not in texts:
                    texts[role] = events.encode(events.for_role(event, role))  # type: ignore[arg-type]
                participant.send_event(texts[role])
        self.bus.publish(self.call_id, event)
        if self._asked_at is not None and event["type"] == events.AI_SUGGESTION and self.metrics:
            self.metrics.suggestion_latency.observe(time.monotonic() - self._asked_at)
            self._asked_at = None

    def send_to(self, participant: Participant, event: dict[str, Any]) -> None:
        participant.send_event(events.encode(event))

    async def history(self, role: str, after: int = 0) -> list[dict[str, Any]]:
        async with self.store.session() as session:
            rows = await session.exec(
                select(CallEvent)
                .where(CallEvent.call_id == self.call_id, CallEvent.seq > after)
                .order_by(col(CallEvent.seq))
            )
            bodies = [row.body for row in rows]
        return [b for b in bodies if events.visible_to(b, role)]  # type: ignore[arg-type]

    # -- participants (CallPort) -------------------------------------------------------------

    async def join(self, participant: Participant) -> None:
        """Add a participant; it replaces the one in the same role (a reconnect)."""
        if self.call.state == "ended" or self._closed:
            await participant.close()
            raise conflict("the call has ended", "call_ended")
        participant.bind(self)
        previous = self.participants.get(participant.role)
        self.participants[participant.role] = participant
        self._route_pcm()
        if previous is not None and previous is not participant:
            self._live.discard(previous)
            self._spawn(previous.close())

    def caller_live(self) -> bool:
        """Whether the caller is on the line now (a connected peer or phone stream)."""
        caller = self.participants.get("customer")
        return caller is not None and caller.connected

    def on_left(self, participant: Participant, *, hung_up: bool) -> None:
        if participant.role == "customer":
            self.caller_seen_ms = events.now_ms()
        self._live.discard(participant)
        if self.participants.get(participant.role) is participant:
            del self.participants[participant.role]
            self._route_pcm()
            if hung_up and not self._closed and self.call.state != "ended":
                # A phone caller hanging up is the customer pressing Hang up.
                self._spawn(self.end())

    def on_ready(self, participant: Participant) -> None:
        self._spawn(self._replay(participant))

    async def _replay(self, participant: Participant) -> None:
        async with self._publish_lock:
            for event in await self.history(participant.role):
                participant.send_event(events.encode(event))
            if self.participants.get(participant.role) is participant:
                self._live.add(participant)

    def on_message(self, participant: Participant, raw: str | bytes) -> None:
        try:
            message = events.parse_client_message(raw, participant.role)  # type: ignore[arg-type]
        except events.ClientMessageError as exc:
            self.send_to(participant, events.status(self.call_id, "error", exc.code, str(exc)))
            return
        kind = message["type"]
        if kind == "ping":
            self.send_to(participant, events.make(events.PONG, self.call_id))
        elif kind == "stop_suggestions":
            if self.assistant is not None:
                self._spawn(self.assistant.stop())
        elif kind == "suggestion_feedback":
            self._spawn(self._feedback(participant, message["suggestion_id"], message["action"]))

    def on_dtmf(self, participant: Participant, digit: str) -> None:
        event = events.make(events.DTMF, self.call_id, digit=digit, speaker=participant.role)
        self._spawn(self.publish(event))

    async def _feedback(self, participant: Participant, suggestion_id: str, action: str) -> None:
        if self.assistant is None:
            self.send_to(
                participant,
                events.status(self.call_id, "error", "unknown_suggestion", "no such suggestion"),
            )
            return
        try:
            await self.assistant.feedback(suggestion_id, action)
        except ValueError as exc:
            self.send_to(
                participant, events.status(self.call_id, "error", "unknown_suggestion", str(exc))
            )

    # -- media ----------------------------------------------------------------------------

    def on_audio(self, participant: Participant, payload: bytes) -> None:
        """Forward as received where the codec allows; decode once for everything else."""
        if participant.codec == PcmPassthrough.codec:
            # Already the pipeline's PCM (the voice agent's own voice, paced by it): straight
            # to the others. Through the audio thread it would wait for a batch, and its gap
            # filling would send the caller silence between replies.
            for other in list(self.participants.values()):
                if other is not participant:
                    other.play_pcm(payload)
            return
        needs_pcm = False
        for other in self.participants.values():
            if other is participant:
                continue
            if participant.codec in other.forwards:
                other.play_encoded(payload)
            else:
                needs_pcm = True
        role = participant.role
        pipeline = self._pipelines.get(role)
        if pipeline is not None and self._pipeline_codecs.get(role) != participant.codec:
            # The role came back over another transport: its old decoder cannot read this.
            self._retire_pipeline(role)
            pipeline = None
        if pipeline is None and not self._closed and self.call.state != "ended":
            pipeline = self._start_pipeline(participant, needs_pcm)
        if pipeline is not None:
            pipeline.feed(payload)

    def _on_pcm(self, role: str, pcm: bytes) -> None:
        """A participant's voice as 16 kHz PCM (from the audio thread, on the loop)."""
        source = self.participants.get(role)
        codec = source.codec if source is not None else None
        for other in self.participants.values():
            if other.role != role and codec not in other.forwards:
                other.play_pcm(pcm)

    def interrupt(self, participant: Participant) -> int:
        dropped = 0
        for other in self.participants.values():
            if other is not participant:
                dropped = max(dropped, other.clear_audio())
        return dropped

    def _retire_pipeline(self, role: str) -> None:
        pipeline = self._pipelines.pop(role)
        self._pipeline_codecs.pop(role, None)
        self._spawn(asyncio.to_thread(pipeline.close))

    def _start_pipeline(self, participant: Participant, needs_pcm: bool) -> Any:
        """The participant's decoder → VAD → segments, made when someone needs its audio:
        the transcriber (people's voices), or a participant that cannot take its codec."""
        factory = self.services.speech_pipeline
        transcribe = self.services.transcriber is not None and participant.role in TRANSCRIBED
        if factory is None or not (transcribe or needs_pcm):
            return None
        role = participant.role
        on_event = None
        if transcribe:
            if self._transcriber is None:
                self._transcriber = self.services.transcriber(  # type: ignore[misc]
                    emit_transcript=self._emit_transcript, emit_status=self._emit_status
                )
            on_event = self._transcriber.submit
        kwargs: dict[str, Any] = {
            "speaker": role,
            "call_id": self.call_id,
            "clock_ms": self.clock_ms,
            "on_event": on_event,
            "decoder": participant.decoder(),
        }
        pipeline = factory(**kwargs)
        self._pipelines[role] = pipeline
        self._pipeline_codecs[role] = participant.codec
        self._route_pcm()
        return pipeline

    def _route_pcm(self) -> None:
        """Decoded PCM flows from a speaker's pipeline only while someone needs it: a
        participant that cannot play the speaker's payloads as received."""
        for role, pipeline in self._pipelines.items():
            codec = self._pipeline_codecs.get(role)
            wanted = any(
                other.role != role and codec not in other.forwards
                for other in self.participants.values()
            )
            if not wanted:
                pipeline.on_pcm = None
            elif pipeline.on_pcm is None:
                pipeline.on_pcm = functools.partial(self._on_pcm, role)

    def stt_pending(self) -> int:
        """Utterances waiting for speech-to-text."""
        return int(self._transcriber.pending) if self._transcriber is not None else 0

    def clock_ms(self) -> int:
        # Before a human accepts, a voice agent's conversation counts from when it answered.
        start = self.call.accepted_at or self._voice_agent_since or self.call.created_at
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
        if t.final and self.metrics is not None:
            self.metrics.transcript_latency.observe(max(0, self.clock_ms() - t.end_ms) / 1000)
        if t.final and self.assistant is not None:
            if t.speaker == "customer":
                self._asked_at = time.monotonic()
            self.assistant.on_transcript(event)
        if t.final and self.voice_agent is not None:
            self.voice_agent.on_transcript(event)
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
        self._schedule_voice_agent()

    # -- the voice agent --------------------------------------------------------------------

    def _schedule_voice_agent(self) -> None:
        """`always`: the voice agent answers now; `overflow`: when the call has waited
        CALLASSIST_VOICE_AGENT_AFTER_S without a human."""
        settings = self.services.settings.voice_agent
        if self.services.voice_agent is None or settings.mode == "off":
            return
        if self.call.state != "waiting" or self._closed:
            return
        delay = 0.0
        if settings.mode == "overflow":
            waited = (events.now_ms() - self.call.created_at) / 1000
            delay = max(0.0, settings.after_s - waited)
        self._spawn(self._start_voice_agent(delay))

    async def _start_voice_agent(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        async with self._voice_agent_lock:
            if self.voice_agent is not None or self._closed or self.call.state != "waiting":
                return
            earlier, self._voice_agent_earlier = self._voice_agent_earlier, None
            # Back after a takeover, it says it was cut off instead of greeting again.
            again = {"resumed": True} if earlier is not None else {}
            agent = self.services.voice_agent(  # type: ignore[misc]
                call_id=self.call_id,
                customer_id=self.call.customer_id,
                publish=self.publish,
                clock_ms=self.clock_ms,
                **again,
            )
            try:
                await agent.start()
                if earlier is not None:
                    agent.recall(earlier)
            except Exception:
                log.exception("call %s: the voice agent could not start", self.call_id)
                await self._emit_status(
                    "error", "voice_agent_failed", "The voice agent could not answer this call."
                )
                return
            if self._closed or self.call.state != "waiting":
                await agent.close()
                return
            if earlier is None or self._voice_agent_since is None:
                self._voice_agent_since = events.now_ms()
            self.voice_agent = agent
            await self.join(agent)
            await self.publish(
                events.make(events.CALL_STATE, self.call_id, state="waiting", voice_agent=True)
            )

    async def _hand_over(self) -> dict[str, Any] | None:
        """A human accepted: the voice agent falls silent now and sums up for them."""
        async with self._voice_agent_lock:
            voice: Any = self.voice_agent
            self.voice_agent = None
        if voice is None:
            return None
        try:
            summary: dict[str, Any] = await voice.handover()
        except Exception:
            log.exception("call %s: voice agent handover failed", self.call_id)
            summary = {"text": "The voice agent's summary is not available."}
        role = voice.role
        if self.participants.get(role) is voice:
            del self.participants[role]
            self._route_pcm()
        if role in self._pipelines:
            self._retire_pipeline(role)
        await voice.close()
        return summary

    async def accept(self, agent: str) -> None:
        """waiting → active for `agent`; a call that is not waiting → 409."""
        async with self.store.write() as session:
            result = await session.execute(
                update(Call)
                .where(col(Call.id) == self.call_id, col(Call.state) == "waiting")
                .values(state="active", agent=agent, accepted_at=events.now_ms())
            )
            taken = result.rowcount == 1  # type: ignore[attr-defined]
        if not taken:
            raise conflict("the call is not waiting (taken or ended)", "call_not_waiting")
        await self.on_accepted(await self._reload())

    async def end(self, reason: str | None = None) -> bool:
        """Any open state → ended, once: a Hang up, an agent's End call, a phone hang-up,
        an abandoned wait (`reason`). False if the call had already ended."""
        async with self.store.write() as session:
            result = await session.execute(
                update(Call)
                .where(col(Call.id) == self.call_id, col(Call.state) != "ended")
                .values(state="ended", ended_at=events.now_ms())
            )
            changed = result.rowcount == 1  # type: ignore[attr-defined]
        if changed:
            await self.on_ended(await self._reload(), reason=reason)
        return changed

    async def _reload(self) -> Call:
        async with self.store.session() as session:
            call = await session.get(Call, self.call_id)
        assert call is not None  # calls are never deleted
        return call

    async def on_accepted(self, call: Call) -> None:
        self.call = call
        self.caller_verified = await is_verified(self.store, self.call_id)
        handover = await self._hand_over()
        if handover is None:
            await self.publish(events.make(events.CALL_STATE, self.call_id, state="active"))
        else:
            await self.publish(
                events.make(events.CALL_STATE, self.call_id, state="active", voice_agent=False)
            )
            await self.publish(events.make(events.HANDOVER, self.call_id, summary=handover))
        await self._start_assistant()
        if handover is not None and self.assistant is not None:
            # The agent's suggestions know what was said before they joined.
            for event in await self.history("agent"):
                if event["type"] == events.TRANSCRIPT:
                    self.assistant.context.add_turn(event)

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

    async def restore(self) -> None:
        """A call this process picks up while it goes on (taken over from a node that died,
        or after a restart): what the previous holder kept in memory comes back from the
        call's event log. The redactor gets the latest transcripts, so that a card number
        read across the move is still caught. A voice agent that was talking comes back
        (`resume`) with its conversation, and its clock goes on where it was: `*_ms` and
        the segment ids made from them never go back."""
        async with self.store.session() as session:
            rows = await session.exec(
                select(CallEvent)
                .where(
                    CallEvent.call_id == self.call_id,
                    col(CallEvent.type).in_((events.TRANSCRIPT, events.CALL_STATE)),
                )
                .order_by(col(CallEvent.seq).desc())
                .limit(RESTORE_EVENTS)
            )
            recent = [row.body for row in rows][::-1]
        # A revision repeats a segment whose stored event was rewritten already.
        spoken = [e for e in recent if e["type"] == events.TRANSCRIPT and not e.get("revised")]
        self.redactor.seed([e for e in spoken if e.get("speaker") in TRANSCRIBED])
        states = [e for e in recent if e["type"] == events.CALL_STATE]
        if states and states[-1]["state"] == "waiting" and states[-1].get("voice_agent"):
            answered = [e for e in states if e.get("voice_agent")]
            self._voice_agent_since = int(answered[0]["ts"])
            self._voice_agent_earlier = spoken

    def resume(self) -> None:
        """After a server restart, an active call gets its assistant back (no new context),
        and a waiting one its voice agent."""
        self._schedule_voice_agent()
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
        if self.voice_agent is not None:
            # It falls silent first; what the caller heard of its last reply is kept.
            try:
                await self.voice_agent.handover()
            except Exception:
                log.exception("call %s: stopping the voice agent failed", self.call_id)
        extra = {"reason": reason} if reason else {}
        await self.publish(events.make(events.CALL_STATE, self.call_id, state="ended", **extra))
        # Speech already said is transcribed, then summarised, before participants go away.
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

    def expect_phone_caller(self, within_s: float) -> None:
        """A phone call taken over from a dead node: Twilio's socket died with that node and
        Twilio hung up the line (a stream cannot move). Unless a stream joins soon (the node
        died between the webhook and the stream), the call ends, saying why."""

        async def watch() -> None:
            await asyncio.sleep(within_s)
            if "customer" not in self.participants and not self._closed and self.call.state != "ended":
                await self.publish(
                    events.status(
                        self.call_id,
                        "warning",
                        "phone_line_lost",
                        "the caller's phone line was lost with the server that carried it",
                    )
                )
                await self.end()

        self._spawn(watch())

    async def drop(self, code: str, message: str) -> None:
        """This node no longer holds the call (its lease went elsewhere): the participants
        hear why, their connections close, and they reconnect to whichever node holds it."""
        text = events.encode(events.status(self.call_id, "warning", code, message))
        for participant in list(self._live):
            participant.send_event(text)
        await self.close()

    async def close(self) -> None:
        """Release everything live; the call's record and events stay. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        participants = list(self.participants.values())
        self.participants.clear()
        self._live.clear()
        for participant in participants:
            await participant.close()
        for pipeline in list(self._pipelines.values()):
            await asyncio.to_thread(pipeline.close)
        self._pipelines.clear()
        self._pipeline_codecs.clear()
        if self._transcriber is not None:
            await self._transcriber.close()
        if self.assistant is not None:
            await self.assistant.close()
        # A hang-up ends the call from one of the session's own tasks: not itself.
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.call.state == "ended":
            self.bus.end(self.call_id)
        if self.on_closed is not None:
            self.on_closed(self)
