"""The LiveKit Agents worker: the avatar's face, rendered live in LiveKit rooms.

Public surface: LipSyncVideoGenerator (a livekit-agents VideoGenerator over the renderer) and,
in agent.plugin, AvatarSession (use our avatar from any LiveKit agent).
"""

from agent.video_generator import AvatarAudioFrame, AvatarVideoFrame, LipSyncVideoGenerator

__all__ = ["AvatarAudioFrame", "AvatarVideoFrame", "LipSyncVideoGenerator"]
