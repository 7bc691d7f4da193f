"""Two nodes: the way past one machine (docs/operations.md, "Growing past one machine").

Two livekit-server processes in multi-node mode sharing one Redis, two `atlas serve` replicas
on one PostgreSQL database (LiveKit's webhooks reach them through a balancing relay, as through
a load balancer), and two agent workers of one agent name, one registered on each node:

- capacity is shared: sessions created through both replicas count against one
  ATLAS_REALTIME_CAPACITY, and both replicas refuse the one past it;
- sessions spread over both workers (each takes at most ATLAS_AGENT_MAX_STREAMS);
- SIGKILL of one API replica loses nothing: the other serves every session, and LiveKit's
  webhooks reach it;
- SIGKILL of one worker mid-session ends its sessions alone, as `agent_lost`, billed up to the
  failure: LiveKit notices a dead participant only after its fixed 20 s connection timeout,
  and the bill leaves that out (session_api/realtime_events.py). The other worker's sessions
  keep streaming and end cleanly when deleted.

The figures (how far past the kill each bill ran, the survivors' worst frame gap) are printed,
not asserted: they measure this machine.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from tests.e2e import media
from tests.e2e.stack import (
    Stack,
    create_key,
    kill_tree,
    stack_env,
    start_api,
)
from tests.livekit_server import (
    LiveKitServer,
    in_ci,
    start_livekit_cluster,
    stop,
)
from tests.postgres import fresh_database
from tests.processes import Procs

CAPACITY = 3  # sessions over both replicas
STREAMS = 2  # per worker: three sessions cannot all fit one worker
LIVEKIT_REDIS_DB = 14  # the cluster's own db on the test Redis (the rate-limit tests use 15)
JOIN_LIMIT_S = 180.0  # hang guards only: avatars starting on a busy 2-core machine
END_LIMIT_S = 90.0  # a killed worker's participant times out on the server first
# A killed worker's bill stops at its silence: within about 3 s after the kill (LiveKit's
# timers and whole-second webhook times), where a bill to LiveKit's noticing runs 20 s over.
# Loose on purpose: a stall of this machine must not fail it.
BILL_PAST_KILL_S = 10.0


@dataclass
class TwoNodes:
    """Replica i of the API and worker i are on LiveKit node i; one key, one database."""

    nodes: list[LiveKitServer]
    apis: list[Stack]
    database_url: str

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return self.apis[0].workers  # one list, shared by both replicas' views


def required(name: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    reason = f"{name} unset: run under scripts/services.sh run"
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    with fresh_database(required("ATLAS_TEST_DATABASE_URL"), prefix="atlas_nodes") as url:
        yield url


@pytest.fixture
def livekit_cluster(tmp_path: Path) -> Iterator[list[LiveKitServer]]:
    """Two livekit-server nodes sharing a Redis db of their own (emptied first: a node left
    registered by an earlier run would be offered rooms)."""
    parts = urllib.parse.urlsplit(required("ATLAS_TEST_REDIS_URL"))
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{LIVEKIT_REDIS_DB}"))
    client = redis.Redis.from_url(url)
    workdir = tmp_path / "livekit"
    workdir.mkdir()
    try:
        client.flushdb()
        nodes, procs = start_livekit_cluster(workdir, redis_url=url, nodes=2)
        try:
            yield nodes
        finally:
            for proc in procs:
                stop(proc)
            nodes[0].webhooks.close()
            client.flushdb()
    finally:
        client.close()


@pytest.fixture
def two_nodes(
    tmp_path: Path, livekit_cluster: list[LiveKitServer], database_url: str
) -> Iterator[TwoNodes]:
    env = stack_env(
        tmp_path,  # one data dir: the replicas' file storage is the workers' (S3 in production)
        livekit_cluster[0],
        ATLAS_DATABASE_URL=database_url,
        ATLAS_REDIS_URL=required("ATLAS_TEST_REDIS_URL"),
        ATLAS_SECRET_KEY=secrets.token_urlsafe(24),
        ATLAS_EMBEDDED_WORKER="false",  # as in production: API replicas serve HTTP only
        ATLAS_REALTIME_CAPACITY=str(CAPACITY),
        ATLAS_AGENT_MAX_STREAMS=str(STREAMS),
        ATLAS_AGENT_CPU_CORES="64",  # full on streams only, however busy this machine is
        ATLAS_RENDERER_SIZE="256",  # the scenario is about sessions, not pixels
        # the webhook bills a killed worker's sessions here; the reaper only after this long
        # (it would bill to its sweep), however late a busy machine delivers the webhook
        ATLAS_REALTIME_AGENT_LOST_GRACE_S="30",
    )
    procs = Procs(tmp_path)
    apis: list[Stack] = []
    try:
        key = ""
        workers: list[subprocess.Popen[bytes]] = []
        metrics_ports: dict[int, int] = {}
        for node in livekit_cluster:
            node_env = {**env, **node.env()}  # replica and worker i talk to node i
            api_proc, base_url = start_api(procs, node_env)
            key = key or create_key(node_env)
            api = Stack(
                base_url=base_url,
                key=key,
                livekit=node,
                env=node_env,
                procs=procs,
                api_proc=api_proc,
                workers=workers,
                metrics_ports=metrics_ports,
            )
            node.webhooks.targets.add(api.webhook_url)
            apis.append(api)
        started = [api.start_worker(wait=False) for api in apis]
        for api, worker in zip(apis, started, strict=True):
            api.registered(worker)
        yield TwoNodes(nodes=livekit_cluster, apis=apis, database_url=database_url)
    finally:
        for api in apis:
            livekit_cluster[0].webhooks.targets.discard(api.webhook_url)
        procs.stop_all()


async def end_reasons(database_url: str) -> dict[str, str | None]:
    """Each session's end reason, as the shared database holds it."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT id, end_reason FROM realtime_sessions")
    finally:
        await conn.close()
    return {row["id"]: row["end_reason"] for row in rows}


def worker_of(cluster: TwoNodes, session_id: str) -> subprocess.Popen[bytes]:
    """The worker running the session's avatar: it started the session and has not ended it
    (a job of it that a redispatch superseded on the other worker has)."""

    def logged(worker: subprocess.Popen[bytes], message: str) -> bool:
        lines = cluster.apis[0].log(worker).splitlines()
        return any(f'"{message}"' in line and session_id in line for line in lines)

    (worker,) = [
        w
        for w in cluster.workers
        if logged(w, "session starting") and not logged(w, "session summary")
    ]
    return worker


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def test_two_nodes_share_capacity_spread_sessions_and_survive_kills(
    two_nodes: TwoNodes,
) -> None:
    a, b = two_nodes.apis
    # capacity is one count in PostgreSQL: sessions through both replicas fill it
    created = [await api.create_session(mode="passthrough") for api in (a, b, a)]
    assert [c.status_code for c in created] == [200] * CAPACITY, [c.text for c in created]
    for api in (a, b):
        over = await api.create_session(mode="passthrough")
        assert over.status_code == 503 and over.json()["error"] == "no_capacity", over.text
    sessions: list[dict[str, Any]] = [c.json() for c in created]
    ids = [s["session_id"] for s in sessions]

    # sessions spread over both workers
    placed = {sid: worker_of(two_nodes, sid) for sid in ids}
    assert {w.pid for w in placed.values()} == {w.pid for w in two_nodes.workers}, placed

    viewers = [media.Viewer(keep_pixels=False) for _ in sessions]
    try:
        for viewer, session in zip(viewers, sessions, strict=True):
            await viewer.join(session["livekit_url"], session["token"])
        await asyncio.wait_for(
            asyncio.gather(*(v.first_video.wait() for v in viewers)), JOIN_LIMIT_S
        )
        await _kill_an_api_replica(two_nodes, ids)
        await _kill_a_worker(two_nodes, ids, placed, viewers)
    finally:
        for viewer in viewers:
            await viewer.leave()


async def _kill_an_api_replica(cluster: TwoNodes, ids: list[str]) -> None:
    """SIGKILL replica A: B serves every session, the ones A created included."""
    a, b = cluster.apis
    balanced = a.livekit.webhooks.delivered
    assert balanced.get(a.webhook_url) and balanced.get(b.webhook_url), balanced  # both took some
    a.api_proc.kill()
    a.api_proc.wait()
    for sid in ids:
        assert (await b.get_session(sid))["status"] == "active"
    over = await b.create_session(mode="passthrough")  # A's sessions still hold their slots
    assert over.status_code == 503, over.text


async def _kill_a_worker(
    cluster: TwoNodes,
    ids: list[str],
    placed: dict[str, subprocess.Popen[bytes]],
    viewers: list[media.Viewer],
) -> None:
    """SIGKILL the worker with the most sessions: those end as agent_lost, billed to the
    failure; the others stream on and end when deleted (through the surviving replica)."""
    b = cluster.apis[1]
    victim = max(cluster.workers, key=lambda w: sum(p is w for p in placed.values()))
    lost = [sid for sid in ids if placed[sid] is victim]
    kept = [sid for sid in ids if placed[sid] is not victim]
    delivered_before = dict(b.livekit.webhooks.delivered)

    killed_at, killed_mono = time.time(), time.monotonic()
    kill_tree(victim.pid)
    ended = {}
    for sid in lost:
        ended[sid] = await b.wait_status(sid, {"ended"}, limit_s=END_LIMIT_S)
    learnt_at, learnt_mono = time.time(), time.monotonic()
    reasons = await end_reasons(cluster.database_url)
    overshoot = []
    for sid in lost:
        assert reasons[sid] == "agent_lost", reasons
        ended_at = epoch(ended[sid]["ended_at"])
        # billed from the join to the failure: not to LiveKit's noticing it 20 s later
        assert killed_at - 5 <= ended_at <= killed_at + BILL_PAST_KILL_S, (killed_at, ended[sid])
        started_at = epoch(ended[sid]["started_at"])
        assert abs(ended[sid]["duration_seconds"] - (ended_at - started_at)) <= 1, ended[sid]
        overshoot.append(ended_at - killed_at)
    # LiveKit's webhooks about them reached the surviving replica (A is dead)
    assert b.livekit.webhooks.delivered.get(b.webhook_url, 0) > delivered_before.get(
        b.webhook_url, 0
    )

    # the other worker's sessions: live, and their clients still receive frames
    for sid in kept:
        assert (await b.get_session(sid))["status"] == "active", sid
    survivors = [viewers[ids.index(sid)] for sid in kept]
    for viewer in survivors:
        await asyncio.wait_for(viewer.frames_since(learnt_mono, 2 * media.FPS), END_LIMIT_S)
    gaps = [media.max_gap_s(v.video, killed_mono, time.monotonic()) for v in survivors]
    for sid in kept:
        deleted = await b.delete_session(sid)
        assert deleted.status_code == 200 and deleted.json()["status"] == "ended", deleted.text
        summary = await b.session_summary(sid)
        assert summary["reason"] != "error", summary
    reasons = await end_reasons(cluster.database_url)
    assert all(reasons[sid] is not None and reasons[sid] != "agent_lost" for sid in kept), reasons
    print(
        f"\ntwo nodes: {len(lost)} sessions on the killed worker billed "
        + ", ".join(f"{ended[sid]['duration_seconds']:.1f} s" for sid in lost)
        + ", up to "
        + ", ".join(f"{s:+.1f} s" for s in overshoot)
        + f" from the kill (the API learnt of it {learnt_at - killed_at:.1f} s after);"
        + f" {len(kept)} on the other worker, max frame gap "
        + ", ".join(f"{g * 1000:.0f} ms" for g in gaps)
        + " across the kill"
    )
