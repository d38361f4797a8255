"""svc_upload's settings: one frozen dataclass, read from the environment once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reels.config import FromEnv, PlatformSettings, ServerSettings, group, server_group, setting
from svc_upload.limits import MB, UploadLimits


@dataclass(frozen=True)
class ScanSettings(FromEnv):
    """The malware scan of uploads (svc_upload.scan)."""

    clamd_address: str = setting(
        "127.0.0.1:3310",
        "REELS_CLAMD_ADDRESS",
        "clamd's TCP socket (host:port); it must see the staging dir and the object store",
    )
    timeout_s: float = setting(
        120.0, "REELS_MALWARE_SCAN_TIMEOUT_S", "one scan's limit; past it the upload is held (s)"
    )
    max_backoff_s: float = setting(
        60.0,
        "REELS_MALWARE_SCAN_MAX_BACKOFF_S",
        "longest wait between retries of a held upload's scan (s)",
    )


@dataclass(frozen=True)
class LoadSettings(FromEnv):
    """How much svc_upload does at once, sized on purpose (docs/DECISIONS.md, "Uploads
    under load (issue 14)"). Work past these bounds waits in a queue, never fails."""

    db_pool_size: int = setting(
        10, "REELS_UPLOAD_DB_POOL_SIZE", "Postgres connections kept open by svc_upload"
    )
    db_max_overflow: int = setting(
        10, "REELS_UPLOAD_DB_MAX_OVERFLOW", "extra Postgres connections opened under a burst"
    )
    db_pool_timeout_s: float = setting(
        60.0,
        "REELS_UPLOAD_DB_POOL_TIMEOUT_S",
        "longest wait for a free connection; past it the request is 503 + Retry-After (s)",
    )
    db_pre_ping: bool = setting(
        False,
        "REELS_UPLOAD_DB_PRE_PING",
        "test each pooled connection before use (one more round trip per request)",
    )
    verify_concurrency: int = setting(
        0,
        "REELS_UPLOAD_VERIFY_CONCURRENCY",
        "completed uploads checked at once (scan + ffprobe/decode; 0: one per CPU core)",
    )
    verify_nice: int = setting(
        10,
        "REELS_UPLOAD_VERIFY_NICE",
        "CPU niceness of those checks' ffprobe/ffmpeg (0-19; request handling goes first)",
    )
    verify_wait_s: float = setting(
        10.0,
        "REELS_UPLOAD_VERIFY_WAIT_S",
        "longest the completing tus PATCH waits for those checks (none while they queue); "
        "then 204, verdict in status (s)",
    )
    io_threads: int = setting(
        32, "REELS_UPLOAD_IO_THREADS", "threads for staged-file writes, fsync and hashing"
    )
    http_backlog: int = setting(
        1024,
        "REELS_UPLOAD_HTTP_BACKLOG",
        "tus listen backlog (connections Envoy may open at once; capped by somaxconn)",
    )


@dataclass(frozen=True)
class Settings(FromEnv):
    """Everything svc_upload reads from the environment (README, "Service settings")."""

    server: ServerSettings = server_group("upload")
    platform: PlatformSettings = group(PlatformSettings)
    scan: ScanSettings = group(ScanSettings)
    load: LoadSettings = group(LoadSettings)
    max_bytes: int = setting(500 * MB, "REELS_UPLOAD_MAX_BYTES", "largest upload accepted (bytes)")
    daily_quota: int = setting(100, "REELS_UPLOAD_DAILY_QUOTA", "uploads per user per UTC day")
    chunk_bytes: int = setting(
        4 * MB, "REELS_UPLOAD_CHUNK_BYTES", "gRPC chunk size suggested to clients (bytes)"
    )
    ttl_hours: int = setting(24, "REELS_UPLOAD_TTL_HOURS", "an unfinished upload expires after (h)")
    http_host: str = setting("127.0.0.1", "REELS_UPLOAD_HTTP_HOST", "tus HTTP listen host")
    http_port: int = setting(50061, "REELS_UPLOAD_HTTP_PORT", "tus HTTP port (0: a free one)")
    staging_dir: Path | None = setting(
        None,
        "REELS_UPLOAD_STAGING_DIR",
        "where unfinished uploads are staged (empty: beside the object store)",
    )
    status_writers: tuple[str, ...] = setting(
        ("svc_transcode",),
        "REELS_UPLOAD_STATUS_WRITERS",
        "principals (JWT sub) allowed to call UpdateVideoStatus",
    )
    relay: bool = setting(
        True, "REELS_UPLOAD_RELAY", "run the outbox relay (video.uploaded) in this process"
    )
    media_base_url: str = setting(
        "http://127.0.0.1:8080/media",
        "REELS_MEDIA_BASE_URL",
        "base of signed media URLs (as svc_stream's): the review queue's frame URLs",
    )
    review_frame_url_ttl_s: int = setting(
        900,
        "REELS_REVIEW_FRAME_URL_TTL_S",
        "lifetime of a review-queue frame's signed URL (s)",
    )
    recordings: bool = setting(
        True,
        "REELS_UPLOAD_RECORDINGS",
        "make ended live streams' recordings videos (consume streams.recordings)",
    )

    @property
    def limits(self) -> UploadLimits:
        return UploadLimits(
            max_bytes=self.max_bytes,
            daily_quota=self.daily_quota,
            chunk_bytes=self.chunk_bytes,
            ttl_hours=self.ttl_hours,
        )
