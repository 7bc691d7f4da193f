"""Read a PyTorch checkpoint (`torch.save`) into numpy arrays, without torch.

Both of torch's on-disk formats are read:
- the zip format (torch >= 1.6): `<name>/data.pkl` plus one entry per storage, `<name>/data/<key>`;
- the legacy format (written by torch < 1.6, as older checkpoints are): five pickles in a row
  (magic number, protocol version, system info, the object, the storage keys), then each
  storage as an int64 element count and its raw bytes.

The pickle is read with an allow-list, as torch's own `weights_only=True` does: containers,
tensors and storages load; any other global (which a pickle could use to run code) is refused.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from renderer.errors import ModelError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage class -> numpy dtype ("bfloat16" is widened to float32 after reading)
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> str:
        return _STORAGE_DTYPES[self.name]


@dataclass(frozen=True, slots=True)
class _Storage:
    """A storage's elements as a flat numpy array (its bytes are read on first use)."""

    read: Callable[[], np.ndarray]


def load_checkpoint(path: Path) -> Any:
    """The object a checkpoint holds, its tensors as numpy arrays."""
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with path.open("rb") as f:
            return _load_legacy(f)
    except ModelError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, struct.error) as exc:
        raise ModelError(f"could not read the checkpoint {path}: {exc}") from exc


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise ModelError(f"{path} is a zip file but not a PyTorch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        order = _byteorder(archive, prefix)
        cache: dict[str, np.ndarray] = {}

        def storage(kind: _StorageType, key: str, count: int) -> _Storage:
            def read() -> np.ndarray:
                if key not in cache:
                    raw = archive.read(f"{prefix}data/{key}")
                    cache[key] = _elements(raw, kind, count, order)
                return cache[key]

            return _Storage(read)

        unpickler = _Unpickler(io.BytesIO(archive.read(pickles[0])), storage)
        return _materialise(unpickler.load())


def _byteorder(archive: zipfile.ZipFile, prefix: str) -> str:
    try:
        order = archive.read(f"{prefix}byteorder").decode().strip()
    except KeyError:
        return "little"  # files from before torch wrote the entry are little-endian
    if order not in {"little", "big"}:
        raise ModelError(f"unknown byte order {order!r} in the checkpoint")
    return order


def _load_legacy(f: IO[bytes]) -> Any:
    magic = _plain(f)
    if magic != _LEGACY_MAGIC:
        raise ModelError("not a PyTorch checkpoint (neither a zip archive nor the legacy format)")
    if _plain(f) != _LEGACY_PROTOCOL:
        raise ModelError("unsupported legacy PyTorch checkpoint version")
    info = _plain(f)
    order = "little" if not isinstance(info, dict) or info.get("little_endian", True) else "big"
    kinds: dict[str, tuple[_StorageType, int]] = {}
    arrays: dict[str, np.ndarray] = {}

    def storage(kind: _StorageType, key: str, count: int) -> _Storage:
        kinds[key] = (kind, count)
        return _Storage(lambda: arrays[key])

    obj = _Unpickler(f, storage).load()
    keys = _plain(f)
    if not isinstance(keys, list):
        raise ModelError("the checkpoint's storage list is missing")
    for key in keys:
        kind, _ = kinds[key]
        (count,) = struct.unpack("<q" if order == "little" else ">q", f.read(8))
        size = count * _itemsize(kind)
        raw = f.read(size)
        if len(raw) != size:
            raise ModelError("the checkpoint ends inside a tensor: the file is truncated")
        arrays[key] = _elements(raw, kind, count, order)
    return _materialise(obj)


def _plain(f: IO[bytes]) -> Any:
    """One of the legacy format's small pickles: no storages expected."""

    def refuse(kind: _StorageType, key: str, count: int) -> _Storage:
        raise ModelError("a tensor where the checkpoint's header was expected")

    return _Unpickler(f, refuse).load()


def _itemsize(kind: _StorageType) -> int:
    return 2 if kind.dtype == "bfloat16" else np.dtype(kind.dtype).itemsize


def _elements(raw: bytes, kind: _StorageType, count: int, order: str) -> np.ndarray:
    if kind.dtype == "bfloat16":
        halves = np.frombuffer(raw, dtype="<u2" if order == "little" else ">u2", count=count)
        return (halves.astype(np.uint32) << 16).view(np.float32)
    dtype = np.dtype(kind.dtype)
    if order == "big":
        dtype = dtype.newbyteorder(">")
    return np.frombuffer(raw, dtype=dtype, count=count)


@dataclass(frozen=True, slots=True)
class _LazyTensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        flat = self.storage.read()
        if not self.shape:
            return np.array(flat[self.offset])
        if 0 in self.shape:
            return np.zeros(self.shape, dtype=flat.dtype)
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.shape,
            strides=tuple(s * flat.itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view, dtype=view.dtype.newbyteorder("="))  # own, native-order copy


def _rebuild_tensor(
    storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _LazyTensor:
    return _LazyTensor(storage, int(offset), tuple(shape), tuple(stride))


def _rebuild_parameter(data: _LazyTensor, *_: Any) -> _LazyTensor:
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: IO[bytes], storage: Callable[[_StorageType, str, int], _Storage]) -> None:
        super().__init__(f)
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ModelError(
                f"the checkpoint holds {module}.{name}, which is not part of a weights file; "
                "it is refused (a pickle can run code through such objects)"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        # ("storage", type, key, location, numel[, view metadata in the legacy format])
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise ModelError(f"unexpected persistent object in the checkpoint: {pid!r}")
        kind, key, count = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(kind, _StorageType):
            raise ModelError(f"unexpected storage type in the checkpoint: {kind!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise ModelError("storage views (torch < 1.0 checkpoints) are not supported")
        return self._storage(kind, key, count)


def _materialise(obj: Any) -> Any:
    """Replace every tensor in the containers with its numpy array."""
    if isinstance(obj, _LazyTensor):
        return obj.array()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _materialise(value)
        return out
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    return obj
