"""Fixtures for the deployment tests: real `atlas` processes, SIGKILLed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import Procs


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    owner = Procs(tmp_path, graceful_stop=False)
    try:
        yield owner
    finally:
        owner.stop_all()
