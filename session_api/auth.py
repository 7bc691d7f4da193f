"""API keys: generated once, stored as SHA-256 hashes, looked up and compared in constant time.

Verified keys are cached for KEY_CACHE_TTL_S, so a hot poll loop does not read the key row on
every request; a key revoked elsewhere (another process, `atlas keys revoke`) stops working
within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, select
from sqlalchemy.exc import SQLAlchemyError

from session_api.db.models import ApiKey
from session_api.db.session import Database
from session_api.errors import AuthUnavailable, Forbidden, Unauthorized

KEY_PREFIX = "sk_live_"
PREFIX_CHARS = 4  # shown prefix: "sk_live_A7xQ"
_BEARER = "bearer "
_INVALID_FORMAT = "Invalid Authorization format. Use: Authorization: Bearer <api_key>"
KEY_CACHE_TTL_S = 1.0  # revocation bites within this (the spec allows 2 s)
KEY_CACHE_MAX = 4096  # entries; only verified keys are cached, so this bounds memory
_KEY_BY_HASH = select(ApiKey.__table__).where(ApiKey.__table__.c.key_hash == bindparam("digest"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthedKey:
    id: int
    name: str
    key_prefix: str
    rpm: int
    monthly_cap: int | None
    webhook_secret: str
    max_session_s: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewKey:
    id: int
    name: str
    key: str  # shown once, never stored
    key_prefix: str
    webhook_secret: str
    rpm: int
    monthly_cap: int | None


class KeyCache:
    """Verified keys by digest, each trusted for `ttl_s` after it was read from the database.

    Only successes are cached: an unknown or revoked key always reads the database, so a new key
    works at once and the cache cannot be filled by guessing. `clock` is injectable for tests.
    """

    def __init__(
        self,
        *,
        ttl_s: float = KEY_CACHE_TTL_S,
        max_entries: int = KEY_CACHE_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[float, AuthedKey]] = {}

    def get(self, digest: str) -> AuthedKey | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires_at, key = entry
        if self.clock() >= expires_at:
            del self._entries[digest]
            return None
        return key

    def put(self, digest: str, key: AuthedKey) -> None:
        self._entries.pop(digest, None)
        if len(self._entries) >= self.max_entries:  # drop the oldest (dicts keep insertion order)
            del self._entries[next(iter(self._entries))]
        self._entries[digest] = (self.clock() + self.ttl_s, key)

    def clear(self) -> None:
        self._entries.clear()


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: no dictionary to attack.
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + PREFIX_CHARS]


def parse_bearer(header: str | None) -> str:
    """The key from an Authorization header; Unauthorized when missing or malformed."""
    if header is None or not header.strip():
        raise Unauthorized()
    if not header[: len(_BEARER)].lower() == _BEARER:
        raise Unauthorized(_INVALID_FORMAT)
    key = header[len(_BEARER) :].strip()
    if not key or " " in key:
        raise Unauthorized(_INVALID_FORMAT)
    return key


async def authenticate(
    db: Database, header: str | None, *, cache: KeyCache | None = None
) -> AuthedKey:
    key = parse_bearer(header)
    digest = hash_key(key)
    cached = cache.get(digest) if cache is not None else None
    if cached is not None:
        return cached
    try:
        row = await db.read(
            lambda conn: conn.execute(_KEY_BY_HASH, {"digest": digest}).mappings().first()
        )
    except (SQLAlchemyError, OSError) as exc:
        raise AuthUnavailable() from exc
    # The index finds the row by hash; the compare below keeps the final check constant-time.
    if (
        row is None
        or not hmac.compare_digest(row["key_hash"], digest)
        or row["revoked_at"] is not None
    ):
        raise Forbidden()
    authed = AuthedKey(
        id=row["id"],
        name=row["name"],
        key_prefix=row["key_prefix"],
        rpm=row["rpm"],
        monthly_cap=row["monthly_cap"],
        webhook_secret=row["webhook_secret"],
        max_session_s=row["max_session_s"],
    )
    if cache is not None:
        cache.put(digest, authed)
    return authed


async def create_key(
    db: Database,
    *,
    name: str,
    rpm: int = 30,
    monthly_cap: int | None = None,
    max_session_s: int | None = None,
) -> NewKey:
    if rpm < 1:
        raise ValueError("rpm must be at least 1")
    if monthly_cap is not None and monthly_cap < 0:
        raise ValueError("monthly cap must be >= 0")
    if max_session_s is not None and max_session_s < 1:
        raise ValueError("max session seconds must be >= 1")
    key = generate_key()
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        key_prefix=display_prefix(key),
        key_hash=hash_key(key),
        webhook_secret=secret,
        rpm=rpm,
        monthly_cap=monthly_cap,
        max_session_s=max_session_s,
        created_at=datetime.now(UTC),
    )
    async with db.write() as session:
        session.add(row)
        await session.flush()
        key_id = row.id
    return NewKey(
        id=key_id,
        name=name,
        key=key,
        key_prefix=row.key_prefix,
        webhook_secret=secret,
        rpm=rpm,
        monthly_cap=monthly_cap,
    )


async def list_keys(db: Database) -> list[ApiKey]:
    async with db.session() as session:
        return list((await session.execute(select(ApiKey).order_by(ApiKey.id))).scalars())


class AmbiguousPrefix(Exception):
    pass


async def revoke_key(db: Database, prefix: str) -> int:
    """Revoke the one active key whose shown prefix is `prefix`; returns how many (0 or 1)."""
    async with db.write() as session:
        rows = list(
            (
                await session.execute(
                    select(ApiKey).where(
                        ApiKey.key_prefix == display_prefix(prefix),
                        ApiKey.revoked_at.is_(None),
                    )
                )
            ).scalars()
        )
        if len(prefix) > len(display_prefix(prefix)):  # a full key was given
            rows = [r for r in rows if hmac.compare_digest(r.key_hash, hash_key(prefix))]
        if len(rows) > 1:
            raise AmbiguousPrefix(f"{len(rows)} active keys share the prefix {prefix}")
        for row in rows:
            row.revoked_at = datetime.now(UTC)
        return len(rows)
