"""svc_rank's settings: one frozen dataclass, read from the environment once."""

from __future__ import annotations

from dataclasses import dataclass

from reels.config import FromEnv, PlatformSettings, ServerSettings, group, server_group, setting


@dataclass(frozen=True)
class Settings(FromEnv):
    """Everything svc_rank reads from the environment (README, "Service settings")."""

    server: ServerSettings = server_group("rank")
    platform: PlatformSettings = group(PlatformSettings)
    trending_timeout_s: float = setting(
        2.0, "REELS_RANK_TRENDING_TIMEOUT_S", "deadline of svc_stream ListTrending calls (s)"
    )
