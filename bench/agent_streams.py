"""Concurrent in-process avatar streams: how many run at 25 fps with no late frames?

Each stream is the worker's real path minus WebRTC encoding: LipSyncVideoGenerator (renderer
on its own thread) -> AVSynchronizer with real AudioSource/VideoSource, fed with continuous
speech (the espeak fixture, looped, pushed ahead in 10 ms frames as TTS would). A frame is
late when the synchroniser takes it more than one frame interval after its slot on the
stream's clock. RSS per stream is the process's RSS growth over the round divided by the
number of streams (later rounds reuse memory freed by earlier ones, so read the first row as
the cost of one stream).

    PYTHONPATH=. python bench/agent_streams.py [--size 512] [--seconds 8] [--max-streams 4]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import wave
from pathlib import Path

import numpy as np
from livekit import rtc

from agent.video_generator import LipSyncVideoGenerator
from renderer import FaceAsset, RendererOptions

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def one_stream(
    face: FaceAsset, options: RendererOptions, pcm: np.ndarray, rate: int, seconds: float
) -> tuple[int, int, float]:
    gen = LipSyncVideoGenerator(face=face, options=options)
    audio = rtc.AudioSource(options.sample_rate, 1, queue_size_ms=40)
    video = rtc.VideoSource(*gen.video_size)
    sync = rtc.AVSynchronizer(
        audio_source=audio, video_source=video, video_fps=options.fps, video_queue_size_ms=40
    )

    # TTS-like: the whole utterance arrives ahead of playback, as 10 ms frames
    total = int((seconds + 2) * rate)
    speech = np.resize(pcm, total)
    step = rate // 100
    for i in range(0, total, step):
        chunk = speech[i : i + step]
        await gen.push_audio(rtc.AudioFrame(chunk.tobytes(), rate, 1, chunk.size))
    frames = late = 0
    start = time.perf_counter()
    interval = 1 / options.fps
    try:
        async for item in gen:
            if isinstance(item, rtc.VideoFrame):
                slot = start + frames * interval
                if time.perf_counter() - slot > 2 * interval:  # queue of one + one frame late
                    late += 1
                frames += 1
            if isinstance(item, rtc.VideoFrame | rtc.AudioFrame):
                await sync.push(item)
            if time.perf_counter() - start > seconds:
                break
    finally:
        await sync.aclose()
        await gen.aclose()
    return frames, late, frames / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--max-streams", type=int, default=4)
    args = parser.parse_args()
    options = RendererOptions(size=args.size)
    face = FaceAsset.prepare((ROOT / "tests/fixtures/face.jpg").read_bytes(), options=options)
    with wave.open(str(ROOT / "tests/fixtures/speech.wav")) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).copy()
    print("| streams | size | frames/stream | late frames | achieved fps/stream | RSS/stream MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in range(1, args.max_streams + 1):
        base = rss_mb()
        results = await asyncio.gather(
            *(one_stream(face, options, pcm, rate, args.seconds) for _ in range(n))
        )
        frames = [f for f, _, _ in results]
        late = sum(lt for _, lt, _ in results)
        fps = float(np.median([r for _, _, r in results]))
        per_stream = (rss_mb() - base) / n
        print(
            f"| {n} | {args.size} | {int(np.median(frames))} | {late} | "
            f"{fps:.1f} | {per_stream:.0f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
