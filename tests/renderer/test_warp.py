"""The warp backend: ONNX Runtime and OpenCV engines agree; provider selection is honest."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from renderer import FaceAsset, RendererOptions
from renderer.audio import MouthShape
from renderer.backends.warp import WarpBackend
from renderer.onnx import PREFERRED_PROVIDERS, new_inference_session, select_providers


@pytest.mark.parametrize(
    "mouth",
    [MouthShape(0.2, 0.0), MouthShape(0.6, 0.7), MouthShape(1.0, 0.0), MouthShape(0.5, -1.0)],
)
def test_onnx_and_opencv_engines_agree(face: FaceAsset, mouth: MouthShape) -> None:
    onnx = WarpBackend(options=RendererOptions(warp_engine="onnx"))
    cv = WarpBackend(options=RendererOptions(warp_engine="opencv"))
    assert onnx.provider == "CPUExecutionProvider" and cv.provider == "opencv-cpu"
    a = onnx.render(onnx.prepare(face), mouth).astype(int)
    b = cv.render(cv.prepare(face), mouth).astype(int)
    diff = np.abs(a - b)
    assert diff.max() <= 3, "bilinear sampling differs only by rounding"
    assert diff.mean() < 0.05
    assert np.abs(a - face.image.astype(int)).max() > 50, "and the mouth did change"


def test_rest_pose_is_the_photo(face: FaceAsset) -> None:
    backend = WarpBackend()
    assert np.array_equal(backend.render(backend.prepare(face), MouthShape()), face.image)


def test_warp_changes_only_the_region_of_interest(face: FaceAsset) -> None:
    backend = WarpBackend()
    prepared = backend.prepare(face)
    frame = backend.render(prepared, MouthShape(1.0, 1.0))
    x0, y0, x1, y1 = prepared.box
    outside = np.ones(face.image.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(frame[outside], face.image[outside])


def test_auto_engine_uses_opencv_without_a_gpu() -> None:
    if any(p in ort.get_available_providers() for p in PREFERRED_PROVIDERS[:2]):
        pytest.skip("a GPU provider is present: auto picks ONNX Runtime there")
    assert WarpBackend().engine == "opencv"


def test_provider_selection_falls_back_to_cpu() -> None:
    available = set(ort.get_available_providers())
    chosen = select_providers()
    assert chosen[-1] == "CPUExecutionProvider"
    assert all(p in available for p in chosen)
    assert [p for p in PREFERRED_PROVIDERS if p in chosen] == chosen, "TensorRT > CUDA > CPU"
    # asking for providers this build lacks degrades to CPU instead of failing
    assert select_providers(("TensorrtExecutionProvider",))[-1] == "CPUExecutionProvider"


def test_session_reports_the_provider_it_runs_on() -> None:
    from renderer.backends.warp import build_warp_graph

    session, provider = new_inference_session(
        build_warp_graph(), providers=("CUDAExecutionProvider", "CPUExecutionProvider")
    )
    assert provider == session.get_providers()[0]
    assert provider in ort.get_available_providers()
