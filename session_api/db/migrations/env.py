"""Alembic environment: runs on the connection handed over by session_api.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from session_api.db.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through session_api.db.migrate (atlas migrate)")
    _run(connection)


main()
