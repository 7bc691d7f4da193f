"""Contact sheets for people to judge the warp mouth: `make review` writes out/review/*.png.

One sheet per test face: the rest frame beside the four widest-open frames of the speech
fixture, each at full resolution (idle motion off, frames before any video encoding).
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np
from PIL import Image

from renderer import FaceAsset, RendererOptions, StreamRenderer

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
FACES = ("face.jpg", "face_smile.jpg", "face_dark.jpg", "face_lowlight.jpg")


def speech() -> tuple[np.ndarray, int]:
    with wave.open(str(FIXTURES / "speech.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).copy(), w.getframerate()


def widest_frames(face: FaceAsset, count: int = 4) -> list[np.ndarray]:
    """The rest frame, then the `count` frames with the widest-open mouths (in time order)."""
    pcm, rate = speech()
    renderer = StreamRenderer(face=face, options=RendererOptions(idle_motion=False))
    renderer.push_audio(pcm, sample_rate=rate)
    renderer.flush()
    frames = []
    while (frame := renderer.pull()) is not None:
        frames.append(frame)
    renderer.close()
    widest = sorted(range(len(frames)), key=lambda i: -frames[i].mouth.openness)
    picked: list[int] = []
    for i in widest:  # spread the picks out: not four neighbours of one vowel
        if all(abs(i - j) > 5 for j in picked):
            picked.append(i)
        if len(picked) == count:
            break
    return [face.image] + [frames[i].image for i in sorted(picked)]


def write_sheet(frames: list[np.ndarray], path: Path) -> None:
    height, width = frames[0].shape[:2]
    sheet = Image.new("RGB", (width * len(frames), height), (16, 16, 16))
    for i, frame in enumerate(frames):
        sheet.paste(Image.fromarray(frame), (i * width, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")


def main(out_dir: str = "out/review") -> None:
    for name in FACES:
        face = FaceAsset.prepare((FIXTURES / name).read_bytes())
        path = Path(out_dir) / f"{Path(name).stem}.png"
        write_sheet(widest_frames(face), path)
        print(path)


if __name__ == "__main__":
    main(*sys.argv[1:])
