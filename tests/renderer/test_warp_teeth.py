"""Synthesised crowns differ the way real teeth do (renderer/backends/warp/teeth.py).

Painted on a fine grid in the mouth's own frame with a straight occlusal line, so that each
crown's length and width are read off the painted pixels without the smile's curve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderer import FaceAsset
from renderer.backends.warp.geometry import mouth_frame
from renderer.backends.warp.teeth import (
    UPPER_RISE,
    UPPER_WIDTHS,
    crown_row,
    face_seed,
    upper_teeth,
)
from tests.renderer import mouth_metrics as m

FIXTURES = Path(__file__).parent.parent / "fixtures"
STEP = 0.1  # px per grid sample


def painted_crowns(seed: int) -> tuple[float, list[tuple[float, float, float]]]:
    """(mouth width, [(u at the crown's middle, its width, its biting edge)]) for one row."""
    face = FaceAsset.prepare((FIXTURES / "face.jpg").read_bytes())
    frame = mouth_frame(face.landmarks)
    mw, hw = frame.mouth_width, frame.inner_half_width
    u, rel = np.meshgrid(
        np.arange(-0.6 * hw, 0.6 * hw, STEP), np.arange(-0.25 * mw, 0.1 * mw, STEP)
    )
    row = crown_row(UPPER_WIDTHS, UPPER_RISE, seed)
    white, gum, dark = np.full(3, 220.0), np.array([190.0, 90, 90]), np.full(3, 30.0)
    rgb, alpha = upper_teeth(u, rel, np.full(u.shape, 0.05 * mw), frame, row, white, gum, dark)
    crowns = m.crown_edges(rgb, alpha, u)
    return mw, crowns


def test_crown_sizes_vary_like_real_teeth() -> None:
    """Centrals are wider and longer than laterals, canines shorter still; front crowns'
    lengths spread by more than a pixel's worth at this size."""
    mw, crowns = painted_crowns(face_seed(np.zeros((4, 4, 3), np.uint8)))
    for side in (1.0, -1.0):
        row = [c for c in crowns if np.sign(c[0]) == side][:3]
        assert len(row) == 3
        (_, w_central, e_central), (_, w_lateral, e_lateral), (_, _, e_canine) = row
        assert w_central > 1.15 * w_lateral, row
        # rows grow downwards: a longer crown ends on a larger row
        assert (e_central - e_lateral) * STEP >= 0.008 * mw, row
        assert (e_lateral - e_canine) * STEP >= 0.003 * mw, row
    lengths = np.array([c[2] for c in crowns[:6]]) * STEP
    assert np.std(lengths) >= 0.008 * mw


def test_each_face_gets_its_own_irregularities() -> None:
    """The two sides of a row differ a little, and two photos give two different rows."""
    _, one = painted_crowns(1)
    _, two = painted_crowns(2)
    right = [c for c in one if c[0] > 0][:3]
    left = [c for c in one if c[0] < 0][:3]
    assert max(abs(a[1] - b[1]) + abs(a[2] - b[2]) for a, b in zip(right, left, strict=True)) > 2
    assert any(abs(a[2] - b[2]) > 1 for a, b in zip(one[:6], two[:6], strict=True))
