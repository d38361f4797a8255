"""Settings of svc_chat's ws part (a group of svc_chat.settings.Settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebSocketSettings:
    """Filled in by the ws part: every field a ``reels.config.setting(...)``."""
