"""One inbound audio stream: encoded payloads in, 16 kHz PCM and SegmentEvents out, off the loop.

`feed` runs on the event loop for every payload (~50 a second) and only stamps and
enqueues it. An audio thread (shared by every stream of the server) runs the ingress's own
decoder (Opus, μ-law: media/decode.py) to 16 kHz mono, then the VAD and the segmenter,
writes the optional recording, and hands each SegmentEvent, and the PCM itself when a
listener wants it (a participant that cannot take the payloads as received), back to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from media.settings import SpeechSettings

from .audio import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH, SegmentEvent, silence
from .decode import AudioDecoder, DecodeError, OpusDecoder
from .recording import SilencedRanges
from .segmenter import Segmenter
from .vad import FRAME_MS, VoiceActivityDetector

logger = logging.getLogger(__name__)

GAP_MS = 500
"""No packet for this long means the sender paused (DTX, mute, network): the gap is
filled with silence so that times and the recording stay on the call's clock."""
MAX_BACKLOG_PACKETS = 1500
"""Packets (30 s) waiting for the worker before new ones are dropped: bounded memory if
the process is starved of CPU."""
CLOSE_JOIN_S = 2.0
BATCH_S = 0.02
"""The audio thread sleeps this long between batches of packets."""


@dataclass(frozen=True, slots=True)
class AudioStats:
    packets: int
    """Payloads received."""
    decode_errors: int
    dropped_packets: int
    """Payloads refused because the worker was too far behind."""
    audio_ms: int
    """Audio decoded (including filled gaps)."""
    cpu_ms: float
    """CPU time the worker thread spent, for the budget of ~6 ms per second of audio."""



class AudioThread:
    """A worker thread that decodes and segments the packets of many tracks.

    One thread for every track of the process hands the GIL back and forth far less than
    a thread per track: with 40 tracks, per-track threads pushed the event loop's lag p99
    past 100 ms, a shared one keeps it to a few ms. Packets gather for `BATCH_S` between
    wake-ups, which bounds the latency it adds.
    """

    def __init__(self, name: str = "inbound-audio") -> None:
        self._queue: queue.SimpleQueue[tuple[InboundAudio, bytes | None, int] | None] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, track: InboundAudio, payload: bytes | None, arrival_ms: int) -> None:
        """Queue a packet of `track` (None: the track ends). Never blocks."""
        self._queue.put((track, payload, arrival_ms))

    @property
    def current(self) -> bool:
        return threading.current_thread() is self._thread

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            for item in batch:
                if item is None:
                    return
                track, payload, arrival_ms = item
                track._process(payload, arrival_ms)
            # close() cuts the wait short.
            self._stopping.wait(BATCH_S)

    def close(self) -> None:
        """Stop after the packets already queued. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._stopping.set()
        if not self.current:
            self._thread.join(CLOSE_JOIN_S)


class InboundAudio:
    """Decodes and segments one participant's inbound audio off the event loop.

    The decoder comes from the ingress (Opus by default). Without `on_event` the stream
    is only decoded, for `on_pcm` (no VAD, no segments). Tracks share an AudioThread when
    given one (the server does); otherwise the track runs its own.
    """

    def __init__(
        self,
        *,
        speaker: str,
        settings: SpeechSettings,
        clock_ms: Callable[[], int],
        on_event: Callable[[SegmentEvent], None] | None,
        loop: asyncio.AbstractEventLoop,
        record_path: Path | None = None,
        audio_thread: AudioThread | None = None,
        decoder: AudioDecoder | None = None,
        on_pcm: Callable[[bytes], None] | None = None,
    ) -> None:
        self.speaker = speaker
        self._clock_ms = clock_ms
        self._on_event = on_event
        self._loop = loop
        self._closed = False
        self._finished = threading.Event()
        self._packets = 0
        self._processed = 0
        self._dropped = 0
        self.on_pcm = on_pcm
        """Who gets the decoded PCM (on the loop); may be set or cleared at any time."""
        self._worker = _Worker(
            speaker,
            settings,
            record_path,
            self._deliver,
            decoder or OpusDecoder(),
            segment=on_event is not None,
            pcm_out=self._deliver_pcm,
        )
        self._own_thread = audio_thread is None
        self._thread = audio_thread or AudioThread(f"inbound-audio-{speaker}")

    def feed(self, payload: bytes) -> None:
        """One payload of the ingress's codec, in arrival order. Never blocks; on the loop."""
        if self._closed:
            return
        if self._packets - self._processed >= MAX_BACKLOG_PACKETS:
            if self._dropped == 0:
                logger.warning("%s audio worker is behind; dropping packets", self.speaker)
            self._dropped += 1
            return
        self._packets += 1
        self._thread.submit(self, payload, self._clock_ms())

    feed_opus = feed
    """The WebRTC ingress's name for `feed` (its payloads are Opus)."""

    def close(self) -> None:
        """Flush the open utterance as final and stop. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._thread.submit(self, None, 0)
        if not self._thread.current and not self._finished.wait(CLOSE_JOIN_S):
            # It finishes on its own; only its last events come late.
            logger.warning("%s audio worker still busy after %ss", self.speaker, CLOSE_JOIN_S)
        if self._own_thread:
            self._thread.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def silence(self, start_ms: int, end_ms: int) -> None:
        """Zero this span (call clock) of the recording, written or still to come."""
        self._worker.silence(start_ms, end_ms)

    @property
    def speaking(self) -> bool:
        """Whether an utterance is open (as of the last processed batch); any thread."""
        return self._worker.speaking

    @property
    def stats(self) -> AudioStats:
        worker = self._worker
        return AudioStats(
            packets=self._packets,
            decode_errors=worker.decode_errors,
            dropped_packets=self._dropped,
            audio_ms=worker.audio_samples * 1000 // SAMPLE_RATE,
            cpu_ms=worker.cpu_s * 1000.0,
        )

    def _process(self, payload: bytes | None, arrival_ms: int) -> None:
        """On the audio thread: one packet, or the end of the track."""
        worker = self._worker
        started = time.thread_time()
        try:
            if payload is None:
                try:
                    worker.finish()
                finally:
                    worker.close_recording()
                    self._finished.set()
            else:
                self._processed += 1
                worker.packet(payload, arrival_ms)
        except Exception:
            # A bug must not silence the rest of the call's audio.
            logger.exception("%s audio worker failed on a packet", self.speaker)
        finally:
            worker.cpu_s += time.thread_time() - started

    def _deliver(self, events: list[SegmentEvent]) -> None:
        """From the audio thread: hand events to the loop."""
        on_event = self._on_event
        if on_event is None:
            return
        for event in events:
            try:
                self._loop.call_soon_threadsafe(on_event, event)
            except RuntimeError:
                # The loop is closed: the process is shutting down and nobody listens.
                return

    def _deliver_pcm(self, pcm: bytes) -> None:
        """From the audio thread: one payload's worth of PCM to the loop's listener."""
        on_pcm = self.on_pcm
        if on_pcm is not None and not self._closed:
            try:
                self._loop.call_soon_threadsafe(on_pcm, pcm)
            except RuntimeError:
                return


class _Worker:
    """A track's decoding state; used by its worker thread only (counters read anywhere)."""

    def __init__(
        self,
        speaker: str,
        settings: SpeechSettings,
        record_path: Path | None,
        deliver: Callable[[list[SegmentEvent]], None],
        decoder: AudioDecoder,
        *,
        segment: bool = True,
        pcm_out: Callable[[bytes], None] | None = None,
    ) -> None:
        self._speaker = speaker
        self._settings = settings
        self._record_path = record_path
        self._deliver = deliver
        self._decoder = decoder
        self._segment = segment
        self._pcm_out = pcm_out
        self._vad = VoiceActivityDetector(settings.vad_aggressiveness, FRAME_MS)
        self._segmenter: Segmenter | None = None
        self._origin_ms = 0
        self._last_arrival_ms = 0
        self._recording: wave.Wave_write | None = None
        self._record_failed = False
        self._recorded = 0  # bytes of samples written
        self._silenced = SilencedRanges()
        self.decode_errors = 0
        self.audio_samples = 0
        self.cpu_s = 0.0

    def packet(self, payload: bytes, arrival_ms: int) -> None:
        if self._segmenter is None:
            # The first packet's arrival anchors the stream on the call clock; from there
            # on time is counted in samples, which network jitter does not disturb.
            self._origin_ms = arrival_ms
            self._segmenter = Segmenter(
                speaker=self._speaker,
                settings=self._settings,
                is_speech=self._vad.is_speech,
                frame_ms=FRAME_MS,
                origin_ms=arrival_ms,
            )
        elif arrival_ms - self._last_arrival_ms >= GAP_MS:
            self._fill_gap(self._segmenter, arrival_ms)
        self._last_arrival_ms = arrival_ms

        try:
            pcm = self._decoder.decode(payload)
        except DecodeError as exc:
            self.decode_errors += 1
            if self.decode_errors in (1, 10, 100) or self.decode_errors % 1000 == 0:
                logger.warning(
                    "%s: skipped an undecodable %s payload (%d so far): %s",
                    self._speaker, self._decoder.codec, self.decode_errors, exc,
                )  # fmt: skip
            return
        if self._pcm_out is not None and pcm:
            self._pcm_out(pcm)
        self._audio(self._segmenter, pcm)

    @property
    def speaking(self) -> bool:
        segmenter = self._segmenter
        return segmenter is not None and segmenter.in_speech

    def finish(self) -> None:
        if self._segmenter is not None:
            self._audio(self._segmenter, self._decoder.flush())
            if self._segment:
                self._deliver(self._segmenter.flush())

    def _fill_gap(self, segmenter: Segmenter, arrival_ms: int) -> None:
        gap_ms = arrival_ms - (self._origin_ms + self.audio_samples * 1000 // SAMPLE_RATE)
        if gap_ms < GAP_MS:
            return
        if self._segment:
            self._deliver(segmenter.skip(gap_ms))
        self._vad.reset()
        # Whole frames only, so that segment times stay on the segmenter's frame grid.
        gap_ms -= gap_ms % FRAME_MS
        self.audio_samples += gap_ms * SAMPLE_RATE // 1000
        self._record(silence(gap_ms))

    def _audio(self, segmenter: Segmenter, pcm: bytes) -> None:
        if pcm:
            self.audio_samples += len(pcm) // SAMPLE_WIDTH
            self._record(pcm)
            if self._segment:
                self._deliver(segmenter.push(pcm))

    def _record(self, pcm: bytes) -> None:
        path = self._record_path
        if path is None or self._record_failed or not pcm:
            return
        try:
            if self._recording is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Open for the life of the track, closed by close_recording().
                self._recording = wave.open(str(path), "wb")  # noqa: SIM115
                self._recording.setnchannels(CHANNELS)
                self._recording.setsampwidth(SAMPLE_WIDTH)
                self._recording.setframerate(SAMPLE_RATE)
            # writeframes patches the header every time: the file stays valid on a crash.
            self._silenced.write(self._recording, self._recorded, pcm)
            self._recorded += len(pcm)
        except OSError:
            logger.exception("%s: recording to %s failed; not recording", self._speaker, path)
            self._record_failed = True

    def silence(self, start_ms: int, end_ms: int) -> None:
        if self._record_path is not None and self._segmenter is not None:
            self._silenced.add(self._record_path, self._origin_ms, start_ms, end_ms)

    def close_recording(self) -> None:
        if self._recording is not None:
            try:
                self._recording.close()
            except OSError:
                logger.exception("%s: closing the recording failed", self._speaker)
            self._recording = None
