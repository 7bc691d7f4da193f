"""Scenario 3: a face swap mid-speech. PATCH with a new face while the client speaks: the
received frames switch to the new face (its landmark geometry: the new photo is tilted) and
never back, on the same video track, and frames keep arriving after it.

How fast the new face shows and the largest gap across the swap depend on this machine's load:
bench/realtime_e2e.py measures them (BENCHMARKS.md); tests/agent/test_video_generator.py pins
the cause of a stall without a clock (the new face is prepared off the frame loop)."""

from __future__ import annotations

from tests.e2e.face_swap import gap_across, swap_mid_speech, tilts
from tests.e2e.stack import Stack


async def test_face_swap_mid_speech_keeps_the_track_and_the_frames_flowing(stack: Stack) -> None:
    swap = await swap_mid_speech(stack)

    assert len(swap.track_sids) == 1, f"video tracks: {swap.track_sids}"  # never republished
    seen = tilts(swap)
    shown = seen.first_new()
    after = [(round(at - swap.answered, 2), round(t, 1)) for at, t in seen.after]
    assert shown is not None, (
        f"the new face never showed in {len(swap.frames)} frames (tilt {seen.before:.1f}"
        f" before; after the PATCH, s and tilt: {after})"
    )
    assert seen.old_after_new() == [], f"the old face came back (s and tilt: {after})"
    print(
        f"\nface swap: new face {(shown - swap.answered) * 1000:.0f} ms after PATCH answered;"
        f" max gap {gap_across(swap) * 1000:.0f} ms"
    )
