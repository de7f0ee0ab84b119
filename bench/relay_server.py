"""The real server for the relay benchmark, with a null transcriber.

Every inbound track is tapped, forwarded to the other party and decoded → resampled →
VAD-segmented by the real pipeline; the utterances are counted instead of transcribed, so
the figures measure the call backbone, not Whisper (bench/stt measures that).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from aiohttp import web

from server.app import create_app
from server.auth import add_user
from server.config import load_settings
from server.hub import Services
from server.keys import STORE


class LagProbe:
    """Event-loop lag: how late a 10 ms sleep wakes up."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append((loop.time() - start - 0.01) * 1000)


class CountingTranscriber:
    segments = 0

    def __init__(self, **_: object) -> None:
        pass

    def submit(self, event: object) -> None:
        if getattr(event, "final", False):
            CountingTranscriber.segments += 1

    async def close(self) -> None:
        return None


async def forward_only(settings, store):  # type: ignore[no-untyped-def]
    async def close() -> None:
        return None

    return Services(settings=settings), close


async def services_factory(settings, store):  # type: ignore[no-untyped-def]
    from media.pipeline import AudioThread, InboundAudio

    loop = asyncio.get_running_loop()
    audio_thread = AudioThread()

    def pipeline(*, speaker: str, call_id: str, **kwargs: object) -> InboundAudio:
        return InboundAudio(
            speaker=speaker, settings=settings.speech, loop=loop, audio_thread=audio_thread,
            **kwargs,  # type: ignore[arg-type]
        )

    services = Services(settings=settings, speech_pipeline=pipeline, transcriber=CountingTranscriber)

    async def close() -> None:
        audio_thread.close()

    return services, close


def main() -> None:
    port, data_dir = int(sys.argv[1]), Path(sys.argv[2])
    decode = "--forward-only" not in sys.argv
    os.environ.setdefault("CALLASSIST_ICE_HOSTS", "127.0.0.1")
    settings = load_settings(data_dir=data_dir, port=port)
    app = create_app(settings, services_factory if decode else forward_only)
    probe = LagProbe()

    async def start(app: web.Application) -> None:
        await add_user(app[STORE], "bench", "bench-password", "agent")
        probe._task = asyncio.ensure_future(probe.run())

    async def lag(request: web.Request) -> web.Response:
        samples = sorted(probe.samples)
        probe.samples.clear()
        if not samples:
            return web.json_response({"p50": 0, "p99": 0, "max": 0, "n": 0})
        pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
        return web.json_response(
            {"p50": pick(0.5), "p99": pick(0.99), "max": samples[-1], "n": len(samples),
             "segments": CountingTranscriber.segments, "t": time.time()}
        )

    app.on_startup.append(start)
    app.router.add_get("/bench/lag", lag)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
