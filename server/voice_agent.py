"""The AI voice agent: a participant that answers a caller no human has taken yet.

It is the third kind of participant (media/participant.py), beside the WebRTC peer and the
phone stream: it hears the caller as 16 kHz PCM and speaks into the call as 16 kHz PCM, so
the session routes its voice to a browser or a phone like anyone else's. One reply, end to
end:

    caller's final transcript (the call's VAD + Whisper) ─► `on_transcript`
      └─► the suggestion engine in use: its `reply` for this moment (local playbooks with
          the caller's records and the knowledge base, or an OpenAI-compatible model with
          the same server-side tools) ─► SentenceSplitter (media/tts/text.py)
            └─► TextToSpeech, sentence by sentence ─► PacedPlayout (media/playout.py)
                  └─► the call (`port.on_audio`) ─► the caller

While it speaks, the caller's audio goes through a BargeInDetector (media/bargein.py).
The first 200 ms of the caller's voice PAUSE it: the playout stops and the transports drop
what they still hold (`port.interrupt`; a phone stream gets `clear`), and what they dropped
goes back at the head of the playout. Then either the caller goes on (a run of 520 ms, or
a final transcript that is not a backchannel): the INTERRUPT cuts the reply where the caller
stopped hearing it; or the caller falls QUIET (a backchannel, a cough, echo): it resumes
from there, nothing lost. Each reply is one `transcript` with speaker `voice_agent` whose
final text is what the caller heard, cut where it was interrupted. Measured at the caller
(docs/benchmarks.md, 1 and 3 calls): its audio stops ~225 ms after the caller starts
(p95 ≤ 263 ms), the cut transcript follows at ~0.66 s (a long run) or ~0.75-1.8 s (short
words), and a backchannel silences it for ~0.78 s.

The voice agent can look things up and explain policy; it cannot act (refund, cancel,
change an address). What the engine proposes as an action is promised as something a
colleague will do, and listed in the `handover` summary for the human who accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from media.audio import BYTES_PER_MS
from media.bargein import INTERRUPT, PAUSE, QUIET, BargeInDetector
from media.decode import AudioDecoder, PcmPassthrough
from media.participant import Participant
from media.playout import PacedPlayout
from media.tts import SentenceSplitter, TextToSpeech, TextToSpeechError, split_sentences
from server import events

if TYPE_CHECKING:
    from server.assist.context import CallContext, ContextSnapshot
    from server.assist.engine import SuggestionEngine
    from server.assist.knowledge import KnowledgeBase
    from server.store import Store

log = logging.getLogger(__name__)

ROLE = "voice_agent"
SAMPLE_RATE = 16000

GREETING = (
    "Hello, thank you for calling. All our agents are busy right now, so I'm the virtual "
    "assistant. I can look up an order or answer questions while you wait, and a person "
    "will join as soon as one is free. How can I help?"
)
RESUMED = "Sorry, we were cut off for a moment. I'm still here with you. Where were we?"
"""Its first words when it comes back to a caller after the call moved to another server
(the one that held it died) or its server restarted: it remembers what was said (`recall`),
so it does not greet again."""
FALLBACK = "Sorry, I'm having trouble right now. Please stay on the line: a person will be with you shortly."
NO_ANSWER = (
    "I'm not able to help with that myself, but I've noted it for my colleague, who will "
    "join you as soon as they're free. Is there anything else I can note for them?"
)
HUMAN = (
    "Of course. You're in the queue for the next available person, and I've passed on "
    "what you told me so you won't have to repeat it."
)
PROMISE = "I've noted that for my colleague, who will take care of it when they join you."

_HUM = re.compile(r"[mh]*m[mh]*o?|u+[hm]+|a+h+|o+h+|a+ha+")
"""Hums as Whisper spells them: "Mm", "Hmm", "Mhm", "MMO" (for "mm-hmm"), "Uh", "Ah"."""
_BACKCHANNEL_WORDS = frozenset(
    [
        "mm",
        "mmm",
        "hmm",
        "mhm",
        "hm",
        "m",
        "uh",
        "huh",
        "um",
        "okay",
        "ok",
        "right",
        "yeah",
        "yep",
        "yes",
        "sure",
        "alright",
        "all",
        "i",
        "see",
        "got",
        "it",
        "oh",
        "ah",
        "aha",
    ]
)
_WANTS_HUMAN = re.compile(
    r"\b(real person|human|(?:an?|the) (?:agent|representative|person|operator)|someone real|"
    r"speak to (?:someone|somebody)|talk to (?:someone|somebody))\b",
    re.IGNORECASE,
)
_FIRST_PERSON_ACT = re.compile(
    r"\bI(?: can|'ll| will|'ve| have)\b(?! (?:see|find|tell|check|look))"
)
_AS_TEAM = {
    "I can": "we can",
    "I'll": "we'll",
    "I will": "we will",
    "I've": "we've",
    "I have": "we have",
}
TURN_SETTLE_S = 0.05
"""Wait after a final transcript before answering, to see whether the caller goes on."""
TURN_WAIT_MAX_S = 1.5
"""Longest the voice agent waits for a caller who is still talking before it answers."""
PAUSE_MAX_S = 3.0
"""A pause the detector has neither confirmed nor released by then (sounds that keep
coming, none long enough to decide on) is taken as an interruption: the caller is busy."""
JUST_SPOKE_S = 2.0
"""A backchannel's transcript this soon after the voice agent stopped is about what it said."""
LISTENING_MEMORY_S = 15.0
"""How long a backchannel heard over the voice agent waits for its transcript (which comes
seconds late when speech-to-text is busy: 3-5 s at 3 concurrent calls on 2 cores), so that
it is not taken for a new turn once the reply is over."""


def is_backchannel(text: str) -> bool:
    """ "Mm-hmm", "okay", "right", "I see": the caller is listening, not taking the turn."""
    words = re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split()
    return 0 < len(words) <= 3 and all(w in _BACKCHANNEL_WORDS or _HUM.fullmatch(w) for w in words)


def as_team(sentence: str) -> str:
    """The engine's replies are written for a human agent who can act ("I can refund the
    full $149.00"); the voice agent cannot, so acts are the team's ("we can refund ...")."""

    def team(match: re.Match[str]) -> str:
        words = _AS_TEAM[match.group(0)]
        return words.capitalize() if match.start() == 0 else words

    return _FIRST_PERSON_ACT.sub(team, sentence)


def spoken_length(word: str) -> int:
    """About how long a word takes to say, in letters: a digit is said as a word ("78901"
    is "seven eight nine oh one"), a dash as a pause."""
    return 1 + sum(5 if c.isdigit() else 1 for c in word if c.isalnum())


def heard_text(sentences: list[tuple[str, int, int]], heard_ms: int) -> str:
    """The words of a reply that were played by `heard_ms`: whole sentences, then the
    words of the sentence that was cut that were said by then, its audio shared among its
    words by their spoken length (counting words alone put the cut of "I can see order
    78901 ..." a number too early: the caller had heard "78,09" of it)."""
    words: list[str] = []
    for text, start, end in sentences:
        if heard_ms >= end:
            words.extend(text.split())
            continue
        if heard_ms > start and end > start:
            sentence = text.split()
            budget = sum(map(spoken_length, sentence)) * (heard_ms - start) / (end - start)
            said = 0
            for word in sentence:
                said += spoken_length(word)
                if said > budget:
                    break
                words.append(word)
        break
    return " ".join(words)


@dataclass
class VoiceAgentServices:
    """What every voice agent of the process shares: wired once in server/services.py."""

    tts: TextToSpeech
    engine: SuggestionEngine
    knowledge: KnowledgeBase
    store: Store
    fallback_pcm: bytes
    """FALLBACK, synthesized at start-up by the local voice: it plays even when the
    configured speech engine is what failed."""
    history_turns: int = 12
    phrases: dict[str, bytes] = field(default_factory=dict)
    """The fixed sentences (greeting, ...) as 16 kHz PCM, made in the background at start-up:
    on a loaded 2-core machine Piper took 0.7-1.1 s for a 48-character sentence, which a
    greeting due within 2 s cannot afford."""

    async def render_phrases(self) -> None:
        for text in (GREETING, HUMAN, NO_ANSWER, PROMISE, RESUMED):
            for sentence in split_sentences(text):
                if sentence in self.phrases:
                    continue
                try:
                    pcm = b"".join(
                        [p async for p in self.tts.synthesize(sentence, sample_rate=SAMPLE_RATE)]
                    )
                except TextToSpeechError as exc:
                    log.warning("voice agent phrases not prepared: %s", exc)
                    return
                self.phrases[sentence] = pcm


class _InputClock:
    """How late the caller's audio reaches the voice agent: each piece's arrival against
    the earliest any audio arrived for its place in the stream (the first pieces of a
    stream, or after a second without audio, set the origin). Logged with every pause and
    interruption, it tells a late decision made on late audio (a busy audio thread, a
    starved event loop) from one the detector took long to make."""

    RESTART_S = 1.0

    def __init__(self) -> None:
        self._origin: float | None = None
        self._audio_ms = 0
        self._last = 0.0

    def arrived(self, ms: int) -> int:
        """`ms` of audio arrived now: how late (ms) its end is."""
        now = time.monotonic()
        if self._origin is None or now - self._last > self.RESTART_S:
            self._origin, self._audio_ms = now, 0
        self._last = now
        self._audio_ms += ms
        late = (now - self._origin) * 1000 - self._audio_ms
        if late < 0:  # earlier than ever: the new origin
            self._origin += late / 1000
            late = 0
        return round(late)


@dataclass
class _Reply:
    """One reply being spoken: its transcript segment and where its sentences lie in the
    playout's timeline (so an interruption knows which words were heard)."""

    segment_id: str
    start_ms: int
    played_from_ms: int
    """The playout's `released_ms` when the reply started."""
    sentences: list[tuple[str, int, int]] = field(default_factory=list)
    queued_ms: int = 0
    actions: list[str] = field(default_factory=list)
    done: bool = False


class VoiceAgent(Participant):
    """One call's voice agent. Bind it to the call (`CallSession.join`), then `start`."""

    role = ROLE
    kind = "voice_agent"
    codec = PcmPassthrough.codec

    def __init__(
        self,
        *,
        call_id: str,
        customer_id: str,
        services: VoiceAgentServices,
        publish: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
        clock_ms: Callable[[], int],
        resumed: bool = False,
    ) -> None:
        super().__init__()
        from server.assist.context import CallContext

        self.call_id = call_id
        self._greeting = RESUMED if resumed else GREETING
        self._services = services
        self._publish = publish
        self._clock_ms = clock_ms
        self.context: CallContext = CallContext(
            call_id, customer_id, history_turns=services.history_turns
        )
        self._detector = BargeInDetector()
        self._playout = PacedPlayout(self._speak_frame)
        self._reply: _Reply | None = None
        self._reply_task: asyncio.Task[None] | None = None
        self._greeted = asyncio.Event()
        self._caller_quiet = asyncio.Event()
        self._caller_quiet.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.asked: list[str] = []
        self.said: list[str] = []
        self.promised: list[str] = []
        self.failures: list[str] = []
        self.barge_ins = 0
        self.pauses = 0
        self.resumes = 0
        self.started_at: float | None = None
        self.first_audio_at: float | None = None
        self.last_stop_at: float | None = None
        self._spoke_until: float | None = None
        self._pause_timer: asyncio.TimerHandle | None = None
        self._run_over_speech = False
        self._listening: list[float] = []
        """When backchannels heard over its speech ended, awaiting their transcripts."""
        self._input = _InputClock()

    # -- Participant ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.port is not None and not self._closed

    def decoder(self) -> AudioDecoder:
        return PcmPassthrough()

    def play_pcm(self, pcm: bytes) -> None:
        """The caller's voice (16 kHz): greet when it first arrives, listen for barge-in."""
        if self._closed:
            return
        if not self._greeted.is_set():
            self._greeted.set()
            self._reply_task = asyncio.get_running_loop().create_task(self._greet())
        late_ms = self._input.arrived(len(pcm) // BYTES_PER_MS)
        detector = self._detector
        was_speaking = detector.speaking
        for decision in detector.push(pcm):
            if decision == PAUSE and self.speaking and not self._playout.paused:
                self._pause(late_ms)
            elif decision == INTERRUPT:
                self._run_over_speech = False
                if self.speaking:
                    self.interrupt("barge_in", late_ms=late_ms)
            elif decision == QUIET and self._playout.paused:
                self._resume("quiet")
        if detector.speaking and not was_speaking:
            self._run_over_speech = self.speaking
        elif was_speaking and not detector.speaking and self._run_over_speech:
            # A run over its speech ended without interrupting: a backchannel, whose
            # transcript may come after the reply is over.
            self._run_over_speech = False
            self._listening.append(time.monotonic())
        if detector.speaking:
            self._caller_quiet.clear()
        else:
            self._caller_quiet.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_pause_timer()
        self._playout.clear()
        await self._cancel_reply()
        await self._playout.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.port is not None:
            self.port.on_left(self, hung_up=False)

    # -- state ------------------------------------------------------------------------------

    @property
    def played_ms(self) -> int:
        """All the audio it has sent into the call so far (what transports dropped at a
        pause or an interruption not counted)."""
        return self._playout.released_ms

    @property
    def speaking(self) -> bool:
        return self._playout.playing or (self._reply is not None and not self._reply.done)

    async def start(self) -> None:
        """Load what the voice agent may know about the caller."""
        self.started_at = time.monotonic()
        await self.context.load(self._services.store)
        # Articles imported while the server runs (`kb import`) are picked up per call.
        await self._services.knowledge.refresh_if_changed(self._services.store)

    def recall(self, earlier: list[dict[str, Any]]) -> None:
        """The conversation so far, from the call's history (its final transcripts), when
        it comes back to a call that moved from a server that died (or restarted): its
        replies and its handover summary go on from there."""
        for event in earlier:
            text = str(event.get("text") or "").strip()
            if event.get("type") != events.TRANSCRIPT or not event.get("final") or not text:
                continue
            if event.get("speaker") == "customer":
                self.context.add_turn(event)
                self.asked.append(text)
            elif event.get("speaker") == ROLE:
                self.context.add_turn({**event, "speaker": "agent"})
                self.said.append(text)

    # -- the caller's turns -----------------------------------------------------------------

    def on_transcript(self, event: dict[str, Any]) -> None:
        """A final transcript of the caller: answer it, or let a backchannel pass."""
        if self._closed or event.get("speaker") != "customer" or not event.get("final"):
            return
        text = str(event.get("text") or "").strip()
        if not text:
            return
        over_speech = self._take_listening()
        if is_backchannel(text) and (over_speech or self.speaking or self._just_spoke()):
            # Listening noises neither stop the voice agent nor get an answer of their own
            # (a final transcript comes ~0.5 s after the words, seconds when speech-to-text
            # is busy: the reply may be over by then).
            if self._playout.paused and not self._detector.speaking:
                self._resume("backchannel")
            return
        if self.speaking:
            # Words that are not a backchannel, spoken over the voice agent (paused or not):
            # it yields.
            self.interrupt("barge_in")
        self.context.add_turn(event)
        self.asked.append(text)
        previous = self._reply_task
        self._reply_task = asyncio.get_running_loop().create_task(self._answer(previous, text))

    def interrupt(self, reason: str, *, late_ms: int = 0) -> None:
        """Stop talking now: drop queued audio here and in every transport; the reply's
        final transcript is what the caller heard."""
        if self._closed:
            return
        if not self._playout.paused:  # paused, the transports hold nothing of it already
            self._stop_audio()
        reply = self._reply
        heard = reply is not None and self._playout.released_ms > reply.played_from_ms
        dropped = self._playout.clear()
        self._cancel_pause_timer()
        self.last_stop_at = time.monotonic()
        if reason == "barge_in" and heard:
            # The caller cut a reply it was hearing (not one still being prepared, which a
            # turn that goes on after a pause also cancels).
            self.barge_ins += 1
        log.info(
            "call %s: voice agent stopped (%s, %d ms unplayed, caller audio %d ms late)",
            self.call_id, reason, dropped, late_ms,
        )  # fmt: skip
        task = self._reply_task
        if task is not None and not task.done():
            task.cancel()
        event = self._close_reply(interrupted=True)
        if event is not None:
            self._spawn(self._publish_final(event))

    def _stop_audio(self) -> None:
        """Hold the playout and take back what the transports had not played yet."""
        self._playout.pause()
        if self.port is not None:
            self._playout.take_back(self.port.interrupt(self))

    def _pause(self, late_ms: int) -> None:
        """The caller started talking: fall silent at once, keeping the rest of the reply."""
        self._stop_audio()
        self.pauses += 1
        self.last_stop_at = time.monotonic()
        self._cancel_pause_timer()
        self._pause_timer = asyncio.get_running_loop().call_later(
            PAUSE_MAX_S, self._pause_expired
        )
        log.info("call %s: voice agent paused (caller audio %d ms late)", self.call_id, late_ms)

    def _resume(self, why: str) -> None:
        """It was not an interruption: go on from where the caller stopped hearing it."""
        self._cancel_pause_timer()
        self.resumes += 1
        self._playout.resume()
        log.info("call %s: voice agent resumed (%s)", self.call_id, why)

    def _pause_expired(self) -> None:
        self._pause_timer = None
        if self._playout.paused and self.speaking:
            self.interrupt("barge_in")

    def _cancel_pause_timer(self) -> None:
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None

    def _take_listening(self) -> bool:
        """Whether a run of the caller's speech over its own (short of an interruption)
        is still waiting for its transcript; a final transcript takes the oldest (they
        come in the order they were spoken)."""
        now = time.monotonic()
        self._listening = [t for t in self._listening if now - t < LISTENING_MEMORY_S]
        if self._listening:
            self._listening.pop(0)
            return True
        return False

    async def _answer(self, previous: asyncio.Task[None] | None, text: str) -> None:
        if previous is not None and not previous.done():
            previous.cancel()
            with contextlib.suppress(BaseException):
                await previous
        await self._finish_reply(interrupted=True)
        # The caller may go on: wait for the end of the turn (bounded).
        await asyncio.sleep(TURN_SETTLE_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TURN_WAIT_MAX_S):
                await self._caller_quiet.wait()
        if _WANTS_HUMAN.search(text):
            await self._say([HUMAN])
            return
        try:
            await self._say_reply()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._fail("the reply could not be generated", exc)

    async def _greet(self) -> None:
        try:
            await self._say(split_sentences(self._greeting))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._fail("the greeting could not be spoken", exc)

    def _just_spoke(self) -> bool:
        return self._spoke_until is not None and time.monotonic() - self._spoke_until < JUST_SPOKE_S

    # -- speaking ---------------------------------------------------------------------------

    async def _say(self, sentences: list[str]) -> None:
        """Speak fixed text."""
        reply = self._begin_reply()
        try:
            for sentence in sentences:
                if self._reply is not reply:
                    return
                await self._speak_sentence(reply, sentence)
            await self._end_reply(reply)
        except TextToSpeechError as exc:
            await self._fail("the speech engine failed", exc)

    async def _say_reply(self) -> None:
        """Speak the engine's reply to this moment of the call, sentence by sentence as it
        streams in."""
        from server.assist.engine import EngineStatus, SuggestionChunk

        services = self._services
        await self.context.resolve_orders(services.store)
        snapshot = self._guarded(self.context.snapshot(services.knowledge))
        splitter = SentenceSplitter()
        reply = self._begin_reply()
        reply_key: str | None = None
        actions: dict[str, str] = {}
        spoke = False
        try:
            async with aclosing(services.engine.suggest(snapshot)) as stream:
                async for item in stream:
                    if isinstance(item, EngineStatus):
                        await self._status(item.level, item.code, item.message)
                        continue
                    if not isinstance(item, SuggestionChunk):
                        continue
                    if item.kind == "action":
                        actions[item.key] = actions.get(item.key, "") + item.delta
                        continue
                    if item.kind != "reply" or (reply_key is not None and item.key != reply_key):
                        continue
                    reply_key = item.key
                    for sentence in splitter.feed(item.delta):
                        await self._speak_sentence(reply, as_team(sentence))
                        spoke = True
            for sentence in splitter.flush():
                await self._speak_sentence(reply, as_team(sentence))
                spoke = True
            promised = [a.strip() for a in actions.values() if a.strip()]
            if not spoke:
                await self._speak_sentence(reply, NO_ANSWER)
            elif promised:
                # It cannot act itself: what the engine would do becomes a colleague's task.
                reply.actions.extend(promised)
                await self._speak_sentence(reply, PROMISE)
            await self._end_reply(reply)
        except TextToSpeechError as exc:
            await self._fail("the speech engine failed", exc)

    def _guarded(self, snapshot: ContextSnapshot) -> ContextSnapshot:
        """What the voice agent may talk about with a caller nobody has verified: the
        orders the caller named (on their own account) and the knowledge base, not the
        rest of the linked record. A phone number or an email is a claim, not a proof: not
        even the record's name is said (the tier stays, for the policy that applies)."""
        named = tuple(o for o in snapshot.mentioned_orders if o.get("belongs_to_caller"))
        focus = snapshot.focus_order if snapshot.focus_reason == "mentioned" else None
        record = snapshot.customer or {}
        return dataclasses.replace(
            snapshot,
            customer={"customer_id": snapshot.customer_id, "tier": record.get("tier")},
            orders=named,
            tickets=(),
            previous_calls=(),
            focus_order=focus,
            focus_reason=snapshot.focus_reason if focus is not None else "",
        )

    def _begin_reply(self) -> _Reply:
        start = self._clock_ms()
        reply = _Reply(
            segment_id=f"{ROLE}-{start}",
            start_ms=start,
            played_from_ms=self._playout.released_ms,
        )
        self._reply = reply
        self._detector.reset()
        self._run_over_speech = False
        self._cancel_pause_timer()
        if self._playout.paused:  # what an earlier reply left: never to be heard
            self._playout.clear()
        return reply

    async def _speak_sentence(self, reply: _Reply, sentence: str) -> None:
        start = reply.queued_ms
        ready = self._services.phrases.get(sentence)
        if ready is not None:
            self._playout.enqueue(ready)
            reply.queued_ms += len(ready) // BYTES_PER_MS
        else:
            async for pcm in self._services.tts.synthesize(sentence, sample_rate=SAMPLE_RATE):
                if self._reply is not reply:
                    return
                self._playout.enqueue(pcm)
                reply.queued_ms += len(pcm) // BYTES_PER_MS
        self._playout.finish()
        reply.sentences.append((sentence, start, reply.queued_ms))
        # Pages show the reply as it is spoken; the final transcript replaces it. Not awaited:
        # the next sentence must not wait behind the call's event log (a persisted write
        # under load held it up to 0.7 s, a gap the caller heard).
        self._spawn(self._publish_interim(reply))

    async def _end_reply(self, reply: _Reply) -> None:
        """All of the reply is queued: wait until it has been heard, then publish it."""
        playout = self._playout
        while self._reply is reply:
            await playout.wait_idle()
            # A pause may have taken frames back between the wake-up and now.
            if not playout.playing:
                break
        if self._reply is reply:
            await self._finish_reply(interrupted=False)

    async def _finish_reply(self, *, interrupted: bool) -> None:
        """Publish the reply's final transcript: what the caller heard of it."""
        event = self._close_reply(interrupted=interrupted)
        if event is not None:
            await self._publish_final(event)

    def _close_reply(self, *, interrupted: bool) -> dict[str, Any] | None:
        """End the current reply now: its final transcript event (None if nothing of it
        was heard or there is none)."""
        reply = self._reply
        if reply is None or reply.done:
            return None
        reply.done = True
        self._reply = None
        self._spoke_until = time.monotonic()
        heard_ms = self._playout.played_ms - reply.played_from_ms
        text = (
            heard_text(reply.sentences, heard_ms)
            if interrupted
            else " ".join(s for s, _, _ in reply.sentences)
        )
        if reply.actions and (not interrupted or PROMISE in text):
            self.promised.extend(reply.actions)
        if not text:
            return None
        self.said.append(text)
        end = reply.start_ms + min(heard_ms, reply.queued_ms)
        event = events.make(
            events.TRANSCRIPT,
            self.call_id,
            speaker=ROLE,
            segment_id=reply.segment_id,
            text=text,
            final=True,
            start_ms=reply.start_ms,
            end_ms=max(end, reply.start_ms),
        )
        self.context.add_turn({**event, "speaker": "agent"})
        return event

    async def _publish_final(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self._publish(event)

    async def _publish_interim(self, reply: _Reply) -> None:
        event = events.make(
            events.TRANSCRIPT,
            self.call_id,
            speaker=ROLE,
            segment_id=reply.segment_id,
            text=" ".join(s for s, _, _ in reply.sentences),
            final=False,
            start_ms=reply.start_ms,
            end_ms=reply.start_ms + reply.queued_ms,
        )
        with contextlib.suppress(Exception):
            await self._publish(event)

    def _speak_frame(self, frame: bytes) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
        if self.port is not None and not self._closed:
            self.port.on_audio(self, frame)

    # -- failure ----------------------------------------------------------------------------

    async def _fail(self, what: str, exc: BaseException) -> None:
        """The caller hears a short fixed phrase and stays in the queue; agents are told."""
        log.warning("call %s: voice agent: %s: %s", self.call_id, what, exc)
        await self._finish_reply(interrupted=True)
        self.failures.append(what)
        await self._status(
            "error",
            "voice_agent_failed",
            f"The voice agent stopped answering ({what}); the caller is waiting for a person.",
        )
        if self._closed:
            return
        reply = self._begin_reply()
        self._playout.enqueue(self._services.fallback_pcm)
        self._playout.finish()
        reply.queued_ms = len(self._services.fallback_pcm) // BYTES_PER_MS
        reply.sentences.append((FALLBACK, 0, reply.queued_ms))
        await self._end_reply(reply)

    async def _status(self, level: str, code: str, message: str) -> None:
        with contextlib.suppress(Exception):
            await self._publish(events.status(self.call_id, level, code, message))

    # -- handover ---------------------------------------------------------------------------

    async def handover(self) -> dict[str, Any]:
        """An agent accepted: fall silent at once and sum up the conversation for them."""
        if self.speaking:
            self.interrupt("handover")
        await self._cancel_reply()
        await self._finish_reply(interrupted=True)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        from server.assist.summary import build_summary

        snapshot = self.context.snapshot(self._services.knowledge)
        local = build_summary(snapshot)
        named = [o.get("order_id") for o in snapshot.mentioned_orders]
        reason = local.get("reason") or "General inquiry"
        parts = [f"The caller talked with the voice agent about: {reason.lower()}."]
        if self.asked:
            quoted = " / ".join(f"\u201c{a}\u201d" for a in self.asked[-3:])
            parts.append(f"They said: {quoted}.")
        if named:
            parts.append(f"Orders named: {', '.join(str(n) for n in named)}.")
        if self.promised:
            parts.append("Promised for you to do: " + " ".join(self.promised))
        else:
            parts.append("Nothing was promised; nothing was changed on the account.")
        if self.failures:
            parts.append("The voice agent had a failure: " + "; ".join(self.failures) + ".")
        done = [
            f"Looked up order {o.get('order_id')} ({o.get('status')}) for the caller."
            for o in snapshot.mentioned_orders
            if o.get("belongs_to_caller")
        ]
        return {
            "reason": reason,
            "asked": list(self.asked),
            "said": list(self.said),
            "done": done,
            "promised": list(self.promised),
            "orders": named,
            "failures": list(self.failures),
            "barge_ins": self.barge_ins,
            "text": " ".join(parts),
        }

    # -- tasks ------------------------------------------------------------------------------

    async def _cancel_reply(self) -> None:
        task = self._reply_task
        self._reply_task = None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s: voice agent task failed", self.call_id, exc_info=task.exception())
