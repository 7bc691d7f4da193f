"""Worst-case photos cannot exhaust the API's memory (a real `atlas serve`, its RSS from /proc).

Twelve uploads at once of the largest photos each format allows (and one far past the limit)
must keep the server's peak RSS under 700 MB, the k8s limit being 1 GiB; /v1/health answers
throughout, and the RSS comes back near its baseline afterwards.
"""

from __future__ import annotations

import io
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.paths import SPEECH
from tests.processes import Procs, atlas_env

from .live_server import new_key, serve

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/<pid>/status")

PEAK_LIMIT_MB = 700
SETTLE_MARGIN_MB = 120


def encode(size: int, mode: str, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), (40, 90, 160, 200)[: len(mode)]).save(buf, format=fmt)
    return buf.getvalue()


def worst_cases() -> list[tuple[str, bytes, str]]:
    png_max = encode(4096, "RGBA", "PNG")  # the largest PNG accepted, full-size decode
    return [
        ("bomb.png", encode(7000, "RGBA", "PNG"), "image/png"),  # ~200 KB, 196 MB decoded
        ("max.webp", encode(4096, "RGBA", "WEBP"), "image/webp"),
        ("max.jpg", encode(7000, "RGB", "JPEG"), "image/jpeg"),
        *[("max.png", png_max, "image/png")] * 9,
    ]


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_twelve_worst_case_photos_at_once_stay_under_700_mb(
    procs: Procs, tmp_path: Path, face_bytes: bytes
) -> None:
    env = atlas_env(tmp_path / "data")
    key = new_key(env)
    base, _, proc = serve(procs, env)
    headers = {"Authorization": f"Bearer {key}"}
    speech = SPEECH.read_bytes()

    def generate(name: str, image: bytes, content_type: str) -> int:
        files = {"audio": ("s.wav", speech, "audio/wav"), "image": (name, image, content_type)}
        return requests.post(
            f"{base}/v1/generate", headers=headers, files=files, timeout=300
        ).status_code

    assert generate("face.jpg", face_bytes, "image/jpeg") == 202  # warm: the landmarker is loaded
    baseline = rss_mb(proc.pid, "VmRSS")
    cases = worst_cases()

    done = threading.Event()
    health: list[int] = []

    def probe() -> None:
        while not done.is_set():
            health.append(requests.get(f"{base}/v1/health", timeout=60).status_code)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(len(cases)) as pool:
            statuses = list(pool.map(lambda case: generate(*case), cases))
    finally:
        done.set()
        prober.join()
    peak = rss_mb(proc.pid, "VmHWM")
    after = rss_mb(proc.pid, "VmRSS")
    print(f"RSS baseline {baseline:.0f} MB, peak {peak:.0f} MB, after {after:.0f} MB")
    assert statuses[0] == 400  # the 7000x7000 PNG is refused from its header
    assert all(s in {400, 202} for s in statuses), statuses  # no face: 400; never a 5xx
    assert health and set(health) == {200}
    assert peak < PEAK_LIMIT_MB, f"peak RSS {peak:.0f} MB"
    assert after < baseline + SETTLE_MARGIN_MB, f"RSS {after:.0f} MB after, {baseline:.0f} before"
