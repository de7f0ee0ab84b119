"""Database access: one async engine, sessions, schema creation.

SQLite (aiosqlite, WAL mode) in the data dir by default; any SQLAlchemy async URL
(`postgresql+asyncpg://...`) through DATABASE_URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

_SCHEMA_LOCK = 0x63616C6C  # "call": the advisory lock that serialises schema creation
QUEUE_LOCK = 0x71756575  # "queue": counting waiting calls and adding one, on every node


def _import_models() -> None:
    # Every table must be registered on the metadata before create_all.
    import server.assist.models  # noqa: F401
    import server.models  # noqa: F401


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        # SQLite allows one writer; serialising our own writes avoids "database is locked".
        self.write_lock = asyncio.Lock()
        self._closed = False

    async def create_schema(self) -> None:
        _import_models()
        async with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # Nodes of a cluster start together: one creates the tables, the others wait
                # for it and find them (create_all alone races: "relation already exists").
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            await conn.run_sync(SQLModel.metadata.create_all)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session for a write transaction: committed on success, rolled back on error."""
        async with self.write_lock, self._sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def forget_overwritten(self) -> None:
        """After rewriting a row to remove PII, leave no old copy of it in the files.

        SQLite runs with `secure_delete` (freed space is zeroed); a truncating checkpoint
        then writes the new pages into the database file and empties the WAL, which still
        held the old ones. PostgreSQL keeps the superseded row version until (auto)vacuum
        reclaims it; `VACUUM` the table there to drop it at once.
        """
        if not self.is_sqlite:
            return
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    async def serialize(self, session: AsyncSession, key: int) -> None:
        """Make this write transaction wait for every other one, on any node, that
        serialises on `key` (a Postgres advisory lock, released at commit). SQLite has one
        writer at a time already."""
        if not self.is_sqlite:
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.engine.dispose()


@asynccontextmanager
async def open_store(url: str, data_dir: Path) -> AsyncIterator[Store]:
    """A store with its schema in place, for commands that run beside the server."""
    if url.startswith("sqlite"):
        from server.files import private_sqlite

        private_sqlite(Path(url.split("///", 1)[1]))  # noqa: ASYNC240 - once, before any I/O
    store = Store(url)
    try:
        await store.create_schema()
        yield store
    finally:
        await store.close()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted and overwritten content is zeroed, not left in free pages (PII redaction).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
