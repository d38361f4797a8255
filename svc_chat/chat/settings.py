"""Settings of svc_chat's chat part (a group of svc_chat.settings.Settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatSettings:
    """Filled in by the chat part: every field a ``reels.config.setting(...)``."""
