"""`atlas render` as a user runs it: exit codes and one clear line on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _atlas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atlas.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_renders_with_a_contact_sheet(tmp_path: Path, fixtures_dir: Path) -> None:
    out, sheet = tmp_path / "o.mp4", tmp_path / "sheet.png"
    done = _atlas(
        "render",
        "--audio",
        str(fixtures_dir / "speech.wav"),
        "--image",
        str(fixtures_dir / "face.jpg"),
        "-o",
        str(out),
        "--contact-sheet",
        str(sheet),
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 10_000
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("audio", "image", "message"),
    [
        ("missing.wav", "face.jpg", "audio file not found"),
        ("speech.wav", "missing.jpg", "image file not found"),
        ("face.jpg", "face.jpg", "no audio stream"),
        ("speech.wav", "speech.wav", "unsupported image format"),
        ("speech.wav", "blank.png", "no face detected"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, fixtures_dir: Path, audio: str, image: str, message: str
) -> None:
    from PIL import Image

    Image.new("RGB", (300, 300), (200, 180, 170)).save(tmp_path / "blank.png")

    def where(name: str) -> str:
        return str(tmp_path / name) if name == "blank.png" else str(fixtures_dir / name)

    done = _atlas(
        "render", "--audio", where(audio), "--image", where(image), "-o", str(tmp_path / "o.mp4")
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0] and lines[0].startswith("atlas render: error:")


def test_unknown_command_and_help() -> None:
    assert _atlas("frobnicate").returncode == 2
    helped = _atlas("--help")
    assert helped.returncode == 0 and "render" in helped.stdout
