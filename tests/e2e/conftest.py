"""The end-to-end suite's shared stack: one `atlas serve` and one `atlas agent start` on the
session's livekit-server, for the scenarios that do not need a stack of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack, start_stack
from tests.livekit_server import LiveKitServer

# the client counts as gone after this long (short, so scenarios 6 and 7 run in seconds;
# tests/e2e/test_rejoin_defaults.py runs the defaults)
EMPTY_TIMEOUT_S = 10


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, livekit_server: LiveKitServer
) -> Iterator[Stack]:
    started = start_stack(
        tmp_path_factory.mktemp("stack"),
        livekit_server,
        ATLAS_AGENT_EMPTY_TIMEOUT_S=str(EMPTY_TIMEOUT_S),
        ATLAS_REALTIME_EMPTY_TIMEOUT_S=str(EMPTY_TIMEOUT_S),  # the API sends it with each dispatch
    )
    try:
        yield started
    finally:
        started.stop()
