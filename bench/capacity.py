"""Capacity: what each concurrent realtime session costs through the real stack.

    bash scripts/services.sh run env PYTHONPATH=$PWD .venv/bin/python -m bench.capacity \\
        --label before [--sessions 1,2,4,8] [--seconds 30] [--watch 2] [--notes FILE]

One livekit-server, one `atlas serve` and `--workers` `atlas agent start` (max streams each: the
largest N over the workers) for the whole run. For each N, N passthrough sessions are created
and each client publishes the speech fixture in real time (its first 2 s, then 1.2 s of silence,
looped: the silences give the onsets that glass-to-glass is measured from). Only `--watch`
clients subscribe to and decode the avatar's video; the others subscribe to its audio only, so
the measuring client's own CPU stays small (and the SFU forwards only the watched streams'
video).

After `--warmup` s of speech, a steady window of `--seconds` s, measured from /proc:
- agent cores: CPU time of the worker's whole process tree (worker, forkserver, job and idle
  processes, every thread) over the window; per session = that / N;
- agent PSS: the sum of Pss (smaps_rollup) over that tree at the window's end; per added
  session = the growth from the smallest N measured, divided by the sessions added;
- SFU cores (livekit-server), client cores (this process), other load (the whole machine's
  busy cores minus the agent, the SFU, the API and the client: the other work on the machine);
- on watched streams: fps received, late frames (a gap over 1.5 frame intervals), and
  glass-to-glass: from each sent onset to the first received frame with the mouth open
  (bench/realtime_e2e.py's detector; the resting mouth is read in the last 0.5 s before each
  onset); of which in the agent: the median over sessions of each one's `speech_start_p50_ms`
  (its summary: a segment's first audio at the renderer to its first speech frame out).

Writes the `capacity` section of BENCHMARKS.md: one block per `--label` (e.g. before, after);
a run replaces its own label's block and keeps the others.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livekit import rtc

from bench import procfs
from bench.realtime_e2e import fps_and_late, onset_samples, open_latencies
from bench.report import read_section, write_section
from renderer.landmarks import FaceLandmarker
from tests.e2e import media
from tests.e2e.stack import Stack, poll, start_stack
from tests.livekit_server import start_livekit_server, stop

KEY = "capacity"
TITLE = "Capacity: cost per concurrent session (issue 19)"
LABEL = re.compile(r"[a-z0-9][a-z0-9-]*")
BLOCK = re.compile(r"<!-- capacity:([a-z0-9-]+):start -->\n.*?<!-- capacity:\1:end -->", re.S)
JOIN_LIMIT_S = 180.0  # hang guards: N job processes starting at once on a busy machine
SETTLE_LIMIT_S = 120.0
SPEECH_S = 2.0
GAP_S = 1.2
CHUNK_S = 0.02
REST_S = 0.5  # the resting mouth: frames received this long before an onset
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Measured:
    sessions: int  # asked for
    created: int  # got 200
    agent_cores: float
    agent_pss_mb: float
    agent_procs: int
    sfu_cores: float
    api_cores: float
    client_cores: float
    machine_cores: float
    load_avg: float
    fps: list[float]
    late: list[float]
    g2g: list[float]
    threads: dict[str, float]
    # each session's speech_start_p50_ms from its summary: the agent's share of glass-to-glass
    agent_start_ms: list[float] = field(default_factory=list)

    @property
    def other_cores(self) -> float:
        ours = self.agent_cores + self.sfu_cores + self.api_cores + self.client_cores
        return max(self.machine_cores - ours, 0.0)


@dataclass
class Processes:
    agents: list[int]  # the workers
    sfu: int
    api: int

    def snapshot(self) -> dict[str, procfs.Snapshot]:
        return {
            "agent": procfs.Snapshot.take(self.agents),
            "sfu": procfs.Snapshot.take([self.sfu]),
            "api": procfs.Snapshot.take([self.api]),
            # this process only: the stack's processes are its children
            "client": procfs.Snapshot.take([os.getpid()], descendants=False),
        }


# -- one round ---------------------------------------------------------------------------------


def looped_speech(seconds: float) -> np.ndarray:
    """The fixture's first SPEECH_S s then GAP_S s of silence, repeated for `seconds`, at the
    viewer's rate (resampled once here, not in every client)."""
    speech, rate = media.load_speech()
    burst = media.resample(speech[: int(SPEECH_S * rate)], rate, media.RATE).astype(np.int16)
    unit = np.concatenate([media.silence(GAP_S), burst])
    return np.resize(unit, int(seconds * media.RATE))


async def play(source: rtc.AudioSource, pcm: np.ndarray) -> list[float]:
    """Push `pcm` in real time, CHUNK_S a chunk (20 ms: half the client's calls of 10 ms);
    when each chunk was taken into the source's queue (of 40 ms). Per chunk, not
    start + i / rate: a client starved of CPU on a loaded machine leaves gaps, and a computed
    timeline would put every later onset too late."""
    step = int(media.RATE * CHUNK_S)
    taken = []
    for i in range(0, len(pcm) - step + 1, step):
        chunk = np.ascontiguousarray(pcm[i : i + step])
        await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), media.RATE, 1, step))
        taken.append(time.monotonic())
    await source.wait_for_playout()
    return taken


def sent_onsets(pcm: np.ndarray, taken: list[float]) -> list[float]:
    step = int(media.RATE * CHUNK_S)
    return [taken[i // step] for i in onset_samples(pcm, media.RATE) if i // step < len(taken)]


async def join(viewer: media.Viewer, session: dict[str, str], *, watched: bool) -> None:
    if watched:
        await viewer.join(session["livekit_url"], session["token"])
        return

    # Unwatched: the avatar's audio only (the worker publishes its video once its audio has a
    # subscriber, as any viewer's would); no video subscribed, nothing decoded but Opus.
    def listen(publication: rtc.RemoteTrackPublication, *_: object) -> None:
        if publication.kind == rtc.TrackKind.KIND_AUDIO:
            publication.set_subscribed(True)

    viewer.room.on("track_published", listen)
    options = rtc.RoomOptions(auto_subscribe=False)
    await viewer.room.connect(session["livekit_url"], session["token"], options)
    for participant in viewer.room.remote_participants.values():
        for publication in participant.track_publications.values():
            listen(publication)


def agent_video_published(viewer: media.Viewer) -> bool:
    agent = viewer.agent()
    return agent is not None and any(
        p.kind == rtc.TrackKind.KIND_VIDEO for p in agent.track_publications.values()
    )


async def streaming(viewers: list[media.Viewer], watched: int) -> None:
    """Until every watched viewer has a frame and every other one sees the avatar's video."""
    await asyncio.wait_for(
        asyncio.gather(*(v.first_video.wait() for v in viewers[:watched])), JOIN_LIMIT_S
    )

    async def all_published() -> bool:
        return all(agent_video_published(v) for v in viewers[watched:])

    await poll(all_published, limit_s=JOIN_LIMIT_S, what="the avatars' video published")


async def one_round(
    stack: Stack, procs: Processes, n: int, args: argparse.Namespace, landmarker: FaceLandmarker
) -> Measured:
    created = [
        await stack.create_session(mode="passthrough", timeout_s=JOIN_LIMIT_S) for _ in range(n)
    ]
    sessions = [c.json() for c in created if c.status_code == 200]
    watched = min(args.watch, len(sessions))
    viewers = [media.Viewer(keep_pixels=i < watched) for i in range(len(sessions))]
    pcm = looped_speech(args.warmup + args.seconds + 1.0)
    try:
        for i, (viewer, session) in enumerate(zip(viewers, sessions, strict=True)):
            await join(viewer, session, watched=i < watched)
        sources = [(await v.publish_audio())[0] for v in viewers]
        await streaming(viewers, watched)
        # the worker replaces the prewarmed processes the sessions took: let that settle first
        await settled(procs.agents, procs=None, stable_s=args.stable)
        playing = asyncio.gather(*(play(s, pcm) for s in sources))
        await asyncio.sleep(args.warmup)
        start = procs.snapshot()
        profiled = args.profile and n == args.profile_sessions
        spy = await profile_busiest(procs.agents, args) if profiled else None
        await asyncio.sleep(args.seconds)
        end = procs.snapshot()
        if spy is not None:
            await spy.wait()
        pss = agents_pss_mb(procs.agents)
        agent_procs = len(agents_tree(procs.agents))
        load_avg = os.getloadavg()[0]
        sent = await playing
    finally:
        for viewer in viewers:
            await viewer.leave()
        for session in sessions:
            await stack.delete_session(session["session_id"])
    agent_starts = [await agent_speech_start_ms(stack, s["session_id"]) for s in sessions]
    t0, t1 = start["agent"].at, end["agent"].at
    fps, late, g2g = [], [], []
    for viewer, taken in zip(viewers[:watched], sent[:watched], strict=True):
        frames = [f for f in viewer.video if t0 <= f.at <= t1]
        f, lt = fps_and_late([f.at for f in frames])
        fps.append(f)
        late.append(lt)
        starts = [o for o in sent_onsets(pcm, taken) if t0 + REST_S <= o]
        g2g.extend(glass_to_glass(frames, starts, landmarker))
    return Measured(
        sessions=n,
        created=len(sessions),
        agent_cores=procfs.cores(start["agent"], end["agent"]),
        agent_pss_mb=pss,
        agent_procs=agent_procs,
        sfu_cores=procfs.cores(start["sfu"], end["sfu"]),
        api_cores=procfs.cores(start["api"], end["api"]),
        client_cores=procfs.cores(start["client"], end["client"]),
        machine_cores=procfs.machine_cores(start["agent"], end["agent"]),
        load_avg=load_avg,
        fps=fps,
        late=late,
        g2g=g2g,
        threads=procfs.cores_by_thread(start["agent"], end["agent"]),
        agent_start_ms=[ms for ms in agent_starts if ms is not None],
    )


async def agent_speech_start_ms(stack: Stack, session_id: str) -> float | None:
    summary = await stack.session_summary(session_id)
    value = summary.get("speech_start_p50_ms")
    return None if value is None else float(value)


def agents_tree(agents: list[int]) -> list[int]:
    return [pid for agent in agents for pid in procfs.tree(agent)]


def agents_pss_mb(agents: list[int]) -> float:
    return sum(procfs.tree_pss_mb(agent) for agent in agents)


async def profile_busiest(
    agents: list[int], args: argparse.Namespace
) -> asyncio.subprocess.Process:
    """py-spy (--native, raw folded stacks) on the agent trees' busiest process, for the rest
    of the window: with one session, the session's job process (or the worker that hosts it)."""
    first = procfs.Snapshot.take(agents)
    await asyncio.sleep(2.0)
    busy = procfs.cores_by_process(first, procfs.Snapshot.take(agents))
    pid = max(busy, key=lambda p: busy[p])
    spy = str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--threads", "-f", "raw"]
    if args.profile_native:  # C and Rust frames too, but py-spy stops the process per sample:
        # at 100 Hz it fell a minute behind on a loaded machine; at 20 Hz the session still
        # dropped to 10 fps, which skews the shares towards the per-chunk audio work
        command += ["--native", "-r", "20"]
    else:  # Python frames only, read without stopping the process
        command += ["--nonblocking", "-r", "100"]
    if args.profile_gil:  # only the thread holding the GIL: what serialises a process's sessions
        command += ["--gil"]
    command += ["-d", str(int(args.seconds - 2.0)), "-p", str(pid), "-o", str(args.profile)]
    print(f"profiling pid {pid} ({busy[pid]:.2f} cores): {' '.join(command)}", flush=True)
    return await asyncio.create_subprocess_exec(*command)


def glass_to_glass(
    frames: list[media.VideoFrame], sent_onsets: list[float], landmarker: FaceLandmarker
) -> list[float]:
    last = frames[-1].at if frames else 0.0
    sent_onsets = [o for o in sent_onsets if o + 1.5 <= last]  # the whole search window seen
    if not sent_onsets:
        return []
    mouths = media.mouths(frames, landmarker)
    resting = [m.gap for m in mouths if any(o - REST_S <= m.at < o for o in sent_onsets)]
    if not resting:
        return []
    return open_latencies(mouths, sent_onsets, float(np.median(resting)))


async def idle(procs: Processes, seconds: float) -> Measured:
    start = procs.snapshot()
    await asyncio.sleep(seconds)
    end = procs.snapshot()
    return Measured(
        sessions=0,
        created=0,
        agent_cores=procfs.cores(start["agent"], end["agent"]),
        agent_pss_mb=agents_pss_mb(procs.agents),
        agent_procs=len(agents_tree(procs.agents)),
        sfu_cores=procfs.cores(start["sfu"], end["sfu"]),
        api_cores=procfs.cores(start["api"], end["api"]),
        client_cores=procfs.cores(start["client"], end["client"]),
        machine_cores=procfs.machine_cores(start["agent"], end["agent"]),
        load_avg=os.getloadavg()[0],
        fps=[],
        late=[],
        g2g=[],
        threads=procfs.cores_by_thread(start["agent"], end["agent"]),
    )


async def settled(agents: list[int], *, procs: int | None, stable_s: float = 3.0) -> int:
    """Until the agent trees' process count holds still for `stable_s` (and, given `procs`,
    is no more than that: the sessions' job processes have exited). Returns the count."""
    deadline = time.monotonic() + SETTLE_LIMIT_S
    count, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = len(agents_tree(agents))
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= stable_s and (procs is None or count <= procs):
            return count
        await asyncio.sleep(0.25)
    print(f"agent tree still at {count} processes after {SETTLE_LIMIT_S:.0f} s", file=sys.stderr)
    return count


async def measure(stack: Stack, procs: Processes, args: argparse.Namespace) -> list[Measured]:
    landmarker = FaceLandmarker(max_faces=1)
    try:
        base = await settled(procs.agents, procs=None)
        out = [await idle(procs, min(args.seconds, 10.0))]
        print(row(out[-1], out), flush=True)
        for n in args.sessions:
            try:
                out.append(await one_round(stack, procs, n, args, landmarker))
            except (AssertionError, TimeoutError) as exc:  # a hang guard fired: stop here
                print(f"{n} sessions failed: {exc!r}", file=sys.stderr)
                args.failed = f"{n} sessions: {type(exc).__name__}: {exc}"
                break
            print(row(out[-1], out), flush=True)
            print(f"  glass-to-glass, ms: {sorted(round(1000 * g) for g in out[-1].g2g)}")
            await settled(procs.agents, procs=base)
        return out
    finally:
        landmarker.close()


# -- the report --------------------------------------------------------------------------------

HEADER = (
    "| sessions | agent cores / session | agent cores | agent PSS MB | PSS MB / added session "
    "| agent processes | SFU cores | client cores | other load, cores | fps watched | "
    "late frames | glass-to-glass p50 (onsets) | of which in the agent, p50 |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def added_pss(m: Measured, rows: list[Measured]) -> str:
    first = next((r for r in rows if r.sessions > 0), None)
    if m.sessions == 0 or first is None or first is m:
        return "-"
    return f"{(m.agent_pss_mb - first.agent_pss_mb) / (m.sessions - first.sessions):+.0f}"


def row(m: Measured, rows: list[Measured]) -> str:
    made = f"{m.sessions}" if m.created == m.sessions else f"{m.sessions} ({m.created} created)"
    per = f"{m.agent_cores / m.created:.3f}" if m.created else "-"
    fps = ", ".join(f"{f:.1f}" for f in m.fps) or "-"
    late = ", ".join(f"{100 * lt:.1f}%" for lt in m.late) or "-"
    g2g = f"{1000 * float(np.median(m.g2g)):.0f} ms ({len(m.g2g)})" if m.g2g else "-"
    start = f"{float(np.median(m.agent_start_ms)):.0f} ms" if m.agent_start_ms else "-"
    return (
        f"| {made if m.sessions else 'idle'} | {per} | {m.agent_cores:.2f} | "
        f"{m.agent_pss_mb:.0f} | {added_pss(m, rows)} | {m.agent_procs} | {m.sfu_cores:.2f} | "
        f"{m.client_cores:.2f} | {m.other_cores:.2f} | {fps} | {late} | {g2g} | {start} |"
    )


def thread_split(m: Measured, top: int = 8) -> str:
    ranked = sorted(m.threads.items(), key=lambda kv: kv[1], reverse=True)
    shown = [f"{name} {value:.3f}" for name, value in ranked[:top] if value >= 0.001]
    rest = sum(v for _, v in ranked[top:])
    return ", ".join(shown) + (f", the rest {rest:.3f}" if rest >= 0.001 else "")


def label_block(label: str, rows: list[Measured], args: argparse.Namespace, notes: str) -> str:
    commit = git_commit()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    loads = [m.load_avg for m in rows]
    one = next((m for m in rows if m.sessions == 1), None)
    flags = (
        f"--label {label} --sessions {','.join(map(str, args.sessions))} "
        f"--seconds {args.seconds:g} --warmup {args.warmup:g} --watch {args.watch}"
        f"{f' --workers {args.workers}' if args.workers != 1 else ''}"
        f"{''.join(f' --env {name}={value}' for name, value in args.env)}"
    )
    lines = [
        f"<!-- capacity:{label}:start -->",
        f"### {label}: commit {commit}, {when}",
        "",
        "Command: `bash scripts/services.sh run env PYTHONPATH=$PWD .venv/bin/python -m "
        f"bench.capacity {flags}`",
        "",
        f"Machine: {os.cpu_count()} CPUs ({platform.machine()}), shared with other people's work "
        f"(load average {min(loads):.1f}-{max(loads):.1f} during the run; their CPU is the "
        "'other load' column). Warp renderer, 512x512 at 25 fps, "
        f"{dict(args.env).get('ATLAS_AGENT_VIDEO_CODEC', 'vp8').upper()}, livekit-server on "
        f"loopback; {args.watch} stream(s) watched per N; {args.workers} agent worker(s), "
        f"sessions as {args.executor}s.",
        "",
        HEADER,
        *(row(m, rows) for m in rows),
    ]
    if one is not None:
        lines += ["", f"Agent cores by thread at 1 session: {thread_split(one)}."]
    if getattr(args, "failed", None):
        lines += ["", f"Not measured: {args.failed} (the run stopped there)."]
    if notes.strip():
        lines += ["", notes.strip()]
    lines.append(f"<!-- capacity:{label}:end -->")
    return "\n".join(lines)


def merged_body(old: str | None, label: str, block: str) -> str:
    """The section's body with `block` in it: in place of its label's block where there is one,
    else last. Everything else (the intro, other labels' blocks, notes written by hand between
    them) is kept as it was."""
    if not old or not old.strip():
        return f"{INTRO}\n\n{block}"
    ours = re.compile(
        rf"<!-- capacity:{re.escape(label)}:start -->\n.*?<!-- capacity:{re.escape(label)}:end -->",
        re.S,
    )
    if ours.search(old):
        return ours.sub(lambda _: block, old, count=1)
    return f"{old.rstrip()}\n\n{block}"


INTRO = (
    "What each concurrent passthrough session costs through the real stack (`bench/capacity.py`; "
    "its docstring says how each column is measured). Agent cores and PSS cover the worker's "
    "whole process tree (forkserver, job and prewarmed idle processes); CPU-seconds per session "
    "depend less on the machine's other load than fps and late frames do. Each label is one "
    "run on the code of its commit."
)


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


# -- main --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> list[Measured]:
    most = max(args.sessions)
    streams = -(-most // args.workers)  # each worker's share of the most sessions, rounded up
    with tempfile.TemporaryDirectory() as tmp:
        server, sfu = start_livekit_server(Path(tmp))
        try:
            stack = start_stack(
                Path(tmp),
                server,
                workers=args.workers,
                api_env={
                    "ATLAS_REALTIME_CAPACITY": str(most),
                    # a create may wait for a job process to start on a busy machine: the
                    # bench measures sessions, not admission under load
                    "ATLAS_REALTIME_JOIN_TIMEOUT_S": str(JOIN_LIMIT_S),
                },
                ATLAS_AGENT_MAX_STREAMS=str(streams),
                ATLAS_AGENT_JOB_EXECUTOR=args.executor,
                **dict(args.env),
            )
            try:
                agents = [worker.pid for worker in stack.workers]
                procs = Processes(agents=agents, sfu=sfu.pid, api=stack.api_proc.pid)
                return asyncio.run(measure(stack, procs, args))
            finally:
                stack.stop()
        finally:
            stop(sfu)


def label(value: str) -> str:
    if not LABEL.fullmatch(value):
        raise argparse.ArgumentTypeError("a label is lower-case letters, digits and '-'")
    return value


def env_pair(value: str) -> tuple[str, str]:
    name, sep, setting = value.partition("=")
    if not sep or not name.startswith("ATLAS_"):
        raise argparse.ArgumentTypeError("expected ATLAS_NAME=VALUE")
    return name, setting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", type=label, required=True, help="e.g. before, after")
    parser.add_argument(
        "--sessions", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2, 4, 8]
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="the steady window")
    parser.add_argument("--warmup", type=float, default=5.0, help="speech before the window")
    parser.add_argument(
        "--stable", type=float, default=10.0, help="agent process count still before speech"
    )
    parser.add_argument("--watch", type=int, default=2, help="streams the client decodes")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="agent workers (processes) sharing the sessions; the agent columns sum them",
    )
    parser.add_argument(
        "--executor",
        choices=["thread", "process"],
        default="thread",
        help="the worker's ATLAS_AGENT_JOB_EXECUTOR: sessions as threads of one process, or a "
        "process per session",
    )
    parser.add_argument(
        "--env",
        type=env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an ATLAS_* setting for the worker, e.g. ATLAS_AGENT_VIDEO_CODEC=h264 (repeatable)",
    )
    parser.add_argument("--notes", type=Path, help="text added under this label's table")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the busiest agent process during one window (--profile-sessions) into "
        "this file "
        "(folded stacks; py-spy costs CPU, so use with --dry-run)",
    )
    parser.add_argument(
        "--profile-native", action="store_true", help="py-spy --native (stops the process)"
    )
    parser.add_argument(
        "--profile-gil", action="store_true", help="py-spy --gil: samples of the GIL's holder"
    )
    parser.add_argument(
        "--profile-sessions", type=int, default=1, help="profile the window of this N"
    )
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = parser.parse_args()
    notes = args.notes.read_text() if args.notes else ""
    rows = run(args)
    block = label_block(args.label, rows, args, notes)
    print(block)
    if not args.dry_run:
        write_section(KEY, TITLE, merged_body(read_section(KEY), args.label, block))


if __name__ == "__main__":
    main()
