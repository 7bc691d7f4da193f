"""The data dir's scratch space (`<data dir>/tmp`): upload and job temp dirs, and their sweep.

A process killed mid-request or mid-render leaves its `atlas-upload-*` or `atlas-job-*` dir
behind. Every API or worker process holds a shared lock on `tmp/.in-use` while it runs. At start,
a process that can take the lock exclusively is alone, and sweeps every leftover; otherwise
other processes still use the dir, and only leftovers idle for `stale_after_s` go (a live upload
or render writes its files all along; uploads and renders are bounded well below that).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from pathlib import Path

logger = logging.getLogger("session_api")

PREFIXES = ("atlas-job-", "atlas-upload-")
LOCK_NAME = ".in-use"


class ScratchSpace:
    """Owns the process's claim on the scratch dir; `open()` sweeps, `close()` releases."""

    def __init__(self, path: Path, *, stale_after_s: float) -> None:
        self.path = path
        self.stale_after_s = stale_after_s
        self._fd: int | None = None

    def open(self) -> int:
        """Claim the dir and sweep leftovers; returns how many were removed."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        swept = sweep(self.path, idle_for_s=0.0 if alone else self.stale_after_s)
        fcntl.flock(self._fd, fcntl.LOCK_SH)  # from here on, others see us as a live user
        if swept:
            logger.info("swept stale temp dirs", extra={"count": swept, "dir": str(self.path)})
        return swept

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def sweep(path: Path, *, idle_for_s: float, now: float | None = None) -> int:
    """Remove atlas-job-*/atlas-upload-* dirs in `path` untouched for `idle_for_s`."""
    cutoff = (time.time() if now is None else now) - idle_for_s
    removed = 0
    for entry in _leftovers(path):
        if idle_for_s > 0 and _last_touched(entry) > cutoff:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += 0 if entry.exists() else 1
    return removed


def _leftovers(path: Path) -> list[Path]:
    try:
        entries = list(path.iterdir())
    except OSError:
        return []
    return [e for e in entries if e.name.startswith(PREFIXES) and e.is_dir() and not e.is_symlink()]


def _last_touched(directory: Path) -> float:
    """The newest mtime of the dir and everything in it (files grow while in use)."""
    newest = 0.0
    for root, dirs, files in os.walk(directory):
        for name in [".", *dirs, *files]:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest
