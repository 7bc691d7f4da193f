"""`atlas model convert`: a PyTorch checkpoint in, a contract-checked ONNX file out, no torch.

The checkpoint is the full Wav2Lip generator with the weights `random_weights(seed=3)`, written
in torch's formats by tests/renderer/torch_checkpoint.py. What the ONNX file must compute is
PyTorch's own output for those weights (tests/fixtures/torch/wav2lip_seed3.npz, written by real
torch from the layer-by-layer model in tests/renderer/wav2lip_torch.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from atlas.cli import main
from renderer.backends.wav2lip.engine import session_contract
from renderer.backends.wav2lip.graph import random_weights
from tests.renderer.test_torch_checkpoint import FIXTURES, fixture_module
from tests.renderer.torch_checkpoint import save_checkpoint


def published_style(weights: dict[str, np.ndarray]) -> dict[str, object]:
    """As Wav2Lip's training script saved it: DataParallel names, BatchNorm counters, extras."""
    state: dict[str, np.ndarray] = {}
    for key, value in weights.items():
        state[f"module.{key}"] = value
        if key.endswith("running_var"):
            counter = key.replace("running_var", "num_batches_tracked")
            state[f"module.{counter}"] = np.array(100, dtype=np.int64)
    return {"state_dict": state, "global_step": 1, "global_epoch": 1}


@pytest.fixture(scope="module", params=["legacy", "zip"])
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / f"wav2lip_{request.param}.pth"
    save_checkpoint(published_style(random_weights(seed=3)), path, legacy=request.param == "legacy")
    return path


@pytest.fixture(scope="module")
def pytorch_output() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "wav2lip_seed3.npz") as data:
        return {k: data[k] for k in data.files}


def run(model: Path, mel: np.ndarray, face: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    contract = session_contract(session)
    assert contract.batch is None and contract.face_size == 96
    got: np.ndarray = session.run(None, {contract.mel_input: mel, contract.face_input: face})[0]
    return got


def test_convert_computes_what_pytorch_computes(
    checkpoint: Path,
    pytorch_output: dict[str, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "model.onnx"
    assert main(["model", "convert", "--checkpoint", str(checkpoint), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    mel, face = fixture_module().reference_inputs()
    got = run(out, mel, face)
    assert got.shape == (2, 3, 96, 96)
    assert np.abs(got[:, :, ::4, ::4] - pytorch_output["sampled"]).max() < 1e-4
    assert abs(got.mean() - pytorch_output["mean"]) < 1e-5
    assert abs(got.std() - pytorch_output["std"]) < 1e-5
    assert pytorch_output["std"] > 1e-3  # a real signal, not a constant
    single = run(out, mel[1:], face[1:])  # the batch dimension is dynamic
    assert np.abs(single - got[1:]).max() < 1e-5


def test_fp16_keeps_float32_io_and_halves_the_file(
    checkpoint: Path, pytorch_output: dict[str, np.ndarray], tmp_path: Path
) -> None:
    full, half = tmp_path / "fp32.onnx", tmp_path / "fp16.onnx"
    convert = ["model", "convert", "--checkpoint", str(checkpoint), "-o"]
    assert main([*convert, str(full)]) == 0
    assert main([*convert, str(half), "--fp16"]) == 0
    assert half.stat().st_size < 0.55 * full.stat().st_size
    session = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    assert {i.type for i in session.get_inputs()} == {"tensor(float)"}
    mel, face = fixture_module().reference_inputs()
    got = session.run(None, {"mel": mel, "face": face})[0]
    assert np.abs(got[:, :, ::4, ::4] - pytorch_output["sampled"]).max() < 0.05


def test_a_checkpoint_of_another_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "other.pth"
    save_checkpoint({"state_dict": {"module.conv.weight": np.zeros((3, 3), np.float32)}}, bad)
    code = main(["model", "convert", "--checkpoint", str(bad), "-o", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2
    assert "not the Wav2Lip 96x96 generator" in err and "missing" in err
    assert not (tmp_path / "x.onnx").exists()
    assert main(["model", "convert", "--checkpoint", str(tmp_path / "none.pth"), "-o", "x"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    bad = tmp_path / "evil.pth"
    # os.system("true") at pickle protocol 2: GLOBAL, the argument, TUPLE1, REDUCE
    payload = b"\x80\x02cos\nsystem\n" + b"X\x04\x00\x00\x00true" + b"\x85R."
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    code = main(["model", "convert", "--checkpoint", str(bad), "-o", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "os.system" in err and "refused" in err
    assert len(err.strip().splitlines()) == 1
