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
from renderer.backends.base import PreparedFace
from renderer.face import FaceAsset
from renderer.landmarks import INNER_LOWER, INNER_UPPER, MOUTH_LEFT, MOUTH_RIGHT, OUTER_LOWER
from renderer.onnx import gpu_available, new_inference_session
from renderer.options import RendererOptions

# All lengths are fractions of the mouth width (corner to corner).
MAX_GAP = 0.42  # lip gap at openness 1
UPPER_SHARE = 0.28  # share of the gap taken by the upper lip moving up
UPPER_FALLOFF = 0.45  # upper-lip displacement fades out this far above the lip line
LOWER_FALLOFF = 0.62  # lower lip + chin displacement fades out this far below it
SPREAD = 0.10  # width change at width=+1
ROUND = 0.16  # width change at width=-1
TEETH_HEIGHT = 0.10
INNER_CORNER = 0.92  # the inner gap ends a little inside the outer corners


def _falloff(distance: np.ndarray, length: float | np.ndarray) -> np.ndarray:
    """1 at 0, 0 from `length` on, smooth (smoothstep) in between; cheap on a hot path."""
    x = np.clip(distance / length, 0.0, 1.0)
    return (1.0 - x * x * (3.0 - 2.0 * x)).astype(np.float32)


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
    rel: np.ndarray  # (h, w) v - v_line: signed distance from the rest lip line, + below
    inv_falloff: np.ndarray  # (h, w) 1 / falloff length (upper or lower) for each pixel
    row_rel_min: np.ndarray  # (h,) per ROI row, min and max of rel: finds the gap's rows fast
    row_rel_max: np.ndarray
    mouth_cols: slice  # ROI columns the open mouth can reach
    width_weight: np.ndarray  # (h, w) how much width changes move each pixel
    edge_share: np.ndarray  # (h, w) -UPPER_SHARE above the lip line, 1 - UPPER_SHARE below
    mouth_width: float
    palette: np.ndarray  # (3, 3) rows: cavity, tongue and teeth colours
    image_chw: np.ndarray  # (1, 3, H, W) float32, for the ONNX engine


@dataclass(frozen=True, slots=True)
class WarpPlan:
    """Per-frame sampling maps and cavity overlay for the ROI."""

    map_x: np.ndarray  # (h, w) float32, ROI-sized
    map_y: np.ndarray
    # The open mouth lives in a small window of the ROI: rows/cols slices, and its colour and
    # coverage there (empty when the mouth is shut).
    window: tuple[slice, slice]
    cavity: np.ndarray  # (wh, ww, 3) float32
    alpha: np.ndarray  # (wh, ww) float32

    def full_cavity(self) -> tuple[np.ndarray, np.ndarray]:
        """Cavity and coverage padded to the whole ROI (for the ONNX graph)."""
        cavity = np.zeros((*self.map_x.shape, 3), np.float32)
        alpha = np.zeros(self.map_x.shape, np.float32)
        cavity[self.window] = self.cavity
        alpha[self.window] = self.alpha
        return cavity, alpha


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
    lateral = np.where(np.abs(u) <= half, 1.0, _falloff(np.abs(u) - half, 0.75 * half))
    vertical = _falloff(np.abs(v - v_line), 0.6 * mouth_width)

    rel = v - v_line
    inv_falloff = np.where(
        rel > 0, 1.0 / (LOWER_FALLOFF * mouth_width), 1.0 / (UPPER_FALLOFF * mouth_width)
    )
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
        rel=rel.astype(f32),
        inv_falloff=inv_falloff.astype(f32),
        row_rel_min=rel.min(axis=1).astype(f32),
        row_rel_max=rel.max(axis=1).astype(f32),
        mouth_cols=_columns_within(u, 0.5 * INNER_CORNER * mouth_width + 2),
        width_weight=(lateral * vertical).astype(f32),
        edge_share=np.where(rel > 0, 1.0 - UPPER_SHARE, -UPPER_SHARE).astype(f32),
        mouth_width=mouth_width,
        palette=np.stack(
            [
                lips * 0.40,
                lips * 0.75,
                np.array([222.0, 214.0, 198.0]) * float(np.clip(0.55 + luma, 0.7, 1.05)),
            ]
        ).astype(f32),
        image_chw=face.image.transpose(2, 0, 1)[None].astype(f32),
    )


def plan_warp(face: WarpFace, mouth: MouthShape) -> WarpPlan:
    """Backward sampling maps (output pixel -> photo pixel) and the cavity for one mouth shape.

    Hot path: float32 throughout, no transcendental functions but one sqrt.
    """
    mw = face.mouth_width
    f32 = np.float32
    if mouth.width:
        scale = SPREAD * mouth.width if mouth.width > 0 else ROUND * mouth.width
        su = face.u - f32(scale) * face.u * face.width_weight
    else:
        su = face.u
    # elliptical opening profile across the mouth, 0 beyond the inner corners
    x = su * f32(2.0 / (INNER_CORNER * mw))
    profile = np.sqrt(np.maximum(f32(1.0) - x * x, f32(0.0)))
    gap = profile * f32(MAX_GAP * mw * mouth.openness)

    # Each lip edge moves to `edge` (up for the upper lip, down for the lower) and drags its
    # side along with a falloff measured from the displaced edge, so the edge samples the rest
    # lip line exactly; between the two edges lies the open mouth.
    edge = face.edge_share * gap
    rel_minus_edge = face.rel - edge
    inside = rel_minus_edge * face.edge_share <= 0
    beyond = np.minimum(np.abs(rel_minus_edge) * face.inv_falloff, f32(1.0))
    falloff = f32(1.0) - beyond * beyond * (f32(3.0) - f32(2.0) * beyond)
    sv = face.v - edge * falloff
    np.copyto(sv, face.v_line, where=inside)
    map_x = face.center[0] + su * face.axis_u[0] + sv * face.axis_v[0]
    map_y = face.center[1] + su * face.axis_u[1] + sv * face.axis_v[1]
    window, cavity, alpha = _cavity(face, mouth, su, gap)
    return WarpPlan(map_x=map_x, map_y=map_y, window=window, cavity=cavity, alpha=alpha)


def _cavity(
    face: WarpFace, mouth: MouthShape, su: np.ndarray, gap: np.ndarray
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """Colour and coverage of the open mouth, on the small window the gap can reach."""
    f32 = np.float32
    mw = face.mouth_width
    top = UPPER_SHARE * MAX_GAP * mw * mouth.openness + 1.0
    bottom = (1.0 - UPPER_SHARE) * MAX_GAP * mw * mouth.openness + 1.0
    rows = np.flatnonzero((face.row_rel_max > -top) & (face.row_rel_min < bottom))
    if rows.size == 0 or mouth.openness <= 0:
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0, 3), f32), np.zeros((0, 0), f32)
    window = (slice(int(rows[0]), int(rows[-1]) + 1), face.mouth_cols)
    rel, su_w, gap_w = face.rel[window], su[window], gap[window]
    up = gap_w * f32(UPPER_SHARE)
    from_top = rel + up  # depth below the upper lip edge
    from_bottom = gap_w - up - rel  # height above the lower lip edge
    coverage = np.clip(np.minimum(from_top, from_bottom) + f32(0.5), 0.0, 1.0)
    alpha = coverage * np.minimum(gap_w, f32(1.0))

    # Three layers, back to front: shaded cavity, tongue low in a wide-open mouth, upper teeth.
    shade = f32(0.5) + f32(0.5) * np.clip(f32(1.0) - from_top / (f32(0.5) * gap_w + 1), 0, 1)
    tongue = np.clip(f32(1.0) - from_bottom / (f32(0.35) * gap_w + 1), 0, 1)
    tongue *= np.clip(gap_w * f32(1.0 / (0.25 * mw)) - f32(0.3), 0, 1)
    tongue *= np.clip((f32(0.3 * mw) - np.abs(su_w)) * f32(1.0 / (0.1 * mw)), 0, 1) * f32(0.8)
    teeth_h = np.minimum(f32(TEETH_HEIGHT * mw), f32(0.5) * gap_w)
    teeth = np.clip(teeth_h - from_top + f32(0.5), 0, 1)
    teeth *= np.clip((f32(0.31 * mw) - np.abs(su_w)) * f32(1.0 / (0.06 * mw)), 0, 1)
    teeth *= np.minimum(gap_w * f32(1.0 / (0.06 * mw)), f32(1.0))
    behind_teeth = f32(1.0) - teeth
    weights = np.stack(
        [shade * (f32(1.0) - tongue) * behind_teeth, tongue * behind_teeth, teeth], axis=-1
    )
    cavity = weights @ face.palette  # (h, w, 3) @ (3, 3): one BLAS call for all three layers
    return window, cavity.astype(f32, copy=False), alpha.astype(f32, copy=False)


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

    def render(self, prepared: PreparedFace, mouth: MouthShape) -> np.ndarray:
        if not isinstance(prepared, WarpFace):
            raise TypeError("the warp backend renders faces it prepared itself")
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
    return np.asarray(np.interp(grid_u, curve[order, 0], curve[order, 1]), np.float64)


def _lip_colour(face: FaceAsset, pts: np.ndarray) -> np.ndarray:
    """Mean colour of the lower lip (between the inner and outer lower contours)."""
    polygon = np.concatenate([pts[list(OUTER_LOWER)], pts[list(INNER_LOWER)][::-1]])
    mask = np.zeros(face.image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    if mask.sum() < 4:
        return np.array([150.0, 80.0, 80.0])
    return np.asarray(face.image[mask.astype(bool)].astype(np.float64).mean(axis=0))


def _columns_within(u: np.ndarray, half_width: float) -> slice:
    cols = np.flatnonzero((np.abs(u) < half_width).any(axis=0))
    return slice(int(cols[0]), int(cols[-1]) + 1) if cols.size else slice(0, 0)
