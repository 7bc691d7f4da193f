"""Wav2Lip-contract ONNX models: contract checks, providers, IO binding and the shared engine.

The contract (any exporter, any input names): two inputs, a mel window (B, 1, 80, 16) and a face
pair (B, 6, S, S) (masked crop + reference crop, BGR / 255), and one output (B, 3, S, S) in
[0, 1], with S = 96 (Wav2Lip) or 256 (the 256 variant). B may be dynamic or fixed.

One `Wav2LipEngine` per model and process: every backend (one per stream) that opens the same
model shares its session and its batching loop, so frames of all streams run in one call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from renderer.backends.wav2lip.batching import BatchLoop, BatchPolicy
from renderer.errors import ModelError
from renderer.onnx import GPU_PROVIDERS, PREFERRED_PROVIDERS

logger = logging.getLogger("renderer")

FACE_SIZES = (96, 256)
MEL_SHAPE = (1, 80, 16)
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
Dim = int | str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorInfo:
    name: str
    shape: tuple[Dim, ...]
    type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelContract:
    mel_input: str
    face_input: str
    output: str
    face_size: int
    batch: int | None  # a fixed batch size, or None when dynamic
    input_dtype: Any  # np.float32 or np.float16

    def face_shape(self, batch: int | str = "B") -> tuple[int | str, ...]:
        return (batch, 6, self.face_size, self.face_size)


def _describe(tensors: Sequence[TensorInfo]) -> str:
    def dim(d: Dim) -> str:
        return str(d) if isinstance(d, int) else (d or "?")

    return ", ".join(f"{t.name} ({','.join(dim(d) for d in t.shape)}) {t.type}" for t in tensors)


def validate_contract(inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo]) -> ModelContract:
    """The model's roles by shape, or a ModelError that names what was expected and found."""
    expected = (
        "expected inputs mel (B,1,80,16) and face (B,6,96,96) [or (B,6,256,256)] and an output "
        "(B,3,96,96) [or (B,3,256,256)]"
    )
    found = f"the model has inputs {_describe(inputs)} and outputs {_describe(outputs)}"

    def fail(why: str) -> ModelError:
        return ModelError(f"not a Wav2Lip-contract model: {why}; {expected}; {found}")

    if len(inputs) != 2 or not outputs:
        raise fail(f"{len(inputs)} inputs and {len(outputs)} outputs")
    mel = [t for t in inputs if len(t.shape) == 4 and tuple(t.shape[1:]) == MEL_SHAPE]
    face = [t for t in inputs if len(t.shape) == 4 and t.shape[1] == 6]
    if len(mel) != 1 or len(face) != 1 or mel[0] is face[0]:
        raise fail("no (B,1,80,16) mel input and (B,6,S,S) face input")
    size = face[0].shape[2]
    if size not in FACE_SIZES or face[0].shape[3] != size:
        raise fail(f"the face input is not square 96 or 256 (got {face[0].shape[2:]})")
    out = outputs[0]
    if len(out.shape) != 4 or tuple(out.shape[1:]) != (3, size, size):
        raise fail(f"the output is not (B,3,{size},{size})")
    for t in (*inputs, out):
        if t.type not in _FLOAT_TYPES:
            raise fail(f"{t.name} has element type {t.type}, not float or float16")
    if mel[0].type != face[0].type:
        raise fail("the mel and face inputs have different element types")
    batches = {t.shape[0] for t in (mel[0], face[0], out)}
    fixed = {b for b in batches if isinstance(b, int)}
    if len(fixed) > 1 or (fixed and min(fixed) < 1):
        raise fail(f"inconsistent batch dimensions {sorted(fixed)}")
    assert isinstance(size, int)
    return ModelContract(
        mel_input=mel[0].name,
        face_input=face[0].name,
        output=out.name,
        face_size=size,
        batch=next(iter(fixed)) if fixed else None,
        input_dtype=_FLOAT_TYPES[mel[0].type],
    )


def session_contract(session: Any) -> ModelContract:
    def infos(args: Sequence[Any]) -> list[TensorInfo]:
        return [TensorInfo(name=a.name, shape=tuple(a.shape), type=a.type) for a in args]

    return validate_contract(infos(session.get_inputs()), infos(session.get_outputs()))


# -- providers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NeuralSettings:
    """Execution settings for neural backends; `from_env` reads ATLAS_WAV2LIP_* / ATLAS_TRT_*."""

    policy: BatchPolicy = field(default_factory=BatchPolicy)
    trt_cache_dir: str | None = None  # TensorRT engines are built once and cached here
    trt_fp16: bool = True
    io_binding: bool | None = None  # None: on GPU providers only

    @classmethod
    def from_env(cls) -> NeuralSettings:
        from renderer.settings import NeuralEnvironment

        env = NeuralEnvironment()
        return cls(
            policy=BatchPolicy(
                max_batch=env.wav2lip_max_batch, max_wait_s=env.wav2lip_max_wait_ms / 1000
            ),
            trt_cache_dir=env.trt_cache_dir or str(env.data_dir / "trt-cache"),
            trt_fp16=env.trt_fp16,
        )


def provider_plan(
    requested: Sequence[str] | None,
    available: Sequence[str],
    *,
    contract_inputs: tuple[str, str] | None = None,
    face_size: int = 96,
    max_batch: int = 32,
    settings: NeuralSettings | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """Providers to ask for, best first, each with its options; CPU always closes the list.

    TensorRT gets fp16, an engine cache and (for a dynamic batch) one optimisation profile from
    1 to max_batch, so engines are not rebuilt when the batch size changes. CUDA gets cuDNN's
    exhaustive algorithm search and its largest workspace.
    """
    settings = settings or NeuralSettings()
    wanted = [p for p in (requested or PREFERRED_PROVIDERS) if p in set(available)]
    if "CPUExecutionProvider" not in wanted:
        wanted.append("CPUExecutionProvider")
    plan: list[tuple[str, dict[str, str]]] = []
    for name in wanted:
        options: dict[str, str] = {}
        if name == "TensorrtExecutionProvider":
            options["trt_fp16_enable"] = "True" if settings.trt_fp16 else "False"
            if settings.trt_cache_dir:
                options |= {
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": settings.trt_cache_dir,
                    "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": settings.trt_cache_dir,
                }
            if contract_inputs is not None:
                options |= _trt_profiles(contract_inputs, face_size, max_batch)
        elif name == "CUDAExecutionProvider":
            options = {"cudnn_conv_algo_search": "EXHAUSTIVE", "cudnn_conv_use_max_workspace": "1"}
        plan.append((name, options))
    return plan


def _trt_profiles(inputs: tuple[str, str], face_size: int, max_batch: int) -> dict[str, str]:
    mel, face = inputs

    def shapes(batch: int) -> str:
        return f"{mel}:{batch}x1x80x16,{face}:{batch}x6x{face_size}x{face_size}"

    return {
        "trt_profile_min_shapes": shapes(1),
        "trt_profile_opt_shapes": shapes(max_batch),
        "trt_profile_max_shapes": shapes(max_batch),
    }


def open_session(
    model_path: str,
    *,
    providers: Sequence[str] | None,
    threads: int,
    settings: NeuralSettings,
) -> tuple[Any, ModelContract, str]:
    """Session, contract and active provider. The contract is read on a CPU session first, so a
    wrong file fails fast and clearly, before any TensorRT engine is built for it."""
    import onnxruntime as ort

    if not Path(model_path).is_file():
        raise ModelError(f"model file not found: {model_path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        probe = ort.InferenceSession(
            model_path, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(f"could not load the model {model_path}: {exc}") from exc
    contract = session_contract(probe)
    plan = provider_plan(
        providers,
        ort.get_available_providers(),
        contract_inputs=(contract.mel_input, contract.face_input),
        face_size=contract.face_size,
        max_batch=contract.batch or settings.policy.max_batch,
        settings=settings,
    )
    if plan[0][0] == "CPUExecutionProvider":
        session = probe
    else:
        if settings.trt_cache_dir and plan[0][0] == "TensorrtExecutionProvider":
            Path(settings.trt_cache_dir).mkdir(parents=True, exist_ok=True)
        # onnxruntime itself falls back to the next provider when one fails to initialise
        session = ort.InferenceSession(
            model_path,
            sess_options=options,
            providers=[name for name, _ in plan],
            provider_options=[opts for _, opts in plan],
        )
    active = str(session.get_providers()[0])
    if active != plan[0][0]:
        logger.warning("provider fell back", extra={"wanted": plan[0][0], "provider": active})
    logger.info(
        "wav2lip model ready",
        extra={"provider": active, "face_size": contract.face_size, "batch": contract.batch},
    )
    return session, contract, active


# -- the engine -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class FrameRequest:
    mel: np.ndarray  # (80, 16) float32
    face: np.ndarray  # (6, S, S) float32


class Wav2LipEngine:
    """A session plus its batching loop; `infer` is safe to call from any number of threads."""

    def __init__(
        self,
        model_path: str,
        *,
        providers: Sequence[str] | None = None,
        threads: int = 1,
        settings: NeuralSettings | None = None,
    ) -> None:
        self.settings = settings or NeuralSettings()
        self.model_path = model_path
        self._session, self.contract, self.provider = open_session(
            model_path, providers=providers, threads=threads, settings=self.settings
        )
        binding = self.settings.io_binding
        self.io_binding = self.provider in GPU_PROVIDERS if binding is None else binding
        self._device = "cuda" if self.provider in GPU_PROVIDERS else "cpu"
        policy = self.settings.policy
        if self.contract.batch is not None:
            policy = BatchPolicy(max_batch=self.contract.batch, max_wait_s=policy.max_wait_s)
        self._loop: BatchLoop[FrameRequest, np.ndarray] = BatchLoop(
            self._run_requests, policy=policy, name="wav2lip"
        )

    @property
    def face_size(self) -> int:
        return self.contract.face_size

    @property
    def loop(self) -> BatchLoop[FrameRequest, np.ndarray]:
        return self._loop

    def infer(self, mel: np.ndarray, face: np.ndarray) -> np.ndarray:
        """One frame, batched with whatever other streams submit meanwhile: (3, S, S) in [0, 1]."""
        return self._loop.run(FrameRequest(mel, face))

    def run_batch(self, mels: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(B,1,80,16) + (B,6,S,S) -> (B,3,S,S) float32, straight through the session."""
        fixed = self.contract.batch
        if fixed is None or len(mels) == fixed:
            return self._run(mels, faces)
        outs = []
        for start in range(0, len(mels), fixed):
            mel, face = mels[start : start + fixed], faces[start : start + fixed]
            short = fixed - len(mel)
            if short:  # pad a fixed-batch model's last call with copies, dropped after
                mel = np.concatenate([mel, np.repeat(mel[-1:], short, axis=0)])
                face = np.concatenate([face, np.repeat(face[-1:], short, axis=0)])
            outs.append(self._run(mel, face)[: fixed - short])
        return np.concatenate(outs)

    def close(self) -> None:
        self._loop.close()
        self._session = None

    def _run_requests(self, requests: Sequence[FrameRequest]) -> list[np.ndarray]:
        mels = np.stack([r.mel for r in requests])[:, None]
        faces = np.stack([r.face for r in requests])
        return list(self.run_batch(mels, faces))

    def _run(self, mels: np.ndarray, faces: np.ndarray) -> np.ndarray:
        dtype = self.contract.input_dtype
        mels = np.ascontiguousarray(mels, dtype=dtype)
        faces = np.ascontiguousarray(faces, dtype=dtype)
        session = self._session
        if session is None:
            raise ModelError("the wav2lip engine is closed")
        if self.io_binding:
            binding = session.io_binding()
            binding.bind_cpu_input(self.contract.mel_input, mels)
            binding.bind_cpu_input(self.contract.face_input, faces)
            binding.bind_output(self.contract.output, self._device)
            session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
        else:
            out = session.run(
                [self.contract.output],
                {self.contract.mel_input: mels, self.contract.face_input: faces},
            )[0]
        return np.asarray(out, dtype=np.float32)


# -- one engine per model and process -------------------------------------------------------

_EngineKey = tuple[str, tuple[str, ...] | None, int, NeuralSettings]
_engines: dict[_EngineKey, tuple[Wav2LipEngine, int]] = {}
_engines_lock = threading.Lock()


def acquire_engine(
    model_path: str,
    *,
    providers: Sequence[str] | None = None,
    threads: int = 1,
    settings: NeuralSettings | None = None,
) -> Wav2LipEngine:
    """The process's engine for this model (built on first use); pair with release_engine."""
    settings = settings or NeuralSettings()
    key: _EngineKey = (
        str(Path(model_path).resolve()),
        tuple(providers) if providers else None,
        threads,
        settings,
    )
    with _engines_lock:
        engine, users = _engines.get(key, (None, 0))
        if engine is None:
            engine = Wav2LipEngine(
                model_path, providers=providers, threads=threads, settings=settings
            )
        _engines[key] = (engine, users + 1)
        return engine


def release_engine(engine: Wav2LipEngine) -> None:
    """Drop one user; the last one closes the engine (its thread and session)."""
    with _engines_lock:
        for key, (held, users) in list(_engines.items()):
            if held is engine:
                if users > 1:
                    _engines[key] = (held, users - 1)
                    return
                del _engines[key]
                break
    engine.close()


def shared_engines() -> int:
    """How many engines this process holds (for tests and health checks)."""
    with _engines_lock:
        return len(_engines)
