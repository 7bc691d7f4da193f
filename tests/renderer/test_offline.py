"""Offline render: any audio format and rate in, H.264 + AAC MP4 with faststart out."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest

from renderer import AudioDecodeError, FaceAsset, RendererOptions, render_file
from tests.audio_match import assert_same_audio


def _encode_audio(
    path: Path, pcm: np.ndarray, rate: int, codec: str, fmt: str, channels: int
) -> None:
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        data = np.repeat(pcm[None, :], channels, axis=0)
        frame = av.AudioFrame.from_ndarray(
            data.T.reshape(1, -1).copy(), format="s16", layout=layout
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _streams(path: Path) -> dict[str, tuple[str, float]]:
    with av.open(str(path)) as container:
        return {
            s.type: (s.codec_context.name, float(s.duration * s.time_base))
            for s in container.streams
            if s.duration is not None and s.time_base is not None
        }


def test_renders_an_mp4_with_the_audio_duration(
    tmp_path: Path, fixtures_dir: Path, face: FaceAsset
) -> None:
    out = tmp_path / "out.mp4"
    progress: list[float] = []
    result = render_file(fixtures_dir / "speech.wav", face, out, on_progress=progress.append)
    streams = _streams(out)
    assert streams["video"][0] == "h264" and streams["audio"][0] == "aac"
    assert streams["video"][1] == pytest.approx(7.68, abs=0.05)
    assert streams["audio"][1] == pytest.approx(7.68, abs=0.1)
    assert result.frames == 193 and result.duration_s == pytest.approx(7.72)
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) > 3
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "+faststart puts the index first"
    with av.open(str(out)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == result.frames
    assert (frames[0].width, frames[0].height) == (512, 512)
    assert_same_audio(
        out, fixtures_dir / "speech.wav"
    )  # the input's sound, neither silent nor late


@pytest.mark.parametrize(
    ("codec", "fmt", "suffix", "rate", "channels"),
    [
        ("libopus", "ogg", "ogg", 48000, 1),
        ("libopus", "webm", "webm", 48000, 2),
        ("libmp3lame", "mp3", "mp3", 44100, 2),
        ("pcm_s16le", "wav", "wav", 8000, 1),
    ],
)
def test_decodes_common_formats_at_any_rate(
    tmp_path: Path,
    face: FaceAsset,
    speech: tuple[np.ndarray, int],
    codec: str,
    fmt: str,
    suffix: str,
    rate: int,
    channels: int,
) -> None:
    import soxr

    pcm, src_rate = speech
    resampled = soxr.resample(pcm[: src_rate * 2], src_rate, rate).astype(np.int16)
    source = tmp_path / f"in.{suffix}"
    _encode_audio(source, resampled, rate, codec, fmt, channels)
    out = tmp_path / "out.mp4"
    result = render_file(source, face, out, options=RendererOptions(idle_motion=False))
    assert result.duration_s == pytest.approx(2.0, abs=0.1)
    assert _streams(out)["video"][1] == pytest.approx(result.duration_s, abs=0.05)


def test_bad_audio_is_a_typed_error(tmp_path: Path, fixtures_dir: Path, face: FaceAsset) -> None:
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        render_file(fixtures_dir / "face.jpg", face, tmp_path / "x.mp4")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"\x00\x01" * 100)
    with pytest.raises(AudioDecodeError):
        render_file(garbage, face, tmp_path / "y.mp4")
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    with pytest.raises(AudioDecodeError, match="empty"):
        render_file(empty, face, tmp_path / "z.mp4")


def test_sampled_frames_for_a_contact_sheet(
    tmp_path: Path, fixtures_dir: Path, face: FaceAsset
) -> None:
    result = render_file(fixtures_dir / "speech.wav", face, tmp_path / "o.mp4", sample_frames=8)
    assert len(result.sample_frames) == 8
    assert all(f.shape == face.image.shape for f in result.sample_frames)
    assert not np.array_equal(result.sample_frames[0], result.sample_frames[4])
