"""Renderer settings from the environment (ATLAS_RENDERER_*): the one source of RendererOptions for
`atlas render`, the offline job worker, the API's face checks and the realtime agent."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from renderer.options import RendererOptions


class RendererSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATLAS_RENDERER_", extra="ignore")

    backend: Literal["warp", "wav2lip"] = "warp"
    model: str | None = Field(default=None, description="path to a user-supplied ONNX model")
    fps: int = 25
    size: int = 512
    sample_rate: int = 24000
    providers: str | None = Field(
        default=None, description="comma-separated ONNX Runtime providers, best first"
    )
    warp_engine: Literal["auto", "onnx", "opencv"] = "auto"
    threads: int = 1
    idle_motion: bool = True
    video_preset: str = "ultrafast"
    video_crf: int = 23

    def to_options(self) -> RendererOptions:
        providers = tuple(p.strip() for p in self.providers.split(",")) if self.providers else None
        return RendererOptions(
            fps=self.fps,
            size=self.size,
            sample_rate=self.sample_rate,
            backend=self.backend,
            model_path=self.model,
            providers=providers,
            warp_engine=self.warp_engine,
            threads=self.threads,
            idle_motion=self.idle_motion,
            video_preset=self.video_preset,
            video_crf=self.video_crf,
        )


def load_renderer_options() -> RendererOptions:
    """RendererOptions from the environment, read now (tests and workers change it between runs)."""
    return RendererSettings().to_options()


def describe_invalid(error: ValidationError) -> str:
    """A settings error as one line naming the variables: `ATLAS_RENDERER_FPS: ...; ...`."""
    prefix = RendererSettings.model_config.get("env_prefix", "")
    problems = [
        f"{prefix}{'.'.join(str(p) for p in item['loc']).upper()}: {item['msg']}"
        for item in error.errors()
    ]
    return "; ".join(problems)


class NeuralEnvironment(BaseSettings):
    """Batching and TensorRT knobs of the neural backends (ATLAS_WAV2LIP_*, ATLAS_TRT_*)."""

    model_config = SettingsConfigDict(env_prefix="ATLAS_", extra="ignore")

    data_dir: Path = Path("./atlas-data")
    wav2lip_max_batch: int = Field(default=32, ge=1)
    wav2lip_max_wait_ms: float = Field(default=4.0, ge=0)
    trt_cache_dir: str | None = None  # default: <data dir>/trt-cache
    trt_fp16: bool = True
