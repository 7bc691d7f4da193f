"""What the avatar's tracks are published with, and the livekit-agents privates that relies on.

livekit-agents 1.8.9 publishes AvatarRunner's tracks from a private method with default
options (simulcast on, "balanced" degradation). agent/runner.py re-implements that method; if
an upgrade renamed it or the attributes it uses, the override would silently stop applying and
the defaults would come back. livekit-agents is pinned exactly in pyproject.toml, and this test
fails first on any such rename."""

from __future__ import annotations

import inspect

import pytest
from livekit import rtc
from livekit.agents.voice.avatar import AvatarOptions, AvatarRunner

from agent.config import AgentSettings
from agent.runner import VideoPublishing, _Runner, video_publish_options, video_publishing

PRIVATES = ("_lock", "_room_connected_fut", "_audio_source", "_video_source", "_options", "_room")


def test_video_is_one_layer_that_keeps_resolution_and_frame_rate() -> None:
    options = video_publish_options(25)
    assert options.simulcast is False
    assert options.source == rtc.TrackSource.SOURCE_CAMERA
    assert options.video_encoding.max_framerate == 25
    assert (
        options.degradation_preference
        == rtc.DegradationPreference.MAINTAIN_FRAMERATE_AND_RESOLUTION.value
    )
    # VP8 unless the operator picks otherwise: every browser decodes it
    assert options.video_codec == rtc.VideoCodec.VP8
    assert options.video_encoder == rtc.VideoEncoderBackend.ENCODER_BACKEND_AUTO
    assert options.video_encoding.max_bitrate == 2_000_000


def test_the_operator_picks_the_codec_encoder_and_bitrate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATLAS_AGENT_VIDEO_CODEC", "h264")
    monkeypatch.setenv("ATLAS_AGENT_VIDEO_ENCODER", "nvenc")
    monkeypatch.setenv("ATLAS_AGENT_VIDEO_MAX_BITRATE", "800000")
    publishing = video_publishing(AgentSettings())
    assert publishing == VideoPublishing(codec="h264", encoder="nvenc", max_bitrate=800_000)
    options = video_publish_options(25, publishing)
    assert options.video_encoding.max_bitrate == 800_000
    assert options.video_codec == rtc.VideoCodec.H264
    assert options.video_encoder == rtc.VideoEncoderBackend.ENCODER_BACKEND_NVENC
    assert options.simulcast is False


def test_the_runner_still_overrides_a_method_livekit_agents_calls() -> None:
    assert "_publish_track" in AvatarRunner.__dict__, "livekit-agents renamed _publish_track"
    assert _Runner._publish_track is not AvatarRunner._publish_track
    calls = inspect.getsource(AvatarRunner)
    assert "await self._publish_track()" in calls  # the runner publishes through it


async def test_the_privates_the_override_uses_exist() -> None:
    room = rtc.Room()
    runner = _Runner(
        room,
        audio_recv=None,  # type: ignore[arg-type]
        video_gen=None,  # type: ignore[arg-type]
        publishing=VideoPublishing(),
        options=AvatarOptions(
            video_width=64,
            video_height=64,
            video_fps=25,
            audio_sample_rate=24000,
            audio_channels=1,
        ),
    )
    missing = [name for name in PRIVATES if not hasattr(runner, name)]
    assert missing == [], f"livekit-agents renamed {missing}"
    assert runner._options.video_fps == 25
