"""CPU cost of the per-frame and per-chunk steps of one realtime session, outside the renderer.

    PYTHONPATH=. .venv/bin/python -m bench.frame_costs [--seconds 3]

Each step runs alone in a loop, timed in CPU seconds of the whole process (Rust threads of
the LiveKit SDK included), not wall time, so other load on the machine changes it little; the
cost per session is the CPU per call times the calls a second of one 25-fps session (100
chunks of 10 ms of audio in, 25 video frames and 25 audio slices out). The steps are the ones
py-spy shows in a session's job process (BENCHMARKS.md, capacity, "profile (before)").
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from livekit import rtc

from agent.passthrough import SpeechGate

SIZE, FPS, RATE = 512, 25, 24000


async def per_call_s(step: Callable[[], Awaitable[object] | object], seconds: float) -> float:
    """CPU seconds of the process per call of `step`, over about `seconds` of CPU."""
    calls, started = 0, time.process_time()
    while time.process_time() - started < seconds:
        result = step()
        if inspect.isawaitable(result):
            await result
        calls += 1
    return (time.process_time() - started) / calls


async def main_async(seconds: float) -> list[tuple[str, float, int]]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8)
    frame = rtc.VideoFrame(SIZE, SIZE, rtc.VideoBufferType.RGB24, image.tobytes())
    video = rtc.VideoSource(SIZE, SIZE)
    chunk = (rng.normal(0, 3000, RATE // 100)).astype(np.int16)
    slice_ = (rng.normal(0, 3000, RATE // FPS)).astype(np.int16)
    audio = rtc.AudioSource(RATE, 1, queue_size_ms=1000)
    gate = SpeechGate()
    in_frame = rtc.AudioFrame(chunk.tobytes(), RATE, 1, chunk.size)
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(1)

    async def audio_out() -> None:
        await audio.capture_frame(rtc.AudioFrame(slice_.tobytes(), RATE, 1, slice_.size))
        audio.clear_queue()  # keep the queue from filling: this measures the call

    steps: list[tuple[str, Callable[[], Awaitable[object] | object], int]] = [
        ("RGB24 frame -> bytes (image.tobytes(), 768 KB)", image.tobytes, FPS),
        (
            "rtc.VideoFrame(RGB24) from a rendered image (tobytes + wrap)",
            lambda: rtc.VideoFrame(SIZE, SIZE, rtc.VideoBufferType.RGB24, image.tobytes()),
            FPS,
        ),
        (
            "VideoSource.capture_frame(RGB24 512x512): FFI, RGB24 -> I420",
            lambda: video.capture_frame(frame),
            FPS,
        ),
        (
            "VideoFrame.convert(I420) in Python's thread",
            lambda: frame.convert(rtc.VideoBufferType.I420),
            FPS,
        ),
        ("SpeechGate.push, one 10 ms chunk", lambda: gate.push(in_frame), 100),
        (
            "executor hop (run_in_executor of a no-op)",
            lambda: loop.run_in_executor(executor, int),
            100,
        ),
        ("AudioSource.capture_frame, one 40 ms slice", audio_out, FPS),
    ]
    out = []
    for name, step, per_s in steps:
        out.append((name, await per_call_s(step, seconds), per_s))
    executor.shutdown()
    await audio.aclose()
    await video.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU seconds per step")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args.seconds))
    print("| step | CPU per call | calls/s per session | cores per session |")
    print("|---|---|---|---|")
    for name, per_call, per_s in rows:
        print(f"| {name} | {1e6 * per_call:.0f} us | {per_s} | {per_call * per_s:.4f} |")


if __name__ == "__main__":
    main()
