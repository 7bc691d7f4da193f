"""The LiveKit Agents worker: the avatar's face, rendered live in LiveKit rooms.

Public surface: LipSyncVideoGenerator (a livekit-agents VideoGenerator over the renderer) and,
in agent.plugin, AvatarSession (use our avatar from any LiveKit agent). Names load on first use,
so a third-party agent importing agent.plugin does not pull in the renderer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.video_generator import AvatarAudioFrame, AvatarVideoFrame, LipSyncVideoGenerator

__all__ = ["AvatarAudioFrame", "AvatarVideoFrame", "LipSyncVideoGenerator"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("agent.video_generator"), name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
