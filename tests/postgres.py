"""A throwaway PostgreSQL database on the test server (ATLAS_TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator


async def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(base_url: str, *, prefix: str = "atlas_t") -> Iterator[str]:
    """A new database beside `base_url`'s (same server and user), dropped afterwards; yields
    its URL in `base_url`'s form (postgresql+asyncpg://...)."""
    admin = base_url.replace("postgresql+asyncpg://", "postgresql://")
    name = f"{prefix}_{secrets.token_hex(6)}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base_url.rpartition('/')[0]}/{name}"
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
