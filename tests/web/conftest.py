"""tests/web reuses the API's fixtures: settings on a temp dir, the in-process app, fake LiveKit."""

from tests.session_api.conftest import (  # noqa: F401 (pytest fixtures)
    clock,
    livekit,
    make_settings,
    open_api,
    rt_settings,
    speech_bytes,
)
