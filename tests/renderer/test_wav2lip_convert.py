"""`atlas model convert`: a PyTorch checkpoint in, a contract-checked ONNX file out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="model conversion needs the torch extra")

import onnxruntime as ort  # noqa: E402

from atlas.cli import main  # noqa: E402
from renderer.backends.wav2lip.engine import session_contract  # noqa: E402
from tests.renderer.wav2lip_torch import randomised  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A DataParallel-style checkpoint ({"state_dict": {"module.…": …}}) of a random model."""
    model = randomised(seed=3)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "wav2lip.pth"
    torch.save({"state_dict": state, "global_step": 1, "global_epoch": 1}, path)
    return path, model


def _inputs(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(batch)
    mel = rng.uniform(-4, 4, (batch, 1, 80, 16)).astype(np.float32)
    face = rng.random((batch, 6, 96, 96), dtype=np.float32)
    return mel, face


def test_convert_matches_pytorch_at_any_batch(
    checkpoint: tuple[Path, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, model = checkpoint
    out = tmp_path / "model.onnx"
    assert main(["model", "convert", "--checkpoint", str(path), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    contract = session_contract(session)
    assert contract.batch is None and contract.face_size == 96
    for batch in (1, 3):
        mel, face = _inputs(batch)
        with torch.no_grad():
            expected = model(torch.from_numpy(mel), torch.from_numpy(face)).numpy()  # type: ignore[operator]
        got = session.run(None, {contract.mel_input: mel, contract.face_input: face})[0]
        assert got.shape == (batch, 3, 96, 96)
        assert np.abs(got - expected).max() < 1e-4
        assert expected.std() > 1e-3  # a real signal, not a constant


def test_fp16_keeps_float32_io_and_halves_the_file(
    checkpoint: tuple[Path, object], tmp_path: Path
) -> None:
    path, model = checkpoint
    full, half = tmp_path / "fp32.onnx", tmp_path / "fp16.onnx"
    assert main(["model", "convert", "--checkpoint", str(path), "-o", str(full)]) == 0
    assert main(["model", "convert", "--checkpoint", str(path), "-o", str(half), "--fp16"]) == 0
    assert half.stat().st_size < 0.55 * full.stat().st_size
    session = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    assert {i.type for i in session.get_inputs()} == {"tensor(float)"}
    mel, face = _inputs(2)
    with torch.no_grad():
        expected = model(torch.from_numpy(mel), torch.from_numpy(face)).numpy()  # type: ignore[operator]
    got = session.run(None, {"mel": mel, "face": face})[0]
    assert np.abs(got - expected).max() < 0.05


def test_a_checkpoint_of_another_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "other.pth"
    torch.save({"state_dict": {"module.conv.weight": torch.zeros(3, 3)}}, bad)
    code = main(["model", "convert", "--checkpoint", str(bad), "-o", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2
    assert "not the Wav2Lip 96x96 generator" in err and "missing" in err
    assert not (tmp_path / "x.onnx").exists()
    assert main(["model", "convert", "--checkpoint", str(tmp_path / "none.pth"), "-o", "x"]) == 2
