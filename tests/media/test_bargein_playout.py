"""Pause, barge-in or backchannel on the TTS-made fixtures, and the real-time paced playout
that pauses, gives back what the transports dropped and resumes without losing a frame."""

from __future__ import annotations

import asyncio
import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from media.bargein import (
    INTERRUPT,
    PAUSE,
    PAUSE_MS,
    QUIET,
    VOICED_MS,
    BargeInDetector,
)
from media.playout import FRAME_BYTES, FRAME_MS, PacedPlayout
from media.vad import VoiceActivityDetector

FIXTURES = Path(__file__).parents[1] / "fixtures" / "voice_agent"


def fixtures(role: str) -> list[str]:
    entries = json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"]
    return [e["file"] for e in entries if e["role"] == role]


def pcm_of(name: str) -> bytes:
    with wave.open(str(FIXTURES / name), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        return wav.readframes(wav.getnframes())


def decisions(pcm: bytes, lead_ms: int = 1000) -> list[tuple[str, int]]:
    """The detector's decisions and when (ms after the clip's start), fed in 20 ms pieces
    as a call delivers them, after `lead_ms` of silence and followed by a second of it."""
    detector = BargeInDetector()
    data = bytes(lead_ms * 32) + pcm + bytes(16000 * 2)
    out = []
    for i in range(0, len(data), 640):
        out += [(d, detector.position_ms - lead_ms) for d in detector.push(data[i : i + 640])]
    return out


def onset_ms(name: str) -> int:
    """Where the fixture's speech starts: its first voiced 20 ms frame (webrtcvad mode 2)."""
    vad = VoiceActivityDetector(2, 20)
    pcm = pcm_of(name)
    return next(i // 32 for i in range(0, len(pcm), 640) if vad.is_speech(pcm[i : i + 640]))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("backchannel_mmhmm.wav", [(PAUSE, 240), (QUIET, 1020)]),
        ("backchannel_okay.wav", [(PAUSE, 280), (QUIET, 920)]),
        ("backchannel_right.wav", [(PAUSE, 280), (QUIET, 860)]),
        ("backchannel_yeah.wav", [(PAUSE, 240), (QUIET, 820)]),
    ],
)
def test_a_backchannel_pauses_the_voice_agent_and_lets_it_go_on(
    name: str, expected: list[tuple[str, int]]
) -> None:
    assert name in fixtures("backchannel")
    assert decisions(pcm_of(name)) == expected
    (_, paused), (_, resumed) = expected
    # It pauses once its speech has gone on for PAUSE_MS and goes on QUIET_MS after its end.
    assert paused - onset_ms(name) >= PAUSE_MS
    assert resumed - paused <= 800


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # One run: paused 200 ms in, an interruption at 520 ms of voiced speech.
        ("interrupt_agent.wav", [(PAUSE, 260), (INTERRUPT, 680)]),
        # "Wait, sorry, that is ...": the breaths (340, 400 ms) are shorter than QUIET_MS,
        # so it stays paused; the third run takes the episode to EPISODE_VOICED_MS.
        ("interrupt_wait.wav", [(PAUSE, 240), (INTERRUPT, 1820)]),
    ],
)
def test_talking_over_the_voice_agent_pauses_it_at_once_then_interrupts_it(
    name: str, expected: list[tuple[str, int]]
) -> None:
    assert name in fixtures("interruption")
    assert decisions(pcm_of(name)) == expected
    assert expected[0][1] - onset_ms(name) == PAUSE_MS
    assert expected[1][1] - onset_ms(name) >= VOICED_MS


def test_two_backchannels_a_breath_apart_do_not_add_up() -> None:
    okay, mmhmm = pcm_of("backchannel_okay.wav"), pcm_of("backchannel_mmhmm.wav")
    # Back to back (the clips' own silences make a 290 ms gap): one run of 820 ms voiced.
    assert decisions(okay + mmhmm) == [(PAUSE, 280), (INTERRUPT, 880)]
    # 300 ms more: two runs, each a pause that ends quiet.
    assert decisions(okay + bytes(300 * 32) + mmhmm) == [
        (PAUSE, 280),
        (QUIET, 920),
        (PAUSE, 1200),
        (QUIET, 2000),
    ]


def test_one_run_interrupts_once_and_a_pause_starts_a_new_one() -> None:
    pcm = pcm_of("interrupt_agent.wav")
    detector = BargeInDetector()
    said = [d for i in range(0, len(pcm), 640) for d in detector.push(pcm[i : i + 640])]
    assert said == [PAUSE, INTERRUPT]
    detector.push(bytes(16000))  # 0.5 s of silence
    assert not detector.speaking and detector.quiet_ms == 140 + 500  # the clip ends in 140 ms of it
    said = [d for i in range(0, len(pcm), 640) for d in detector.push(pcm[i : i + 640])]
    assert said == [PAUSE, INTERRUPT]


def test_reset_forgets_a_pause() -> None:
    detector = BargeInDetector()
    mmhmm = pcm_of("backchannel_mmhmm.wav")
    assert detector.push(mmhmm[: 480 * 32]) == [PAUSE]
    assert detector.paused_at_ms == 240
    detector.reset()  # the voice agent starts a new reply
    assert detector.paused_at_ms is None and not detector.speaking
    assert detector.push(mmhmm[480 * 32 :] + bytes(16000 * 2)) == []


def test_quiet_echo_is_not_speech() -> None:
    # The voice agent's own speech leaking back 40 dB down (what echo cancellation leaves),
    # and 30 dB down (poor cancellation): not even a pause.
    for name in ("interrupt_agent.wav", "interrupt_wait.wav"):
        pcm = np.frombuffer(pcm_of(name), dtype=np.int16).astype(np.float32)
        for gain in (0.01, 0.03):
            assert decisions((pcm * gain).astype(np.int16).tobytes()) == []
    # 20 dB down (hardly cancelled) it pauses, and goes on: echo never interrupts it.
    pcm = np.frombuffer(pcm_of("interrupt_agent.wav"), dtype=np.int16).astype(np.float32)
    said = [d for d, _ in decisions((pcm * 0.1).astype(np.int16).tobytes())]
    assert said == [PAUSE, QUIET, PAUSE, QUIET]


async def test_playout_releases_frames_in_real_time_and_clears_at_once() -> None:
    released: list[tuple[float, bytes]] = []
    playout = PacedPlayout(lambda frame: released.append((time.monotonic(), frame)))
    start = time.monotonic()
    playout.enqueue(bytes(FRAME_BYTES * 25) + b"\x01\x00" * 10)  # 500 ms and a part-frame
    playout.finish()
    assert playout.playing and playout.queued_ms > 0
    await playout.wait_idle()
    elapsed = time.monotonic() - start
    assert len(released) == 26
    assert all(len(frame) == FRAME_BYTES for _, frame in released)
    # 520 ms of audio released over ~480 ms (40 ms ahead), not in one burst.
    assert 0.4 <= elapsed <= 1.0, elapsed
    assert playout.released_ms == 26 * FRAME_MS

    released.clear()
    playout.enqueue(bytes(FRAME_BYTES * 100))  # 2 s
    await asyncio.sleep(0.3)
    dropped = playout.clear()
    heard = playout.played_ms
    await asyncio.sleep(0.1)
    sent = len(released)
    assert 10 <= sent <= 25, sent
    assert dropped == (100 - sent) * FRAME_MS
    assert 520 + 200 <= heard <= 520 + sent * FRAME_MS
    await asyncio.sleep(0.2)
    assert len(released) == sent  # nothing after the clear
    assert not playout.playing
    await playout.close()
    await playout.close()


async def test_playout_pauses_takes_back_what_the_transports_dropped_and_resumes() -> None:
    released: list[int] = []
    playout = PacedPlayout(lambda frame: released.append(int(np.frombuffer(frame, np.int16)[0])))
    # 1 s of audio, each 20 ms frame holding its own number.
    frames = [np.full(FRAME_BYTES // 2, i, dtype=np.int16).tobytes() for i in range(50)]
    playout.enqueue(b"".join(frames))
    playout.finish()
    await asyncio.sleep(0.3)
    playout.pause()
    sent = len(released)
    assert 14 <= sent <= 25, sent
    await asyncio.sleep(0.2)
    assert len(released) == sent  # nothing while paused
    assert playout.paused and playout.playing and playout.queued_ms == (50 - sent) * FRAME_MS
    assert playout.played_ms == playout.released_ms == sent * FRAME_MS
    # The caller's transport had two of them still queued, and dropped them.
    assert playout.take_back(2 * FRAME_MS) == 2 * FRAME_MS
    assert playout.played_ms == playout.released_ms == (sent - 2) * FRAME_MS
    idle = asyncio.ensure_future(playout.wait_idle())
    await asyncio.sleep(0.1)
    assert not idle.done()  # a pause holds the end of the reply
    resumed = time.monotonic()
    playout.resume()
    await asyncio.wait_for(idle, 3)
    elapsed = time.monotonic() - resumed
    # From exactly where the caller stopped hearing: the two dropped frames again, then on.
    assert released == list(range(sent)) + list(range(sent - 2, 50))
    assert playout.released_ms == 50 * FRAME_MS and not playout.paused
    # The rest is paced in real time again, from the resume.
    rest_s = (50 - sent + 2) * FRAME_MS / 1000
    assert rest_s - 0.06 <= elapsed <= rest_s + 0.5, (elapsed, rest_s)


async def test_playout_take_back_after_the_end_and_clear_while_paused() -> None:
    released: list[bytes] = []
    playout = PacedPlayout(released.append)
    playout.enqueue(bytes(FRAME_BYTES * 5))
    await playout.wait_idle()
    assert not playout.playing and playout.released_ms == 5 * FRAME_MS
    # Paused just as the last frames went out: taken back, the reply is playing again.
    playout.pause()
    assert playout.take_back(10_000) == 5 * FRAME_MS  # no more than was released
    assert playout.playing and playout.released_ms == 0 and playout.queued_ms == 5 * FRAME_MS
    # A confirmed interruption: everything not heard is dropped, the pause is over.
    assert playout.clear() == 5 * FRAME_MS
    assert not playout.playing and not playout.paused and playout.played_ms == 0
    playout.enqueue(bytes(FRAME_BYTES * 3))
    await asyncio.wait_for(playout.wait_idle(), 2)
    assert len(released) == 8 and playout.released_ms == 3 * FRAME_MS
    await playout.close()
