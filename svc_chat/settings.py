"""svc_chat's settings: one frozen dataclass, read from the environment once."""

from __future__ import annotations

from dataclasses import dataclass

from reels.config import FromEnv, PlatformSettings, ServerSettings, group, server_group


@dataclass(frozen=True)
class Settings(FromEnv):
    """Everything svc_chat reads from the environment (README, "Service settings")."""

    server: ServerSettings = server_group("chat")
    platform: PlatformSettings = group(PlatformSettings)
