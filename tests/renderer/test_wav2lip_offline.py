"""The neural backend end to end on the offline paths: render_file, the job worker, `atlas render`.

The model is a small real ONNX graph with the Wav2Lip contract's shapes (tests/renderer/
wav2lip_support.py), so each path loads, batches and runs it through ONNX Runtime for real.
All three read their options from the same ATLAS_RENDERER_* settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from renderer import FaceAsset, RendererOptions, render_file
from renderer.backends.wav2lip.engine import shared_engines
from tests.renderer.wav2lip_support import contract_model

CLIP_S = 1.6


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return contract_model(tmp_path_factory.mktemp("model") / "contract.onnx")


@pytest.fixture(scope="module")
def wrong_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Right names, wrong face size: the backend must refuse it before rendering anything."""
    path = tmp_path_factory.mktemp("model") / "wrong.onnx"
    return contract_model(path, face=("B", 6, 64, 64))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, speech: tuple[np.ndarray, int]) -> Path:
    """The first CLIP_S seconds of the speech fixture: enough frames, quick to render."""
    pcm, rate = speech
    path = tmp_path_factory.mktemp("audio") / "clip.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm[: int(CLIP_S * rate)].astype(np.int16).tobytes())
    return path


def _video(path: Path) -> tuple[int, int, int]:
    """(width, height, decoded frame count) of an MP4."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.width, stream.height, frames


def test_render_file_with_a_neural_model_finishes(
    tmp_path: Path, clip: Path, model: Path, face: FaceAsset
) -> None:
    """The whole file, then the result: the provider is read before the backend closes."""
    options = RendererOptions(backend="wav2lip", model_path=str(model), idle_motion=False)
    out = tmp_path / "neural.mp4"
    result = render_file(clip, face, out, options=options)
    assert result.provider == "CPUExecutionProvider"
    assert result.frames == round(CLIP_S * options.fps)
    assert _video(out) == (*face.size, result.frames)
    assert not shared_engines(), "the engine is released when the render ends"


async def test_job_worker_renders_with_the_environments_model(
    tmp_path: Path,
    clip: Path,
    model: Path,
    face_bytes: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from session_api.auth import create_key
    from session_api.db.migrate import upgrade
    from session_api.db.session import Database
    from session_api.jobs.queue import JobQueue, NewJob, new_job_id
    from session_api.jobs.worker import JobWorker, output_key
    from session_api.storage import LocalStorage, UrlSigner

    monkeypatch.setenv("ATLAS_RENDERER_BACKEND", "wav2lip")
    monkeypatch.setenv("ATLAS_RENDERER_MODEL", str(model))
    monkeypatch.setenv("ATLAS_RENDERER_SIZE", "256")
    db = Database(url=f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}")
    await upgrade(db)
    storage = LocalStorage(
        root=tmp_path / "storage", public_url="http://t", signer=UrlSigner(b"k" * 16)
    )
    queue = JobQueue(db=db)
    key = await create_key(db, name="neural")
    job_id = new_job_id()
    audio_key, image_key = f"jobs/{job_id}/audio.wav", f"jobs/{job_id}/image.jpg"
    (tmp_path / "image.jpg").write_bytes(face_bytes)
    await storage.put_file(audio_key, clip, content_type="audio/wav")
    await storage.put_file(image_key, tmp_path / "image.jpg", content_type="image/jpeg")
    new = NewJob(
        key_id=key.id, audio_key=audio_key, image_key=image_key, audio_size=1, image_size=1
    )
    await queue.submit(job_id, new, monthly_cap=None)
    worker = JobWorker(queue=queue, storage=storage, public_url="http://t")
    try:
        assert (worker.options.backend, worker.options.size) == ("wav2lip", 256)
        assert await worker.run_once()
    finally:
        await worker.aclose()
    job = await queue.get(job_id, key_id=key.id)
    await db.aclose()
    assert job is not None
    assert (job.status, job.error) == ("completed", None)
    fetched = tmp_path / "fetched.mp4"
    await storage.get_file(output_key(job_id), fetched)
    assert _video(fetched) == (256, 256, round(CLIP_S * 25))


def _atlas_render(
    tmp_path: Path, clip: Path, fixtures_dir: Path, *flags: str, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_RENDERER_")}
    return subprocess.run(
        [sys.executable, "-m", "atlas.cli", "render", "--audio", str(clip)]
        + ["--image", str(fixtures_dir / "face.jpg"), "-o", str(tmp_path / "o.mp4"), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, **env},
    )


def test_cli_reads_the_environment(
    tmp_path: Path, clip: Path, fixtures_dir: Path, model: Path
) -> None:
    done = _atlas_render(
        tmp_path,
        clip,
        fixtures_dir,
        ATLAS_RENDERER_BACKEND="wav2lip",
        ATLAS_RENDERER_MODEL=str(model),
        ATLAS_RENDERER_SIZE="256",
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "Traceback" not in done.stderr
    assert _video(tmp_path / "o.mp4") == (256, 256, round(CLIP_S * 25))


def test_cli_flags_override_the_environment(
    tmp_path: Path, clip: Path, fixtures_dir: Path, model: Path, wrong_model: Path
) -> None:
    """The environment names a wrong model and 256 px; --model and --size win."""
    done = _atlas_render(
        tmp_path,
        clip,
        fixtures_dir,
        "--model",
        str(model),
        "--size",
        "192",
        ATLAS_RENDERER_MODEL=str(wrong_model),
        ATLAS_RENDERER_SIZE="256",
    )
    assert done.returncode == 0, done.stderr
    assert _video(tmp_path / "o.mp4")[:2] == (192, 192)


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (("--model", "WRONG"), {}, "not a Wav2Lip-contract model"),
        (("--backend", "wav2lip"), {}, "needs a model"),
        (("--model", "missing.onnx"), {}, "model file not found"),
        ((), {"ATLAS_RENDERER_FPS": "fast"}, "ATLAS_RENDERER_FPS"),
    ],
)
def test_cli_bad_model_or_setting_exits_2_with_one_line(
    tmp_path: Path,
    clip: Path,
    fixtures_dir: Path,
    wrong_model: Path,
    flags: tuple[str, ...],
    env: dict[str, str],
    message: str,
) -> None:
    flags = tuple(str(wrong_model) if f == "WRONG" else f for f in flags)
    done = _atlas_render(tmp_path, clip, fixtures_dir, *flags, **env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("atlas render: error:") and message in lines[0]
    assert not (tmp_path / "o.mp4").exists()
