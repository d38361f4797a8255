"""Settings of svc_chat's streams part (a group of svc_chat.settings.Settings)."""

from __future__ import annotations

from dataclasses import dataclass

from reels.config import SettingError, setting


@dataclass(frozen=True)
class StreamSettings:
    """Live-stream lifecycle, stream keys and viewer counts.

    Bounds are checked once in ``__post_init__`` (a bad value fails the start, naming
    the variable): a viewer must survive at least one missed heartbeat, so
    ``viewer_ttl_s`` must exceed ``heartbeat_interval_s``.
    """

    ingest_url: str = setting(
        "rtmp://127.0.0.1:1935/live",
        "REELS_LIVE_INGEST_URL",
        "RTMP ingest URL shown with a stream key (the encoder publishes to <url>/<key>)",
    )
    playback_url: str = setting(
        "http://127.0.0.1:8080/api/v1/reels/{stream_id}/playback",
        "REELS_LIVE_PLAYBACK_URL",
        "where a player gets a stream's signed live master (GetPlayback: is_live, "
        "master_manifest_url); {stream_id} is replaced",
    )
    heartbeat_interval_s: float = setting(
        10.0,
        "REELS_LIVE_HEARTBEAT_INTERVAL_S",
        "how often players send ReportViewing (told to them in each reply) (s)",
    )
    viewer_ttl_s: float = setting(
        30.0,
        "REELS_LIVE_VIEWER_TTL_S",
        "a viewer not heard from for this long stops counting (crashed instances too) (s)",
    )
    viewer_state_ttl_s: float = setting(
        86400.0,
        "REELS_LIVE_VIEWER_STATE_TTL_S",
        "Redis keeps a stream's viewer set, peak and unique counter this long after "
        "its last touch (s)",
    )
    info_cache_ttl_s: float = setting(
        1.0,
        "REELS_LIVE_INFO_CACHE_TTL_S",
        "how long one instance trusts its cached stream state (state changes made on "
        "another instance are seen within this) (s)",
    )
    info_cache_size: int = setting(
        10000, "REELS_LIVE_INFO_CACHE_SIZE", "streams whose state one instance caches"
    )

    def __post_init__(self) -> None:
        if self.heartbeat_interval_s <= 0:
            raise SettingError("REELS_LIVE_HEARTBEAT_INTERVAL_S must be positive")
        if self.viewer_ttl_s <= self.heartbeat_interval_s:
            raise SettingError(
                f"REELS_LIVE_VIEWER_TTL_S ({self.viewer_ttl_s}) must exceed "
                f"REELS_LIVE_HEARTBEAT_INTERVAL_S ({self.heartbeat_interval_s})"
            )
        if self.viewer_state_ttl_s < self.viewer_ttl_s:
            raise SettingError("REELS_LIVE_VIEWER_STATE_TTL_S must be >= REELS_LIVE_VIEWER_TTL_S")
        if not 0 <= self.info_cache_ttl_s <= 1.0:
            raise SettingError(
                "REELS_LIVE_INFO_CACHE_TTL_S must be 0..1 s: chat must see a stream end "
                "within 1 s on every instance"
            )
        if self.info_cache_size < 1:
            raise SettingError("REELS_LIVE_INFO_CACHE_SIZE must be at least 1")
