"""CPU throughput of the Wav2Lip-contract backend: model fps at batch 1, 4 and 16, plus the
per-frame cost around it (mel window + paste-back), on a random-weight model of the exact
architecture. Run: `python -m bench.neural_cpu [--threads N] [--seconds S]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from renderer.backends.wav2lip.engine import NeuralSettings, Wav2LipEngine
from renderer.backends.wav2lip.graph import build_wav2lip_onnx, random_weights


def measure(engine: Wav2LipEngine, batch: int, seconds: float) -> dict[str, float]:
    rng = np.random.default_rng(batch)
    mels = rng.uniform(-4, 4, (batch, 1, 80, 16)).astype(np.float32)
    faces = rng.random((batch, 6, 96, 96), dtype=np.float32)
    engine.run_batch(mels, faces)  # warm-up
    times: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 3:
        t0 = time.perf_counter()
        engine.run_batch(mels, faces)
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return {"batch": batch, "fps": batch / median, "median_ms": median * 1000, "runs": len(times)}


def frame_overhead_ms(repeats: int = 50) -> dict[str, float]:
    """Mel window (24 kHz stream: resample + STFT) and paste-back on a 512 px frame."""
    from renderer.backends.base import FrameAudio
    from renderer.backends.wav2lip.backend import audio_span, mel_for

    span = audio_span(24000, 25)
    rng = np.random.default_rng(0)
    n = round((span.history_s + 0.04 + span.lookahead_s) * 24000)
    audio = FrameAudio(
        samples=(rng.standard_normal(n) * 0.1).astype(np.float32),
        origin=9600,
        frame_start=9600 + round(span.history_s * 24000) // 960 * 960,
        end=None,
        sample_rate=24000,
        fps=25,
    )
    t0 = time.perf_counter()
    for _ in range(repeats):
        mel_for(audio)
    return {"mel_ms": (time.perf_counter() - t0) / repeats * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wav2lip_random.onnx"
        path.write_bytes(build_wav2lip_onnx(random_weights(seed=0)))
        engine = Wav2LipEngine(str(path), threads=args.threads, settings=NeuralSettings())
        try:
            rows = [measure(engine, b, args.seconds) for b in (1, 4, 16)]
        finally:
            engine.close()
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "provider": "CPUExecutionProvider",
        "model": "Wav2Lip 96x96, random weights, fp32",
        "results": rows,
        **frame_overhead_ms(),
    }
    for row in rows:
        print(f"batch {row['batch']:>3}: {row['fps']:6.1f} fps ({row['median_ms']:.1f} ms/batch)")
    print(f"mel window per frame: {report['mel_ms']:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
