"""Which A/V synchroniser queue to ship (ATLAS_AGENT_SYNC_FRAMES), measured end to end.

    bash scripts/services.sh run .venv/bin/python -m bench.sync_buffer [--frames 1,2,3] [--busy]

For each candidate queue, a fresh stack (livekit-server, `atlas serve`, one `atlas agent start`
with ATLAS_AGENT_SYNC_FRAMES set) runs `--rounds` rounds of `--sessions` concurrent passthrough
sessions, each client playing the speech fixture in real time. `--busy` keeps the machine's
other core spinning (a `yes` process) throughout. Per candidate:

- audio underruns: the worker's session summaries (agent/video_generator.py counts a frame's
  audio that leaves after the audio before it has played out, inside a segment), per minute of
  speech, and the dry time per minute;
- A/V lag at the viewer: mouth openness read with the landmarker against the received audio's
  envelope, both on arrival time, on a 10 ms grid (positive: the mouth comes after the voice);
- glass-to-glass: the same mouth against the sent audio's envelope.

Writes the `sync-buffer` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.report import write_section
from renderer.landmarks import FaceLandmarker
from tests.e2e import media
from tests.e2e.stack import Stack, start_stack
from tests.livekit_server import start_livekit_server, stop

GRID_S = 0.01
JOIN_LIMIT_S = 180.0


@dataclass
class Round:
    underruns: int
    underrun_ms: float
    speech_s: float
    av_lag_ms: list[float]
    g2g_ms: list[float]


async def one_round(stack: Stack, sessions: int, landmarker: FaceLandmarker) -> Round:
    created = [await stack.create_session(mode="passthrough") for _ in range(sessions)]
    infos = [c.json() for c in created if c.status_code == 200]
    viewers = [media.Viewer() for _ in infos]
    speech, rate = media.load_speech()
    pcm = np.concatenate([media.silence(1.0, rate), speech, media.silence(1.0, rate)])
    try:
        for viewer, info in zip(viewers, infos, strict=True):
            await viewer.join(info["livekit_url"], info["token"])
        sources = [(await v.publish_audio())[0] for v in viewers]
        await asyncio.wait_for(
            asyncio.gather(*(v.first_video.wait() for v in viewers)), JOIN_LIMIT_S
        )
        sent = await asyncio.gather(*(media.play(s, pcm, rate) for s in sources))
    finally:
        for viewer in viewers:
            await viewer.leave()
        for info in infos:
            await stack.delete_session(info["session_id"])
    out = Round(0, 0.0, 0.0, [], [])
    for viewer, info, s in zip(viewers, infos, sent, strict=True):
        summary = await stack.session_summary(info["session_id"])
        out.underruns += int(summary["audio_underruns"])
        out.underrun_ms += float(summary["audio_underrun_ms"])
        out.speech_s += summary["speech_frames"] / media.FPS
        av, g2g = lags(viewer, s, landmarker)
        out.av_lag_ms.append(av)
        out.g2g_ms.append(g2g)
    return out


def lags(viewer: media.Viewer, sent: media.Sent, landmarker: FaceLandmarker) -> tuple[float, float]:
    """(viewer A/V lag, glass-to-glass), ms, by correlation on a 10 ms grid."""
    frames = [f for f in viewer.video if f.at >= sent.start]
    mouths = media.mouths(frames, landmarker)
    end = sent.start + len(sent.pcm) / sent.rate
    grid = np.arange(sent.start + 0.5, end, GRID_S)
    mouth = media.on_grid(np.array([m.at for m in mouths]), np.array([m.gap for m in mouths]), grid)
    heard = media.envelope_on_grid(viewer.audio, grid)
    av, _ = media.lag_frames(heard, mouth, 25)
    g2g, _ = media.lag_frames(media.sent_envelope_on_grid(sent, grid), mouth, 60)
    return av * GRID_S * 1000, g2g * GRID_S * 1000


async def measure(stack: Stack, rounds: int, sessions: int) -> list[Round]:
    landmarker = FaceLandmarker(max_faces=1)
    try:
        return [await one_round(stack, sessions, landmarker) for _ in range(rounds)]
    finally:
        landmarker.close()


def candidate(tmp: Path, frames: int, args: argparse.Namespace) -> list[Round]:
    server, proc = start_livekit_server(tmp)
    try:
        stack = start_stack(
            tmp,
            server,
            api_env={"ATLAS_REALTIME_CAPACITY": str(args.sessions + 1)},
            ATLAS_AGENT_MAX_STREAMS=str(args.sessions + 1),
            ATLAS_AGENT_SYNC_FRAMES=str(frames),
        )
        try:
            return asyncio.run(measure(stack, args.rounds, args.sessions))
        finally:
            stack.stop()
    finally:
        stop(proc)


def row(frames: int, rounds: list[Round]) -> str:
    minutes = sum(r.speech_s for r in rounds) / 60 or 1.0
    underruns = sum(r.underruns for r in rounds)
    dry = sum(r.underrun_ms for r in rounds)
    av = [v for r in rounds for v in r.av_lag_ms]
    g2g = [v for r in rounds for v in r.g2g_ms]
    return (
        f"| {frames} ({1000 * frames // media.FPS} ms) | {underruns / minutes:.1f} | "
        f"{dry / minutes:.0f} ms | {np.median(av):+.0f} ms ({min(av):+.0f}..{max(av):+.0f}) | "
        f"{np.median(g2g):.0f} ms |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="1,2,3", help="candidate queues, in frames")
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--busy", action="store_true", help="keep the other core busy")
    args = parser.parse_args()
    busy: subprocess.Popen[bytes] | None = None
    if args.busy:
        busy = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
    rows: list[str] = []
    try:
        for frames in [int(f) for f in args.frames.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(row(frames, candidate(Path(tmp), frames, args)))
            print(rows[-1], flush=True)
    finally:
        if busy is not None:
            busy.kill()
    load = "the other core kept busy (`yes`)" if args.busy else "no other load"
    body = "\n".join(
        [
            f"Machine: {os.cpu_count()} CPUs ({platform.machine()}), {load}; "
            f"{args.sessions} concurrent passthrough sessions x {args.rounds} rounds a candidate, "
            "warp renderer 512x512 at 25 fps, livekit-server on loopback.",
            "",
            "| queue | underruns / min of speech | dry time / min | viewer A/V lag, median "
            "(range) | glass-to-glass, median |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    print(body)
    key = "sync-buffer-busy" if args.busy else "sync-buffer"
    title = "A/V sync queue, other core busy" if args.busy else "A/V sync queue"
    flags = f"--frames {args.frames} --sessions {args.sessions} --rounds {args.rounds}"
    command = f"bash scripts/services.sh run .venv/bin/python -m bench.sync_buffer {flags}"
    if args.busy:
        command += " --busy"
    write_section(key, title, f"Command: `{command}`\n\n{body}")


if __name__ == "__main__":
    main()
