"""The default backend: the photo's own face, warped by a displacement field, no weights.

The jaw opens the mouth: the lower lip, lower teeth, tongue and chin drop with it while the
upper lip lifts a little off upper teeth that stay where the skull holds them. Inside the lips
the backend shows two plates built once per face (interior.py): the photo's own teeth where it
shows them, and teeth, tongue and cavity synthesised in the photo's colours, blur and grain
where it does not. How far the mouth opens is calibrated to the inter-ocular distance and
scaled by RendererOptions.articulation (ATLAS_RENDERER_ARTICULATION).

Pixels are sampled either with OpenCV's remap (fastest on a CPU) or with an ONNX GridSample
graph (the same maths on CUDA or TensorRT); a test keeps the two in agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from renderer.audio import MouthShape
from renderer.backends.base import PreparedFace
from renderer.backends.warp.geometry import (
    GAP_PER_IOD,
    JAW_SHARE,
    LIP_FALLOFF,
    SMILE_UPPER_SHARE,
    UPPER_FALLOFF,
    UPPER_SHARE,
    box_grid,
    mouth_frame,
    roi_box,
    skin_fields,
)
from renderer.backends.warp.graph import build_warp_graph
from renderer.backends.warp.interior import build_plates
from renderer.backends.warp.photo import PhotoLook, inter_ocular, measure_look
from renderer.backends.warp.plan import WarpPlan, WarpShape, plan_warp
from renderer.face import FaceAsset
from renderer.onnx import gpu_available, new_inference_session
from renderer.options import RendererOptions


@dataclass(frozen=True, slots=True, eq=False)
class WarpFace:
    face: FaceAsset
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the region of interest in the frame
    shape: WarpShape
    look: PhotoLook
    image_chw: np.ndarray  # (1, 3, H, W) float32, for the ONNX engine


def prepare_warp_face(face: FaceAsset, *, articulation: float = 1.0) -> WarpFace:
    frame = mouth_frame(face.landmarks)
    mw = frame.mouth_width
    gap_max = GAP_PER_IOD * inter_ocular(face.landmarks) * articulation
    upper_share = SMILE_UPPER_SHARE if frame.shows_interior else UPPER_SHARE
    box = roi_box(frame, gap_max, face.size)
    xs, ys = box_grid(box)
    fields = skin_fields(frame, xs, ys)
    coarse = skin_fields(frame, *box_grid(box, step=2))
    look = measure_look(face.image, face.landmarks, mw)
    window = _interior_window(fields.u, fields.rel, fields.upper, fields.lower, mw / 2 + 2, gap_max)
    jaw_share = 1.0 if frame.shows_interior else JAW_SHARE
    plates = build_plates(face.image, frame, look, box, window, jaw_share * gap_max)
    scale = mw / 100.0  # features measured at a 100 px wide mouth
    shape = WarpShape(
        fields=fields,
        coarse=coarse,
        base_x=(xs - fields.rel * frame.axis_v[0]).astype(np.float32),
        base_y=(ys - fields.rel * frame.axis_v[1]).astype(np.float32),
        u_weighted=fields.u * fields.width_weight,
        plates=plates,
        center=frame.center.astype(np.float32),
        axis_u=frame.axis_u.astype(np.float32),
        axis_v=frame.axis_v.astype(np.float32),
        mouth_width=mw,
        gap_max=gap_max,
        upper_share=upper_share,
        jaw_share=jaw_share,
        inv_upper_falloff=1.0 / (UPPER_FALLOFF * mw),
        inv_lip_falloff=1.0 / (LIP_FALLOFF * mw),
        feather=max(2.5, 2.0 * look.sharpness, 3.2 * scale),
        shadow=4.0 * scale,
        shadow_strength=0.0 if frame.shows_interior else 0.22,
        rim=max(2.5, 3.5 * scale),
        rim_strength=0.6,
        wet_strength=0.2,
    )
    return WarpFace(
        face=face,
        box=box,
        shape=shape,
        look=look,
        image_chw=face.image.transpose(2, 0, 1)[None].astype(np.float32),
    )


def _interior_window(
    u: np.ndarray, rel: np.ndarray, upper: np.ndarray, lower: np.ndarray, half: float, gap: float
) -> tuple[slice, slice]:
    inside = (np.abs(u) < half + 2) & (rel > upper - gap - 3) & (rel < lower + gap + 3)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return slice(0, 1), slice(0, 1)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


class WarpBackend:
    name = "warp"

    def __init__(self, *, options: RendererOptions | None = None) -> None:
        options = options or RendererOptions()
        self._articulation = options.articulation
        engine = options.warp_engine
        if engine == "auto":
            engine = "onnx" if gpu_available(options.providers) else "opencv"
        self.engine: Literal["onnx", "opencv"] = engine
        self._session: Any = None
        self._provider = "opencv-cpu"
        if engine == "onnx":
            self._session, self._provider = new_inference_session(
                build_warp_graph(), providers=options.providers, threads=options.threads
            )

    @property
    def provider(self) -> str:
        return self._provider

    def prepare(self, face: FaceAsset) -> WarpFace:
        return prepare_warp_face(face, articulation=self._articulation)

    def plan(self, prepared: WarpFace, mouth: MouthShape) -> WarpPlan:
        return plan_warp(prepared.shape, mouth)

    def render(self, prepared: PreparedFace, mouth: MouthShape) -> np.ndarray:
        if not isinstance(prepared, WarpFace):
            raise TypeError("the warp backend renders faces it prepared itself")
        frame = prepared.face.image.copy()
        if mouth.openness <= 0.0 and mouth.width == 0.0:
            return frame  # the rest pose is the photo itself
        plan = plan_warp(prepared.shape, mouth)
        x0, y0, x1, y1 = prepared.box
        if self.engine == "onnx":
            frame[y0:y1, x0:x1] = self._sample_onnx(prepared, plan)
        else:
            frame[y0:y1, x0:x1] = _sample_opencv(prepared.face.image, plan)
        return frame

    def _sample_onnx(self, face: WarpFace, plan: WarpPlan) -> np.ndarray:
        height, width = face.face.image.shape[:2]
        cavity, alpha = plan.full_cavity()
        grid = np.stack(
            [plan.map_x * (2.0 / (width - 1)) - 1.0, plan.map_y * (2.0 / (height - 1)) - 1.0],
            axis=-1,
        )[None].astype(np.float32)
        out = self._session.run(
            None,
            {
                "image": face.image_chw,
                "grid": grid,
                "cavity": cavity.transpose(2, 0, 1)[None],
                "alpha": alpha[None, None],
            },
        )[0]
        result: np.ndarray = out[0].transpose(1, 2, 0).astype(np.uint8)
        return result

    def close(self) -> None:
        self._session = None


def _sample_opencv(image: np.ndarray, plan: WarpPlan) -> np.ndarray:
    warped = cv2.remap(
        image, plan.map_x, plan.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    if plan.alpha.size:
        region = warped[plan.window]
        a = plan.alpha[..., None]
        mixed = region.astype(np.float32) * (1.0 - a) + plan.cavity * a
        warped[plan.window] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    out: np.ndarray = warped
    return out


__all__ = [
    "WarpBackend",
    "WarpFace",
    "WarpPlan",
    "build_warp_graph",
    "plan_warp",
    "prepare_warp_face",
]
