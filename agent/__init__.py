"""The LiveKit Agents worker: the avatar's face, rendered live in LiveKit rooms.

Public surface: LipSyncVideoGenerator (a livekit-agents VideoGenerator over the renderer).
Third-party agents use `atlas.plugin.AvatarSession`, which imports nothing from this package
(an entrypoint named agent.py would shadow it). Names load on first use.
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
