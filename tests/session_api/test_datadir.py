"""The data dir on start: private modes, a persisted random secret, and the temp-dir sweep."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from session_api.config import DEV_SECRET, Settings
from session_api.storage import LocalStorage, UrlSigner

from .test_api_errors import assert_error


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def unset_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATLAS_SECRET_KEY", raising=False)


async def test_first_start_makes_a_private_secret_and_refuses_the_placeholder(
    tmp_path: Path, open_api: Callable[..., Any], unset_secret: None
) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, public_url="http://test")
    src = tmp_path / "o.mp4"
    src.write_bytes(b"\0" * 10)
    async with open_api(settings, background=False) as api:
        storage = api.services.storage
        assert isinstance(storage, LocalStorage)
        await storage.put_file("jobs/j/output.mp4", src, content_type="video/mp4")
        link = (await storage.presign("jobs/j/output.mp4", expires_in=600)).removeprefix(
            "http://test"
        )
        assert (await api.client.get(link)).status_code == 200
        # Anyone who read the source can sign with the placeholder: it must not work.
        forged = LocalStorage(
            root=storage.root, public_url="http://test", signer=UrlSigner(DEV_SECRET.encode())
        )
        bad = (await forged.presign("jobs/j/output.mp4", expires_in=600)).removeprefix(
            "http://test"
        )
        assert_error(await api.client.get(bad), 403, "forbidden")
    secret_file = data / "secret_key"
    assert mode(secret_file) == 0o600 and len(secret_file.read_text().strip()) >= 32
    assert mode(data) == 0o700
    assert mode(data / "atlas.db") == 0o600
    # The next start reads the same secret: links given out before a restart still work.
    async with open_api(settings, background=False) as api:
        assert (await api.client.get(link)).status_code == 200


async def test_an_explicit_secret_is_used_and_nothing_is_written(
    tmp_path: Path, open_api: Callable[..., Any], unset_secret: None
) -> None:
    settings = Settings(data_dir=tmp_path / "data", public_url="http://test", secret_key="x" * 40)
    async with open_api(settings, background=False) as api:
        storage = api.services.storage
        assert isinstance(storage, LocalStorage) and storage.signer.secret == b"x" * 40
    assert not (tmp_path / "data" / "secret_key").exists()


def test_atlas_keys_creates_the_database_private(tmp_path: Path, unset_secret: None) -> None:
    env = {**os.environ, "ATLAS_DATA_DIR": str(tmp_path / "d")}
    subprocess.run(
        [sys.executable, "-m", "atlas.cli", "keys", "create", "--name", "x"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert mode(tmp_path / "d") == 0o700 and mode(tmp_path / "d" / "atlas.db") == 0o600


# --- the temp-dir sweep ------------------------------------------------------------------------
def leftover(tmp: Path, name: str, *, age_s: float = 0.0) -> Path:
    d = tmp / name
    d.mkdir(parents=True)
    (d / "part-1").write_bytes(b"x" * 100)
    if age_s:
        old = d.stat().st_mtime - age_s
        for p in (d / "part-1", d):
            os.utime(p, (old, old))
    return d


@pytest.fixture
def other_process(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Starts a real process that holds the scratch dir's shared lock, as a live API would."""
    procs: list[subprocess.Popen[str]] = []

    def start(scratch: Path) -> None:
        code = (
            "import fcntl, os, sys; "
            f"fd = os.open({str(scratch / '.in-use')!r}, os.O_RDWR | os.O_CREAT, 0o600); "
            "fcntl.flock(fd, fcntl.LOCK_SH); print('locked', flush=True); sys.stdin.read()"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


async def test_leftovers_are_swept_when_no_other_process_runs(
    make_settings: Callable[..., Settings], open_api: Callable[..., Any]
) -> None:
    settings = make_settings()
    scratch = settings.data_dir / "tmp"
    dead = [leftover(scratch, "atlas-job-abc"), leftover(scratch, "atlas-upload-def", age_s=60)]
    keep = leftover(scratch, "not-ours")
    async with open_api(settings, background=False):
        assert not any(d.exists() for d in dead)
        assert keep.exists()


async def test_a_running_processes_temp_dirs_are_left_alone(
    make_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    other_process: Callable[[Path], None],
) -> None:
    settings = make_settings(tmp_stale_after_s=600)
    scratch = settings.data_dir / "tmp"
    scratch.mkdir(parents=True)
    other_process(scratch)
    live = [leftover(scratch, "atlas-job-live"), leftover(scratch, "atlas-upload-live", age_s=30)]
    dead = [
        leftover(scratch, "atlas-job-dead", age_s=3600),
        leftover(scratch, "atlas-upload-dead", age_s=601),
    ]
    async with open_api(settings, background=False):
        assert all(d.exists() for d in live)
        assert not any(d.exists() for d in dead)
