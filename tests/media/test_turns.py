"""Faster end of turn: the finished-sentence rule, the segmenter's endpoint snapshot, and
what the transcriber makes of it (final early, nothing twice, a speaker who goes on)."""

from __future__ import annotations

import asyncio

import pytest

from media.audio import BYTES_PER_MS, SegmentEvent
from media.turns import reads_finished
from tests.media.test_segmenter import FRAME_MS, TAIL, make, quiet, speech
from tests.media.test_transcriber import Call, ScriptedEngine, label_pcm


@pytest.mark.parametrize(
    "text",
    [
        "Yes, that is correct.",
        "I would like to cancel my subscription, please.",
        "When will my package be delivered?",
        "Thank you!",
        "How can I help you?",
        'She said "okay."',
    ],
)
def test_finished_sentences(text: str) -> None:
    assert reads_finished(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I want to",  # no end mark
        "I want to.",  # Whisper's full stop on a cut-off sentence
        "My order number is.",
        "My order number is 78901.",  # numbers are read in groups
        "I was charged twice and.",
        "Hi, I want a refund for the.",
        "Um.",
        "Yes.",  # one word: "Yes, that is correct." pauses after it
        "Hi.",
        "Hello,",
        "Let me check...",
        "Let me check…",
        "It arrived broken -",
        "...",
    ],
)
def test_unfinished_sentences(text: str) -> None:
    assert not reads_finished(text)


# -- the segmenter ------------------------------------------------------------------------


def test_a_pause_sends_one_endpoint_snapshot_before_the_final() -> None:
    seg = make(origin_ms=1000, preroll_ms=0, silence_ms=300, endpoint_silence_ms=120)
    events = seg.push(quiet(600) + speech(900) + quiet(600))
    assert [(e.final, e.endpoint) for e in events] == [(False, True), (True, False)]
    endpoint, final = events
    # 120 ms of pause (4 frames of 30 ms) after the speech; both say where speech ended.
    assert endpoint.start_ms == final.start_ms and endpoint.segment_id == final.segment_id
    assert endpoint.speech_end_ms == final.speech_end_ms == 1000 + 600 + 900
    assert endpoint.end_ms == 1000 + 600 + 900 + 4 * FRAME_MS
    assert final.end_ms == 1000 + 600 + 900 + TAIL
    assert endpoint.pcm == final.pcm[: len(endpoint.pcm)]
    assert endpoint.start_ms == 1000 + 600


def test_no_endpoint_snapshot_for_a_shorter_pause_or_when_disabled() -> None:
    seg = make(silence_ms=300, endpoint_silence_ms=120)
    # 90 ms pauses inside speech: no endpoint snapshot.
    events = seg.push(speech(600) + quiet(90) + speech(600) + quiet(90) + speech(300))
    assert events == []
    for endpoint_ms in (0, 300, 450):  # off, or not shorter than the pause that ends it
        seg = make(silence_ms=300, endpoint_silence_ms=endpoint_ms)
        events = seg.push(speech(900) + quiet(600))
        assert [(e.final, e.endpoint) for e in events] == [(True, False)]


def test_speech_going_on_after_an_endpoint_snapshot_is_told_at_once() -> None:
    seg = make(silence_ms=300, endpoint_silence_ms=120)
    events = seg.push(speech(900) + quiet(150))
    assert [(e.final, e.endpoint) for e in events] == [(False, True)]
    # The first frame of speech after it sends a plain snapshot holding that frame.
    resumed = seg.push(speech(FRAME_MS))
    assert [(e.final, e.endpoint) for e in resumed] == [(False, False)]
    assert resumed[0].speech_end_ms == resumed[0].end_ms == events[0].end_ms + 30 + FRAME_MS
    # Each pause of the utterance gets its own endpoint snapshot.
    events = seg.push(speech(600) + quiet(600))
    assert [(e.final, e.endpoint) for e in events] == [(False, True), (True, False)]
    second, final = events
    assert second.speech_end_ms == final.speech_end_ms > resumed[0].speech_end_ms


# -- the transcriber ----------------------------------------------------------------------


def utterance(parts: list[tuple[str, int]]) -> bytes:
    return b"".join(label_pcm(label, ms) for label, ms in parts)


def event(
    pcm: bytes, *, final: bool, endpoint: bool = False, speech_end_ms: int, start_ms: int = 0
) -> SegmentEvent:
    return SegmentEvent(
        speaker="customer",
        segment_id=f"customer-{start_ms}",
        pcm=pcm,
        start_ms=start_ms,
        end_ms=start_ms + len(pcm) // BYTES_PER_MS,
        final=final,
        speech_end_ms=speech_end_ms,
        endpoint=endpoint,
    )


async def test_a_finished_sentence_is_final_at_the_pause_and_not_transcribed_twice() -> None:
    engine = ScriptedEngine()
    call = Call(engine)
    said = utterance([("I want a refund.", 900), ("", 120)])
    call.transcriber.submit(event(said, final=False, endpoint=True, speech_end_ms=900))
    await call.until(lambda: call.finals)
    # The segmenter's final, 180 ms later: nothing said after the endpoint.
    call.transcriber.submit(event(said + bytes(80 * BYTES_PER_MS), final=True, speech_end_ms=900))
    await call.transcriber.close(drain=True)
    assert [(t.text, t.final, t.segment_id, t.start_ms, t.end_ms) for t in call.transcripts] == [
        ("I want a refund.", True, "customer-0", 0, 1020)
    ]
    assert engine.heard == ["I want a refund."]
    stats = call.transcriber.stats
    assert (stats.finals, stats.endpoints, stats.split) == (1, 1, 0)


async def test_an_unfinished_sentence_waits_for_the_full_pause() -> None:
    engine = ScriptedEngine()
    call = Call(engine)
    first = utterance([("I want to.", 900), ("", 120)])
    call.transcriber.submit(event(first, final=False, endpoint=True, speech_end_ms=900))
    await call.until(lambda: call.transcripts)
    whole = utterance([("I want to.", 900), ("cancel.", 600), ("", 200)])
    call.transcriber.submit(event(whole, final=True, speech_end_ms=1500))
    await call.until(lambda: call.finals)
    await call.transcriber.close(drain=True)
    # Its text was shown as an interim; the final is the whole utterance.
    assert [(t.text, t.final, t.segment_id, t.end_ms) for t in call.transcripts] == [
        ("I want to.", False, "customer-0", 1020),
        ("I want to. cancel.", True, "customer-0", 1700),
    ]
    assert call.transcriber.stats.endpoints == 0


async def test_a_speaker_who_goes_on_gets_a_new_segment_for_the_rest() -> None:
    engine = ScriptedEngine()
    call = Call(engine)
    first = utterance([("That is right.", 600), ("", 120)])
    call.transcriber.submit(event(first, final=False, endpoint=True, speech_end_ms=600))
    await call.until(lambda: call.finals)
    # 150 ms after the endpoint the speaker went on; an interim snapshot, then the final.
    rest = utterance([("", 30), ("And my email too.", 900), ("", 200)])
    call.transcriber.submit(
        event(first + rest[: 500 * BYTES_PER_MS], final=False, speech_end_ms=1250)
    )
    call.transcriber.submit(event(first + rest, final=True, speech_end_ms=1650))
    await call.until(lambda: len(call.finals) == 2)
    await call.transcriber.close(drain=True)
    assert [(t.text, t.final, t.segment_id, t.start_ms, t.end_ms) for t in call.finals] == [
        ("That is right.", True, "customer-0", 0, 720),
        ("And my email too.", True, "customer-720", 720, 1850),
    ]
    # Each stretch of audio went to the engine once.
    assert engine.heard == ["That is right.", "And my email too."]
    assert call.transcriber.stats.split == 1


async def decoding(engine: ScriptedEngine) -> None:
    """Until the engine holds a request (released with `engine.release`)."""
    async with asyncio.timeout(5):
        while not engine.active:  # noqa: ASYNC110 - the test double has no event for it
            await asyncio.sleep(0.005)


async def test_an_endpoint_behind_its_queued_final_still_ends_the_turn_once() -> None:
    """The final arrives while the endpoint is being decoded: one final transcript."""
    engine = ScriptedEngine()
    engine.release.clear()
    call = Call(engine)
    said = utterance([("Okay, one moment please.", 900), ("", 120)])
    call.transcriber.submit(event(said, final=False, endpoint=True, speech_end_ms=900))
    await decoding(engine)
    call.transcriber.submit(event(said + bytes(80 * BYTES_PER_MS), final=True, speech_end_ms=900))
    engine.release.set()
    await call.until(lambda: call.finals)
    await call.transcriber.close(drain=True)
    assert [(t.text, t.final) for t in call.transcripts] == [("Okay, one moment please.", True)]
    assert engine.heard == ["Okay, one moment please."]


async def test_speech_going_on_while_the_endpoint_is_decoded_keeps_the_turn_open() -> None:
    engine = ScriptedEngine()
    engine.release.clear()
    call = Call(engine)
    first = utterance([("It arrived.", 900), ("", 120)])
    call.transcriber.submit(event(first, final=False, endpoint=True, speech_end_ms=900))
    await decoding(engine)
    # The segmenter's snapshot as speech goes on, 150 ms into the pause.
    call.transcriber.submit(event(first + label_pcm("x", 30), final=False, speech_end_ms=1080))
    engine.release.set()
    whole = first + label_pcm("broken.", 600) + bytes(200 * BYTES_PER_MS)
    await call.until(lambda: call.transcripts)
    call.transcriber.submit(event(whole, final=True, speech_end_ms=1650))
    await call.until(lambda: call.finals)
    await call.transcriber.close(drain=True)
    # "It arrived." read as finished, but the speaker had gone on: only an interim.
    assert [(t.text, t.final, t.segment_id) for t in call.transcripts] == [
        ("It arrived.", False, "customer-0"),
        ("It arrived. broken.", True, "customer-0"),
    ]
    assert (call.transcriber.stats.endpoints, call.transcriber.stats.split) == (0, 0)


async def test_two_sentences_of_one_utterance_become_two_finals_and_nothing_more() -> None:
    engine = ScriptedEngine()
    call = Call(engine)
    one = utterance([("I need a refund please.", 900), ("", 120)])
    call.transcriber.submit(event(one, final=False, endpoint=True, speech_end_ms=900))
    await call.until(lambda: len(call.finals) == 1)
    two = one + utterance([("", 180), ("My order is late.", 900), ("", 120)])
    call.transcriber.submit(event(two, final=False, endpoint=True, speech_end_ms=2100))
    await call.until(lambda: len(call.finals) == 2)
    call.transcriber.submit(event(two + bytes(80 * BYTES_PER_MS), final=True, speech_end_ms=2100))
    await call.transcriber.close(drain=True)
    assert [(t.text, t.segment_id, t.start_ms, t.end_ms) for t in call.transcripts] == [
        ("I need a refund please.", "customer-0", 0, 1020),
        ("My order is late.", "customer-1020", 1020, 2220),
    ]
    assert engine.heard == ["I need a refund please.", "My order is late."]


async def test_an_engine_that_is_behind_gets_no_endpoint_snapshots_the_final_ends_the_turn() -> (
    None
):
    """Other calls' finals waiting for the engine: an endpoint snapshot is speculative work
    (at a comma it is not the turn's end), so it is skipped and the final decides."""
    engine = ScriptedEngine()
    engine.behind = True
    call = Call(engine)
    said = utterance([("I want a refund.", 900), ("", 120)])
    call.transcriber.submit(event(said, final=False, endpoint=True, speech_end_ms=900))
    await asyncio.sleep(0.05)
    assert call.transcripts == [] and engine.heard == []
    call.transcriber.submit(event(said + bytes(80 * BYTES_PER_MS), final=True, speech_end_ms=900))
    await call.transcriber.close(drain=True)
    assert [(t.text, t.final, t.end_ms) for t in call.transcripts] == [
        ("I want a refund.", True, 1100)
    ]
    assert engine.heard == ["I want a refund."]
    stats = call.transcriber.stats
    assert (stats.finals, stats.endpoints, stats.endpoints_skipped) == (1, 0, 1)
