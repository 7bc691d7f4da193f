"""Wav2Lip sessions per device through the realtime path (run by bench/gpu_neural.sh).

For each N in N_LIST: N real StreamRenderers, one thread each (a session's render thread in a
worker that hosts many sessions), share ONE Wav2LipBackend and so one BatchLoop. Each is fed the
speech fixture in 40 ms chunks on a 25 fps clock (its own phase, as sessions start at random
times) and renders every frame through the model. Per N it reports the achieved fps per session
(the slowest session's), the p99 frame latency (from a frame's due time to its image), the late
frames (> 40 ms) and the mean batch size the loop ran; then the largest N that holds 25 fps with
p99 <= 40 ms.

The model runs on onnxruntime's TensorRT or CUDA provider when this onnxruntime has one; else,
on a CUDA machine, the same architecture in PyTorch fp16 behind the same BatchLoop (labelled
"torch proxy"); else on onnxruntime's CPU provider.

Environment: N_LIST (default 1,8,16,32,64,96,128 on a GPU, 1,2,4 on CPU), BENCH_SECONDS (8),
BENCH_MODEL (wav2lip: the exact architecture with random weights; contract: a tiny model with
the contract's shapes, to measure everything around the model), PHASE (random | aligned),
MAX_WAIT_MS (the loop's batching wait, default the renderer's), FACE_ASSET (a FaceAsset blob,
for machines without MediaPipe; `python -m bench.neural_gpu --save-face PATH` writes one),
BARE_BATCHES (model-only batch timings as a secondary line; default 1,16,64 on a GPU, none on
CPU), OUT (where neural_gpu.json and neural_gpu.md go).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from renderer import FaceAsset, RendererOptions, StreamRenderer  # noqa: E402
from renderer.backends.wav2lip.backend import Wav2LipBackend  # noqa: E402
from renderer.backends.wav2lip.batching import BatchLoop, BatchPolicy, BatchStats  # noqa: E402
from renderer.backends.wav2lip.engine import (  # noqa: E402
    FrameRequest,
    NeuralSettings,
    Wav2LipEngine,
)

FPS = 25
FRAME_BUDGET_S = 1.0 / FPS
HOLDS_FPS = 24.5  # every session at least this many frames a second
WARMUP_S = 1.0
FIXTURES = ROOT / "tests" / "fixtures"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


# -- the model behind the loop ----------------------------------------------------------------


class TorchEngine:
    """The Wav2Lip architecture in PyTorch fp16 on CUDA behind the renderer's own BatchLoop: what
    Wav2LipBackend needs of an engine (face_size, provider, infer, loop), for GPU machines whose
    onnxruntime has no GPU provider. A proxy for the ONNX model's speed, labelled as such."""

    face_size = 96
    provider = "torch-cuda-fp16 (proxy)"

    def __init__(self, policy: BatchPolicy) -> None:
        import torch

        from tests.renderer.wav2lip_torch import randomised

        self._torch = torch
        self._model = randomised(seed=0).cuda().half().eval()
        self.loop: BatchLoop[FrameRequest, np.ndarray] = BatchLoop(
            self._run_requests, policy=policy, name="wav2lip-torch"
        )

    def infer(self, mel: np.ndarray, face: np.ndarray) -> np.ndarray:
        return self.loop.run(FrameRequest(mel, face))

    def run_batch(self, mels: np.ndarray, faces: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            m = torch.from_numpy(np.ascontiguousarray(mels)).cuda().half()
            f = torch.from_numpy(np.ascontiguousarray(faces)).cuda().half()
            out: np.ndarray = self._model(m, f).float().cpu().numpy()
        return out

    def close(self) -> None:
        self.loop.close()

    def _run_requests(self, requests: Sequence[FrameRequest]) -> list[np.ndarray]:
        mels = np.stack([r.mel for r in requests])[:, None]
        faces = np.stack([r.face for r in requests])
        return list(self.run_batch(mels, faces))


def build_model(kind: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"atlas-bench-{kind}.onnx"
    if kind == "contract":
        from tests.renderer.wav2lip_support import contract_model

        return contract_model(path)
    from renderer.backends.wav2lip.graph import build_wav2lip_onnx, random_weights

    path.write_bytes(build_wav2lip_onnx(random_weights(seed=0)))
    return path


def torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def open_engine(kind: str, policy: BatchPolicy) -> Any:
    """The best engine here: ORT on a GPU provider, else the torch proxy on CUDA, else ORT CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    gpu = [p for p in GPU_PROVIDERS if p in available]
    if not gpu and kind == "wav2lip" and torch_cuda():
        return TorchEngine(policy)
    settings = NeuralSettings(
        policy=policy, trt_cache_dir=str(Path(tempfile.gettempdir()) / "atlas-trt-cache")
    )
    threads = 1 if gpu else max(1, (os.cpu_count() or 2) // 2)
    started = time.perf_counter()
    engine = Wav2LipEngine(
        str(build_model(kind)), providers=gpu or None, threads=threads, settings=settings
    )
    print(f"engine {engine.provider} ready in {time.perf_counter() - started:.1f} s", flush=True)
    return engine


# -- inputs -----------------------------------------------------------------------------------


def load_face() -> FaceAsset:
    blob = os.environ.get("FACE_ASSET")
    if blob and Path(blob).is_file():
        return FaceAsset.from_bytes(Path(blob).read_bytes())
    return FaceAsset.prepare((FIXTURES / "face.jpg").read_bytes())


def load_speech() -> tuple[np.ndarray, int]:
    with wave.open(str(FIXTURES / "speech.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).copy(), w.getframerate()


# -- sessions ---------------------------------------------------------------------------------


@dataclass(slots=True)
class SessionResult:
    latencies: list[float] = field(default_factory=list)  # due -> image, frames in the window
    frames: int = 0  # frames finished inside the measured window
    speech_frames: int = 0
    error: str | None = None


def run_session(
    renderer: StreamRenderer,
    pcm: np.ndarray,
    rate: int,
    start: float,
    window: tuple[float, float],
    result: SessionResult,
) -> None:
    """A render thread on a 25 fps clock: at each tick 40 ms more audio arrives, then the frame
    is rendered; a late frame is rendered at once (the clock does not wait for it)."""
    chunk = rate // FPS
    position = 0

    def feed(samples: int) -> None:
        nonlocal position
        while samples > 0:
            piece = pcm[position : position + samples]
            renderer.push_audio(piece, sample_rate=rate)
            samples -= piece.size
            position = (position + piece.size) % pcm.size

    feed(round(renderer.lookahead_s * rate) + chunk)  # what a frame needs before it can render
    tick = 0
    while True:
        due = start + tick / FPS
        if due >= window[1]:
            return
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        feed(chunk)
        frame = renderer.next_frame()
        done = time.perf_counter()
        if window[0] <= done <= window[1]:  # throughput: what finished inside the window
            result.frames += 1
            result.latencies.append(done - due)
            result.speech_frames += frame.audio is not None
        tick += 1


def measure(
    backend: Wav2LipBackend,
    loop: BatchLoop[Any, Any],
    face: FaceAsset,
    speech: tuple[np.ndarray, int],
    sessions: int,
    seconds: float,
    phase: str,
) -> dict[str, Any]:
    pcm, rate = speech
    rng = np.random.default_rng(sessions)
    options = RendererOptions(backend="wav2lip")
    renderers = [
        StreamRenderer(face=face, options=options, backend=backend) for _ in range(sessions)
    ]
    results = [SessionResult() for _ in range(sessions)]
    begin = time.perf_counter() + 0.2
    window = (begin + WARMUP_S, begin + WARMUP_S + seconds)
    offsets = rng.uniform(0, FRAME_BUDGET_S, sessions) if phase == "random" else [0.0] * sessions
    before: list[BatchStats] = []
    threads = []

    def session(i: int) -> None:
        try:
            # each session speaks from its own place in the fixture
            shift = round(i * 0.37 * rate) % pcm.size
            audio = np.concatenate([pcm[shift:], pcm[:shift]])
            run_session(renderers[i], audio, rate, begin + offsets[i], window, results[i])
        except Exception as exc:  # reported in the row, not lost with the thread
            results[i].error = repr(exc)

    def snapshot_at_window_start() -> None:
        time.sleep(max(0.0, window[0] - time.perf_counter()))
        before.append(loop.stats())

    for i in range(sessions):
        threads.append(threading.Thread(target=session, args=(i,), daemon=True))
    threads.append(threading.Thread(target=snapshot_at_window_start, daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batches = loop.stats().since(before[0])
    for renderer in renderers:
        renderer.close()
    latencies = np.array([x for r in results for x in r.latencies] or [float("inf")])
    fps = [r.frames / seconds for r in results]

    def ms(q: float) -> float | None:  # None: no frame finished in the window
        value = float(np.percentile(latencies, q))
        return round(value * 1000, 1) if np.isfinite(value) else None

    row = {
        "sessions": sessions,
        "fps_min": round(min(fps), 2),
        "fps_mean": round(float(np.mean(fps)), 2),
        "p50_ms": ms(50),
        "p99_ms": ms(99),
        "late_pct": round(float(np.mean(latencies > FRAME_BUDGET_S)) * 100, 2),
        "speech_pct": round(
            100 * sum(r.speech_frames for r in results) / max(1, sum(r.frames for r in results)), 1
        ),
        "mean_batch": round(batches.mean_size, 2),
        "median_batch": batches.size_quantile(0.5),
        "max_batch": max(batches.sizes, default=0),
        "model_ms_per_batch": round(1000 * batches.run_s / max(1, batches.batches), 2),
        "errors": sorted({r.error for r in results if r.error}),
    }
    p99 = row["p99_ms"]
    row["holds"] = bool(
        not row["errors"]
        and row["fps_min"] >= HOLDS_FPS
        and p99 is not None
        and p99 <= FRAME_BUDGET_S * 1000
    )
    print(json.dumps(row), flush=True)
    return row


# -- the secondary line: model batches alone --------------------------------------------------


def bare_batches(engine: Any, batches: Sequence[int], seconds: float) -> list[dict[str, Any]]:
    rows = []
    size = engine.face_size
    for batch in batches:
        rng = np.random.default_rng(batch)
        mels = rng.uniform(-4, 4, (batch, 1, 80, 16)).astype(np.float32)
        faces = rng.random((batch, 6, size, size), dtype=np.float32)
        engine.run_batch(mels, faces)
        times: list[float] = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds or len(times) < 5:
            t0 = time.perf_counter()
            engine.run_batch(mels, faces)
            times.append(time.perf_counter() - t0)
        p99 = float(np.percentile(times, 99))
        rows.append(
            {
                "batch": batch,
                "p50_ms": round(float(np.percentile(times, 50)) * 1000, 2),
                "p99_ms": round(p99 * 1000, 2),
                "fps": round(batch / float(np.mean(times)), 1),
            }
        )
        print(json.dumps({"bare": rows[-1]}), flush=True)
    return rows


# -- main -------------------------------------------------------------------------------------


def env_ints(name: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(name, default).split(",") if x.strip()]


def markdown(report: dict[str, Any]) -> str:
    """The body of BENCHMARKS.md's gpu section (bench.report adds the dated heading)."""
    lines = [
        f"Wav2Lip sessions through the realtime path on {report['engine']} "
        f"({report['cpus']} CPUs, measured {report['date']}): {report['model']}; one backend and "
        f"BatchLoop shared by N StreamRenderers, one thread each, real speech at 25 fps, "
        f"{report['phase']} phases, loop wait {report['max_wait_ms']:g} ms, "
        f"{report['seconds']:g} s measured per N.",
        "",
        "| sessions | fps (min / mean) | p50 ms | p99 ms | late % | mean batch | "
        "model ms / batch | holds 25 fps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['sessions']} | {r['fps_min']} / {r['fps_mean']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['late_pct']} | {r['mean_batch']} | {r['model_ms_per_batch']} | "
            f"{'yes' if r['holds'] else 'no'} |"
        )
    lines += ["", f"Largest N holding 25 fps with p99 <= 40 ms: {report['max_sessions']}"]
    if report["bare"]:
        bare = ", ".join(
            f"batch {b['batch']}: {b['fps']} fps (p99 {b['p99_ms']} ms)" for b in report["bare"]
        )
        lines += ["", f"Secondary, model batches alone (no sessions): {bare}."]
    return "\n".join(lines) + "\n"


def prewarm(engine: Any, max_batch: int, budget_s: float) -> None:
    """Run every batch size once, so per-shape setup (cuDNN's algorithm search, kernel loads)
    happens here and not inside a measured window."""
    started = time.perf_counter()
    size = engine.face_size
    for batch in range(1, max_batch + 1):
        if time.perf_counter() - started > budget_s:
            print(f"prewarm stopped at batch {batch} (budget)", flush=True)
            break
        mels = np.zeros((batch, 1, 80, 16), np.float32)
        engine.run_batch(mels, np.zeros((batch, 6, size, size), np.float32))
    print(f"prewarm {time.perf_counter() - started:.1f} s", flush=True)


def write_report(out: Path, report: dict[str, Any]) -> str:
    """Written after each N, so a run cut short still leaves what it measured."""
    rows = report["rows"]
    report["max_sessions"] = max((r["sessions"] for r in rows if r["holds"]), default=0)
    (out / "neural_gpu.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (out / "neural_gpu.md").write_text(text)
    return text


def main(argv: Sequence[str]) -> None:
    if len(argv) == 2 and argv[0] == "--save-face":
        Path(argv[1]).write_bytes(load_face().to_bytes())
        return
    started = time.perf_counter()
    import onnxruntime as ort

    gpu = any(p in ort.get_available_providers() for p in GPU_PROVIDERS) or torch_cuda()
    sessions = env_ints("N_LIST", "1,8,16,32,64,96,128" if gpu else "1,2,4")
    seconds = float(os.environ.get("BENCH_SECONDS", "8"))
    budget = float(os.environ.get("BENCH_BUDGET_S", "400"))  # gpu_neural.sh kills at 450 s
    kind = os.environ.get("BENCH_MODEL", "wav2lip")
    phase = os.environ.get("PHASE", "random")
    wait_ms = os.environ.get("MAX_WAIT_MS")
    policy = BatchPolicy(
        max_batch=max(sessions),
        max_wait_s=float(wait_ms) / 1000 if wait_ms else BatchPolicy().max_wait_s,
    )
    out = Path(os.environ.get("OUT", tempfile.gettempdir()))
    out.mkdir(parents=True, exist_ok=True)
    print(f"onnxruntime {ort.__version__} providers {ort.get_available_providers()}", flush=True)
    engine = open_engine(kind, policy)
    if gpu:
        prewarm(engine, policy.max_batch, budget / 4)
    backend = Wav2LipBackend(options=RendererOptions(backend="wav2lip"), engine=engine)
    face, speech = load_face(), load_speech()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "engine": engine.provider,
        "model": "Wav2Lip 96x96, random weights"
        if kind == "wav2lip"
        else "contract model (tiny: measures all but the model)",
        "phase": phase,
        "seconds": seconds,
        "max_wait_ms": policy.max_wait_s * 1000,
        "cpus": os.cpu_count(),
        "rows": [],
        "bare": [],
    }
    try:
        for n in sessions:
            if time.perf_counter() - started + seconds + WARMUP_S + 10 > budget:
                print(f"stopping before N={n}: time budget", flush=True)
                break
            row = measure(backend, engine.loop, face, speech, n, seconds, phase)
            report["rows"].append(row)
            write_report(out, report)
            if row["fps_mean"] < 0.8 * HOLDS_FPS:  # far past capacity: larger N tell nothing
                break
        bare_list = env_ints("BARE_BATCHES", "1,16,64" if gpu else "")
        if time.perf_counter() - started + 3 * len(bare_list) < budget:
            report["bare"] = bare_batches(engine, bare_list, 1.5)
    finally:
        backend.close()
        engine.close()
    print(write_report(out, report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
