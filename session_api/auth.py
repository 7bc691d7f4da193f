"""API keys: generated once, stored as SHA-256 hashes, looked up and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from session_api.db.models import ApiKey
from session_api.db.session import Database
from session_api.errors import AuthUnavailable, Forbidden, Unauthorized

KEY_PREFIX = "sk_live_"
PREFIX_CHARS = 4  # shown prefix: "sk_live_A7xQ"
_BEARER = "bearer "
_INVALID_FORMAT = "Invalid Authorization format. Use: Authorization: Bearer <api_key>"


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


async def authenticate(db: Database, header: str | None) -> AuthedKey:
    key = parse_bearer(header)
    digest = hash_key(key)
    try:
        row = await db.read(
            lambda session: session.execute(
                select(ApiKey).where(ApiKey.key_hash == digest)
            ).scalar_one_or_none()
        )
    except (SQLAlchemyError, OSError) as exc:
        raise AuthUnavailable() from exc
    # The index finds the row by hash; the compare below keeps the final check constant-time.
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        raise Forbidden()
    return AuthedKey(
        id=row.id,
        name=row.name,
        key_prefix=row.key_prefix,
        rpm=row.rpm,
        monthly_cap=row.monthly_cap,
        webhook_secret=row.webhook_secret,
        max_session_s=row.max_session_s,
    )


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
