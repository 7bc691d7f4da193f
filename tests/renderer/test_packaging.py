"""A plain `pip install` of the project gives a renderer that works: the face landmarker model
ships inside the package (renderer/models/, Apache-2.0 with its notice), no extra step needed."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from renderer.errors import ModelError
from renderer.landmarks import BUNDLED_MODEL, MODEL_ENV, model_path

ROOT = Path(__file__).resolve().parents[2]
# Google's MediaPipe Face Landmarker, float16 version 1 (renderer/models/NOTICE.md).
MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"


def test_the_bundled_model_is_mediapipes_with_its_licence() -> None:
    assert hashlib.sha256(BUNDLED_MODEL.read_bytes()).hexdigest() == MODEL_SHA256
    models = BUNDLED_MODEL.parent
    assert "Apache License" in (models / "LICENSE-APACHE-2.0").read_text()
    assert MODEL_SHA256 in (models / "NOTICE.md").read_text()


def test_the_model_path_is_the_bundled_one_unless_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert model_path() == BUNDLED_MODEL
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "absent.task"))
    with pytest.raises(ModelError, match=MODEL_ENV):
        model_path()


def _package_sources(dest: Path) -> Path:
    """The files a user's checkout holds for the package (no venv, caches or build output)."""
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"]
        + ["pyproject.toml", "README.md", "atlas", "renderer", "agent", "session_api"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_fresh_venv_with_pip_install_renders(tmp_path: Path, fixtures_dir: Path) -> None:
    """`pip install <checkout>` into an empty venv, then `atlas render` from outside the checkout.

    pip resolves every dependency itself (from the machine's pip cache, the index only for
    metadata): this is the install a user's own requirements file gets, so a dependency that
    overwrote opencv-contrib's cv2/ or a model file left out of the wheel fails here.
    """
    venv = tmp_path / "venv"
    try:
        _install_and_render(_package_sources(tmp_path / "src"), venv, tmp_path, fixtures_dir)
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # ~1 GiB: pytest would keep it


def _install_and_render(src: Path, venv: Path, tmp_path: Path, fixtures_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ATLAS_", "PYTHON", "VIRTUAL_ENV")) and k != "PIP_NO_DEPS"
    }
    installed = subprocess.run(
        [*pip, "install", "-q", "--disable-pip-version-check", str(src)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert installed.returncode == 0, installed.stderr[-4000:]
    checked = subprocess.run([*pip, "check"], capture_output=True, text=True, env=env)
    assert checked.returncode == 0, checked.stdout

    work = tmp_path / "elsewhere"  # not the checkout: `renderer` must come from the venv
    work.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import renderer.landmarks as l; print(l.model_path())"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    out = work / "o.mp4"
    rendered = subprocess.run(
        [str(venv / "bin" / "atlas"), "render", "--audio", str(fixtures_dir / "speech.wav")]
        + ["--image", str(fixtures_dir / "face.jpg"), "-o", str(out), "--size", "256"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=300,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert out.stat().st_size > 10_000 and "wrote" in rendered.stdout
