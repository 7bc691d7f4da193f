"""ONNX Runtime sessions with the best available provider: TensorRT > CUDA > CPU."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("renderer")

PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
GPU_PROVIDERS = frozenset(PREFERRED_PROVIDERS[:2])


def select_providers(requested: tuple[str, ...] | None = None) -> list[str]:
    """Requested (or preferred) providers that this onnxruntime build actually has, CPU last."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wanted = requested or PREFERRED_PROVIDERS
    chosen = [p for p in wanted if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def gpu_available(requested: tuple[str, ...] | None = None) -> bool:
    return any(p in GPU_PROVIDERS for p in select_providers(requested))


def new_inference_session(
    model: bytes | str,
    *,
    providers: tuple[str, ...] | None = None,
    threads: int = 1,
    trt_cache_dir: str | None = None,
) -> tuple[Any, str]:
    """An InferenceSession and the provider that will run it (reported, never guessed)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    chosen = select_providers(providers)
    provider_options: list[dict[str, str]] = []
    for name in chosen:
        if name == "TensorrtExecutionProvider":
            trt: dict[str, str] = {"trt_fp16_enable": "True"}
            if trt_cache_dir:
                trt |= {"trt_engine_cache_enable": "True", "trt_engine_cache_path": trt_cache_dir}
            provider_options.append(trt)
        else:
            provider_options.append({})
    session = ort.InferenceSession(
        model, sess_options=options, providers=chosen, provider_options=provider_options
    )
    active = session.get_providers()[0]
    logger.info("onnxruntime session ready", extra={"provider": active, "providers": chosen})
    return session, active
