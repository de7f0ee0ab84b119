"""Files in the data dir: private to the server's user (0600 files in 0700 directories),
and recordings that are never overwritten.

The data dir holds the database (customers, transcripts), recordings and the token signing
key: nobody else on the machine may read them.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import wave
from pathlib import Path

log = logging.getLogger(__name__)


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) 0700; tighten it if it is ours and others may
    read it."""
    if not path.parent.exists():
        private_dir(path.parent)
    path.mkdir(mode=0o700, exist_ok=True)
    _tighten(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty with 0600 if it does not exist; tighten it if it does."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        _tighten(path, 0o600)
    return path


def _tighten(path: Path, mode: int) -> None:
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        log.warning("%s was readable by others; making it %o", path, mode)
        path.chmod(mode)


def private_sqlite(db_path: Path) -> None:
    """The SQLite file 0600 before SQLite opens it: SQLite gives its -wal and -shm files
    the database file's permissions."""
    private_dir(db_path.parent)
    private_file(db_path)
    for suffix in ("-wal", "-shm", "-journal"):
        side = db_path.with_name(db_path.name + suffix)
        if side.exists():
            _tighten(side, 0o600)


# -- recordings -------------------------------------------------------------------------------


def new_recording_part(call_dir: Path, speaker: str) -> Path:
    """A new, empty, private file for this speaker's next stretch of recording.

    The first is `<speaker>.wav`; after a restart the same call records into
    `<speaker>.1.wav`, `<speaker>.2.wav`, ...: the audio already recorded is never
    truncated (it was: 7.08 s became 3.06 s). The recordings route joins the parts.
    """
    private_dir(call_dir)
    for n in range(10_000):
        path = call_dir / (f"{speaker}.wav" if n == 0 else f"{speaker}.{n}.wav")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        return path
    raise OSError(f"too many recording parts in {call_dir}")


def recording_parts(call_dir: Path, speaker: str) -> list[Path]:
    parts: list[Path] = []
    n = 0
    while True:
        path = call_dir / (f"{speaker}.wav" if n == 0 else f"{speaker}.{n}.wav")
        if not path.is_file():
            return parts
        parts.append(path)
        n += 1


def joined_recording(call_dir: Path, speaker: str) -> bytes | None:
    """All parts of a speaker's recording as one WAV (None if there is none)."""
    parts = recording_parts(call_dir, speaker)
    frames: list[bytes] = []
    params = None
    for path in parts:
        try:
            with wave.open(str(path), "rb") as wav:
                params = params or wav.getparams()
                frames.append(wav.readframes(wav.getnframes()))
        except (wave.Error, EOFError):
            continue  # a part created but never written (the track ended before audio)
    if params is None:
        return None
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(params.nchannels)
        wav.setsampwidth(params.sampwidth)
        wav.setframerate(params.framerate)
        wav.writeframes(b"".join(frames))
    return out.getvalue()
