"""The engine and session factory, owned by one Database object with aclose()."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_IMMEDIATE = "atlas_sqlite_immediate"
T = TypeVar("T")


class Database:
    """One async engine. `session()` reads; `write()` is a short write transaction.

    On SQLite, write transactions start with BEGIN IMMEDIATE so that concurrent writers queue on
    the database lock instead of failing halfway (the queue's claim depends on it).
    """

    def __init__(self, *, url: str, busy_timeout_s: float = 5.0, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": busy_timeout_s}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._read_engine: Engine | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine, busy_timeout_s)
            # aiosqlite hops to its thread for every cursor step (~25 hops a query), which
            # dominated the hot GETs; reads go through plain sqlite3 in one hop instead.
            self._read_engine = create_engine(
                url.replace("+aiosqlite", "+pysqlite", 1),
                connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
                # At least one connection per thread of the default executor, so that none is
                # opened (and its PRAGMAs run) per request under load.
                pool_size=max(8, (os.cpu_count() or 1) + 4),
            )
            _configure_sqlite(self._read_engine, busy_timeout_s, explicit_begin=False)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run a read-only unit of work written against a plain (sync) Core Connection.

        SQLite: one thread hop over sqlite3. PostgreSQL: asyncpg through run_sync. Core, not the
        ORM: the hot polls (key, job) cost a third as much without the Session's machinery.
        """
        if self._read_engine is not None:
            return await asyncio.to_thread(self._read_in_thread, work)
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    def _read_in_thread(self, work: Callable[[Connection], T]) -> T:
        assert self._read_engine is not None
        with self._read_engine.connect() as conn:
            return work(conn)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (and plain writes that need no lock ordering)."""
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed on success and rolled back on error."""
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                conn = await conn.execution_options(**{_IMMEDIATE: True})
            async with AsyncSession(bind=conn, expire_on_commit=False) as session:
                async with session.begin():
                    yield session

    async def aclose(self) -> None:
        await self.engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()


def _configure_sqlite(
    sync_engine: Engine, busy_timeout_s: float, *, explicit_begin: bool = True
) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see _on_begin), as the SQLite dialect docs advise.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    if not explicit_begin:  # read-only engine: each SELECT is its own snapshot, no BEGIN
        return

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
