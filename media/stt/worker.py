"""The local Whisper model in a process of its own, and the handle the server keeps on it.

Why a process: decoding releases the GIL only inside CTranslate2. Feature extraction,
reading the results and the padded redo's Python need it back, and with the event loop busy
relaying audio each reacquisition waits up to the interpreter's 5 ms switch interval; the
loop in turn waits for the decoder's Python. Measured with bench.latency (docs/benchmarks.md)
at 24 talking calls: on a thread the engine got ~0.3 of a core while its queue held 20 s of
speech and the loop's thread ran at 100 %.

Why not multiprocessing: its spawned children re-import the parent's `__main__` (a script
without a main guard would start a second server), and a fork would copy a server's threads
mid-flight. This is a plain `python -m media.stt.worker` child: it reads length-prefixed
pickles on stdin and answers on stdout; end of input (the server exited, even by kill -9)
ends it. Both ends are this package's code, so pickle carries nothing foreign.

    parent → child: SpeechSettings, then a list[Request] per batch
    child → parent: ("ready", pid) or ("error", message) once, then ("ok", list[Decoded])
                    or ("error", message) per batch
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
from typing import IO, Any

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
START_TIMEOUT_S = 60.0
"""Loading tiny.en takes ~1 s here; a bigger model on a slow disk much longer."""


class WorkerDied(Exception):
    """The decoding process is gone (killed, crashed, out of memory)."""


def _write(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


class DecoderProcess:
    """One child process holding one model. Blocking; use from one thread at a time."""

    def __init__(self, settings: Any) -> None:
        env = dict(os.environ)
        # The child must find this package wherever the server was started from.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        # numpy's OpenBLAS (the mel filterbank of the feature extraction) otherwise starts a
        # thread per core that spins while it waits for work: 7.4 ms of CPU per 6 s window
        # instead of 3.1, and under load (bench.latency, 24 calls) feature extraction took
        # half of the decoding process's wall time, more than encode and generate together.
        env.setdefault("OPENBLAS_NUM_THREADS", str(max(1, settings.threads)))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "media.stt.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._stdout: IO[bytes] = self._proc.stdout
        self.pid = self._proc.pid
        try:
            _write(self._stdin, settings)
            kind, value = _read(self._stdout)
        except (OSError, EOFError):
            self.close()
            raise WorkerDied("the speech-to-text process exited while loading") from None
        if kind != "ready":
            self.close()
            raise RuntimeError(value)

    def decode(self, requests: list[Any]) -> list[Any]:
        """Decoded results, in order; RuntimeError with the child's message if decoding
        failed there, WorkerDied if the child is gone."""
        try:
            _write(self._stdin, requests)
            kind, value = _read(self._stdout)
        except (OSError, EOFError):
            raise WorkerDied("the speech-to-text process died") from None
        if kind != "ok":
            raise RuntimeError(value)
        return list(value)

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self, timeout_s: float = 5.0) -> None:
        """End of input ends the child; it is killed if it does not go in time."""
        for stream in (self._stdin, self._stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def main() -> int:
    """The child: load the model, then decode batches until the parent goes."""
    # The protocol owns the real stdout; anything else printed (by Python or by C++) goes
    # to stderr, which is the server's.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s stt-worker: %(message)s"
    )
    import numpy as np

    from ..audio import SAMPLE_RATE
    from .local import WhisperDecoder

    try:
        settings = _read(stdin)
        decoder = WhisperDecoder.load(settings)
        # The first inference allocates CTranslate2's buffers: before the first call's words.
        decoder.decode_real_length(np.zeros(SAMPLE_RATE, dtype=np.float32))
    except EOFError:
        return 0
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        _write(protocol_out, ("error", str(exc) or type(exc).__name__))
        return 1
    _write(protocol_out, ("ready", os.getpid()))
    while True:
        try:
            requests = _read(stdin)
        except EOFError:
            return 0
        try:
            reply: tuple[str, Any] = ("ok", decoder.decode_batch(requests))
        except Exception as exc:  # noqa: BLE001 - CTranslate2 failed on this batch
            reply = ("error", f"local speech-to-text failed: {exc}")
        try:
            _write(protocol_out, reply)
        except OSError:
            return 0


if __name__ == "__main__":
    sys.exit(main())
