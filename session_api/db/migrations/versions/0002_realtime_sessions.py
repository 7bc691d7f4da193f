"""realtime sessions, and a per-key ceiling on their duration

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_session_s", sa.Integer(), nullable=True))

    op.create_table(
        "realtime_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("room", sa.String(length=128), nullable=False),
        sa.Column("max_duration_s", sa.Integer(), nullable=False),
        sa.Column("price_cents_per_hour", sa.Integer(), nullable=False),
        sa.Column("face_version", sa.Integer(), nullable=False),
        sa.Column("face_keys", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("room_cleanup_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["api_keys.id"],
            name=op.f("fk_realtime_sessions_key_id_api_keys"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_realtime_sessions")),
    )
    with op.batch_alter_table("realtime_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_realtime_sessions_status_expires", ["status", "expires_at"], unique=False
        )
        batch_op.create_index(
            "ix_realtime_sessions_key_created", ["key_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_realtime_sessions_cleanup_due", ["room_cleanup_due_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("realtime_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_realtime_sessions_cleanup_due")
        batch_op.drop_index("ix_realtime_sessions_key_created")
        batch_op.drop_index("ix_realtime_sessions_status_expires")
    op.drop_table("realtime_sessions")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("max_session_s")
