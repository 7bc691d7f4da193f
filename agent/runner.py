"""AvatarRunner wiring: the generator's frames through AVSynchronizer into the room's tracks."""

from __future__ import annotations

from livekit import rtc
from livekit.agents.voice.avatar import (
    AudioReceiver,
    AvatarOptions,
    AvatarRunner,
    VideoGenerator,
)

from agent.clock import Clock
from agent.playback import PlaybackGuard
from agent.protocol_receiver import ProtocolAudioReceiver
from agent.video_generator import LipSyncVideoGenerator

# The synchroniser's queues, in frames. AvatarRunner sizes both the AudioSource queue and the
# video queue from one duration. Measured through real sources and local-track streams
# (tests/agent/test_runner_sync.py, 6 runs each): one frame keeps the voice and the lips within
# ~15 ms; two frames wandered between +26 and -54 ms from run to run, and the default 100 ms
# (2.5 frames at 25 fps) let the video lead by 25-60 ms. Rendering runs on its own thread, so
# one queued frame is enough headroom when a frame renders in well under a frame interval
# (bench/agent_streams.py measures that).
SYNC_QUEUE_FRAMES = 1


def avatar_options(generator: LipSyncVideoGenerator) -> AvatarOptions:
    width, height = generator.video_size
    return AvatarOptions(
        video_width=width,
        video_height=height,
        video_fps=generator.options.fps,
        audio_sample_rate=generator.options.sample_rate,
        audio_channels=1,
    )


def create_avatar_runner(
    room: rtc.Room,
    *,
    audio_recv: AudioReceiver,
    generator: LipSyncVideoGenerator,
    video_gen: VideoGenerator | None = None,
) -> AvatarRunner:
    """An AvatarRunner publishing `generator`'s video and audio to `room` (call start()).
    `video_gen`: what the runner drives instead, if it wraps `generator` (PlaybackGuard)."""
    queue_ms = round(SYNC_QUEUE_FRAMES * 1000 / generator.options.fps)
    return AvatarRunner(
        room,
        audio_recv=audio_recv,
        video_gen=video_gen or generator,
        options=avatar_options(generator),
        _queue_size_ms=queue_ms,
    )


def create_guarded_runner(
    room: rtc.Room,
    *,
    receiver: AudioReceiver,
    generator: LipSyncVideoGenerator,
    clock: Clock | None = None,
) -> tuple[AvatarRunner, PlaybackGuard]:
    """An AvatarRunner whose playback reports come from PlaybackGuard: exactly one
    playback_started (when audio first leaves the renderer) and one playback_finished per
    segment, and every clear answered, whatever `receiver` is."""
    guard = PlaybackGuard(receiver=receiver, generator=generator, clock=clock)
    runner = create_avatar_runner(
        room, audio_recv=guard.receiver, generator=generator, video_gen=guard.generator
    )
    return runner, guard


def create_protocol_runner(
    room: rtc.Room,
    *,
    generator: LipSyncVideoGenerator,
    sender_identity: str | None,
    clock: Clock | None = None,
) -> tuple[AvatarRunner, PlaybackGuard]:
    """The LiveKit avatar protocol (plugin mode): `sender_identity`'s audio byte streams
    (ProtocolAudioReceiver) rendered by `generator`, through PlaybackGuard."""
    receiver = ProtocolAudioReceiver(room, sender_identity=sender_identity)
    return create_guarded_runner(room, receiver=receiver, generator=generator, clock=clock)
