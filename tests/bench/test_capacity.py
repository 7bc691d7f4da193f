"""bench/capacity.py's report keeps other labels' blocks; bench/procfs.py reads this machine's
/proc as the bench needs (a process tree's CPU time and PSS, with or without the children)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench import procfs
from bench.capacity import INTRO, merged_body
from bench.report import problems, read_section, write_section
from tests.processes import wait_until


def block(label: str, text: str) -> str:
    return f"<!-- capacity:{label}:start -->\n### {label}\n{text}\n<!-- capacity:{label}:end -->"


def test_a_run_replaces_its_own_label_and_keeps_the_others() -> None:
    first = merged_body(None, "before", block("before", "| 1 | 0.30 |"))
    assert first.startswith(INTRO) and "0.30" in first
    both = merged_body(first, "after", block("after", "| 1 | 0.12 |"))
    again = merged_body(both, "before", block("before", "| 1 | 0.31 |"))
    assert "0.30" not in again and "0.31" in again and "0.12" in again
    # the replaced block stays where it was: before, then after
    assert again.index("capacity:before:start") < again.index("capacity:after:start")
    assert again.count("<!-- capacity:before:start -->") == 1
    assert merged_body(again, "after", block("after", "| 1 | 0.12 |")) == again


def test_text_written_by_hand_between_blocks_is_kept() -> None:
    first = merged_body(None, "before", block("before", "| 1 | 0.30 |"))
    noted = first.replace(INTRO, f"{INTRO}\n\n**Summary.** what the blocks say")
    noted += "\n\nA note under the before block."
    after = merged_body(noted, "after", block("after", "| 1 | 0.12 |"))
    again = merged_body(after, "before", block("before", "| 1 | 0.31 |"))
    assert "**Summary.** what the blocks say" in again
    assert "A note under the before block." in again and "0.31" in again and "0.30" not in again


def test_a_process_tree_is_read_with_its_children_cpu_and_memory() -> None:
    me = os.getpid()
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert child.pid in procfs.tree(me)
        start = procfs.Snapshot.take([me])
        alone = procfs.Snapshot.take([me], descendants=False)
        assert any(pid == child.pid for pid, _ in start.threads)
        assert all(pid == me for pid, _ in alone.threads)
        # the spinning child's CPU time shows in the tree's (hang guard only)
        wait_until(lambda: procfs.cores(start, procfs.Snapshot.take([me])) > 0, limit_s=60)
        assert procfs.tree_pss_mb(me) > procfs.pss_kb(me) / 1024 > 0
    finally:
        child.kill()
        child.wait()


def test_the_section_read_back_from_the_file_keeps_the_other_label(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n")
    body = merged_body(read_section("capacity", path=path), "before", block("before", "B1"))
    write_section("capacity", "Capacity", body, path=path)
    body = merged_body(read_section("capacity", path=path), "after", block("after", "A1"))
    write_section("capacity", "Capacity", body, path=path)
    text = path.read_text()
    assert "B1" in text and "A1" in text and text.count("## Capacity, ") == 1
    assert problems(text) == []
