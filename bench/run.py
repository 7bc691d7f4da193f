"""`make bench`: renderer speed, latency, memory and lip-sync quality -> BENCHMARKS.md.

Targets (issue 2): P1 >= 400 frames/s on one core at 512x512; P2 audio-in to frame-out <= 60 ms;
P3 offline RTF <= 0.1 for 60 s of speech on 2 cores; P6 RSS per stream <= 150 MB and growth
<= 5 MB over 1 h of audio. Set BENCH_SOAK_S to shorten the soak (default: 3600 s of audio).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import psutil

from bench.report import write_section
from renderer import FaceAsset, RendererOptions, StreamRenderer, render_file
from renderer.audio import LOOKAHEAD_S

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
# Other benchmark scripts, run as they are documented, each into its own section.
SUITES: tuple[tuple[str, str, list[str]], ...] = (
    ("api", "API (issue 3)", ["bench/api_bench.py"]),
    ("realtime", "Realtime session create (issue 4)", ["bench/realtime_bench.py"]),
    ("agent", "Concurrent agent streams (issue 5)", ["bench/agent_streams.py"]),
    ("neural", "Wav2Lip-contract backend on CPU (issue 6)", ["-m", "bench.neural_cpu"]),
)


def load_speech() -> tuple[np.ndarray, int]:
    with wave.open(str(FIXTURES / "speech.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).copy(), w.getframerate()


def looped(pcm: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    reps = int(np.ceil(seconds * rate / pcm.size))
    return np.tile(pcm, reps)[: int(seconds * rate)]


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def throughput(
    face: FaceAsset, options: RendererOptions, pcm: np.ndarray, rate: int
) -> dict[str, float]:
    """Frames/s of StreamRenderer alone (features + warp + idle motion), and per-frame times."""
    renderer = StreamRenderer(face=face, options=options)
    renderer.push_audio(pcm, sample_rate=rate)
    renderer.flush()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        frame = renderer.pull()
        if frame is None:
            break
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    renderer.close()
    return {
        "fps": len(times) / total,
        "median_ms": statistics.median(times) * 1e3,
        "p95_ms": float(np.percentile(times, 95)) * 1e3,
        "frames": float(len(times)),
    }


def offline_rtf(face: FaceAsset, pcm: np.ndarray, rate: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "speech60.wav"
        with wave.open(str(src), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm.tobytes())
        runs = []
        for _ in range(3):
            result = render_file(
                src, face, Path(tmp) / "out.mp4", options=RendererOptions(threads=2)
            )
            runs.append(result.elapsed_s)
        audio_s = pcm.size / rate
        return {
            "audio_s": audio_s,
            "median_s": statistics.median(runs),
            "rtf": statistics.median(runs) / audio_s,
        }


def soak_in_fresh_process(seconds: float) -> dict[str, float]:
    """The soak runs in a spawned process so earlier benchmarks' memory does not blur it."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: dict[str, float] = pool.apply(_soak_child, (seconds,))
        return result


def _soak_child(seconds: float) -> dict[str, float]:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    pcm, rate = load_speech()
    face = FaceAsset.prepare((FIXTURES / "face.jpg").read_bytes())
    return soak(face, pcm, rate, seconds)


def soak(face: FaceAsset, pcm: np.ndarray, rate: int, seconds: float) -> dict[str, float]:
    """Realtime-shaped use, faster than realtime: 20 ms pushes, a frame pulled per 40 ms."""
    base = rss_mb()
    renderer = StreamRenderer(face=face, options=RendererOptions())
    chunk = rate // 50
    position = 0
    samples: list[tuple[float, float]] = []
    frames = 0
    total_frames = int(seconds * 25)
    while frames < total_frames:
        for _ in range(2):
            part = pcm[position : position + chunk]
            if part.size < chunk:
                position = 0
                renderer.flush()
                part = pcm[:chunk]
            renderer.push_audio(part, sample_rate=rate)
            position += chunk
        renderer.next_frame()
        frames += 1
        if frames % 2500 == 0:
            samples.append((frames / 25, rss_mb()))
    renderer.close()
    first = samples[min(1, len(samples) - 1)][1]  # after warm-up (allocator pools settle)
    return {
        "audio_s": seconds,
        "rss_after_start_mb": samples[0][1] - base if samples else 0.0,
        "growth_mb": samples[-1][1] - first if samples else 0.0,
        "peak_rss_mb": max(s[1] for s in samples) if samples else 0.0,
    }


def quality() -> dict[str, float]:
    """The lip-sync measurements the tests assert, as numbers."""
    import json

    from renderer.landmarks import MOUTH_LEFT, MOUTH_RIGHT, shared_landmarker
    from renderer.lipsync_metrics import best_lag, frame_envelope, measure_mouths

    options = RendererOptions(idle_motion=False)
    face = FaceAsset.prepare((FIXTURES / "face.jpg").read_bytes(), options=options)
    pcm, rate = load_speech()
    renderer = StreamRenderer(face=face, options=options)
    renderer.push_audio(pcm, sample_rate=rate)
    renderer.flush()
    frames = []
    while (frame := renderer.pull()) is not None:
        frames.append(frame)
    landmarker = shared_landmarker()
    ref = landmarker.detect(face.image)[0].points
    width = float(np.linalg.norm(ref[MOUTH_RIGHT] - ref[MOUTH_LEFT]))
    gaps = np.array(
        [
            m.gap if m else np.nan
            for m in measure_mouths([f.image for f in frames], landmarker, reference_width=width)
        ]
    )
    audio = np.concatenate([f.audio for f in frames if f.audio is not None]) / 32768.0
    lag, r = best_lag(frame_envelope(audio, options.samples_per_frame), gaps, 6)
    phonemes = json.loads((FIXTURES / "speech_phonemes.json").read_text())["phonemes"]
    closed = []
    for p in phonemes:
        if p["phoneme"] in {"p", "b", "m"}:
            idx = [
                i
                for i in range(len(frames))
                if p["start_s"] - 0.02 <= (i + 0.5) / 25 < p["end_s"] + 0.02
            ]
            if idx:
                closed.append(min(gaps[i] for i in idx) < 0.04)
    return {"lag_frames": float(lag), "r": r, "bilabial_closed": float(np.mean(closed))}


def table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| id | measure | result | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def timed(label: str, fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    print(f"bench: {label}...", file=sys.stderr, flush=True)
    return fn()


def renderer_bench() -> None:
    cv2.setNumThreads(1)
    soak_s = float(os.environ.get("BENCH_SOAK_S", "3600"))
    pcm, rate = load_speech()
    face = FaceAsset.prepare((FIXTURES / "face.jpg").read_bytes())
    speech60 = looped(pcm, rate, 60.0)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # P1/P2/P6: one core
    idle_on = timed("P1 throughput", lambda: throughput(face, RendererOptions(), speech60, rate))
    idle_off = timed(
        "P1 (no idle motion)",
        lambda: throughput(face, RendererOptions(idle_motion=False), speech60, rate),
    )
    mem = timed("P6 soak", lambda: soak_in_fresh_process(soak_s))
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # P3: the whole (2-core) machine
    rtf = timed("P3 offline RTF", lambda: offline_rtf(face, speech60, rate))
    q = timed("quality", quality)
    frame_ms = 1000 / 25
    p2 = LOOKAHEAD_S * 1000 + idle_on["p95_ms"]
    rows = [
        (
            "P1",
            "renderer frames/s, 1 core, 512x512, idle motion on",
            f"{idle_on['fps']:.0f} fps (median {idle_on['median_ms']:.2f} ms, "
            f"p95 {idle_on['p95_ms']:.2f} ms)",
            ">= 400",
        ),
        (
            "P1b",
            "same, idle motion off",
            f"{idle_off['fps']:.0f} fps (median {idle_off['median_ms']:.2f} ms)",
            "-",
        ),
        (
            "P2",
            "audio in -> frame with that mouth out (lookahead + p95 compute)",
            f"{p2:.1f} ms ({LOOKAHEAD_S * 1000:.0f} + {idle_on['p95_ms']:.1f}); plus up to "
            f"{frame_ms:.0f} ms waiting for the frame's own slice",
            "<= 60 ms",
        ),
        (
            "P3",
            "offline RTF, 60 s speech, render + H.264/AAC encode, 2 cores",
            f"{rtf['rtf']:.3f} (median {rtf['median_s']:.2f} s of 3)",
            "<= 0.1",
        ),
        (
            "P6",
            f"RSS of one streaming renderer / growth over {soak_s / 60:.0f} min of audio",
            f"{mem['rss_after_start_mb']:.1f} MB / {mem['growth_mb']:+.1f} MB "
            f"(peak process RSS {mem['peak_rss_mb']:.0f} MB)",
            "<= 150 MB / <= 5 MB",
        ),
        (
            "Q1",
            "A/V offset (lag of peak envelope-gap correlation) and r",
            f"{q['lag_frames']:+.0f} frames, r = {q['r']:.2f}",
            "±1, r >= 0.6",
        ),
        (
            "Q2",
            "p/b/m with lips closed in one of their frames",
            f"{q['bilabial_closed']:.0%}",
            ">= 80%",
        ),
    ]
    cpu = platform.processor() or platform.machine()
    header = (
        f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}. "
        "Command: `make bench` (`python -m bench.run renderer`). Medians of whole runs; the "
        "machine is shared and noisy, so compare ratios rather than single figures.\n\n"
    )
    print(write_section("renderer", "Renderer (CPU)", header + table(rows)))


def run_suite(key: str, title: str, args: list[str]) -> bool:
    """One bench script in its own process; its section is rewritten only when it succeeds."""
    print(f"bench: {title}...", file=sys.stderr, flush=True)
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode != 0:
        print(f"bench: {title} failed; its section keeps its last figures\n{done.stderr[-2000:]}")
        return False
    command = "python " + " ".join(args)
    print(write_section(key, title, f"Command: `{command}`\n\n{done.stdout.strip()}"))
    return True


def main(argv: list[str]) -> int:
    """`python -m bench.run [KEY ...]`: the named benches (default: all), each into its section."""
    known = ["renderer", *(key for key, _, _ in SUITES)]
    wanted = argv or (["renderer"] if os.environ.get("BENCH_ONLY_RENDERER") else known)
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        print(f"unknown bench {unknown}; known: {known}", file=sys.stderr)
        return 2
    ok = True
    if "renderer" in wanted:
        renderer_bench()
    for key, title, args in SUITES:
        if key in wanted:
            ok = run_suite(key, title, args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
