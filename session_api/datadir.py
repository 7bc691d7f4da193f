"""The data dir on first start: private permissions, and a random secret kept in it.

The data dir is created 0700 and an embedded SQLite file 0600 (SQLite gives its -wal and -shm
files the database file's mode). Unless ATLAS_SECRET_KEY is set, links are signed with a random
secret generated once and kept in `<data dir>/secret_key` (0600), never with a public
placeholder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from session_api.config import Settings
from session_api.scratch import ScratchSpace

logger = logging.getLogger("session_api")

SECRET_FILE = "secret_key"
_PRIVATE_FILE = 0o600


def prepare_data_dir(settings: Settings) -> Settings:
    """Create what the data dir must hold; returns settings carrying the secret to sign with."""
    needs_dir = settings.is_embedded or settings.storage_kind == "file"
    explicit_secret = "secret_key" in settings.model_fields_set
    if needs_dir or not explicit_secret:
        make_private_dir(settings.data_dir)
    sqlite_file = _sqlite_file(settings.resolved_database_url) if settings.is_embedded else None
    if sqlite_file is not None and sqlite_file.parent.is_dir():
        create_private_file(sqlite_file)
    if explicit_secret:
        return settings
    secret = SecretStr(load_or_create_secret(settings.data_dir))
    return settings.model_copy(update={"secret_key": secret})


def make_private_dir(path: Path) -> None:
    """mkdir -p, the last level 0700 (an existing directory is left as its owner set it)."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)


def create_private_file(path: Path) -> None:
    """Create an empty 0600 file unless it exists."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE))


def load_or_create_secret(data_dir: Path) -> str:
    """The persisted secret, generated on first use. Safe when processes start together."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        draft = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(draft, path)  # atomic: the first process to get here wins
            logger.info("generated a signing secret", extra={"path": str(path)})
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        logger.warning("secret file readable by others; tightening to 0600")
        path.chmod(_PRIVATE_FILE)
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no usable secret; delete it or set ATLAS_SECRET_KEY")
    return secret


def _sqlite_file(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def open_data_dir(settings: Settings) -> tuple[Settings, ScratchSpace]:
    """prepare_data_dir, then claim and sweep the scratch dir; close the ScratchSpace at exit."""
    settings = prepare_data_dir(settings)
    scratch = ScratchSpace(settings.data_dir / "tmp", stale_after_s=settings.tmp_stale_after_s)
    try:
        scratch.open()
    except OSError:  # no writable data dir (S3 and PostgreSQL only): nothing to sweep
        logger.warning("scratch dir unavailable", extra={"dir": str(scratch.path)})
        scratch.close()
    return settings, scratch
