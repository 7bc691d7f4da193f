"""Shared helpers for the deployment tests: the repository root, real `atlas` processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import Procs

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def atlas_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for an `atlas` process on an embedded (SQLite, local files) data dir."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ATLAS_", "LIVEKIT_"))  # nothing from the caller's setup leaks in
    }
    env.update(
        {
            "ATLAS_DATA_DIR": str(data_dir),
            "ATLAS_SECRET_KEY": "deploy-test-secret-0123456789",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    owner = Procs(tmp_path, graceful_stop=False)
    try:
        yield owner
    finally:
        owner.stop_all()
