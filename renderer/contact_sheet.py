"""A PNG grid of frames, for people to look at a render at a glance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

THUMB_WIDTH = 256


def write_contact_sheet(frames: list[np.ndarray], path: str | Path, *, columns: int = 4) -> None:
    if not frames:
        raise ValueError("no frames to put on a contact sheet")
    height, width = frames[0].shape[:2]
    thumb_h = round(height * THUMB_WIDTH / width)
    rows = math.ceil(len(frames) / columns)
    sheet = Image.new("RGB", (columns * THUMB_WIDTH, rows * thumb_h), (16, 16, 16))
    for i, frame in enumerate(frames):
        thumb = Image.fromarray(frame).resize((THUMB_WIDTH, thumb_h), Image.Resampling.LANCZOS)
        sheet.paste(thumb, ((i % columns) * THUMB_WIDTH, (i // columns) * thumb_h))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
