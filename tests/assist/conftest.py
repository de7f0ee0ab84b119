"""Fixtures for the assist tests: real SQLite stores in tmp_path, the demo data, a
recording `publish` that numbers and persists events the way the call session does."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from server import events
from server.assist.demo import load_demo
from server.assist.knowledge import KnowledgeBase
from server.models import Call, CallEvent
from server.store import Store


@pytest.fixture(scope="session")
def demo_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo database built per session; each test gets its own copy."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"

    async def build() -> None:
        store = Store(f"sqlite+aiosqlite:///{path}")
        try:
            await store.create_schema()
            await load_demo(store)
        finally:
            await store.close()

    asyncio.run(build())
    return path


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'assist.db'}")
    await store.create_schema()
    yield store
    await store.close()


@pytest.fixture
async def demo_store(tmp_path: Path, demo_db_template: Path) -> AsyncIterator[Store]:
    path = tmp_path / "demo.db"
    shutil.copy(demo_db_template, path)
    store = Store(f"sqlite+aiosqlite:///{path}")
    await store.create_schema()
    yield store
    await store.close()


@pytest.fixture
async def knowledge(demo_store: Store) -> KnowledgeBase:
    kb = KnowledgeBase()
    await kb.refresh(demo_store)
    return kb


async def new_call(store: Store, customer_id: str) -> str:
    async with store.write() as session:
        call = Call(customer_id=customer_id, state="active")
        session.add(call)
    return call.id


class Recorder:
    """A `publish` like the call session's: numbers persisted events, stores them as
    CallEvent rows, and keeps everything it was given, in order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()

    async def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        event = dict(event)
        if events.is_persisted(event):
            async with self.store.write() as session:
                last = (
                    await session.exec(
                        select(func.max(CallEvent.seq)).where(CallEvent.call_id == event["call_id"])
                    )
                ).one()
                event["seq"] = (last or 0) + 1
                session.add(
                    CallEvent(
                        call_id=event["call_id"],
                        seq=event["seq"],
                        type=event["type"],
                        ts=event["ts"],
                        body=event,
                    )
                )
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        return event

    def of(self, type_: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["type"] == type_ and all(e.get(k) == v for k, v in match.items())
        ]

    def finals(self, **match: Any) -> list[dict[str, Any]]:
        return self.of(events.AI_SUGGESTION, done=True, **match)

    async def wait_for(self, predicate: Callable[[], Any], within: float = 5.0) -> Any:
        """The first truthy value of `predicate()`, re-checked after every event."""
        async with asyncio.timeout(within), self._changed:
            while not (result := predicate()):
                await self._changed.wait()
            return result


def transcript(
    text: str, segment_id: str, speaker: str = "customer", start_ms: int = 0
) -> dict[str, Any]:
    return events.make(
        events.TRANSCRIPT,
        "call",
        speaker=speaker,
        segment_id=segment_id,
        text=text,
        final=True,
        start_ms=start_ms,
        end_ms=start_ms + 1500,
    )
