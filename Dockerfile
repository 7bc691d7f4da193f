# syntax=docker/dockerfile:1.7
#
# Two images from one file; both run `atlas` as a non-root user.
#
#   docker build --target cpu -t atlas-avatars:0.1.0 .      # API, offline workers, CPU agent
#   docker build --target gpu -t atlas-avatars-gpu:0.1.0 .  # agent/workers on NVIDIA GPUs
#
# The builder stages resolve wheels only (no compiler anywhere); the final stages copy the
# finished virtual environment and add the two system libraries OpenCV/MediaPipe load (libGL,
# GLib). The GPU image swaps onnxruntime for onnxruntime-gpu and adds TensorRT's runtime
# libraries from PyPI wheels, on a CUDA + cuDNN runtime base.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.26

FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------------------------------------
# Build the CPU virtual environment on the same Python the final image runs.
FROM ${PYTHON_IMAGE} AS cpu-build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    VIRTUAL_ENV=/opt/venv
WORKDIR /src
RUN uv venv /opt/venv --python /usr/local/bin/python3.11
# Dependencies first (a layer that survives source edits), then the project itself.
COPY pyproject.toml README.md ./
RUN uv pip install -r pyproject.toml
COPY atlas ./atlas
COPY renderer ./renderer
COPY agent ./agent
COPY session_api ./session_api
RUN uv pip install --no-deps . && /opt/venv/bin/atlas --help >/dev/null

# ---------------------------------------------------------------------------------------------
# Build the GPU virtual environment. The CUDA base has no Python 3.11, so uv installs a
# standalone CPython into /opt/python, which the final stage copies along with the venv.
FROM ${CUDA_IMAGE} AS gpu-build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    VIRTUAL_ENV=/opt/venv
ARG PYTHON_VERSION=3.11.11
# onnxruntime-gpu 1.22 is built against CUDA 12.x + cuDNN 9 and TensorRT 10.9.
ARG ONNXRUNTIME_GPU_VERSION=1.22.0
ARG TENSORRT_VERSION=10.9.0.34
WORKDIR /src
RUN uv python install "${PYTHON_VERSION}" \
    && uv venv /opt/venv --python "${PYTHON_VERSION}"
COPY pyproject.toml README.md ./
RUN uv pip install -r pyproject.toml \
    # Both wheels write onnxruntime/: remove the CPU build before adding the GPU one.
    && uv pip uninstall onnxruntime \
    && uv pip install "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
        "tensorrt-cu12-libs==${TENSORRT_VERSION}"
COPY atlas ./atlas
COPY renderer ./renderer
COPY agent ./agent
COPY session_api ./session_api
RUN uv pip install --no-deps . && /opt/venv/bin/atlas --help >/dev/null

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
# hadolint ignore=DL3008
RUN apt-get update \
    # libGL and GLib: loaded by opencv-contrib-python, which mediapipe requires. The versions
    # follow the pinned base image's Debian release (pinning them breaks on Debian point releases).
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 atlas \
    && useradd --system --uid 10001 --gid atlas --create-home --home-dir /home/atlas atlas \
    && install -d -o atlas -g atlas /var/lib/atlas
COPY --from=cpu-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ATLAS_DATA_DIR=/var/lib/atlas
WORKDIR /var/lib/atlas
USER 10001:10001
# 8000: `atlas serve`; 8081: the agent worker's health endpoint (livekit-agents, `start` mode).
EXPOSE 8000 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/health', timeout=4)"]
ENTRYPOINT ["atlas"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
# hadolint ignore=DL3008
RUN apt-get update \
    # libGL and GLib for OpenCV/MediaPipe, CA certificates for HTTPS face URLs and providers;
    # versions follow the pinned base image's Ubuntu release.
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 atlas \
    && useradd --system --uid 10001 --gid atlas --create-home --home-dir /home/atlas atlas \
    && install -d -o atlas -g atlas /var/lib/atlas
COPY --from=gpu-build /opt/python /opt/python
COPY --from=gpu-build /opt/venv /opt/venv
# TensorRT's libraries come from the tensorrt-cu12-libs wheel; onnxruntime's TensorRT provider
# loads libnvinfer from the library path.
ENV PATH=/opt/venv/bin:$PATH \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/tensorrt_libs:${LD_LIBRARY_PATH} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ATLAS_DATA_DIR=/var/lib/atlas \
    ATLAS_RENDERER_PROVIDERS=TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider
WORKDIR /var/lib/atlas
USER 10001:10001
EXPOSE 8000 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/health', timeout=4)"]
ENTRYPOINT ["atlas"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
