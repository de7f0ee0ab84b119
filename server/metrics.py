"""Prometheus metrics of one node (`GET /metrics`; docs/scaling.md says what to watch).

One registry per application (not prometheus-client's global one): tests run several
servers in one process. Gauges of live things (participants, speech-to-text queues, calls
held) are read from the hub when scraped; calls by state come from the shared database, so
every node reports the cluster's totals there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_PROBE_S = 0.1


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls = Gauge(
            "callassist_calls", "Calls by state, in the shared database (all nodes)", ["state"], registry=r
        )
        self.transcript_latency = Histogram(
            "callassist_transcript_latency_seconds",
            "End of an utterance to its final transcript",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.suggestion_latency = Histogram(
            "callassist_suggestion_latency_seconds",
            "A final customer transcript to the first text of the suggestion it caused",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "callassist_event_loop_lag_seconds",
            f"How late a {LAG_PROBE_S} s timer fires on the event loop",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "callassist_redis_errors", "Redis commands that failed, by operation", ["op"], registry=r
        )
        self.db_errors = Counter("callassist_db_errors", "Database statements that failed", registry=r)
        self.takeovers = Counter(
            "callassist_takeovers", "Calls this node took over from a dead node", registry=r
        )
        self.forwarded = Counter(
            "callassist_forwarded_requests",
            "Requests this node forwarded to the node that holds the call",
            ["kind"],
            registry=r,
        )
        self.dropped = Counter(
            "callassist_calls_dropped",
            "Calls whose media this node dropped because it lost their lease",
            ["reason"],
            registry=r,
        )
        self._lag_task: asyncio.Task[None] | None = None
        self._store: Any = None

    def watch(self, live: Callable[[], Iterable[Any]], store: Any) -> None:
        """Report the hub's live sessions (`live()` gives CallSession objects) and the
        store's calls by state when scraped."""
        self.registry.register(_LiveCollector(live))
        self._store = store

    async def scrape(self) -> bytes:
        if self._store is not None:
            from sqlmodel import func, select

            from server.models import Call

            try:
                async with self._store.session() as session:
                    rows = (await session.exec(select(Call.state, func.count()).group_by(Call.state))).all()
            except Exception:  # counted by the store's error hook; the rest still reports
                rows = None
            if rows is not None:
                counts = dict(rows)
                for state in ("waiting", "active", "ended"):
                    self.calls.labels(state).set(counts.get(state, 0))
        return generate_latest(self.registry)

    def start(self) -> None:
        self._lag_task = asyncio.ensure_future(self._probe_lag())

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None

    async def _probe_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self.loop_lag.observe(max(0.0, loop.time() - before - LAG_PROBE_S))


class _LiveCollector(Collector):
    def __init__(self, live: Callable[[], Iterable[Any]]) -> None:
        self._live = live

    def collect(self) -> Iterator[GaugeMetricFamily]:
        held = GaugeMetricFamily("callassist_live_calls", "Calls whose media this node holds")
        participants = GaugeMetricFamily(
            "callassist_participants", "Connected participants on this node, by kind", labels=["kind"]
        )
        queue = GaugeMetricFamily(
            "callassist_stt_queue_depth", "Utterances waiting for speech-to-text on this node"
        )
        sessions = list(self._live())
        kinds: dict[str, int] = {"webrtc": 0, "phone": 0, "voice_agent": 0}
        depth = 0
        for session in sessions:
            for participant in session.participants.values():
                kinds[participant.kind] = kinds.get(participant.kind, 0) + 1
            depth += session.stt_pending()
        held.add_metric([], len(sessions))
        for kind, count in sorted(kinds.items()):
            participants.add_metric([kind], count)
        queue.add_metric([], depth)
        yield held
        yield participants
        yield queue
