"""The default backend: the photo's own mouth, warped by a displacement field, no weights.

Geometry works in a "mouth frame": u along the line through the mouth corners, v across it
(down is positive), both in output pixels, origin at the mouth centre. The rest lip line is where
the lips meet in the photo. Opening moves the upper lip up and the lower lip and chin down, with
raised-cosine falloffs that end well inside the region of interest (so everything outside it is
the photo, exactly). The gap between the lips is filled with a synthesised mouth cavity and
teeth. Width changes (spread for i/e, rounded for u/o) scale the lips about the mouth centre.

Pixels are sampled either with OpenCV's remap (fastest on a CPU) or with an ONNX GridSample
graph (the same maths on CUDA or TensorRT); a test keeps the two in agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from renderer.audio import MouthShape
from renderer.face import FaceAsset
from renderer.landmarks import INNER_LOWER, INNER_UPPER, MOUTH_LEFT, MOUTH_RIGHT, OUTER_LOWER
from renderer.onnx import gpu_available, new_inference_session
from renderer.options import RendererOptions

# All lengths are fractions of the mouth width (corner to corner).
MAX_GAP = 0.42  # lip gap at openness 1
UPPER_SHARE = 0.28  # share of the gap taken by the upper lip moving up
UPPER_FALLOFF = 0.45  # upper-lip displacement fades out this far above the lip line
LOWER_FALLOFF = 0.80  # lower lip + chin displacement fades out this far below it
SPREAD = 0.10  # width change at width=+1
ROUND = 0.16  # width change at width=-1
TEETH_HEIGHT = 0.10
INNER_CORNER = 0.92  # the inner gap ends a little inside the outer corners


def _raised_cosine(distance: np.ndarray, length: float) -> np.ndarray:
    """1 at 0, 0 from `length` on, smooth in between."""
    x = np.clip(distance / length, 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * x)).astype(np.float32)


@dataclass(frozen=True, slots=True, eq=False)
class WarpFace:
    face: FaceAsset
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the region of interest in the frame
    center: np.ndarray  # (2,) mouth centre
    axis_u: np.ndarray  # (2,) unit vector along the mouth
    axis_v: np.ndarray  # (2,) unit vector across it (down)
    u: np.ndarray  # (h, w) mouth-frame coordinates of each ROI pixel
    v: np.ndarray
    v_line: np.ndarray  # (h, w) rest lip line under each pixel (same column of the mouth frame)
    lateral: np.ndarray  # (h, w) weight of width changes along the mouth
    vertical: np.ndarray  # (h, w) weight of width changes across it
    mouth_width: float
    dark: np.ndarray  # (3,) cavity colour
    teeth: np.ndarray  # (3,) teeth colour
    image_chw: np.ndarray  # (1, 3, H, W) float32, for the ONNX engine


@dataclass(frozen=True, slots=True)
class WarpPlan:
    """Per-frame sampling maps and cavity overlay for the ROI."""

    map_x: np.ndarray
    map_y: np.ndarray
    cavity: np.ndarray  # (h, w, 3) float32
    alpha: np.ndarray  # (h, w) float32, cavity coverage


def prepare_warp_face(face: FaceAsset) -> WarpFace:
    pts = face.landmarks.astype(np.float64)
    left, right = pts[MOUTH_LEFT], pts[MOUTH_RIGHT]
    mouth_width = float(np.linalg.norm(right - left))
    axis_u = (right - left) / mouth_width
    axis_v = np.array([-axis_u[1], axis_u[0]])
    inner = np.concatenate([pts[list(INNER_UPPER)], pts[list(INNER_LOWER)]])
    center = (left + right) / 2
    center = center + axis_v * float(np.mean((inner - center) @ axis_v))

    def to_uv(p: np.ndarray) -> np.ndarray:
        return np.stack([(p - center) @ axis_u, (p - center) @ axis_v], axis=-1)

    upper, lower = to_uv(pts[list(INNER_UPPER)]), to_uv(pts[list(INNER_LOWER)])
    grid_u = np.linspace(-mouth_width / 2, mouth_width / 2, 33)
    line = 0.5 * (_interp_curve(grid_u, upper) + _interp_curve(grid_u, lower))

    half = mouth_width / 2
    up_extent = (UPPER_FALLOFF + MAX_GAP * UPPER_SHARE) * mouth_width + 4
    down_extent = (LOWER_FALLOFF + MAX_GAP) * mouth_width + 4
    side_extent = half * 1.75 + 4
    corners = np.array(
        [[su, sv] for su in (-side_extent, side_extent) for sv in (-up_extent, down_extent)]
    )
    xy = center + corners[:, :1] * axis_u + corners[:, 1:] * axis_v
    width, height = face.size
    x0, y0 = np.floor(xy.min(axis=0)).astype(int)
    x1, y1 = np.ceil(xy.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)

    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    du, dv = xs - center[0], ys - center[1]
    u = du * axis_u[0] + dv * axis_u[1]
    v = du * axis_v[0] + dv * axis_v[1]
    v_line = np.interp(u, grid_u, line)
    lateral = np.where(np.abs(u) <= half, 1.0, _raised_cosine(np.abs(u) - half, 0.75 * half))
    vertical = _raised_cosine(np.abs(v - v_line), 0.8 * mouth_width)

    lips = _lip_colour(face, pts)
    luma = float(face.image.mean()) / 255.0
    f32 = np.float32
    return WarpFace(
        face=face,
        box=(int(x0), int(y0), int(x1), int(y1)),
        center=center.astype(f32),
        axis_u=axis_u.astype(f32),
        axis_v=axis_v.astype(f32),
        u=u.astype(f32),
        v=v.astype(f32),
        v_line=v_line.astype(f32),
        lateral=lateral.astype(f32),
        vertical=vertical.astype(f32),
        mouth_width=mouth_width,
        dark=(lips * 0.28).astype(f32),
        teeth=(np.array([222.0, 214.0, 198.0]) * float(np.clip(0.55 + luma, 0.7, 1.05))).astype(f32),
        image_chw=face.image.transpose(2, 0, 1)[None].astype(f32),
    )


def plan_warp(face: WarpFace, mouth: MouthShape) -> WarpPlan:
    """Backward sampling maps (output pixel -> photo pixel) and the cavity for one mouth shape."""
    mw = face.mouth_width
    u, v, v_line = face.u, face.v, face.v_line
    rel = v - v_line  # signed distance from the rest lip line, + below

    scale = SPREAD * mouth.width if mouth.width >= 0 else ROUND * mouth.width
    su = u - scale * u * face.lateral * face.vertical
    corner = INNER_CORNER * mw / 2
    profile = np.clip(1.0 - (su / corner) ** 2, 0.0, 1.0) ** 0.9
    gap = (MAX_GAP * mw * mouth.openness) * profile
    up = UPPER_SHARE * gap
    lo = gap - up

    above = rel < -up
    below = rel > lo
    sv = np.where(
        above,
        v + up * _raised_cosine(-rel - up, UPPER_FALLOFF * mw),
        np.where(below, v - lo * _raised_cosine(rel - lo, LOWER_FALLOFF * mw), v_line),
    )
    map_x = face.center[0] + su * face.axis_u[0] + sv * face.axis_v[0]
    map_y = face.center[1] + su * face.axis_u[1] + sv * face.axis_v[1]

    from_top = rel + up  # depth below the upper lip edge, inside the gap
    from_bottom = lo - rel
    coverage = np.clip(np.minimum(from_top, from_bottom) + 0.5, 0.0, 1.0)
    alpha = (coverage * np.clip(gap, 0.0, 1.0)).astype(np.float32)

    shade = 0.55 + 0.45 * np.clip(1.0 - from_top / (0.5 * gap + 1.0), 0.0, 1.0)
    cavity = face.dark[None, None, :] * shade[..., None]
    teeth_h = np.minimum(TEETH_HEIGHT * mw, 0.5 * gap)
    in_teeth_span = np.clip((0.62 * mw / 2 - np.abs(su)) / (0.06 * mw), 0.0, 1.0)
    teeth_a = np.clip(teeth_h - from_top + 0.5, 0.0, 1.0) * in_teeth_span
    teeth_a *= np.clip(gap / (0.06 * mw), 0.0, 1.0)
    cavity += (face.teeth[None, None, :] - cavity) * teeth_a[..., None]
    return WarpPlan(
        map_x=map_x.astype(np.float32),
        map_y=map_y.astype(np.float32),
        cavity=cavity.astype(np.float32),
        alpha=alpha,
    )


class WarpBackend:
    name = "warp"

    def __init__(self, *, options: RendererOptions | None = None) -> None:
        options = options or RendererOptions()
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
        return prepare_warp_face(face)

    def render(self, prepared: WarpFace, mouth: MouthShape) -> np.ndarray:  # type: ignore[override]
        frame = prepared.face.image.copy()
        if mouth.openness <= 0.0 and mouth.width == 0.0:
            return frame  # the rest pose is the photo itself
        plan = plan_warp(prepared, mouth)
        x0, y0, x1, y1 = prepared.box
        if self.engine == "onnx":
            frame[y0:y1, x0:x1] = self._sample_onnx(prepared, plan)
        else:
            frame[y0:y1, x0:x1] = _sample_opencv(prepared.face.image, plan)
        return frame

    def _sample_onnx(self, face: WarpFace, plan: WarpPlan) -> np.ndarray:
        height, width = face.face.image.shape[:2]
        grid = np.stack(
            [plan.map_x * (2.0 / (width - 1)) - 1.0, plan.map_y * (2.0 / (height - 1)) - 1.0],
            axis=-1,
        )[None].astype(np.float32)
        out = self._session.run(
            None,
            {
                "image": face.image_chw,
                "grid": grid,
                "cavity": plan.cavity.transpose(2, 0, 1)[None],
                "alpha": plan.alpha[None, None],
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
    a = plan.alpha[..., None]
    mixed = warped.astype(np.float32) * (1.0 - a) + plan.cavity * a
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def build_warp_graph() -> bytes:
    """GridSample + cavity composite, as an ONNX model built in code (no weights)."""
    from onnx import TensorProto, helper

    def tensor(name: str, shape: list[str | int]) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    nodes = [
        helper.make_node(
            "GridSample",
            ["image", "grid"],
            ["warped"],
            mode="linear",
            padding_mode="border",
            align_corners=1,
        ),
        helper.make_node("Sub", ["cavity", "warped"], ["delta"]),
        helper.make_node("Mul", ["delta", "alpha"], ["blend"]),
        helper.make_node("Add", ["warped", "blend"], ["mixed"]),
        helper.make_node("Add", ["mixed", "half"], ["shifted"]),
        helper.make_node("Clip", ["shifted", "zero", "top"], ["out"]),
    ]
    consts = [
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("top", TensorProto.FLOAT, [], [255.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "atlas_warp",
        [
            tensor("image", [1, 3, "H", "W"]),
            tensor("grid", [1, "h", "w", 2]),
            tensor("cavity", [1, 3, "h", "w"]),
            tensor("alpha", [1, 1, "h", "w"]),
        ],
        [tensor("out", [1, 3, "h", "w"])],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


def _interp_curve(grid_u: np.ndarray, curve: np.ndarray) -> np.ndarray:
    order = np.argsort(curve[:, 0])
    return np.interp(grid_u, curve[order, 0], curve[order, 1])


def _lip_colour(face: FaceAsset, pts: np.ndarray) -> np.ndarray:
    """Mean colour of the lower lip (between the inner and outer lower contours)."""
    polygon = np.concatenate([pts[list(OUTER_LOWER)], pts[list(INNER_LOWER)][::-1]])
    mask = np.zeros(face.image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    if mask.sum() < 4:
        return np.array([150.0, 80.0, 80.0])
    return face.image[mask.astype(bool)].astype(np.float64).mean(axis=0)
