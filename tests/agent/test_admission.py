"""Admission: the load the worker reports and the hard cap its request function keeps.

The request function is exercised with livekit-agents' own JobRequest (its accept/reject
callbacks are what the worker's connection would send to the server)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import psutil
import pytest
from livekit.agents import JobRequest
from livekit.agents.job import JobAcceptArguments
from livekit.agents.voice.room_io import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.protocol import agent

from agent import metadata
from agent.admission import Admission, CpuGauge

THRESHOLD = 0.7  # livekit-server's default agents.target_load


class Server:
    def __init__(self, active: int = 0) -> None:
        self.active_jobs: list[object] = [object() for _ in range(active)]


class Answers:
    """What the worker would answer the server for each job request."""

    def __init__(self, server: Server, *, assigned: asyncio.Event | None = None) -> None:
        self.server = server
        self.accepted: list[str] = []
        self.rejected: list[str] = []
        self.arguments: dict[str, JobAcceptArguments] = {}
        self.assigned = assigned

    def request(self, job_id: str, metadata: str = "") -> JobRequest:
        job = agent.Job(id=job_id, metadata=metadata)

        async def on_reject(terminate: bool) -> None:
            self.rejected.append(job_id)

        async def on_accept(args: JobAcceptArguments) -> None:
            self.arguments[job_id] = args  # what the worker tells the server to join it as
            if self.assigned is not None:  # the server's assignment comes later
                await self.assigned.wait()
            self.accepted.append(job_id)
            self.server.active_jobs.append(object())  # the job is running now

        return JobRequest(job=job, on_reject=on_reject, on_accept=on_accept)


def test_full_reads_exactly_the_threshold_and_never_more() -> None:
    admission = Admission(max_streams=4, threshold=THRESHOLD)
    assert admission.load(Server(0)) == 0.0
    three = admission.load(Server(3))
    assert three < THRESHOLD
    assert admission.load(Server(4)) == THRESHOLD
    assert admission.load(Server(9)) == THRESHOLD


async def test_a_fifth_job_is_refused_on_a_four_stream_worker() -> None:
    """livekit-agents' own estimate (0.7 x 3/4 plus one reserved slot) reads 0.6999... and
    lets a fifth job through; the request function's count does not."""
    server = Server(3)
    admission = Admission(max_streams=4, threshold=THRESHOLD)
    answers = Answers(server)
    request = admission.bind(server)
    await request(answers.request("fourth"))  # type: ignore[misc]
    await request(answers.request("fifth"))  # type: ignore[misc]
    assert answers.accepted == ["fourth"] and answers.rejected == ["fifth"]


async def test_a_burst_counts_jobs_accepted_but_not_yet_running() -> None:
    """Six requests at once on a fresh four-stream worker: four accepted, two refused, even
    though none of the four runs yet when the others are answered."""
    server = Server(0)
    assigned = asyncio.Event()
    admission = Admission(max_streams=4, threshold=THRESHOLD)
    answers = Answers(server, assigned=assigned)
    request = admission.bind(server)
    burst = [asyncio.create_task(request(answers.request(f"job{i}"))) for i in range(6)]  # type: ignore[arg-type]
    for _ in range(1000):  # every request answers or waits for its assignment
        if len(answers.rejected) >= 2:
            break
        await asyncio.sleep(0)
    assert sorted(answers.rejected) == ["job4", "job5"]
    assert admission.load(Server(0)) == THRESHOLD  # four in flight read as full
    assigned.set()
    await asyncio.gather(*burst)
    assert sorted(answers.accepted) == [f"job{i}" for i in range(4)]
    assert sorted(answers.rejected) == ["job4", "job5"]


async def test_an_idle_worker_takes_every_job_it_has_room_for() -> None:
    server = Server(0)
    admission = Admission(max_streams=4, threshold=THRESHOLD)
    answers = Answers(server)
    request = admission.bind(server)
    for i in range(4):
        await request(answers.request(f"job{i}"))  # type: ignore[misc]
    assert len(answers.accepted) == 4 and answers.rejected == []


class FakeProcess:
    """psutil.Process's two calls the gauge makes, with CPU time we set."""

    def cpu_times(self) -> object:
        class Times:
            user = self.seconds
            system = 0.0

        return Times()

    def __init__(self) -> None:
        self.seconds = 0.0
        self.kids: list[FakeProcess] = []

    def children(self, recursive: bool = False) -> list[FakeProcess]:
        return self.kids


def test_cpu_runs_out_before_the_streams() -> None:
    """Two of eight streams taken, but the worker burns 1.9 of its 2 cores: it reads full,
    and refuses the next job."""
    now = [0.0]
    process = FakeProcess()
    gauge = CpuGauge(cores=2.0, process=process, clock=lambda: now[0])  # type: ignore[arg-type]
    admission = Admission(max_streams=8, threshold=THRESHOLD, cpu=gauge, cpu_target=0.9)
    server = Server(2)
    assert admission.load(server) == pytest.approx(THRESHOLD * 2 / 8)
    now[0], process.seconds = 10.0, 19.0  # 1.9 cores for 10 s
    assert admission.load(server) == THRESHOLD
    assert not admission.has_room()
    now[0], process.seconds = 20.0, 23.0  # 0.4 cores: streams decide again
    assert admission.load(server) == pytest.approx(THRESHOLD * 2 / 8)
    assert admission.has_room()


def test_the_gauge_counts_job_processes_only_when_jobs_are_processes() -> None:
    now = [0.0]
    worker, job = FakeProcess(), FakeProcess()
    worker.kids = [job]
    process = cast(psutil.Process, worker)
    with_children = CpuGauge(cores=2.0, process=process, clock=lambda: now[0])
    threads_only = CpuGauge(cores=2.0, children=False, process=process, clock=lambda: now[0])
    with_children.read(), threads_only.read()
    now[0], worker.seconds, job.seconds = 10.0, 2.0, 8.0  # 0.2 + 0.8 cores
    assert with_children.read() == pytest.approx(0.5)
    assert threads_only.read() == pytest.approx(0.1)


# -- who the job joins as -----------------------------------------------------------------------

SENDER = "agent-AJ_customer"
AVATAR = "atlas-avatar-agent"


def dispatch(mode: str, **options: Any) -> str:
    return json.dumps(
        {
            "session_id": "ses_abcdefghijklmnopqrstuvwx",
            "mode": mode,
            "face": {"url": "https://example.com/f.jpg"},
            "max_duration_seconds": 600,
            "options": options,
        }
    )


async def accepted_as(meta: str) -> JobAcceptArguments:
    server = Server(0)
    answers = Answers(server)
    await Admission(max_streams=4, threshold=THRESHOLD).bind(server)(  # type: ignore[misc]
        answers.request("job", meta)
    )
    assert answers.accepted == ["job"]
    return answers.arguments["job"]


async def test_a_plugin_job_joins_as_the_avatar_publishing_for_the_agent() -> None:
    """One participant of ours in the agent's room: the job itself is the avatar (identity,
    name, lk.publish_on_behalf = the agent), as upstream's avatar workers join."""
    args = await accepted_as(
        dispatch(
            "plugin", sender_identity=SENDER, avatar_identity=AVATAR, avatar_name="Atlas avatar"
        )
    )
    assert args.identity == AVATAR and args.name == "Atlas avatar"
    assert args.attributes == {ATTRIBUTE_PUBLISH_ON_BEHALF: SENDER}
    assert metadata.PUBLISH_ON_BEHALF == ATTRIBUTE_PUBLISH_ON_BEHALF


@pytest.mark.parametrize(
    "meta",
    [
        dispatch("passthrough"),
        dispatch("conversation"),
        "{not json",
        "",
        # plugin mode, but breaking the contract: the job fails as invalid_job, as any other
        dispatch("plugin", sender_identity=SENDER),
        dispatch("plugin", sender_identity=SENDER, avatar_identity=SENDER),
    ],
)
async def test_other_jobs_join_as_livekit_agents_default_participant(meta: str) -> None:
    args = await accepted_as(meta)
    assert args.identity == "agent-job" and args.name == "" and not args.attributes


def test_a_read_moments_after_the_last_keeps_the_share() -> None:
    """livekit-agents reads the load on every job request too: two requests 10 ms apart must
    not measure 10 ms of busy threads as a full CPU, and refuse the second on an idle worker."""
    now = [0.0]
    process = FakeProcess()
    gauge = CpuGauge(cores=2.0, process=cast(psutil.Process, process), clock=lambda: now[0])
    admission = Admission(max_streams=4, threshold=THRESHOLD, cpu=gauge, cpu_target=0.9)
    server = Server(0)
    admission.load(server)
    now[0], process.seconds = 10.0, 2.0  # 0.1 of 2 cores over 10 s
    assert admission.load(server) == pytest.approx(THRESHOLD * 0.1 / 0.9)
    now[0], process.seconds = 10.01, 2.02  # 10 ms of two busy threads
    assert admission.load(server) == pytest.approx(THRESHOLD * 0.1 / 0.9)
    assert admission.has_room()
    now[0], process.seconds = 12.5, 2.5  # the periodic check: measured since t=10
    assert gauge.read() == pytest.approx(0.5 / 2.5 / 2.0)


def test_turning_full_and_back_is_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    admission = Admission(max_streams=2, threshold=THRESHOLD)
    with caplog.at_level("INFO", logger="agent"):
        for active in (1, 2, 2, 1, 1):
            admission.load(Server(active))
    said = [r.getMessage() for r in caplog.records if r.name == "agent"]
    assert said == ["worker full: no new jobs", "worker has room again"]
