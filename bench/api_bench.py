"""API benchmarks (issue 3): GET /v1/jobs/{id} throughput, 1 MB submit latency, 10 s clip e2e.

Starts `atlas serve` on loopback with the embedded defaults in a temporary data dir and prints a
markdown table. The load generators run outside the server's process: wrk (when on PATH; the P5
figure: `wrk -t1 -c16`, median of --runs runs, with the server's CPU time per request read from
/proc) and an httpx client that shares the CPUs with the server, so its req/s is a floor.
Usage: python bench/api_bench.py [--seconds 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "fixtures" / "speech.wav"
FACE = ROOT / "tests" / "fixtures" / "face.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wav_of(seconds: float) -> bytes:
    """The speech fixture looped (or cut) to `seconds`."""
    with wave.open(str(SPEECH)) as w:
        params, pcm = w.getparams(), w.readframes(w.getnframes())
    want = int(seconds * params.framerate) * params.sampwidth * params.nchannels
    data = (pcm * (want // len(pcm) + 1))[:want]
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setparams(params)
        w.writeframes(data)
    return out.getvalue()


class Server:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "ATLAS_DATA_DIR": str(data_dir),
            "ATLAS_PUBLIC_URL": self.base,
            "ATLAS_POLL_INTERVAL_S": "0.1",
            "PYTHONPATH": str(ROOT),
        }
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def key(self) -> str:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "atlas.cli",
                "keys",
                "create",
                "--name",
                "bench",
                "--rpm",
                "100000000",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.splitlines()[0]

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "atlas.cli", "serve", "--port", str(self.port), *self.extra],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/v1/health").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("atlas serve did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=30)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def poll_rps(base: str, key: str, job_id: str, seconds: float) -> tuple[float, float]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    count, latencies = 0, []
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
        stop = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal count
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                response = await client.get(f"/v1/jobs/{job_id}")
                latencies.append(time.perf_counter() - t0)
                assert response.status_code == 200
                count += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(32)))
        elapsed = time.monotonic() - started
    return count / elapsed, statistics.median(latencies) * 1000


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_rps(url: str, key: str, seconds: float, pid: int) -> tuple[float, float]:
    """One wrk run: (req/s, server CPU microseconds per request)."""
    cpu0 = server_cpu_s(pid)
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds:g}s", "-H", f"Authorization: Bearer {key}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = server_cpu_s(pid) - cpu0
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, cpu / requests * 1e6


def submit(client: httpx.Client, audio: bytes, face: bytes) -> tuple[str, float]:
    t0 = time.perf_counter()
    response = client.post(
        "/v1/generate", files={"audio": ("a.wav", audio), "image": ("f.jpg", face)}
    )
    elapsed = time.perf_counter() - t0
    response.raise_for_status()
    return str(response.json()["job_id"]), elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--submits", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3, help="wrk runs (the median is shown)")
    args = parser.parse_args()
    face = FACE.read_bytes()
    one_mb = wav_of(1_000_000 / (22050 * 2))
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        with Server(Path(tmp) / "a", "--no-worker") as server:
            key = server.key()
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=server.base, headers=headers, timeout=60) as client:
                times = [submit(client, one_mb, face)[1] for _ in range(args.submits)]
                job_id = submit(client, SPEECH.read_bytes(), face)[0]
            rps, median_ms = asyncio.run(poll_rps(server.base, key, job_id, args.seconds))
            rows.append(
                (
                    "GET /v1/jobs/{id} (32 connections, client on the same CPUs)",
                    f"{rps:.0f} req/s, median {median_ms:.1f} ms",
                )
            )
            rows.append(
                (
                    f"POST /v1/generate, {len(one_mb) / 1e6:.1f} MB WAV + face, "
                    f"{args.submits} submits",
                    f"p50 {pct(times, 0.5) * 1000:.0f} ms, p99 {pct(times, 0.99) * 1000:.0f} ms",
                )
            )
        with Server(Path(tmp) / "b") as server:
            key = server.key()
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=server.base, headers=headers, timeout=60) as client:
                t0 = time.perf_counter()
                job_id, _ = submit(client, wav_of(10.0), face)
                while (status := client.get(f"/v1/jobs/{job_id}").json())["status"] not in {
                    "completed",
                    "failed",
                }:
                    time.sleep(0.1)
                e2e = time.perf_counter() - t0
            rows.append(
                (
                    "10 s clip, submit → completed (embedded defaults, CPU)",
                    f"{e2e:.1f} s ({status['status']}; Atlas: typical 40–50 s)",
                )
            )
            # P5: polls of the completed job, the embedded worker idle, wrk outside the process
            if shutil.which("wrk") and server.proc is not None:
                runs = [
                    wrk_rps(f"{server.base}/v1/jobs/{job_id}", key, args.seconds, server.proc.pid)
                    for _ in range(args.runs)
                ]
                rates = sorted(r for r, _ in runs)
                cpu_us = statistics.median(c for _, c in runs)
                rows.append(
                    (
                        f"GET /v1/jobs/{{id}}, `wrk -t1 -c16 -d{args.seconds:g}s`, "
                        f"median of {args.runs}",
                        f"{statistics.median(rates):.0f} req/s (runs: "
                        + ", ".join(f"{r:.0f}" for r in rates)
                        + f"); server CPU {cpu_us:.0f} us/request",
                    )
                )
    print(f"| API benchmark ({os.cpu_count()} CPUs) | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
