"""svc_stream's settings: one frozen dataclass, read from the environment once."""

from __future__ import annotations

from dataclasses import dataclass

from reels.config import FromEnv, PlatformSettings, ServerSettings, group, server_group, setting


@dataclass(frozen=True)
class Settings(FromEnv):
    """Everything svc_stream reads from the environment (README, "Service settings")."""

    server: ServerSettings = server_group("stream")
    platform: PlatformSettings = group(PlatformSettings)

    # Playback: the media origin and its signed URLs.
    media_port: int = setting(8090, "REELS_MEDIA_PORT", "port of the media origin (`/media/`)")
    media_host: str = setting("127.0.0.1", "REELS_MEDIA_HOST", "address the media origin binds")
    media_base_url: str = setting(
        "http://127.0.0.1:8080/media",
        "REELS_MEDIA_BASE_URL",
        "base of signed media URLs (Envoy's `/media/` route, or a CDN)",
    )
    media_url_ttl_s: int = setting(
        6 * 3600, "REELS_MEDIA_URL_TTL_S", "lifetime of a signed media URL (s)"
    )
    media_store_timeout_s: float = setting(
        5.0, "REELS_MEDIA_STORE_TIMEOUT_S", "deadline of every object-store call of playback (s)"
    )
    catalog_positive_ttl_s: float = setting(
        60.0, "REELS_CATALOG_POSITIVE_TTL_S", "how long a known video stays cached in memory (s)"
    )
    catalog_negative_ttl_s: float = setting(
        1.0, "REELS_CATALOG_NEGATIVE_TTL_S", "how long an unknown video id is remembered (s)"
    )
    live_state_ttl_s: int = setting(
        7 * 86400,
        "REELS_LIVE_STATE_TTL_S",
        "how long a live stream's LIVE/ENDED state is kept after its last event (s)",
    )

    # Player events (RecordEvents).
    events_future_skew_s: float = setting(
        120.0,
        "REELS_EVENTS_FUTURE_SKEW_S",
        "how far an event's time may lie after its batch's sent_at, both client clock (s)",
    )
    events_max_age_s: float = setting(
        7 * 86400.0,
        "REELS_EVENTS_MAX_AGE_S",
        "oldest event RecordEvents accepts, by its corrected time (s)",
    )
    events_replay_allowance: float = setting(
        3.0,
        "REELS_EVENTS_REPLAY_ALLOWANCE",
        "watch time may reach this many times the duration (looping playback)",
    )
    sink_max_batch: int = setting(
        5000,
        "REELS_SINK_MAX_BATCH",
        "events the analytics sink applies in one batch (a batch record counts its events)",
    )
    sink_linger_s: float = setting(
        0.2, "REELS_SINK_LINGER_S", "how long the analytics sink gathers a batch (s)"
    )

    # Trending.
    trending_interval_s: float = setting(
        60.0, "REELS_TRENDING_INTERVAL_S", "how often trending scores are recomputed (s)"
    )
    trending_w_completion: float = setting(
        1.0, "REELS_TRENDING_W_COMPLETION", "trending weight of a completed view"
    )
    trending_w_like: float = setting(2.0, "REELS_TRENDING_W_LIKE", "trending weight of a like")
    trending_w_share: float = setting(4.0, "REELS_TRENDING_W_SHARE", "trending weight of a share")
    trending_tau_s: float = setting(
        6 * 3600.0, "REELS_TRENDING_TAU_S", "decay time constant of trending scores (s)"
    )

    # Kafka consumer groups of this service (catalog, analytics sink).
    consumer_heartbeat_ms: int = setting(
        1000, "REELS_STREAM_CONSUMER_HEARTBEAT_MS", "consumer group heartbeat interval (ms)"
    )
    consumer_commit_timeout_s: float = setting(
        5.0, "REELS_STREAM_CONSUMER_COMMIT_TIMEOUT_S", "deadline of an offset commit (s)"
    )
    consumer_retry_backoff_max_s: float = setting(
        5.0,
        "REELS_STREAM_CONSUMER_RETRY_BACKOFF_MAX_S",
        "longest pause before a consumer retries a failed record or batch (s)",
    )
