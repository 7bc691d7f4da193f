"""The warp mouth looks like a person talking, measured on four real faces (before encoding).

Faces (tests/fixtures/README): a closed mouth (face.jpg), a smile with teeth (face_smile.jpg),
a dark-skinned smile (face_dark.jpg) and a dark, low-resolution photo (face_lowlight.jpg).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from renderer import FaceAsset, RendererOptions
from renderer.audio import MouthShape
from renderer.backends.warp import WarpBackend, WarpFace
from renderer.landmarks import (
    INNER_LOWER_MID,
    INNER_UPPER_MID,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    FaceLandmarker,
)
from tests.renderer import mouth_metrics as m
from tests.renderer.render_support import render_all

FIXTURES = Path(__file__).parent.parent / "fixtures"
CLOSED_FACES = ("face.jpg", "face_lowlight.jpg")
SMILING_FACES = ("face_smile.jpg", "face_dark.jpg")


@dataclass
class Face:
    asset: FaceAsset
    prepared: WarpFace
    points: np.ndarray  # landmarks found on the photo itself


@pytest.fixture(scope="module")
def backend() -> WarpBackend:
    return WarpBackend(options=RendererOptions(warp_engine="opencv"))


@pytest.fixture(scope="module")
def faces(backend: WarpBackend, landmarker: FaceLandmarker) -> dict[str, Face]:
    out = {}
    for name in CLOSED_FACES + SMILING_FACES:
        asset = FaceAsset.prepare((FIXTURES / name).read_bytes())
        points = landmarker.detect(asset.image)[0].points
        out[name] = Face(asset, backend.prepare(asset), points)
    return out


@pytest.fixture(scope="module")
def speech_frames(
    faces: dict[str, Face], speech: tuple[np.ndarray, int], still_options: RendererOptions
) -> dict[str, list[tuple[MouthShape, np.ndarray]]]:
    pcm, rate = speech
    return {
        name: [(f.mouth, f.image) for f in render_all(face.asset, pcm, rate, still_options)]
        for name, face in faces.items()
    }


def synthesised(backend: WarpBackend, face: Face, mouth: MouthShape) -> np.ndarray:
    """Pixels the renderer paints inside the lips (coverage >= 0.5), as a frame-sized mask."""
    plan = backend.plan(face.prepared, mouth)
    mask = np.zeros(face.asset.image.shape[:2], bool)
    if plan.alpha.size:
        x0, y0, _, _ = face.prepared.box
        rows, cols = plan.window
        window = (slice(y0 + rows.start, y0 + rows.stop), slice(x0 + cols.start, x0 + cols.stop))
        mask[window] = plan.alpha >= 0.5
    return mask


def test_synthesised_teeth_have_crowns_like_real_teeth(
    backend: WarpBackend, faces: dict[str, Face], landmarker: FaceLandmarker
) -> None:
    """Crown-to-crown brightness variation of rendered teeth is that of photographed teeth."""
    real = np.mean(
        [m.teeth_profile_variation(faces[n].asset.image, faces[n].points) for n in SMILING_FACES]
    )
    assert real > 0.03, "the reference photos show teeth"
    face = faces["face.jpg"]
    for openness in (0.5, 0.7, 0.9):
        frame = backend.render(face.prepared, MouthShape(openness, 0.0))
        points = landmarker.detect(frame)[0].points
        variation = m.teeth_profile_variation(frame, points)
        assert 0.6 * real <= variation <= 2.2 * real, (openness, variation, real)


@pytest.mark.parametrize("name", CLOSED_FACES)
def test_synthesised_interior_has_the_photos_grain(
    backend: WarpBackend, faces: dict[str, Face], name: str
) -> None:
    face = faces[name]
    skin = m.skin_ring(face.asset.image, face.points)
    for openness in (0.8, 1.0):
        mouth = MouthShape(openness, 0.0)
        frame = backend.render(face.prepared, mouth)
        mask = synthesised(backend, face, mouth)
        assert mask.sum() > 100
        ratio = m.grain_ratio(frame, mask, skin)
        assert 0.6 <= ratio <= 1.6, f"{name} at {openness}: grain ratio {ratio:.2f}"


@pytest.mark.parametrize("name", SMILING_FACES)
def test_the_photos_own_upper_teeth_are_kept(
    faces: dict[str, Face], speech_frames: dict[str, list[tuple[MouthShape, np.ndarray]]], name: str
) -> None:
    """The photo's upper-teeth patch is found under the upper lip in >= 90% of open frames."""
    face = faces[name]
    p = face.points
    mouth_width = float(np.linalg.norm(p[MOUTH_RIGHT] - p[MOUTH_LEFT]))
    cx = int(round(float(p[MOUTH_LEFT][0] + p[MOUTH_RIGHT][0]) / 2))
    top, bottom = float(p[INNER_UPPER_MID][1]), float(p[INNER_LOWER_MID][1])
    y0, y1 = int(round(top + 1)), int(round(top + 0.45 * (bottom - top)))
    half = int(round(0.22 * mouth_width))
    assert y1 - y0 >= 4
    patch = face.asset.image[y0:y1, cx - half : cx + half]
    reach = max(3, int(round(0.04 * mouth_width)))
    search = (cx - half - reach, y0 - reach, cx + half + reach, y1 + reach)
    open_frames = [image for mouth, image in speech_frames[name] if mouth.openness >= 0.3]
    assert len(open_frames) >= 20
    found = np.mean([m.best_ncc(image, patch, search) >= 0.8 for image in open_frames])
    assert found >= 0.9, f"{name}: teeth found in {found:.0%} of open frames"


@pytest.mark.parametrize("name", CLOSED_FACES + SMILING_FACES)
def test_speech_opens_the_mouth_as_far_as_people_do(
    faces: dict[str, Face],
    speech_frames: dict[str, list[tuple[MouthShape, np.ndarray]]],
    landmarker: FaceLandmarker,
    name: str,
) -> None:
    """95th percentile of the inner-lip gap / inter-ocular distance in [0.10, 0.22] (for a
    smiling photo, of how far the gap grows beyond the photo's own)."""
    rest = m.lip_gap_over_iod(faces[name].points) if name in SMILING_FACES else 0.0
    gaps = []
    for _, image in speech_frames[name]:
        found = landmarker.detect(image)
        assert found, "the face stays detectable"
        gaps.append(m.lip_gap_over_iod(found[0].points) - rest)
    p95 = float(np.percentile(gaps, 95))
    assert 0.10 <= p95 <= 0.22, f"{name}: p95 gap {p95:.3f} of the inter-ocular distance"


def test_articulation_scales_the_opening(faces: dict[str, Face]) -> None:
    asset = faces["face.jpg"].asset
    quiet = WarpBackend(options=RendererOptions(articulation=0.5)).prepare(asset)
    loud = WarpBackend(options=RendererOptions(articulation=1.5)).prepare(asset)
    assert loud.shape.gap_max == pytest.approx(3 * quiet.shape.gap_max)


@pytest.mark.parametrize("name", CLOSED_FACES + SMILING_FACES)
def test_no_seam_where_lips_meet_the_mouth(
    backend: WarpBackend, faces: dict[str, Face], name: str
) -> None:
    """The colour step across the painted region's edge is within the photo's own steps there
    (its strongest: lip lines, teeth edges), not a cut-out edge."""
    face = faces[name]
    own = float(
        np.percentile(
            m.photo_steps(face.asset.image, m.lips_region(face.asset.image, face.points)), 99
        )
    )
    for openness in (0.5, 0.7, 1.0):
        mouth = MouthShape(openness, 0.0)
        frame = backend.render(face.prepared, mouth)
        steps = m.seam_steps(frame, synthesised(backend, face, mouth), face.asset.image)
        assert steps.size > 20
        seam = float(np.percentile(steps, 90))
        assert seam <= own, f"{name} at {openness}: seam step {seam:.0f} > photo's {own:.0f}"


def test_articulation_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from renderer.settings import RendererSettings

    monkeypatch.setenv("ATLAS_RENDERER_ARTICULATION", "1.3")
    assert RendererSettings().to_options().articulation == pytest.approx(1.3)
    monkeypatch.setenv("ATLAS_RENDERER_ARTICULATION", "3")
    with pytest.raises(ValueError):
        RendererSettings()


def _darkened(name: str, exposure: float) -> bytes:
    """The fixture with its exposure scaled (8-bit values times `exposure`), as a PNG."""
    image = np.asarray(Image.open(FIXTURES / name).convert("RGB"), np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(image * exposure + 0.5, 0, 255).astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


def _mouth_centre_width(points: np.ndarray) -> tuple[float, float]:
    centre = float(points[MOUTH_LEFT][0] + points[MOUTH_RIGHT][0]) / 2
    return centre, float(np.linalg.norm(points[MOUTH_RIGHT] - points[MOUTH_LEFT]))


@pytest.mark.parametrize("name", CLOSED_FACES)
def test_teeth_luminance_tracks_the_photos_exposure(
    backend: WarpBackend, faces: dict[str, Face], landmarker: FaceLandmarker, name: str
) -> None:
    """Synthesised teeth over the skin around the mouth are as bright as photographed teeth
    are (within 15% of the smiling photos' range), and stay so when the photo is darker."""
    real = [
        m.teeth_over_skin(
            faces[n].asset.image,
            m.inner_lip_mask(faces[n].asset.image, faces[n].points),
            faces[n].points,
        )
        for n in SMILING_FACES
    ]
    low, high = 0.85 * min(real), 1.15 * max(real)
    ratios = []
    for exposure in (1.0, 0.6):
        asset = FaceAsset.prepare(_darkened(name, exposure))
        prepared = backend.prepare(asset)
        face = Face(asset, prepared, landmarker.detect(asset.image)[0].points)
        mouth = MouthShape(0.8, 0.0)
        frame = backend.render(prepared, mouth)
        ratio = m.teeth_over_skin(frame, synthesised(backend, face, mouth), face.points)
        assert low <= ratio <= high, f"{name} x{exposure}: teeth/skin {ratio:.2f}, real {real}"
        ratios.append(ratio)
    assert abs(ratios[1] / ratios[0] - 1.0) <= 0.1, ratios


@pytest.mark.parametrize("name", CLOSED_FACES + SMILING_FACES)
def test_lower_incisors_show_on_wide_openings(
    backend: WarpBackend, faces: dict[str, Face], name: str
) -> None:
    """At full openness, lower teeth show right above the lower lip (which covers the rest of
    them), with the darker mouth between them and the upper teeth."""
    face = faces[name]
    centre, width = _mouth_centre_width(face.points)
    mouth = MouthShape(1.0, 0.0)
    frame = backend.render(face.prepared, mouth)
    assert m.lower_teeth_visible(frame, synthesised(backend, face, mouth), width, centre)


@pytest.mark.parametrize("name", CLOSED_FACES + SMILING_FACES)
def test_no_dark_rim_along_the_inner_lower_lip(
    backend: WarpBackend, faces: dict[str, Face], name: str
) -> None:
    """Where the open mouth meets the lower lip there is no band darker than both the lip
    and the mouth just inside it (a rim at most 8% of the lip's brightness)."""
    face = faces[name]
    centre, width = _mouth_centre_width(face.points)
    for openness in (0.7, 1.0):
        mouth = MouthShape(openness, 0.0)
        frame = backend.render(face.prepared, mouth)
        rim = m.inner_lower_lip_rim(frame, synthesised(backend, face, mouth), width, centre)
        assert rim <= 0.08, f"{name} at {openness}: rim {rim:.3f}"
