"""Settings of svc_chat's streams part (a group of svc_chat.settings.Settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamSettings:
    """Filled in by the streams part: every field a ``reels.config.setting(...)``."""
