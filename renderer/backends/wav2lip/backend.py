"""The neural backend: a user-supplied Wav2Lip-contract ONNX model, batched across streams.

Per face (once): a square crop box around the face landmarks, the model's face input (the crop
in BGR / 255 with its lower half zeroed, then the whole crop as the reference) and a feathered
paste mask over the mouth and jaw. The photo never moves under the backend (idle motion is
applied after paste-back), so the box is constant: the most stable box there is.

Per speech frame: the frame's mel window (the mel module beside this one, exactly Wav2Lip's), one
inference through the process's shared engine (batched with every other stream's frames), then the
generated crop is resized to the box, colour-matched to the photo around the mouth and blended
in through the mask. Pixels where the mask is 0 are the photo's, exactly. Idle frames (no
speech) are the photo itself, as in the warp backend.

Weights are never shipped or downloaded: ATLAS_RENDERER_MODEL points at the user's own file.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import soxr

from renderer.audio import MouthShape
from renderer.backends.base import AudioSpan, FrameAudio, PreparedFace
from renderer.backends.wav2lip.batching import BatchLoop
from renderer.backends.wav2lip.engine import (
    FrameRequest,
    NeuralSettings,
    Wav2LipEngine,
    acquire_engine,
    release_engine,
)
from renderer.backends.wav2lip.mel import HALF, HOP, MEL_RATE, WINDOW_REACH, frame_mel
from renderer.errors import ModelError
from renderer.face import FaceAsset
from renderer.landmarks import (
    INNER_LOWER_MID,
    INNER_UPPER_MID,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    OUTER_LOWER,
    OUTER_UPPER,
)
from renderer.options import RendererOptions

NOSE_BOTTOM, CHIN = 2, 152  # MediaPipe FaceMesh indices
BOX_CHIN_PAD = 0.05  # the box reaches this far (of the face height) below the chin
FEATHER = 0.05  # mask feather, as a fraction of the box side
# Resampling a window (not the whole segment) is exact to ~1e-7 this far from its edges.
RESAMPLE_MARGIN_S = 0.010
# A frame's window can start this far before the frame: near a segment's end the window is
# moved back to end at the last column (3200 + 200 samples), plus half an FFT and one sample
# for the pre-emphasis.
HISTORY_16K = (WINDOW_REACH - HALF) + HOP + HALF + 1


@dataclass(frozen=True, slots=True, eq=False)
class Wav2LipFace:
    face: FaceAsset
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the crop in the frame
    model_input: np.ndarray  # (6, S, S) float32: masked crop + reference crop, BGR / 255
    alpha: np.ndarray  # (h, w) float32 paste mask over the box, exactly 0 outside its support
    paste: tuple[int, int, int, int]  # x0, y0, x1, y1 (box coordinates) of the mask's support
    stats: np.ndarray  # (h, w) bool: where colour is matched (mask minus the lips)
    stats_mask: np.ndarray  # the same, uint8 and cut to `paste` (it lies inside), for cv2.mean


def crop_box(face: FaceAsset) -> tuple[int, int, int, int]:
    """A square box over the landmarks (brows to chin, cheek to cheek) with a little chin room."""
    pts = face.landmarks
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    y1 = y1 + BOX_CHIN_PAD * (y1 - y0)
    side = max(round(float(max(x1 - x0, y1 - y0))), 2)
    width, height = face.size
    left = int(np.clip(round((x0 + x1 - side) / 2), 0, width - 1))
    top = int(np.clip(round((y0 + y1 - side) / 2), 0, height - 1))
    return left, top, min(left + side, width), min(top + side, height)


def model_input(crop_rgb: np.ndarray, size: int) -> np.ndarray:
    """Wav2Lip's face input from an RGB crop: [crop with lower half zeroed, crop], BGR / 255."""
    interp = cv2.INTER_AREA if crop_rgb.shape[0] > size else cv2.INTER_CUBIC
    bgr = cv2.resize(crop_rgb, (size, size), interpolation=interp)[..., ::-1]
    reference = bgr.transpose(2, 0, 1).astype(np.float32) / 255.0
    masked = reference.copy()
    masked[:, size // 2 :, :] = 0.0
    return np.ascontiguousarray(np.concatenate([masked, reference]))


def paste_mask(face: FaceAsset, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, stats) over the box: a feathered lower-face region and where to match colour."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    pts = face.landmarks.astype(np.float64) - (x0, y0)
    centre = (pts[INNER_UPPER_MID] + pts[INNER_LOWER_MID]) / 2
    mouth_w = float(np.linalg.norm(pts[MOUTH_RIGHT] - pts[MOUTH_LEFT]))
    up = max(0.75 * float(centre[1] - pts[NOSE_BOTTOM][1]), 2.0)
    down = max(1.05 * float(pts[CHIN][1] - centre[1]), 2.0)
    across = 1.0 * mouth_w
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    ry = np.where(np.sin(theta) < 0, up, down)
    ring = np.stack([centre[0] + across * np.cos(theta), centre[1] + ry * np.sin(theta)], 1)
    region = np.zeros((h, w), np.uint8)
    cv2.fillPoly(region, [np.round(ring).astype(np.int32)], 1)
    region[: h // 2] = 0  # Wav2Lip regenerates the lower half of the crop only
    feather = max(2, round(FEATHER * max(h, w)))
    square = np.ones((2 * feather + 1, 2 * feather + 1), np.uint8)
    # Eroding by the blur's own (square) reach keeps the blurred mask exactly 0 outside `region`.
    core = cv2.erode(region, square, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = cv2.GaussianBlur(
        core.astype(np.float32),
        (2 * feather + 1, 2 * feather + 1),
        feather / 2,
        borderType=cv2.BORDER_CONSTANT,
    )
    alpha[region == 0] = 0.0  # belt and braces against float residue
    lips = np.zeros((h, w), np.uint8)
    outline = np.concatenate([pts[list(OUTER_UPPER)], pts[list(OUTER_LOWER)][::-1]])
    cv2.fillPoly(lips, [np.round(outline).astype(np.int32)], 1)
    reach = max(1, round(0.2 * mouth_w))
    near_lips = cv2.dilate(lips, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
    stats = (alpha > 0.05) & (near_lips == 0)
    if stats.sum() < 16:
        stats = alpha > 0
    return alpha, stats


def prepare_wav2lip_face(face: FaceAsset, size: int) -> Wav2LipFace:
    box = crop_box(face)
    x0, y0, x1, y1 = box
    alpha, stats = paste_mask(face, box)
    rows = np.flatnonzero(alpha.any(axis=1))
    cols = np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        raise ModelError("the face is too small for the wav2lip paste mask")
    paste = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    px0, py0, px1, py1 = paste
    return Wav2LipFace(
        face=face,
        box=box,
        model_input=model_input(face.image[y0:y1, x0:x1], size),
        alpha=alpha,
        paste=paste,
        stats=stats,
        stats_mask=np.ascontiguousarray(stats[py0:py1, px0:px1], dtype=np.uint8),
    )


def paste_back(prepared: Wav2LipFace, generated_bgr: np.ndarray) -> np.ndarray:
    """A new frame: the photo with the model's (3, S, S) BGR [0, 1] output blended in.

    Per frame work stays inside the mask's rectangle (the colour statistics lie inside it too):
    with many sessions in one process this runs once per frame per session.
    """
    frame = prepared.face.image.copy()
    x0, y0, x1, y1 = prepared.box
    rgb = generated_bgr.transpose(1, 2, 0)[..., ::-1] * np.float32(255.0)
    grown = cv2.resize(
        np.ascontiguousarray(rgb, dtype=np.float32),
        (x1 - x0, y1 - y0),
        interpolation=cv2.INTER_CUBIC,
    )
    px0, py0, px1, py1 = prepared.paste
    region = (slice(y0 + py0, y0 + py1), slice(x0 + px0, x0 + px1))
    under = frame[region]
    generated = grown[py0:py1, px0:px1]
    mask = prepared.stats_mask
    # colour match, per channel: the photo's mean minus the model's, where the skin is compared
    shift = np.subtract(cv2.mean(under, mask=mask)[:3], cv2.mean(generated, mask=mask)[:3])
    below = under.astype(np.float32)
    blended = generated + shift.astype(np.float32)
    blended -= below
    blended *= prepared.alpha[py0:py1, px0:px1, None]
    blended += below
    frame[region] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return frame


def audio_span(sample_rate: int, fps: int) -> AudioSpan:
    """What a frame's mel window needs around the frame's own slice, at this stream rate."""
    margin = 0.0 if sample_rate == MEL_RATE else RESAMPLE_MARGIN_S
    return AudioSpan(
        history_s=HISTORY_16K / MEL_RATE + margin,
        lookahead_s=max(0.0, WINDOW_REACH / MEL_RATE - 1.0 / fps) + margin,
    )


def mel_for(audio: FrameAudio) -> np.ndarray:
    """The frame's (80, 16) mel window from the audio the stream kept around it."""
    if audio.sample_rate == MEL_RATE:
        samples, origin, end = audio.samples, audio.origin, audio.end
    else:
        samples = soxr.resample(audio.samples, audio.sample_rate, MEL_RATE, quality="HQ")
        origin = round(audio.origin * MEL_RATE / audio.sample_rate)
        end = origin + samples.size if audio.end is not None else None
    return frame_mel(samples, origin=origin, frame=audio.frame, fps=audio.fps, end=end)


class Wav2LipBackend:
    name = "wav2lip"

    def __init__(
        self,
        *,
        options: RendererOptions | None = None,
        engine: Wav2LipEngine | None = None,
        settings: NeuralSettings | None = None,
    ) -> None:
        self._options = options or RendererOptions(backend="wav2lip")
        if engine is None:
            path = self._options.model_path
            if not path:
                raise ModelError(
                    "the wav2lip backend needs a model: set ATLAS_RENDERER_MODEL to your "
                    "Wav2Lip-contract .onnx file"
                )
            engine = acquire_engine(
                path,
                providers=self._options.providers,
                threads=self._options.threads,
                settings=settings or NeuralSettings.from_env(),
            )
            self._owns_engine = True
        else:
            self._owns_engine = False
        self._engine: Wav2LipEngine | None = engine
        self._span = audio_span(self._options.sample_rate, self._options.fps)

    @property
    def engine(self) -> Wav2LipEngine:
        if self._engine is None:
            raise ModelError("the wav2lip backend is closed")
        return self._engine

    @property
    def provider(self) -> str:
        return self.engine.provider

    @property
    def audio_span(self) -> AudioSpan:
        return self._span

    @property
    def batch_loop(self) -> BatchLoop[FrameRequest, np.ndarray]:
        """The loop that batches this backend's frames with every other stream's."""
        return self.engine.loop

    def prepare(self, face: FaceAsset) -> Wav2LipFace:
        return prepare_wav2lip_face(face, self.engine.face_size)

    def render(self, prepared: PreparedFace, mouth: MouthShape) -> np.ndarray:
        """Without audio there is nothing to say: the face at rest, as in the photo."""
        return self.render_audio(prepared, mouth, None)

    def render_audio(
        self, prepared: PreparedFace, mouth: MouthShape, audio: FrameAudio | None
    ) -> np.ndarray:
        if not isinstance(prepared, Wav2LipFace):
            raise TypeError("the wav2lip backend renders faces it prepared itself")
        if audio is None:
            return prepared.face.image.copy()
        generated = self.engine.infer(mel_for(audio), prepared.model_input)
        return paste_back(prepared, generated)

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None and self._owns_engine:
            release_engine(engine)
