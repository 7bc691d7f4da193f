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


def test_the_agent_reads_the_same_renderer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the GPU overlay sets for agent pods reach the agent's RendererOptions."""
    from agent.config import AgentSettings

    monkeypatch.setenv("ATLAS_RENDERER_PROVIDERS", "TensorrtExecutionProvider,CPUExecutionProvider")
    monkeypatch.setenv("ATLAS_RENDERER_WARP_ENGINE", "onnx")
    monkeypatch.setenv("ATLAS_RENDERER_IDLE_MOTION", "false")
    monkeypatch.setenv("ATLAS_RENDERER_SIZE", "384")
    monkeypatch.setenv("ATLAS_RENDERER_FPS", "30")
    monkeypatch.setenv("ATLAS_RENDERER_BACKEND", "wav2lip")
    monkeypatch.setenv("ATLAS_RENDERER_MODEL", "/models/w.onnx")
    options = AgentSettings().renderer_options()
    assert options == RendererSettings().to_options()
    assert options.providers == ("TensorrtExecutionProvider", "CPUExecutionProvider")
    assert (options.warp_engine, options.idle_motion, options.size, options.fps) == (
        "onnx",
        False,
        384,
        30,
    )
    assert (options.backend, options.model_path) == ("wav2lip", "/models/w.onnx")
