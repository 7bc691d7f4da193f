"""Test support for the neural backend: models built at test time, and independent references.

Nothing here is downloaded: the Wav2Lip model is the exact architecture with random weights,
and the small "contract" models are real ONNX graphs with the contract's shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from renderer.backends.wav2lip.engine import Wav2LipEngine
from renderer.backends.wav2lip.graph import build_wav2lip_onnx, random_weights


# Imported by the test modules under these names; the tests ask for them by `name`.
@pytest.fixture(scope="session", name="wav2lip_model")
def wav2lip_model_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Wav2Lip (96 x 96) ONNX file, built once per test session."""
    path = tmp_path_factory.mktemp("wav2lip") / "wav2lip_random.onnx"
    path.write_bytes(build_wav2lip_onnx(random_weights(seed=1)))
    return path


@pytest.fixture(scope="session", name="wav2lip_engine")
def wav2lip_engine_fixture(wav2lip_model: Path) -> Iterator[Wav2LipEngine]:
    engine = Wav2LipEngine(str(wav2lip_model), threads=2)
    yield engine
    engine.close()


def contract_model(
    path: Path,
    *,
    mel: tuple[int | str, ...] = ("B", 1, 80, 16),
    face: tuple[int | str, ...] = ("B", 6, 96, 96),
    out: tuple[int | str, ...] | None = None,
    names: tuple[str, str, str] = ("audio_sequences", "face_sequences", "output"),
    extra_input: bool = False,
) -> Path:
    """A small real model with the given I/O shapes: output = face[:, 3:] * sigmoid(mean(mel)).

    Its output is the reference crop, dimmed by the mel's loudness: easy to predict in tests.
    """
    from onnx import TensorProto, helper

    mel_name, face_name, out_name = names
    out = out if out is not None else (face[0], 3, face[2], face[3])
    nodes = [
        helper.make_node("ReduceMean", [mel_name], ["level"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Sigmoid", ["level"], ["gain"]),
        helper.make_node("Slice", [face_name, "starts", "ends", "axes"], ["reference"]),
        helper.make_node("Mul", ["reference", "gain"], [out_name]),
    ]
    consts = [
        helper.make_tensor("starts", TensorProto.INT64, [1], [3]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [6]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    inputs = [
        helper.make_tensor_value_info(mel_name, TensorProto.FLOAT, list(mel)),
        helper.make_tensor_value_info(face_name, TensorProto.FLOAT, list(face)),
    ]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(
        nodes,
        "contract",
        inputs,
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(out))],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())
    return path


# -- an independent reference for Wav2Lip's mel (from the definitions, not renderer's own mel.py)


def _slaney_hz_to_mel(f: float) -> float:
    if f < 1000.0:
        return 3.0 * f / 200.0
    return 15.0 + 27.0 * np.log(f / 1000.0) / np.log(6.4)


def _slaney_mel_to_hz(m: float) -> float:
    if m < 15.0:
        return 200.0 * m / 3.0
    return 1000.0 * float(np.exp((m - 15.0) * np.log(6.4) / 27.0))


def reference_mel_basis(sr: int = 16000, n_fft: int = 800, n_mels: int = 80) -> np.ndarray:
    lo, hi = _slaney_hz_to_mel(55.0), _slaney_hz_to_mel(7600.0)
    points = [_slaney_mel_to_hz(lo + (hi - lo) * k / (n_mels + 1)) for k in range(n_mels + 2)]
    bins = [sr * k / n_fft for k in range(n_fft // 2 + 1)]
    basis = np.zeros((n_mels, len(bins)))
    for m in range(n_mels):
        left, centre, right = points[m], points[m + 1], points[m + 2]
        for k, f in enumerate(bins):
            if left < f < right:
                rise = (f - left) / (centre - left)
                fall = (right - f) / (right - centre)
                basis[m, k] = min(rise, fall) * 2.0 / (right - left)
    return basis


def reference_melspectrogram(wav: np.ndarray) -> np.ndarray:
    """Wav2Lip's audio.melspectrogram, from scipy and numpy primitives."""
    from scipy import signal

    y = signal.lfilter([1, -0.97], [1], np.asarray(wav, np.float64))
    padded = np.pad(y, 400, mode="reflect")
    window = signal.get_window("hann", 800, fftbins=True)
    count = 1 + (len(padded) - 800) // 200
    frames = np.stack([padded[j * 200 : j * 200 + 800] * window for j in range(count)], axis=1)
    spectrum = np.abs(np.fft.rfft(frames, axis=0))
    mel = reference_mel_basis() @ spectrum
    db = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    return np.clip(8 * ((db + 100) / 100) - 4, -4, 4)


def reference_chunks(mel: np.ndarray, frames: int, fps: int = 25) -> list[np.ndarray]:
    """Wav2Lip's inference loop over mel columns, one (80, 16) chunk per video frame."""
    chunks = []
    for i in range(frames):
        start = int(i * 80 / fps)
        if start + 16 > mel.shape[1]:
            start = max(mel.shape[1] - 16, 0)
        chunk = mel[:, start : start + 16]
        if chunk.shape[1] < 16:
            chunk = np.pad(chunk, ((0, 0), (0, 16 - chunk.shape[1])), constant_values=-4)
        chunks.append(chunk)
    return chunks


def speech_16k(speech: tuple[np.ndarray, int], seconds: float) -> np.ndarray:
    """The espeak fixture as float32 16 kHz, `seconds` long."""
    import soxr

    pcm, rate = speech
    audio = soxr.resample(pcm.astype(np.float32) / 32768, rate, 16000)
    return np.ascontiguousarray(audio[: int(seconds * 16000)], dtype=np.float32)
