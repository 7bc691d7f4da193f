"""The offline renderer refuses to render more frames than the duration limit allows, whatever
the file's header declared (the API checks at submit; this is the worker's own stop)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from renderer import AudioDecodeError, FaceAsset, RendererOptions, render_file


def lying_wav(path: Path, *, rate: int, seconds: float) -> None:
    """PCM WAV whose data size field says 'until the end of the file' (0xFFFFFFFF)."""
    data = np.zeros(round(rate * seconds), dtype=np.int16).tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    path.write_bytes(
        b"RIFF\xff\xff\xff\xffWAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data\xff\xff\xff\xff"
        + data
    )


def test_frames_past_the_limit_are_refused(tmp_path: Path, face: FaceAsset) -> None:
    audio = tmp_path / "long.wav"
    lying_wav(audio, rate=16000, seconds=4.0)
    options = RendererOptions(idle_motion=False)
    with pytest.raises(AudioDecodeError, match="longer than the 1 s limit"):
        render_file(audio, face, tmp_path / "out.mp4", options=options, max_duration_s=1.0)
    within = render_file(audio, face, tmp_path / "ok.mp4", options=options, max_duration_s=4.0)
    assert within.duration_s == pytest.approx(4.0, abs=0.1)
