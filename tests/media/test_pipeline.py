"""InboundAudio end to end: speech fixtures as browser Opus packets, through the worker."""

from __future__ import annotations

import asyncio
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from media.audio import SAMPLE_RATE, SegmentEvent
from media.decode import OpusDecoder
from media.pipeline import AudioStats, InboundAudio
from media.vad import frame_level_dbfs
from server.config import SpeechSettings
from tests.media.speech import fixture, opus_packets, silence, speech_span_ms

ORIGIN_MS = 5000
PACKET_MS = 20
SETTINGS = SpeechSettings()
# Where a segment may start before the loud part of speech, and end after it: pre-roll,
# VAD onset, tail, codec delay, and the quiet ends of words the level threshold misses.
EARLY_MS = SETTINGS.preroll_ms + 300
LATE_MS = SETTINGS.silence_ms + 300


def paced(index: int) -> int:
    return ORIGIN_MS + index * PACKET_MS


async def run_track(
    packets: list[bytes],
    *,
    settings: SpeechSettings = SETTINGS,
    arrival_ms: Callable[[int], int] = paced,
    record_path: Path | None = None,
) -> tuple[list[SegmentEvent], AudioStats]:
    """Feed packets as if they arrived at arrival_ms(i); close; collect what came back."""
    events: list[SegmentEvent] = []
    now = [0]
    track = InboundAudio(
        speaker="customer",
        settings=settings,
        clock_ms=lambda: now[0],
        on_event=events.append,
        loop=asyncio.get_running_loop(),
        record_path=record_path,
    )
    for index, packet in enumerate(packets):
        now[0] = arrival_ms(index)
        track.feed_opus(packet)
    await asyncio.to_thread(track.close)
    # close() joined the worker; the events it scheduled run before this returns.
    await asyncio.sleep(0)
    return events, track.stats


def finals(events: list[SegmentEvent]) -> list[SegmentEvent]:
    return [e for e in events if e.final]


def two_utterances() -> tuple[bytes, list[tuple[int, int]]]:
    """Two fixtures with silence around them, and the call times of their speech."""
    first = fixture("agent_greeting").pcm()
    second = fixture("customer_warranty").pcm()
    lead, gap = 1000, 1500
    pcm = silence(lead) + first + silence(gap) + second + silence(1000)
    spans = []
    offset = ORIGIN_MS + lead
    for clip in (first, second):
        start, end = speech_span_ms(clip)
        spans.append((offset + start, offset + end))
        offset += len(clip) // 32 + gap
    return pcm, spans


async def test_segments_lie_where_the_speech_is() -> None:
    pcm, spans = two_utterances()
    events, stats = await run_track(opus_packets(pcm))

    segments = finals(events)
    assert segments, "no speech found"
    assert stats.decode_errors == 0 and stats.dropped_packets == 0
    for start, end in spans:
        inside = [s for s in segments if start - EARLY_MS <= s.start_ms < end]
        assert inside, f"no segment for speech at {start}..{end}"
        assert min(s.start_ms for s in inside) <= start
        assert end <= max(s.end_ms for s in inside) <= end + LATE_MS
    # Nothing outside the speech, and every segment belongs to one utterance.
    for segment in segments:
        assert any(
            a - EARLY_MS <= segment.start_ms and segment.end_ms <= b + LATE_MS for a, b in spans
        )
        assert segment.speaker == "customer"
        assert len(segment.pcm) == (segment.end_ms - segment.start_ms) * 32
    assert len({s.segment_id for s in segments}) == len(segments)


async def test_interims_come_before_their_final() -> None:
    pcm = silence(500) + fixture("customer_double_charge").pcm()
    events, _ = await run_track(opus_packets(pcm))
    segments = finals(events)
    for segment in segments:
        own = [e for e in events if e.segment_id == segment.segment_id]
        assert own[-1] is segment
        interim_ends = [e.end_ms for e in own[:-1]]
        assert interim_ends == sorted(interim_ends)
        assert all(e.start_ms == segment.start_ms for e in own)
    longest = max(segments, key=lambda s: s.duration_ms)
    assert longest.duration_ms > 2 * SETTINGS.interim_interval_ms
    assert sum(1 for e in events if e.segment_id == longest.segment_id and not e.final) >= 2


@pytest.mark.parametrize("name", ["silence", "noise"])
async def test_silence_and_steady_noise_make_no_segments(name: str) -> None:
    events, stats = await run_track(opus_packets(fixture(name).pcm()))
    assert events == []
    assert stats.audio_ms >= 2900


async def test_loud_noise_makes_no_segments() -> None:
    # webrtcvad alone calls all of these speech.
    rng = np.random.default_rng(7)
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    white = rng.normal(0, 0.15, t.size)
    brown = np.cumsum(rng.normal(0, 1, t.size))
    brown = 0.3 * (brown - brown.mean()) / np.abs(brown - brown.mean()).max()
    hum = 0.3 * np.sin(2 * np.pi * 120 * t)
    pcm = b"".join(
        (np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes() for x in (white, brown, hum)
    )
    events, _ = await run_track(opus_packets(pcm))
    assert events == []


async def test_a_long_monologue_is_cut_and_goes_on() -> None:
    settings = SpeechSettings(max_segment_ms=2000, silence_ms=600)
    pcm = silence(500) + fixture("customer_double_charge").pcm()
    events, _ = await run_track(opus_packets(pcm), settings=settings)
    segments = finals(events)
    assert len(segments) >= 2
    assert all(s.duration_ms <= 2000 for s in segments)
    # A cut continues at once, on the same clock.
    assert any(a.end_ms == b.start_ms for a, b in zip(segments, segments[1:], strict=False))


async def test_garbage_payloads_are_skipped() -> None:
    pcm, spans = two_utterances()
    packets = opus_packets(pcm)
    rng = np.random.default_rng(3)
    garbage = [b"", b"\xff\xff", b"\x00", rng.bytes(60), rng.bytes(400)]
    mixed: list[bytes] = []
    for index, packet in enumerate(packets):
        mixed.append(packet)
        if index % 25 == 0:
            mixed.append(garbage[index // 25 % len(garbage)])
    events, stats = await run_track(mixed, arrival_ms=lambda i: ORIGIN_MS + i * 19)
    assert stats.decode_errors >= 1
    assert stats.packets == len(mixed)
    assert len(finals(events)) >= len(spans)


async def test_a_pause_in_packets_keeps_the_call_clock(tmp_path: Path) -> None:
    first = silence(500) + fixture("agent_greeting").pcm()
    second = silence(500) + fixture("customer_warranty").pcm()
    first_packets, second_packets = opus_packets(first), opus_packets(second)
    pause_ms = 3000

    def arrival(index: int) -> int:
        if index < len(first_packets):
            return paced(index)
        return paced(index) + pause_ms

    record = tmp_path / "rec" / "customer.wav"
    events, stats = await run_track(
        first_packets + second_packets, arrival_ms=arrival, record_path=record
    )
    segments = finals(events)
    second_start = paced(len(first_packets)) + pause_ms
    later = [s for s in segments if s.start_ms >= second_start]
    assert later, "no segment after the pause"
    span_start, _ = speech_span_ms(second)
    assert abs(min(s.start_ms for s in later) - (second_start + span_start)) <= EARLY_MS
    # The recording holds the pause as silence: it is as long as the call time it covers.
    with wave.open(str(record), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        recorded_ms = wav.getnframes() * 1000 // SAMPLE_RATE
    expected_ms = (len(first_packets) + len(second_packets)) * PACKET_MS + pause_ms
    assert abs(recorded_ms - expected_ms) <= 3 * PACKET_MS
    assert abs(stats.audio_ms - recorded_ms) <= PACKET_MS


async def test_feeding_never_blocks_and_close_is_idempotent() -> None:
    packets = opus_packets(fixture("customer_refund").pcm()) * 4
    events: list[SegmentEvent] = []
    track = InboundAudio(
        speaker="agent",
        settings=SETTINGS,
        clock_ms=lambda: 0,
        on_event=events.append,
        loop=asyncio.get_running_loop(),
    )
    worst = 0.0
    for packet in packets:
        started = time.perf_counter()
        track.feed_opus(packet)
        worst = max(worst, time.perf_counter() - started)
    # Enqueueing only: far below one packet's 20 ms even while the worker is busy.
    assert worst < 0.005
    await asyncio.to_thread(track.close)
    await asyncio.to_thread(track.close)
    track.feed_opus(packets[0])
    assert track.closed and track.stats.packets == len(packets)
    assert not any(t.name == "inbound-audio-agent" for t in threading.enumerate())
    await asyncio.sleep(0)
    assert finals(events)


async def test_cpu_per_second_of_audio_is_small() -> None:
    pcm, _ = two_utterances()
    _, stats = await run_track(opus_packets(pcm * 2))
    per_second = stats.cpu_ms / (stats.audio_ms / 1000)
    # The budget is ~6 ms per second per track (40 tracks in one process); measured ~4.
    assert per_second < 12, f"{per_second:.1f} ms CPU per second of audio"


@pytest.mark.parametrize("stereo", [False, True])
def test_opus_decodes_to_mono_at_the_level_sent(stereo: bool) -> None:
    """The decoder is asked for mono (cheaper than decoding stereo and mixing it down): a
    stream coded as two channels comes out as one, as loud as what was sent."""
    pcm = fixture("agent_greeting").pcm()
    decoder = OpusDecoder()
    out = b"".join(decoder.decode(p) for p in opus_packets(pcm, stereo=stereo)) + decoder.flush()
    # Whole packets only, minus the encoder's lookahead: within 40 ms of the source.
    assert abs(len(out) - len(pcm)) <= 40 * SAMPLE_RATE // 1000 * 2
    assert abs(frame_level_dbfs(out) - frame_level_dbfs(pcm)) < 0.5
