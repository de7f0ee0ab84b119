"""The participant seam: a third kind joins a call through media/participant.py alone.

A synthetic-voice participant (as the voice agent will be: 16 kHz PCM in and out, no
event channel) joins a phone call through `CallSession.join`: it hears the caller's voice
as 16 kHz PCM through the pipeline, the caller hears what it says, and `interrupt` (barge-in)
stops its audio at once and sends `clear` on the phone stream.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np

from media.decode import AudioDecoder, PcmPassthrough
from media.participant import Participant
from server.keys import HUB
from server.qa_phone import TwilioCaller, wav_to_mulaw_frames
from tests.conftest import Running, dominant_frequency, rms, write_tone


class ToneSpeaker(Participant):
    """Hears PCM, says a tone when asked (a test participant of a third kind)."""

    role = "voice_agent"
    kind = "test_voice"
    codec = "pcm16k"

    def __init__(self) -> None:
        super().__init__()
        self.heard = bytearray()
        self.closed = False

    def decoder(self) -> AudioDecoder:
        return PcmPassthrough()

    def play_pcm(self, pcm: bytes) -> None:
        self.heard += pcm

    def say_tone(self, freq: float, seconds: float) -> None:
        t = np.arange(int(16000 * seconds)) / 16000
        pcm = (0.4 * 32767 * np.sin(2 * math.pi * freq * t)).astype(np.int16).tobytes()
        assert self.port is not None
        self.port.on_audio(self, pcm)  # a whole reply at once: the listeners pace it

    async def close(self) -> None:
        self.closed = True
        if self.port is not None:
            self.port.on_left(self, hung_up=False)


async def test_a_third_kind_of_participant_hears_speaks_and_barges_in(
    phone_server: Running, make_caller, tmp_path: Path
) -> None:
    run = phone_server
    caller: TwilioCaller = make_caller()
    await caller.dial()
    caller.play(wav_to_mulaw_frames(write_tone(tmp_path / "caller.wav", 440, 8.0, rate=8000)))
    live = run.server.app[HUB].get_live(caller.call_id)
    assert live is not None
    bot = ToneSpeaker()
    await live.join(bot)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(bot.heard) < 16000 * 2 * 2:  # noqa: ASYNC110 - two seconds of 16 kHz PCM
        assert loop.time() < deadline, f"the participant heard {len(bot.heard)} bytes"
        await asyncio.sleep(0.1)
    heard = np.frombuffer(bytes(bot.heard), dtype=np.int16)[16000:]
    assert abs(dominant_frequency(heard, rate=16000) - 440) < 10

    before = len(caller.heard.payloads)
    bot.say_tone(1200, 20.0)
    await asyncio.sleep(2.0)
    # Paced in real time: about 2 s arrived, not the 20 s it was handed.
    got = len(caller.heard.payloads) - before
    assert 60 <= got <= 130, got
    pcm = caller.heard.pcm()[-8000:]
    assert rms(pcm) > 500
    assert abs(dominant_frequency(pcm, rate=8000) - 1200) < 15

    live.interrupt(bot)  # barge-in: its audio stops at once, Twilio is told to clear
    await asyncio.sleep(0.5)
    assert caller.heard.clears == 1
    stopped_at = len(caller.heard.payloads)
    await asyncio.sleep(1.0)
    assert len(caller.heard.payloads) - stopped_at <= 2  # at most what was in flight

    await live.end()
    await caller.wait_closed()
    assert bot.closed
