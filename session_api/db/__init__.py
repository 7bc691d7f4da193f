"""The database: models, engine/session ownership and alembic migrations."""
