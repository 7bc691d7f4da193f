"""Admission: what the worker tells LiveKit about its load, and the hard cap on sessions.

livekit-server offers a job only to a worker whose last reported load is below its
`agents.target_load` (0.7 by default), and livekit-agents answers a job request "available"
only while its own effective load (the reported load plus an estimate per reserved slot) is
below the same threshold. Both are floating-point comparisons on estimates: with 3 of 4
streams taken, 0.7 x 3/4 plus one reservation reads 0.6999..., which admitted a fifth job. So:

- the load reported is the threshold times the larger of the share of streams taken and the
  share of the worker's CPU budget in use: full on either reads exactly the threshold, and the
  server sends new jobs elsewhere;
- `request` is livekit-agents' request_fnc: it counts streams itself (running jobs plus those
  accepted and not yet running) and refuses past `max_streams`, or when the CPU budget is
  spent, whatever the estimates say. A plugin-mode job is accepted as the avatar participant
  itself (agent.metadata.avatar_participant): one participant of ours in the agent's room.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import psutil
from livekit.agents import JobRequest

from agent.metadata import avatar_participant

logger = logging.getLogger("agent")


class ActiveJobs(Protocol):
    @property
    def active_jobs(self) -> Sequence[object]: ...


def available_cores() -> float:
    """The cores this process may use: the cgroup's CPU quota when set, else its affinity."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            return max(float(quota) / float(period), 0.1)
    except (OSError, ValueError):
        pass
    return float(len(os.sched_getaffinity(0)))


# The shortest window a CPU share is measured over (the periodic load check is every 2.5 s).
MIN_WINDOW_S = 1.0


class CpuGauge:
    """The CPU this process (and, with `children`, its job processes) uses, as a share of
    `cores`, averaged between reads (the load function runs every 2.5 s)."""

    def __init__(
        self,
        *,
        cores: float,
        children: bool = True,
        process: psutil.Process | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`children`: count child processes too (a process per job). Finding them scans all
        of /proc, so a worker whose jobs are threads leaves it off."""
        self.cores = cores
        self._children = children
        self._process = process or psutil.Process()
        self._clock = clock
        self._last: tuple[float, float] | None = None
        self.share = 0.0

    def _cpu_seconds(self) -> float:
        total = 0.0
        children = self._process.children(recursive=True) if self._children else []
        for proc in [self._process, *children]:
            try:
                times = proc.cpu_times()
            except psutil.Error:  # a child that just ended
                continue
            total += times.user + times.system
        return total

    def read(self) -> float:
        """The share over the window since the last read, or the last share when that window
        is under MIN_WINDOW_S: livekit-agents also reads the load on every job request, and a
        burst of requests read over a few ms of busy threads looked like a full CPU (the second
        of two junk dispatches was refused on an idle worker)."""
        now = self._clock()
        if self._last is not None and now - self._last[0] < MIN_WINDOW_S:
            return self.share
        used = self._cpu_seconds()
        if self._last is not None:
            busy = max(used - self._last[1], 0.0) / (now - self._last[0])
            self.share = busy / self.cores
        self._last = (now, used)
        return self.share


class Admission:
    def __init__(
        self,
        *,
        max_streams: int,
        threshold: float,
        cpu: CpuGauge | None = None,
        cpu_target: float = 0.9,
    ) -> None:
        """`threshold`: LiveKit's target load. `cpu_target`: the share of the CPU budget at
        which the worker counts as full (None `cpu`: slots alone)."""
        self.max_streams = max_streams
        self.threshold = threshold
        self._cpu = cpu
        self._cpu_target = cpu_target
        self._accepting = 0  # accepted, not yet among the server's active jobs
        self._active = 0
        self._full = False

    def _cpu_full_share(self) -> float:
        return 0.0 if self._cpu is None else self._cpu.share / self._cpu_target

    def fullness(self) -> float:
        """0 empty .. 1 full, on streams or CPU, whichever runs out first."""
        slots = (self._active + self._accepting) / self.max_streams
        return min(max(slots, self._cpu_full_share()), 1.0)

    def load(self, server: ActiveJobs) -> float:
        """livekit-agents' load_fnc."""
        self._active = len(server.active_jobs)
        if self._cpu is not None:
            self._cpu.read()
        fullness = self.fullness()
        self._log_change(full=fullness >= 1.0)
        return self.threshold * fullness

    def _log_change(self, *, full: bool) -> None:
        """Say when the worker turns full or has room again: LiveKit sends a full worker no
        jobs, so this is why a dispatch waited or went elsewhere."""
        if full == self._full:
            return
        self._full = full
        cpu = None if self._cpu is None else round(self._cpu.share, 3)
        streams = self._active + self._accepting
        message = "worker full: no new jobs" if full else "worker has room again"
        logger.info(message, extra={"streams": streams, "cpu_share": cpu})

    def has_room(self) -> bool:
        return self._active + self._accepting < self.max_streams and self._cpu_full_share() < 1.0

    def bind(self, server: ActiveJobs) -> Callable[[JobRequest], object]:
        async def request(req: JobRequest) -> None:
            self._active = len(server.active_jobs)
            if not self.has_room():
                logger.info(
                    "job refused: worker full",
                    extra={"job_id": req.id, "streams": self._active + self._accepting},
                )
                await req.reject()
                return
            self._accepting += 1
            try:
                await accept(req)
            finally:
                self._accepting -= 1
                self._active = len(server.active_jobs)

        return request


async def accept(req: JobRequest) -> None:
    """Accept the job; a plugin-mode job as the avatar, publishing on the agent's behalf."""
    avatar = avatar_participant(req.job.metadata)
    if avatar is None:
        await req.accept()  # livekit-agents' default identity, agent-<job id>
        return
    await req.accept(identity=avatar.identity, name=avatar.name, attributes=avatar.attributes)
