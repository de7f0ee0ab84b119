"""Barge-in versus backchannel on the TTS-made fixtures, and the real-time paced playout."""

from __future__ import annotations

import asyncio
import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from media.bargein import VOICED_MS, BargeInDetector
from media.playout import FRAME_BYTES, FRAME_MS, PacedPlayout

FIXTURES = Path(__file__).parents[1] / "fixtures" / "voice_agent"


def fixtures(role: str) -> list[str]:
    entries = json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"]
    return [e["file"] for e in entries if e["role"] == role]


def pcm_of(name: str) -> bytes:
    with wave.open(str(FIXTURES / name), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        return wav.readframes(wav.getnframes())


def fired_at(pcm: bytes, lead_ms: int = 1000) -> tuple[int, int] | None:
    """(ms after the clip's start when the detector fired, where its run began), fed in
    20 ms pieces as a call delivers them after `lead_ms` of silence."""
    detector = BargeInDetector()
    data = bytes(lead_ms * 32) + pcm + bytes(16000 * 2)
    for i in range(0, len(data), 640):
        if detector.push(data[i : i + 640]):
            assert detector.run_start_ms is not None
            return detector.position_ms - lead_ms, detector.run_start_ms - lead_ms
    return None


@pytest.mark.parametrize("name", fixtures("backchannel"))
def test_backchannels_do_not_interrupt(name: str) -> None:
    assert fired_at(pcm_of(name)) is None


@pytest.mark.parametrize("name", fixtures("interruption"))
def test_talking_over_the_voice_agent_does(name: str) -> None:
    result = fired_at(pcm_of(name))
    assert result is not None
    at, run_start = result
    # Recognised once VOICED_MS of speech is in, and not long after the speech began
    # ("Wait, sorry, ..." is short words with pauses: its third word does it).
    assert at - run_start >= VOICED_MS
    assert at <= 2500, at


def test_one_run_fires_once_and_a_pause_starts_a_new_one() -> None:
    pcm = pcm_of("interrupt_agent.wav")
    detector = BargeInDetector()
    fired = [detector.push(pcm[i : i + 640]) for i in range(0, len(pcm), 640)]
    assert sum(fired) == 1
    detector.push(bytes(16000))  # 0.5 s of silence
    assert not detector.speaking
    fired = [detector.push(pcm[i : i + 640]) for i in range(0, len(pcm), 640)]
    assert sum(fired) == 1


def test_quiet_echo_is_not_speech() -> None:
    # The voice agent's own speech leaking back 40 dB down (what echo cancellation leaves).
    pcm = np.frombuffer(pcm_of("interrupt_agent.wav"), dtype=np.int16)
    echo = (pcm.astype(np.float32) * 0.01).astype(np.int16).tobytes()
    assert fired_at(echo) is None


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
