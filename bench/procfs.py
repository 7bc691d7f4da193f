"""What processes cost, read from Linux /proc: CPU time of a process tree (per process and per
thread) and its proportional set size.

PSS, not RSS: a page shared by k processes (the forkserver's libraries and models, copied on
write into every job process) counts 1/k in each, so the sum over a tree counts it once.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
HZ = os.sysconf("SC_CLK_TCK")


def _stat_fields(path: Path) -> tuple[str, list[str]] | None:
    """(comm, the fields after it) of a /proc stat file; None when the task is gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    # comm is in parentheses and may itself hold spaces or parentheses
    head, _, tail = text.rpartition(")")
    return head.partition("(")[2], tail.split()


def parent_of(pid: int) -> int | None:
    stat = _stat_fields(PROC / str(pid) / "stat")
    return int(stat[1][1]) if stat else None


def tree(root: int) -> list[int]:
    """`root` and every live descendant of it."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children[parent].append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def pss_kb(pid: int) -> int:
    """Proportional set size of one process (0 once it is gone)."""
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_mb(root: int) -> float:
    return sum(pss_kb(pid) for pid in tree(root)) / 1024


def machine_busy_ticks() -> int:
    """Ticks every CPU of the machine spent busy (not idle, not waiting on I/O)."""
    # user nice system idle iowait irq softirq steal ...
    f = [int(x) for x in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6]


@dataclass
class Snapshot:
    """CPU ticks of each thread of a set of process trees at one instant."""

    at: float
    machine: int  # busy ticks of the whole machine
    threads: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def take(cls, roots: list[int], *, descendants: bool = True) -> Snapshot:
        """The processes `roots`, with every descendant of theirs unless told otherwise."""
        snap = cls(at=time.monotonic(), machine=machine_busy_ticks())
        for root in roots:
            for pid in tree(root) if descendants else [root]:
                for task in (PROC / str(pid) / "task").glob("*"):
                    stat = _stat_fields(task / "stat")
                    if stat is None:
                        continue
                    tid = int(task.name)
                    name = "(main thread)" if tid == pid else stat[0]
                    snap.threads[(pid, tid)] = (name, int(stat[1][11]) + int(stat[1][12]))
        return snap


def cores_by_thread(start: Snapshot, end: Snapshot) -> dict[str, float]:
    """Cores used between two snapshots, by thread name. A thread that started in between
    counts from zero; one that ended in between is lost (none should, in a steady window)."""
    elapsed = end.at - start.at
    out: dict[str, float] = defaultdict(float)
    for key, (name, ticks) in end.threads.items():
        before = start.threads.get(key, (name, 0))[1]
        out[name] += (ticks - before) / HZ / elapsed
    return dict(out)


def cores(start: Snapshot, end: Snapshot) -> float:
    return sum(cores_by_thread(start, end).values())


def machine_cores(start: Snapshot, end: Snapshot) -> float:
    """Cores the whole machine was busy between two snapshots (every process, anyone's)."""
    return (end.machine - start.machine) / HZ / (end.at - start.at)


def cores_by_process(start: Snapshot, end: Snapshot) -> dict[int, float]:
    elapsed = end.at - start.at
    out: dict[int, float] = defaultdict(float)
    for (pid, tid), (_, ticks) in end.threads.items():
        before = start.threads.get((pid, tid), ("", 0))[1]
        out[pid] += (ticks - before) / HZ / elapsed
    return dict(out)
