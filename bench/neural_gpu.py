"""GPU capacity of the Wav2Lip-contract backend on one device (run by bench/gpu_neural.sh).

For each engine available: onnxruntime TensorRT EP (fp16, engine cache) and CUDA EP (IO binding)
through renderer.backends.wav2lip.engine.Wav2LipEngine; and, when this onnxruntime build has no
GPU provider, the same architecture in PyTorch on CUDA (fp16, labelled as a proxy). At batch 1,
16, 64 and 128 it measures the latency of whole batches (p50, p99) and the aggregate fps, then
how many 25 fps sessions fit with p99 batch latency <= 40 ms: floor(B / (25 * p99)) at the best
such B.

Importable on a bare GPU image: only numpy, onnx and onnxruntime (or torch) are needed, so the
renderer package's own __init__ (PyAV, OpenCV, MediaPipe) is bypassed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 16, 64, 128)
FRAME_BUDGET_S = 0.040
FPS = 25


def _bare_renderer() -> None:
    """Import the wav2lip modules without the package __init__ files above them (renderer,
    renderer.backends), whose imports (PyAV, MediaPipe, soxr) a bare GPU image lacks."""
    for name in ("renderer", "renderer.backends"):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(ROOT.joinpath(*name.split(".")))]
            sys.modules[name] = package
    sys.path.insert(0, str(ROOT))


def timed(run: Callable[[], object], seconds: float, sync: Callable[[], None]) -> list[float]:
    for _ in range(3):
        run()
    sync()
    times: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 20:
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
        if len(times) >= 400:
            break
    return times


def summarise(engine: str, batch: int, times: list[float]) -> dict[str, float | str]:
    p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
    fits = math.floor(batch / (FPS * p99)) if p99 <= FRAME_BUDGET_S else 0
    row = {
        "engine": engine,
        "batch": batch,
        "p50_ms": round(float(p50) * 1000, 2),
        "p99_ms": round(float(p99) * 1000, 2),
        "fps": round(batch / float(np.mean(times)), 1),
        "sessions_at_25fps": min(fits, batch * 1000),
        "runs": len(times),
    }
    print(json.dumps(row), flush=True)
    return row


def inputs(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(batch)
    mel = rng.uniform(-4, 4, (batch, 1, 80, 16)).astype(np.float32)
    face = rng.random((batch, 6, 96, 96), dtype=np.float32)
    return mel, face


def bench_onnxruntime(model: Path, provider: str, seconds: float) -> list[dict[str, float | str]]:
    from renderer.backends.wav2lip.batching import BatchPolicy
    from renderer.backends.wav2lip.engine import NeuralSettings, Wav2LipEngine

    cache = Path(tempfile.gettempdir()) / "atlas-trt-cache"
    settings = NeuralSettings(
        policy=BatchPolicy(max_batch=max(BATCHES), max_wait_s=0.0), trt_cache_dir=str(cache)
    )
    t0 = time.perf_counter()
    engine = Wav2LipEngine(str(model), providers=(provider,), threads=4, settings=settings)
    print(f"{provider}: session in {time.perf_counter() - t0:.1f} s, active {engine.provider}")
    rows = []
    try:
        if engine.provider != provider:
            print(f"{provider} did not initialise; skipped")
            return []
        for batch in BATCHES:
            mel, face = inputs(batch)
            name = f"ort-{provider.removesuffix('ExecutionProvider').lower()}"
            times = timed(lambda m=mel, f=face: engine.run_batch(m, f), seconds, lambda: None)
            rows.append(summarise(name, batch, times))
    finally:
        engine.close()
    return rows


def bench_torch(seconds: float) -> list[dict[str, float | str]]:
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.renderer.wav2lip_torch import randomised

    model = randomised(seed=0).cuda().half()
    rows = []
    with torch.inference_mode():
        for batch in BATCHES:
            mel, face = inputs(batch)
            m = torch.from_numpy(mel).cuda().half()
            f = torch.from_numpy(face).cuda().half()

            def run(m: torch.Tensor = m, f: torch.Tensor = f) -> object:
                # host -> device -> host, like a real frame: inputs in, pixels out
                return model(m, f).float().cpu()

            times = timed(run, seconds, torch.cuda.synchronize)
            rows.append(summarise("torch-cuda-fp16 (proxy)", batch, times))
    return rows


def main() -> None:
    _bare_renderer()
    out = Path(os.environ.get("OUT", tempfile.gettempdir()))
    seconds = float(os.environ.get("BENCH_SECONDS", "6"))
    import onnxruntime as ort

    providers = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__} providers: {providers}")
    from renderer.backends.wav2lip.graph import build_wav2lip_onnx, random_weights

    model = Path(tempfile.gettempdir()) / "wav2lip_random.onnx"
    model.write_bytes(build_wav2lip_onnx(random_weights(seed=0)))
    rows: list[dict[str, float | str]] = []
    for provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        if provider in providers:
            try:
                rows += bench_onnxruntime(model, provider, seconds)
            except Exception as exc:  # report and go on to the next engine
                print(f"{provider} failed: {exc}")
    if not rows:
        print("no onnxruntime GPU provider: measuring the same network in PyTorch (proxy)")
        try:
            rows += bench_torch(seconds)
        except Exception as exc:
            print(f"torch proxy failed: {exc}")
    best = max(rows, key=lambda r: float(r["sessions_at_25fps"]), default=None)
    report = {"date": time.strftime("%Y-%m-%d"), "providers": providers, "rows": rows, "best": best}
    (out / "neural_gpu.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"## Wav2Lip backend on GPU ({report['date']})",
        "",
        "| engine | batch | p50 ms | p99 ms | fps | 25 fps sessions (p99 <= 40 ms) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['engine']} | {r['batch']} | {r['p50_ms']} | {r['p99_ms']} | {r['fps']} "
        f"| {r['sessions_at_25fps']} |"
        for r in rows
    ]
    (out / "neural_gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if best:
        print(
            f"best: {best['sessions_at_25fps']} sessions ({best['engine']}, batch {best['batch']})"
        )


if __name__ == "__main__":
    main()
