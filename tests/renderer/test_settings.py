from __future__ import annotations

import pytest

from renderer.settings import RendererSettings


def test_environment_maps_to_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATLAS_RENDERER_BACKEND", "warp")
    monkeypatch.setenv("ATLAS_RENDERER_PROVIDERS", "CUDAExecutionProvider, CPUExecutionProvider")
    monkeypatch.setenv("ATLAS_RENDERER_SIZE", "384")
    monkeypatch.setenv("ATLAS_RENDERER_IDLE_MOTION", "false")
    options = RendererSettings().to_options()
    assert options.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert options.size == 384 and options.idle_motion is False


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATLAS_RENDERER_BACKEND", "magic")
    with pytest.raises(ValueError, match="backend"):
        RendererSettings()
    monkeypatch.setenv("ATLAS_RENDERER_BACKEND", "warp")
    monkeypatch.setenv("ATLAS_RENDERER_SIZE", "511")
    with pytest.raises(ValueError, match="even"):
        RendererSettings().to_options()
