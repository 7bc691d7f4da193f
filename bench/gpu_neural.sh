#!/usr/bin/env bash
# Wav2Lip sessions per GPU through the realtime path, one device call of under 8 minutes:
# N real StreamRenderers (one thread each, real speech at 25 fps) share one backend and its
# BatchLoop; per N: fps per session, p99 frame latency, mean batch size, and the largest N that
# holds 25 fps with p99 <= 40 ms (bench/neural_gpu.py says how, and which engine it picks).
# Results: $OUT/neural_gpu.json and $OUT/neural_gpu.md; with its notes added, that table becomes
# the dated gpu section of BENCHMARKS.md: python -m bench.report gpu "Title" FILE.
#
# The device image lacks soxr and MediaPipe. Before the call, in the repo root here:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 -d .whl soxr==1.1.0
#   PYTHONPATH=$PWD .venv/bin/python -m bench.neural_gpu --save-face .whl/face.npz
# then run `bash bench/gpu_neural.sh` there with .whl carried. Wheels in .whl/ (soxr; an
# onnxruntime-gpu and TensorRT's libraries if you have them small enough) are installed first.
# On CPU it runs too: BENCH_SECONDS=3 N_LIST=1,2,4 BENCH_MODEL=contract bash bench/gpu_neural.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-/tmp/neural-gpu}" PYTHONUNBUFFERED=1 BENCH_SECONDS="${BENCH_SECONDS:-8}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [[ -z "${FACE_ASSET:-}" && -f .whl/face.npz ]]; then
  export FACE_ASSET=.whl/face.npz
fi
timeout 450 "$PY" bench/neural_gpu.py 2>&1 | tee "$OUT/neural_gpu.log"
