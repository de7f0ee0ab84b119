"""A tap on an aiortc receiver: the Opus frames exactly as they arrived, before decoding.

aiortc reassembles each received RTP frame and hands it to a per-track decoder thread
through a queue. We swap that queue for one that gives each frame to our sink instead,
so the server can forward the caller's Opus packets without re-encoding them and decode
only once, in its own pipeline. The end-of-stream sentinel still reaches aiortc's
decoder thread, so it stops as usual.

aiortc's audio jitter buffer also holds every frame until four more have arrived (80 ms),
which the other party would hear as delay and the VAD would see as late speech ends. Each
Opus packet is a whole frame, and the far end's own jitter buffer smooths what we forward,
so the tapped receiver releases a frame as soon as the next one arrives.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer

OpusSink = Callable[[bytes], None]

_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"


class _TapQueue(queue.Queue):  # type: ignore[type-arg]
    def __init__(self, sink: OpusSink) -> None:
        super().__init__()
        self._sink = sink

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
            return
        _codec, encoded_frame = item
        # Runs on the event loop thread (aiortc's RTP handler); the sink must not block.
        self._sink(encoded_frame.data)


def tap_receiver(receiver: RTCRtpReceiver, sink: OpusSink) -> None:
    """Route `receiver`'s encoded audio frames to `sink`; call before media starts."""
    if not hasattr(receiver, _QUEUE_ATTR):
        raise RuntimeError(
            "this aiortc version has no receiver decoder queue to tap; "
            "media/tap.py needs updating for it"
        )
    setattr(receiver, _QUEUE_ATTR, _TapQueue(sink))
    if getattr(receiver, "_RTCRtpReceiver__kind", None) == "audio" and hasattr(receiver, _JITTER_ATTR):
        setattr(receiver, _JITTER_ATTR, JitterBuffer(capacity=16, prefetch=0))
