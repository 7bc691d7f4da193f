"""The models a worker process shares between its sessions."""

from __future__ import annotations

import cv2

from agent.models import ProcessModels
from renderer import RendererOptions


def test_warming_the_models_turns_off_opencvs_thread_pool() -> None:
    # Sessions are the worker's parallelism; OpenCV's pool only adds threads spinning between
    # the slices of each frame's remap.
    cv2.setNumThreads(-1)  # OpenCV's default: a pool as wide as the machine
    try:
        ProcessModels(RendererOptions()).warm()
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(-1)
