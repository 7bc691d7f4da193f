"""The torch-free checkpoint reader reads what real torch wrote, and refuses what could run code.

tests/fixtures/torch/ holds one checkpoint in each of torch's formats, written by real torch
(make_fixtures.py there); the values they hold are recomputed here with numpy alone.
"""

from __future__ import annotations

import importlib.util
import pickle
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from renderer.backends.wav2lip.checkpoint import load_checkpoint
from renderer.errors import ModelError
from tests.renderer.torch_checkpoint import save_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "torch"


def fixture_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("torch_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["tensors_zip.pth", "tensors_legacy.pth"])
def test_reads_every_kind_of_tensor_torch_wrote(name: str) -> None:
    want = fixture_module().expected_tensors()
    got = load_checkpoint(FIXTURES / name)
    t = got["tensors"]
    assert t["conv"].dtype == np.float32 and np.array_equal(t["conv"], want["conv"])
    assert np.array_equal(t["grid_t"], want["grid"].T)  # a transposed view: stride (1, 6)
    assert np.array_equal(t["long_slice"], want["long"])  # offset 2 into a shared storage
    assert np.array_equal(t["long_base"], np.arange(-5, 9))
    assert t["half"].dtype == np.float16 and np.array_equal(t["half"], want["half"])
    assert t["bf16"].dtype == np.float32 and np.array_equal(t["bf16"], want["bf16"])
    assert t["double"].dtype == np.float64 and np.array_equal(t["double"], want["double"])
    assert t["mask"].dtype == np.bool_ and np.array_equal(t["mask"], want["mask"])
    assert t["bytes"].dtype == np.uint8 and np.array_equal(t["bytes"], want["bytes"])
    assert t["scalar"].shape == () and float(t["scalar"]) == 2.5
    assert np.array_equal(t["param"], want["conv"][0])
    module = got["module"]
    assert list(module) == [
        "0.weight", "0.bias", "1.weight", "1.bias",
        "1.running_mean", "1.running_var", "1.num_batches_tracked",
    ]  # fmt: skip
    for i, key in enumerate(list(module)[:-1]):
        assert np.array_equal(module[key].ravel(), np.arange(module[key].size) + i), key
    assert module["1.num_batches_tracked"].shape == () and int(module["1.num_batches_tracked"]) == 0
    assert (got["step"], got["note"], got["pair"]) == (1234, "atlas", (1, 2.5))


@pytest.mark.parametrize("legacy", [False, True])
def test_what_the_test_writer_writes_reads_back(tmp_path: Path, legacy: bool) -> None:
    """The writer the convert tests use stays within what the reader was proven on."""
    want = fixture_module().expected_tensors()
    path = tmp_path / "ckpt.pth"
    save_checkpoint({"state_dict": want, "global_step": 3}, path, legacy=legacy)
    got = load_checkpoint(path)
    assert got["global_step"] == 3
    for key, value in want.items():
        assert got["state_dict"][key].dtype == value.dtype, key
        assert np.array_equal(got["state_dict"][key], value), key


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    zipped = tmp_path / "zip.pth"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": _Exploit(marker)}, protocol=2))
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps(_Exploit(marker), protocol=2))  # in the magic-number slot
    for path in (zipped, legacy):
        with pytest.raises(ModelError, match="holds .* refused"):
            load_checkpoint(path)
    assert not marker.exists()


def test_broken_files_are_model_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    save_checkpoint({"w": np.ones((64, 64), np.float32)}, good, legacy=True)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:-100])
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ModelError, match="truncated"):
        load_checkpoint(truncated)
    with pytest.raises(ModelError, match="could not read|not a PyTorch checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")
