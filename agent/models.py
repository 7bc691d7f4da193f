"""The models a worker process shares between all of its sessions, each loaded once, on first use.

With the thread job executor (the default, ATLAS_AGENT_JOB_EXECUTOR=thread) every session of a
worker runs in one process, so the face landmarker, the render backend (its ONNX session, one
CUDA context on a GPU, and the wav2lip BatchLoop that batches frames across sessions) and the
Silero VAD exist once per process, not once per session. livekit-agents calls the set-up
function once per job thread; it lands here, and only the first call loads anything.

Silero loads only when a conversation session asks for it: passthrough and plugin sessions
never pay for it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import cv2

from agent.metrics import worker_metrics
from renderer.backends import Backend, BatchingBackend, create_backend
from renderer.landmarks import shared_landmarker
from renderer.options import RendererOptions

if TYPE_CHECKING:
    from livekit.agents import vad

logger = logging.getLogger("agent")


class ProcessModels:
    """Lazily built, process-wide models; every accessor is thread-safe."""

    def __init__(self, options: RendererOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._vad: vad.VAD | None = None
        self._vad_failed = False
        self.loads = 0  # how many models this process built (one landmarker, one backend, ...)

    def warm(self) -> None:
        """What every session needs: the landmarker and the render backend."""
        with self._lock:
            if self._backend is not None:
                return
            started = time.monotonic()
            # Sessions are the process's parallelism. OpenCV's own pool splits each remap and
            # warp of a frame across threads that then spin in sched_yield between slices:
            # ~0.04 cores a session for nothing (BENCHMARKS.md, capacity).
            cv2.setNumThreads(1)
            shared_landmarker()
            self._backend = create_backend(self.options)
            if isinstance(self._backend, BatchingBackend):  # every session's frames, batched
                self._backend.batch_loop.on_batch = worker_metrics().observe_batch
            self.loads += 2
            worker_metrics().models_loaded.set(self.loads)
            logger.info(
                "models loaded",
                extra={
                    "load_s": round(time.monotonic() - started, 2),
                    "backend": self.options.backend,
                    "provider": self._backend.provider,
                },
            )

    @property
    def backend(self) -> Backend:
        self.warm()
        assert self._backend is not None
        return self._backend

    def vad(self) -> vad.VAD | None:
        """Silero VAD, loaded on the first conversation session; None if it cannot load."""
        with self._lock:
            if self._vad is None and not self._vad_failed:
                try:
                    from livekit.plugins import silero

                    self._vad = silero.VAD.load()
                    self.loads += 1
                    worker_metrics().models_loaded.set(self.loads)
                except Exception:
                    self._vad_failed = True
                    logger.warning("silero VAD could not be loaded; conversation turns use the STT")
            return self._vad


_models: ProcessModels | None = None
_models_lock = threading.Lock()


def process_models(options: RendererOptions) -> ProcessModels:
    """This process's models (the options of the first caller win: they come from one
    environment)."""
    global _models
    with _models_lock:
        if _models is None:
            _models = ProcessModels(options)
        return _models
