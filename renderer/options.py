"""Options shared by every renderer path (offline, streaming, every backend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BackendName = Literal["warp", "wav2lip"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RendererOptions:
    fps: int = 25
    # Output is size x size, the face framed in the middle, unless keep_framing is set: then the
    # whole photo is kept and scaled so that its longer side is `size`.
    size: int = 512
    keep_framing: bool = False
    # Rate of the audio slices paired with the frames (the input may be at any rate).
    sample_rate: int = 24000
    backend: BackendName = "warp"
    model_path: str | None = None
    # ONNX Runtime providers in order of preference; None means "best available".
    providers: tuple[str, ...] | None = None
    # "auto" picks OpenCV on CPU (faster there) and ONNX Runtime when a GPU provider exists.
    warp_engine: Literal["auto", "onnx", "opencv"] = "auto"
    threads: int = 1
    idle_motion: bool = True
    # How far the warp backend's mouth opens, relative to measured conversational speech
    # (1.0); 0.5 mumbles, 1.5 over-articulates. Range 0..2.
    articulation: float = 1.0
    # Seed for blink timing and sway phase; equal seeds give identical videos.
    seed: int = 0
    crossfade_s: float = 0.25
    # Offline MP4 encoding (libx264). ultrafast keeps a 2-core laptop near 10x realtime;
    # slower presets give smaller files for the same quality.
    video_preset: str = "ultrafast"
    video_crf: int = 23

    def __post_init__(self) -> None:
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be between 1 and 60, got {self.fps}")
        if not 64 <= self.size <= 2048 or self.size % 2:
            raise ValueError(f"size must be an even number between 64 and 2048, got {self.size}")
        if self.sample_rate % self.fps:
            raise ValueError(
                "sample_rate must be a multiple of fps so every frame gets whole samples"
            )
        if not 0.0 <= self.articulation <= 2.0:
            raise ValueError(f"articulation must be between 0 and 2, got {self.articulation}")
        if self.threads < 1:
            raise ValueError("threads must be >= 1")

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps
