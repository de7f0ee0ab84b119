"""Silencing part of a recording that is still being written (PII redaction).

The pipeline writes each participant's audio to a WAV file as it arrives; the words in it
are known only a second later, when the transcript comes back. When a transcript turns out
to hold a card number, its time range is zeroed in the file, both in what is already on
disk and in audio still to be written.
"""

from __future__ import annotations

import os
import threading
import wave
from pathlib import Path

from .audio import SAMPLE_RATE, SAMPLE_WIDTH

_HEADER_SCAN = 4096


def _data_offset(path: Path) -> int | None:
    """Byte offset of the samples in a WAV file (after the `data` chunk header)."""
    with path.open("rb") as fh:
        head = fh.read(_HEADER_SCAN)
    at = head.find(b"data", 12)
    return at + 8 if at >= 0 else None


class SilencedRanges:
    """Sample ranges to zero in one recording; thread-safe (loop and audio thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ranges: list[tuple[int, int]] = []  # byte ranges in the sample data

    def add(self, path: Path | None, origin_ms: int, start_ms: int, end_ms: int) -> None:
        """Zero [start_ms, end_ms) on the call clock, of a recording starting at origin_ms."""
        first = max(0, (start_ms - origin_ms) * SAMPLE_RATE // 1000) * SAMPLE_WIDTH
        last = max(0, (end_ms - origin_ms) * SAMPLE_RATE // 1000) * SAMPLE_WIDTH
        if last <= first:
            return
        with self._lock:
            self._ranges.append((first, last))
            if path is not None and path.exists():
                _zero_on_disk(path, first, last)

    def write(self, recording: wave.Wave_write, written: int, pcm: bytes) -> None:
        """Append `pcm` (byte `written` of the data on) with the ranges zeroed. Under the
        lock, so that zeroing the file never races the writer's buffered bytes."""
        with self._lock:
            recording.writeframes(self._mask(written, pcm))

    def _mask(self, written: int, pcm: bytes) -> bytes:
        if not self._ranges:
            return pcm
        end = written + len(pcm)
        out = None
        for first, last in self._ranges:
            a, b = max(first, written), min(last, end)
            if a < b:
                out = out or bytearray(pcm)
                out[a - written : b - written] = bytes(b - a)
        return bytes(out) if out is not None else pcm


def _zero_on_disk(path: Path, first: int, last: int) -> None:
    offset = _data_offset(path)
    if offset is None:
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        size = os.fstat(fd).st_size
        a, b = offset + first, min(offset + last, size)
        if a < b:
            os.pwrite(fd, bytes(b - a), a)
    finally:
        os.close(fd)
