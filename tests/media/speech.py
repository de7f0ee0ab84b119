"""Speech fixtures for the media tests: reading them, encoding them as a browser would."""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media.audio import BYTES_PER_MS, SAMPLE_RATE, SegmentEvent
from media.decode import OpusDecoder
from media.segmenter import Segmenter
from media.vad import FRAME_MS, VoiceActivityDetector, frame_level_dbfs
from server.config import SpeechSettings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "speech"
OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms, what browsers send


@dataclass(frozen=True)
class SpeechFixture:
    file: str
    role: str
    voice: str
    text: str

    @property
    def name(self) -> str:
        return self.file.removesuffix(".wav")

    @property
    def path(self) -> Path:
        return FIXTURES / self.file

    def pcm(self) -> bytes:
        return read_pcm(self.path)


def all_fixtures() -> list[SpeechFixture]:
    data = json.loads((FIXTURES / "fixtures.json").read_text())
    return [SpeechFixture(f["file"], f["role"], f["voice"], f["text"]) for f in data["fixtures"]]


def speech_fixtures(role: str | None = None) -> list[SpeechFixture]:
    return [f for f in all_fixtures() if f.text and (role is None or f.role == role)]


def fixture(name: str) -> SpeechFixture:
    return next(f for f in all_fixtures() if f.name == name)


def read_pcm(path: Path) -> bytes:
    """A 16-bit mono WAV of any rate as 16 kHz mono s16 PCM."""
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1, path
        rate = wav.getframerate()
        data = wav.readframes(wav.getnframes())
    if rate == SAMPLE_RATE:
        return data
    return resample(data, rate, SAMPLE_RATE)


def resample(pcm: bytes, rate: int, to_rate: int) -> bytes:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    out = resampler.resample(frame) + resampler.resample(None)
    return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in out)


def silence(ms: int) -> bytes:
    return bytes(ms * BYTES_PER_MS)


def opus_packets(pcm: bytes, *, stereo: bool = False) -> list[bytes]:
    """16 kHz mono PCM as the 20 ms Opus payloads a browser would send (48 kHz mono; with
    `stereo` coded as two equal channels, as some senders do)."""
    layout = "stereo" if stereo else "mono"
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = OPUS_RATE
    encoder.layout = layout
    encoder.format = "s16"
    encoder.bit_rate = 64000 if stereo else 32000
    encoder.time_base = Fraction(1, OPUS_RATE)
    samples = np.frombuffer(resample(pcm, SAMPLE_RATE, OPUS_RATE), dtype=np.int16)
    packets: list[bytes] = []
    for index, start in enumerate(range(0, len(samples) - OPUS_FRAME + 1, OPUS_FRAME)):
        chunk = samples[start : start + OPUS_FRAME]
        frame = av.AudioFrame.from_ndarray(
            np.repeat(chunk, 2).reshape(1, -1) if stereo else chunk.reshape(1, -1),
            format="s16",
            layout=layout,
        )
        frame.sample_rate = OPUS_RATE
        frame.pts = index * OPUS_FRAME
        frame.time_base = encoder.time_base
        packets.extend(bytes(p) for p in encoder.encode(frame))
    packets.extend(bytes(p) for p in encoder.encode(None))
    return packets


def speech_span_ms(pcm: bytes, threshold_dbfs: float = -35.0) -> tuple[int, int]:
    """Where the loud part of a clip starts and ends (10 ms resolution), as a reference."""
    step = 10 * BYTES_PER_MS
    loud = [
        i * 10
        for i in range(len(pcm) // step)
        if frame_level_dbfs(pcm[i * step : (i + 1) * step]) > threshold_dbfs
    ]
    assert loud, "no speech in clip"
    return loud[0], loud[-1] + 10


def segment_offline(pcm: bytes, settings: SpeechSettings | None = None) -> list[SegmentEvent]:
    """The final segments InboundAudio would cut from this audio sent as Opus, computed
    in this thread with the same decoder, VAD and segmenter."""
    return [e for e in events_offline(pcm, settings) if e.final]


def events_offline(pcm: bytes, settings: SpeechSettings | None = None) -> list[SegmentEvent]:
    """Every event (snapshots too) InboundAudio would give for this audio sent as Opus."""
    settings = settings or SpeechSettings()
    decoder = OpusDecoder()
    vad = VoiceActivityDetector(settings.vad_aggressiveness, FRAME_MS)
    segmenter = Segmenter(
        speaker="customer", settings=settings, is_speech=vad.is_speech, frame_ms=FRAME_MS
    )
    events: list[SegmentEvent] = []
    for packet in opus_packets(pcm):
        events += segmenter.push(decoder.decode(packet))
    events += segmenter.push(decoder.flush())
    return events + segmenter.flush()
