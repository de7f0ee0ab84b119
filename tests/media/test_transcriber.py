"""CallTranscriber against engine test doubles at the SpeechToText interface."""

from __future__ import annotations

import asyncio
import time

import pytest

from media.audio import BYTES_PER_MS, SegmentEvent, Transcript
from media.stt.base import SpeechToText, SpeechToTextError
from media.transcriber import BEHIND_S, MERGE_MAX_MS, CallTranscriber
from server.config import SpeechSettings


def label_pcm(label: str, ms: int = 500) -> bytes:
    """Audio that a ScriptedEngine "hears" as `label`: the label's bytes, then zeros."""
    return label.encode().ljust(ms * BYTES_PER_MS, b"\0")


def segment(
    label: str, start_ms: int, *, speaker: str = "customer", final: bool = True, ms: int = 500
) -> SegmentEvent:
    return SegmentEvent(
        speaker=speaker,
        segment_id=f"{speaker}-{start_ms}",
        pcm=label_pcm(label, ms),
        start_ms=start_ms,
        end_ms=start_ms + ms,
        final=final,
    )


class ScriptedEngine(SpeechToText):
    """Slow on purpose; says the labels in the audio; fails on labels starting "fail"."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.heard: list[str] = []
        self.prompts: list[str | None] = []
        self.active = 0
        self.max_active = 0
        self.release = asyncio.Event()
        self.release.set()
        self.behind = False
        """What `saturated` says: other calls' finals wait for this engine."""

    async def transcribe(self, pcm: bytes, *, prompt: str | None = None) -> str:
        text = " ".join(part.decode() for part in pcm.split(b"\0") if part)
        self.heard.append(text)
        self.prompts.append(prompt)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self.release.wait()
            await asyncio.sleep(self.delay_s)
        finally:
            self.active -= 1
        if text.startswith("fail"):
            raise SpeechToTextError("engine exploded")
        if text.startswith("blank"):
            return " [BLANK_AUDIO] "
        return text

    @property
    def saturated(self) -> bool:
        return self.behind

    @property
    def busy(self) -> bool:
        return self.active > 0


class Call:
    """A transcriber wired to lists, as the call session wires it to events."""

    def __init__(self, engine: SpeechToText, behind_s: float = BEHIND_S, **settings: int) -> None:
        self.transcripts: list[Transcript] = []
        self.statuses: list[tuple[str, str, str]] = []
        self.changed = asyncio.Event()
        self.transcriber = CallTranscriber(
            engine=engine,
            settings=SpeechSettings(**settings),  # type: ignore[arg-type]
            emit_transcript=self._transcript,
            emit_status=self._status,
            behind_s=behind_s,
        )

    async def _transcript(self, transcript: Transcript) -> None:
        self.transcripts.append(transcript)
        self.changed.set()

    async def _status(self, level: str, code: str, message: str) -> None:
        self.statuses.append((level, code, message))
        self.changed.set()

    @property
    def finals(self) -> list[Transcript]:
        return [t for t in self.transcripts if t.final]

    def codes(self) -> list[str]:
        return [code for _, code, _ in self.statuses]

    async def until(self, condition: object, within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s):
            while not condition():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


async def test_finals_in_order_with_their_times() -> None:
    call = Call(ScriptedEngine(0.01))
    for i, label in enumerate(["hello", "blank", "there", "   "]):
        call.transcriber.submit(segment(label, 1000 * i))
    await call.until(lambda: len(call.finals) == 2)
    await call.transcriber.close(drain=True)
    assert [(t.text, t.segment_id, t.start_ms, t.end_ms) for t in call.finals] == [
        ("hello", "customer-0", 0, 500),
        ("there", "customer-2000", 2000, 2500),
    ]
    # "[BLANK_AUDIO]" and nothing at all made no transcript, and no status either.
    assert call.statuses == []
    await call.transcriber.close()


async def test_submit_never_blocks_and_backlog_is_merged_and_reported() -> None:
    engine = ScriptedEngine(0.05)
    call = Call(engine, queue_max_segments=3)
    labels = [f"w{i}" for i in range(12)]
    started = time.perf_counter()
    for i, label in enumerate(labels):
        call.transcriber.submit(segment(label, 700 * i))
    assert time.perf_counter() - started < 0.01
    assert call.transcriber.pending <= 3
    await call.transcriber.close(drain=True)

    # Nothing was lost: every word arrived, in order, in fewer engine requests.
    said = " ".join(t.text for t in call.finals).split()
    assert said == labels
    assert len(engine.heard) < len(labels)
    merged = [t for t in call.finals if len(t.text.split()) > 1]
    assert merged and all(t.end_ms - t.start_ms > 500 for t in merged)
    # One warning for the episode, and word when it is over.
    assert call.codes() == ["stt_behind", "stt_caught_up"]
    assert call.statuses[0][0] == "warning"
    assert engine.max_active == 1


async def test_backlog_that_cannot_merge_drops_the_oldest_audio() -> None:
    engine = ScriptedEngine()
    engine.release.clear()  # the engine hangs until released
    call = Call(engine, queue_max_segments=2)
    long_ms = MERGE_MAX_MS // 2 + 1000  # no two of these fit one request
    for i in range(5):
        call.transcriber.submit(segment(f"s{i}", i * long_ms, ms=long_ms))
        await asyncio.sleep(0)
    engine.release.set()
    await call.transcriber.close(drain=True)
    dropped = [s for s in call.statuses if s[1] == "stt_segment_dropped"]
    assert len(dropped) == 2 and all(level == "warning" for level, _, _ in dropped)
    assert "customer audio" in dropped[0][2]
    # s0 was already with the engine; s1 and s2 were dropped; the newest survive.
    assert [t.text for t in call.finals] == ["s0", "s3", "s4"]


async def test_engine_failures_skip_a_segment_and_the_rest_arrive() -> None:
    call = Call(ScriptedEngine(0.01))
    for i, label in enumerate(["one", "fail-two", "three"]):
        call.transcriber.submit(segment(label, 2000 * i))
    await call.until(lambda: len(call.finals) == 2)
    assert [t.text for t in call.finals] == ["one", "three"]
    [(level, code, message)] = call.statuses
    assert (level, code) == ("warning", "stt_segment_skipped")
    assert "engine exploded" in message and "0:02" in message
    await call.transcriber.close()


async def test_interims_only_for_open_segments_and_never_before_finals() -> None:
    engine = ScriptedEngine(0.05)
    call = Call(engine)
    transcriber = call.transcriber
    # An open utterance: its snapshot is transcribed while the engine is idle.
    transcriber.submit(segment("hel", 0, final=False))
    await call.until(lambda: len(call.transcripts) == 1)
    assert call.transcripts[0].final is False and call.transcripts[0].text == "hel"
    # Snapshots pile up while a final is in flight: only the newest is kept, and it is
    # dropped unheard once its own final comes.
    transcriber.submit(segment("first", 5000, speaker="agent"))
    await asyncio.sleep(0.01)
    transcriber.submit(segment("hel-lo", 0, final=False))
    transcriber.submit(segment("hel-lo-th", 0, final=False))
    transcriber.submit(segment("hello there", 0))
    transcriber.submit(segment("hello th", 0, final=False))  # late snapshot: ignored
    await transcriber.close(drain=True)
    assert engine.heard == ["hel", "first", "hello there"]
    assert [(t.text, t.final) for t in call.transcripts] == [
        ("hel", False),
        ("first", True),
        ("hello there", True),
    ]
    assert transcriber.stats.stale_partials == 3


async def test_finals_go_before_snapshots_of_other_speakers() -> None:
    engine = ScriptedEngine(0.02)
    engine.release.clear()
    call = Call(engine)
    call.transcriber.submit(segment("a1", 0, speaker="agent"))
    await asyncio.sleep(0)
    call.transcriber.submit(segment("c-partial", 100, final=False))
    call.transcriber.submit(segment("a2", 900, speaker="agent"))
    engine.release.set()
    await call.until(lambda: len(call.transcripts) == 3)
    assert engine.heard == ["a1", "a2", "c-partial"]
    assert engine.max_active == 1
    await call.transcriber.close()


async def test_a_continuation_gets_the_earlier_text_as_prompt() -> None:
    engine = ScriptedEngine()
    call = Call(engine)
    call.transcriber.submit(segment("part one", 0))  # 0..500
    call.transcriber.submit(segment("part two", 500))  # cut at max length: goes on at once
    call.transcriber.submit(segment("later", 9000))
    await call.transcriber.close(drain=True)
    assert engine.prompts == [None, "part one", None]


async def test_close_cancels_work_and_is_idempotent() -> None:
    engine = ScriptedEngine()
    engine.release.clear()
    call = Call(engine)
    call.transcriber.submit(segment("stuck", 0))
    await asyncio.sleep(0.01)
    assert engine.active == 1
    await call.transcriber.close()
    assert engine.active == 0  # the request was cancelled with the task
    await call.transcriber.close()
    call.transcriber.submit(segment("after", 1000))
    await asyncio.sleep(0.01)
    assert engine.heard == ["stuck"] and call.transcripts == []


@pytest.mark.parametrize("drain", [True, False])
async def test_close_with_drain_finishes_queued_finals(drain: bool) -> None:
    engine = ScriptedEngine(0.01)
    call = Call(engine)
    for i in range(3):
        call.transcriber.submit(segment(f"q{i}", 1000 * i))
    await call.transcriber.close(drain=drain)
    texts = [t.text for t in call.finals]
    assert texts == (["q0", "q1", "q2"] if drain else [])
