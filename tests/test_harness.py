"""The test harness itself: what keeps a failing run's reports readable."""

from __future__ import annotations

import ast
import difflib
import gc
import threading
from pathlib import Path


def test_ast_parse_from_many_threads_never_raises_a_depth_mismatch() -> None:
    """Threads parsing while a GC callback switches threads mid-parse: the way python/cpython#106905
    fires on 3.11 (conftest.serialize_ast_parse). Without the lock this raised dozens of times."""
    source = Path(__file__).with_name("conftest.py").read_text()
    errors: list[SystemError] = []

    def busy_gc_callback(phase: str, info: dict[str, int]) -> None:
        list(
            difflib.unified_diff([f"{i}\n" for i in range(100)], [f"{i}\n" for i in range(1, 101)])
        )

    def parse_repeatedly() -> None:
        try:
            for _ in range(20):
                ast.parse(source, "source")
        except SystemError as exc:
            errors.append(exc)

    gc.callbacks.append(busy_gc_callback)
    try:
        threads = [threading.Thread(target=parse_repeatedly) for _ in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.callbacks.remove(busy_gc_callback)
    assert errors == []
