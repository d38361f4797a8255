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
class Settings(FromEnv):
    """Everything svc_upload reads from the environment (README, "Service settings")."""

    server: ServerSettings = server_group("upload")
    platform: PlatformSettings = group(PlatformSettings)
    scan: ScanSettings = group(ScanSettings)
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
