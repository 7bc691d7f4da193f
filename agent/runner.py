"""AvatarRunner wiring: the generator's frames through AVSynchronizer into the room's tracks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from livekit import rtc
from livekit.agents.voice.avatar import (
    AudioReceiver,
    AvatarOptions,
    AvatarRunner,
    VideoGenerator,
)

from agent.clock import Clock
from agent.config import SYNC_QUEUE_FRAMES, VIDEO_MAX_BITRATE, AgentSettings
from agent.playback import PlaybackGuard
from agent.protocol_receiver import ProtocolAudioReceiver
from agent.video_generator import LipSyncVideoGenerator

# What the avatar's video is published as. One 512x512 layer (no simulcast: a viewer of a
# talking face wants the face, and the lower layers cost encoder time on a busy CPU), a bitrate
# that carries a face at 25 fps (config.VIDEO_MAX_BITRATE), and "keep both": under load
# WebRTC's default (balanced) first halves the resolution and drops to ~19 fps, which e2e
# scenario 1 caught.
KEEP_FRAMERATE_AND_RESOLUTION = cast(
    Any, rtc.DegradationPreference.MAINTAIN_FRAMERATE_AND_RESOLUTION.value
)
# Both tracks in one media stream, so the viewer's WebRTC stack lip-syncs them on playout
# (RTCP sender reports); as separate streams each track is played out on its own.
AVATAR_STREAM = "atlas-avatar"


CODECS = {
    "vp8": rtc.VideoCodec.VP8,
    "h264": rtc.VideoCodec.H264,
    "vp9": rtc.VideoCodec.VP9,
    "av1": rtc.VideoCodec.AV1,
}
ENCODERS = {
    "auto": rtc.VideoEncoderBackend.ENCODER_BACKEND_AUTO,
    "software": rtc.VideoEncoderBackend.ENCODER_BACKEND_SOFTWARE,
    "hardware": rtc.VideoEncoderBackend.ENCODER_BACKEND_HARDWARE,
    "nvenc": rtc.VideoEncoderBackend.ENCODER_BACKEND_NVENC,
    "vaapi": rtc.VideoEncoderBackend.ENCODER_BACKEND_VAAPI,
}


@dataclass(frozen=True, slots=True)
class VideoPublishing:
    """How the avatar's video is encoded (ATLAS_AGENT_VIDEO_CODEC, _ENCODER, _MAX_BITRATE)."""

    codec: str = "vp8"
    encoder: str = "auto"
    max_bitrate: int = VIDEO_MAX_BITRATE


def video_publishing(settings: AgentSettings) -> VideoPublishing:
    return VideoPublishing(
        codec=settings.agent_video_codec,
        encoder=settings.agent_video_encoder,
        max_bitrate=settings.agent_video_max_bitrate,
    )


def video_publish_options(
    fps: int, publishing: VideoPublishing | None = None
) -> rtc.TrackPublishOptions:
    publishing = publishing or VideoPublishing()
    return rtc.TrackPublishOptions(
        source=rtc.TrackSource.SOURCE_CAMERA,
        simulcast=False,
        video_codec=CODECS[publishing.codec],
        video_encoder=ENCODERS[publishing.encoder],
        video_encoding=rtc.VideoEncoding(max_bitrate=publishing.max_bitrate, max_framerate=fps),
        degradation_preference=KEEP_FRAMERATE_AND_RESOLUTION,
        stream=AVATAR_STREAM,
    )


class _Runner(AvatarRunner):
    """AvatarRunner that publishes the video with `video_publish_options`.

    livekit-agents 1.8.9 publishes both tracks with default options from `_publish_track` and
    offers no parameter for them; this is that method with the video options replaced.
    """

    def __init__(self, *args: Any, publishing: VideoPublishing, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._publishing = publishing

    async def _publish_track(self) -> None:
        async with self._lock:
            await self._room_connected_fut
            audio_track = rtc.LocalAudioTrack.create_audio_track("avatar_audio", self._audio_source)
            audio_options = rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_MICROPHONE, stream=AVATAR_STREAM
            )
            self._audio_publication = await self._room.local_participant.publish_track(
                audio_track, audio_options
            )
            await self._audio_publication.wait_for_subscription()
            video_track = rtc.LocalVideoTrack.create_video_track("avatar_video", self._video_source)
            self._video_publication = await self._room.local_participant.publish_track(
                video_track,
                video_publish_options(round(self._options.video_fps), self._publishing),
            )


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
    sync_frames: int = SYNC_QUEUE_FRAMES,
    publishing: VideoPublishing | None = None,
) -> AvatarRunner:
    """An AvatarRunner publishing `generator`'s video and audio to `room` (call start()).
    `video_gen`: what the runner drives instead, if it wraps `generator` (PlaybackGuard).
    `sync_frames`: the synchroniser's queues, in frames (ATLAS_AGENT_SYNC_FRAMES)."""
    queue_ms = round(sync_frames * 1000 / generator.options.fps)
    return _Runner(
        room,
        audio_recv=audio_recv,
        video_gen=video_gen or generator,
        options=avatar_options(generator),
        _queue_size_ms=queue_ms,
        publishing=publishing or VideoPublishing(),
    )


def create_guarded_runner(
    room: rtc.Room,
    *,
    receiver: AudioReceiver,
    generator: LipSyncVideoGenerator,
    clock: Clock | None = None,
    sync_frames: int = SYNC_QUEUE_FRAMES,
    publishing: VideoPublishing | None = None,
) -> tuple[AvatarRunner, PlaybackGuard]:
    """An AvatarRunner whose playback reports come from PlaybackGuard: exactly one
    playback_started (when audio first leaves the renderer) and one playback_finished per
    segment, and every clear answered, whatever `receiver` is."""
    guard = PlaybackGuard(receiver=receiver, generator=generator, clock=clock)
    runner = create_avatar_runner(
        room,
        audio_recv=guard.receiver,
        generator=generator,
        video_gen=guard.generator,
        sync_frames=sync_frames,
        publishing=publishing,
    )
    return runner, guard


def create_protocol_runner(
    room: rtc.Room,
    *,
    generator: LipSyncVideoGenerator,
    sender_identity: str | None,
    clock: Clock | None = None,
    sync_frames: int = SYNC_QUEUE_FRAMES,
    publishing: VideoPublishing | None = None,
) -> tuple[AvatarRunner, PlaybackGuard]:
    """The LiveKit avatar protocol (plugin mode): `sender_identity`'s audio byte streams
    (ProtocolAudioReceiver) rendered by `generator`, through PlaybackGuard."""
    receiver = ProtocolAudioReceiver(room, sender_identity=sender_identity)
    return create_guarded_runner(
        room,
        receiver=receiver,
        generator=generator,
        clock=clock,
        sync_frames=sync_frames,
        publishing=publishing,
    )
