#!/usr/bin/env bash
# GPU benchmark of the wav2lip backend, one call of under 8 minutes on a device machine:
# checks providers, measures p50/p99 batch latency and aggregate fps at batch 1/16/64/128
# (TensorRT fp16 and CUDA through onnxruntime-gpu when present, else PyTorch CUDA fp16 as a
# labelled proxy), and reports how many 25 fps sessions fit with p99 <= 40 ms.
# Results: $OUT/neural_gpu.json and $OUT/neural_gpu.md; with its notes added, that table becomes
# the dated gpu section of BENCHMARKS.md: python -m bench.report gpu "Title" FILE.
#
# onnxruntime-gpu wheels are larger than a device call may carry; if you have one (and
# TensorRT's libraries) in .whl/, they are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-/tmp/neural-gpu}" PYTHONUNBUFFERED=1 BENCH_SECONDS="${BENCH_SECONDS:-6}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
timeout 450 "$PY" bench/neural_gpu.py 2>&1 | tee "$OUT/neural_gpu.log"
