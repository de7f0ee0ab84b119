"""The segmenter on synthetic frames: a frame is speech when its samples are not zero."""

from __future__ import annotations

from media.audio import BYTES_PER_MS, SegmentEvent
from media.segmenter import START_RATIO, START_WINDOW_MS, TAIL_MS, Segmenter
from server.config import SpeechSettings

FRAME_MS = 30
PREROLL_MS = SpeechSettings().preroll_ms // FRAME_MS * FRAME_MS
TAIL = TAIL_MS // FRAME_MS * FRAME_MS
# The most speech that does not start an utterance.
BLIP_MS = (round(START_WINDOW_MS // FRAME_MS * START_RATIO) - 1) * FRAME_MS


def speech(ms: int) -> bytes:
    return b"\x01\x00" * (ms * BYTES_PER_MS // 2)


def quiet(ms: int) -> bytes:
    return bytes(ms * BYTES_PER_MS)


def is_speech(frame: bytes) -> bool:
    return any(frame)


def make(origin_ms: int = 0, **overrides: int) -> Segmenter:
    settings = SpeechSettings(
        **{"interim_interval_ms": 0, "endpoint_silence_ms": 0, **overrides}  # type: ignore[arg-type]
    )
    return Segmenter(
        speaker="customer",
        settings=settings,
        is_speech=is_speech,
        frame_ms=FRAME_MS,
        origin_ms=origin_ms,
    )


def finals(events: list[SegmentEvent]) -> list[SegmentEvent]:
    return [e for e in events if e.final]


def test_silence_and_blips_make_no_segments() -> None:
    seg = make()
    events = seg.push(quiet(3000))
    # Shorter than the start window: a click or a cough.
    events += seg.push(speech(BLIP_MS) + quiet(1000))
    events += seg.flush()
    assert events == []


def test_utterance_has_preroll_and_short_tail() -> None:
    seg = make(origin_ms=10_000, preroll_ms=210, silence_ms=300)
    events = seg.push(quiet(1500) + speech(1200) + quiet(1000))
    [event] = events
    assert event.final and event.speaker == "customer"
    # Speech runs 11_500..12_700 on the call clock; the segment starts a pre-roll before it.
    assert event.start_ms == 11_500 - 210
    assert event.end_ms == 12_700 + TAIL
    assert event.duration_ms == event.end_ms - event.start_ms
    assert event.segment_id == "customer-11290"
    # The audio is what was pushed: zeros, then the speech, then zeros.
    assert event.pcm == quiet(210) + speech(1200) + quiet(TAIL)


def test_short_pauses_stay_inside_one_utterance() -> None:
    seg = make(silence_ms=300)
    events = seg.push(quiet(600) + speech(600) + quiet(240) + speech(600) + quiet(600))
    [event] = finals(events)
    assert event.end_ms - event.start_ms >= 1440


def test_pauses_longer_than_silence_ms_split_utterances() -> None:
    seg = make(silence_ms=300)
    events = seg.push(quiet(600) + speech(900) + quiet(900) + speech(900) + quiet(900))
    first, second = finals(events)
    assert first.end_ms <= second.start_ms
    assert first.segment_id != second.segment_id
    assert second.start_ms < 600 + 900 + 900 <= second.start_ms + 300


def test_interim_snapshots_grow_and_share_the_segment_id() -> None:
    seg = make(interim_interval_ms=600)
    events = seg.push(quiet(300) + speech(2100) + quiet(600))
    interims = [e for e in events if not e.final]
    [final] = finals(events)
    assert len(interims) == 4
    assert all(e.segment_id == final.segment_id for e in interims)
    assert all(e.start_ms == final.start_ms for e in interims)
    ends = [e.end_ms for e in interims]
    assert ends == sorted(ends) and ends[1] - ends[0] == 600
    assert events[-1] is final
    assert final.pcm.startswith(interims[0].pcm)


def test_long_speech_is_cut_at_max_length_and_goes_on() -> None:
    seg = make(max_segment_ms=3000)
    events = seg.push(quiet(300) + speech(7000) + quiet(600))
    segments = finals(events)
    assert len(segments) == 3
    for earlier, later in zip(segments, segments[1:], strict=False):
        assert earlier.end_ms == later.start_ms
        assert earlier.duration_ms <= 3000
    assert sum(s.duration_ms for s in segments) == segments[-1].end_ms - segments[0].start_ms
    assert len({s.segment_id for s in segments}) == 3


def test_cut_prefers_a_pause_near_the_end() -> None:
    seg = make(max_segment_ms=3000, silence_ms=300)
    # A 150 ms pause 2.4 s into the speech, then speech past the maximum.
    events = seg.push(quiet(300) + speech(2400) + quiet(150) + speech(2000) + quiet(600))
    first, second = finals(events)
    assert first.start_ms == 300 - PREROLL_MS
    # The cut lies inside the pause (2700..2850), not in a word.
    assert 2700 <= first.end_ms <= 2850
    assert first.end_ms == second.start_ms


def test_flush_finishes_the_open_utterance() -> None:
    seg = make()
    assert seg.push(quiet(300) + speech(900)) == []
    assert seg.in_speech
    [event] = seg.flush()
    assert event.final and event.end_ms == 1200
    assert seg.flush() == []


def test_skip_ends_the_utterance_and_moves_the_clock() -> None:
    seg = make(origin_ms=1000)
    seg.push(quiet(300) + speech(900))
    [first] = seg.skip(5010)
    [second] = seg.push(quiet(300) + speech(900) + quiet(600))
    assert first.end_ms == 1000 + 1200
    # 1200 ms pushed, 5010 skipped, 300 quiet, then speech.
    assert second.start_ms == 1000 + 1200 + 5010 + 300 - PREROLL_MS


def test_any_chunking_gives_the_same_segments() -> None:
    audio = quiet(450) + speech(1300) + quiet(500) + speech(700) + quiet(900)
    whole = make(interim_interval_ms=500).push(audio)
    seg = make(interim_interval_ms=500)
    pieces: list[SegmentEvent] = []
    for start in range(0, len(audio), 1234):
        pieces += seg.push(audio[start : start + 1234])
    assert pieces == whole and len(finals(whole)) == 2
