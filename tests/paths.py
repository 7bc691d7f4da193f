"""Where things are: the repository root and the committed test media."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
FACE = FIXTURES / "face.jpg"
SPEECH = FIXTURES / "speech.wav"
