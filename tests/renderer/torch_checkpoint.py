"""Write numpy arrays as a PyTorch checkpoint, in either of torch's formats, without torch.

Test support: `atlas model convert` is tested on a full-size Wav2Lip checkpoint written here.
That this writer produces what torch writes is held by test_torch_checkpoint.py, which reads
files that real torch wrote (tests/fixtures/torch/) with the same reader.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_STORAGE_NAMES = {
    np.dtype("<f4"): "FloatStorage",
    np.dtype("<f8"): "DoubleStorage",
    np.dtype("<f2"): "HalfStorage",
    np.dtype("<i8"): "LongStorage",
    np.dtype("<i4"): "IntStorage",
    np.dtype("u1"): "ByteStorage",
    np.dtype("?"): "BoolStorage",
}


class _Global:
    """A reference to torch's name, written into the pickle without importing torch."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle asks that a reduce function be callable
        raise TypeError("a stand-in for a torch function")


class _Storage:
    def __init__(self, key: str, array: np.ndarray) -> None:
        self.key, self.array = key, np.ascontiguousarray(array).reshape(-1)


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape


class _Pickler(pickle._Pickler):  # the Python pickler: its dispatch table can be extended
    def __init__(self, f: io.BytesIO, *, legacy: bool) -> None:
        super().__init__(f, protocol=2)
        self.legacy = legacy
        self.dispatch = {**pickle._Pickler.dispatch, _Global: _Pickler.save_torch_global}

    def save_torch_global(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _Tensor):
            stride = tuple(int(np.prod(obj.shape[i + 1 :])) for i in range(len(obj.shape)))
            rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
            return rebuild, (obj.storage, 0, obj.shape, stride, False, OrderedDict())
        return NotImplemented

    def persistent_id(self, obj: Any) -> Any:
        if not isinstance(obj, _Storage):
            return None
        kind = _Global("torch", _STORAGE_NAMES[obj.array.dtype])
        pid = ("storage", kind, obj.key, "cpu", obj.array.size)
        return (*pid, None) if self.legacy else pid


def _tensors(obj: Any, storages: list[_Storage]) -> Any:
    if isinstance(obj, np.ndarray):
        storage = _Storage(str(len(storages)), obj)
        storages.append(storage)
        return _Tensor(storage, tuple(obj.shape))
    if isinstance(obj, Mapping):
        return OrderedDict((k, _tensors(v, storages)) for k, v in obj.items())
    return obj


def _pickled(obj: Any, *, legacy: bool) -> bytes:
    out = io.BytesIO()
    _Pickler(out, legacy=legacy).dump(obj)
    return out.getvalue()


def save_checkpoint(obj: Any, path: Path, *, legacy: bool = False) -> None:
    """`torch.save(obj, path)` for containers of numpy arrays (zip format, or the legacy one)."""
    storages: list[_Storage] = []
    body = _tensors(obj, storages)
    if legacy:
        with path.open("wb") as f:
            for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                f.write(pickle.dumps(header, protocol=2))
            f.write(_pickled(body, legacy=True))
            f.write(pickle.dumps([s.key for s in storages], protocol=2))
            for storage in storages:
                f.write(struct.pack("<q", storage.array.size))
                f.write(storage.array.tobytes())
        return
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", _pickled(body, legacy=False))
        archive.writestr("archive/byteorder", "little")
        for storage in storages:
            archive.writestr(f"archive/data/{storage.key}", storage.array.tobytes())
        archive.writestr("archive/version", "3\n")
