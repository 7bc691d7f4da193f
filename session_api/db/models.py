"""Tables. The jobs table is the queue; webhook deliveries are durable rows; realtime sessions
are rows whose one conditional end is the billing record (docs/architecture.md tells both)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (no time zones) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    key_prefix: Mapped[str] = mapped_column(String(32), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Needed in clear to sign webhooks; shown once at creation.
    webhook_secret: Mapped[str] = mapped_column(String(128))
    rpm: Mapped[int] = mapped_column(Integer)
    monthly_cap: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Ceiling on a realtime session's max_duration_seconds (None: the server's setting).
    max_session_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class KeyUsage(Base):
    """Generation requests per key per calendar month (UTC), for the monthly cap."""

    __tablename__ = "key_usage"

    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-03"
    requests: Mapped[int] = mapped_column(Integer, default=0)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_key_created", "key_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    type: Mapped[str] = mapped_column(String(16), default="video")
    status: Mapped[str] = mapped_column(String(16))  # pending|processing|completed|failed
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    audio_key: Mapped[str] = mapped_column(String(256))
    image_key: Mapped[str] = mapped_column(String(256))
    audio_size: Mapped[int] = mapped_column(BigInteger)
    image_size: Mapped[int] = mapped_column(BigInteger)
    output_key: Mapped[str | None] = mapped_column(String(256), nullable=True)
    output_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    output_duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    result_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # the exact JSON bytes that are signed and sent
    status: Mapped[str] = mapped_column(String(16))  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)


class RealtimeSession(Base):
    """One realtime session. status: starting -> active -> ended, or starting -> failed."""

    __tablename__ = "realtime_sessions"
    __table_args__ = (
        Index("ix_realtime_sessions_status_expires", "status", "expires_at"),
        Index("ix_realtime_sessions_key_created", "key_id", "created_at"),
        Index("ix_realtime_sessions_cleanup_due", "room_cleanup_due_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    mode: Mapped[str] = mapped_column(String(16))  # conversation | passthrough
    status: Mapped[str] = mapped_column(String(16))
    room: Mapped[str] = mapped_column(String(128))
    max_duration_s: Mapped[int] = mapped_column(Integer)
    # $ per hour at creation, in cents, so a later price change does not rebill old sessions.
    price_cents_per_hour: Mapped[int] = mapped_column(Integer)
    face_version: Mapped[int] = mapped_column(Integer, default=1)
    # JSON list of every stored face object of the session; deleted when it ends.
    face_keys: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Room and face cleanup after the end, retried by the reaper until done.
    room_cleanup_due_at: Mapped[datetime | None] = mapped_column(nullable=True)
