"""svc_transcode's settings: one frozen dataclass, read from the environment once."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from reels.config import FromEnv, PlatformSettings, ServerSettings, group, server_group, setting
from svc_transcode.hls import DEFAULT_PRESET
from svc_transcode.moderation import Thresholds
from svc_transcode.worker import WorkerConfig


@dataclass(frozen=True)
class Settings(FromEnv):
    """Everything svc_transcode reads from the environment (README, "Service settings").

    The consumer, worker and relay can each be switched off, so one deployment can run
    API-only or worker-only processes.
    """

    server: ServerSettings = server_group("transcode")
    platform: PlatformSettings = group(PlatformSettings)
    concurrency: int = setting(
        1, "REELS_TRANSCODE_CONCURRENCY", "jobs at once per process (one encode fills 2 cores)"
    )
    lease_s: float = setting(
        30.0, "REELS_TRANSCODE_LEASE_S", "a dead worker's job is redone after (s)"
    )
    heartbeat_s: float = setting(
        0.0,
        "REELS_TRANSCODE_HEARTBEAT_S",
        "lease renewal, also how a cancel is noticed (s; 0: a third of the lease)",
    )
    poll_s: float = setting(1.0, "REELS_TRANSCODE_POLL_S", "idle poll for due jobs (s)")
    max_attempts: int = setting(
        3, "REELS_TRANSCODE_MAX_ATTEMPTS", "tries before a transient failure is dead-lettered"
    )
    backoff_min_s: float = setting(
        5.0, "REELS_TRANSCODE_BACKOFF_MIN_S", "first retry delay; doubles per attempt, ±20 % (s)"
    )
    backoff_max_s: float = setting(
        30.0, "REELS_TRANSCODE_BACKOFF_MAX_S", "cap on the retry delay (s)"
    )
    preset: str = setting(
        DEFAULT_PRESET, "REELS_TRANSCODE_PRESET", "x264 preset (tests: ultrafast)"
    )
    work_dir: Path | None = setting(
        None,
        "REELS_TRANSCODE_WORK_DIR",
        "where originals are downloaded and encoded (empty: the temp dir)",
    )
    embeddings: bool = setting(
        True,
        "REELS_EMBEDDINGS",
        "visual + text embeddings from Triton at publish (off: publish without them)",
    )
    embeddings_timeout_s: float = setting(
        10.0,
        "REELS_EMBEDDINGS_TIMEOUT_S",
        "deadline of one video's embedding requests; past it the video publishes without (s)",
    )
    embeddings_retry_min_s: float = setting(
        10.0,
        "REELS_EMBEDDINGS_RETRY_MIN_S",
        "first retry of a video published without embeddings; doubles, ±20 % (s)",
    )
    embeddings_retry_max_s: float = setting(
        600.0, "REELS_EMBEDDINGS_RETRY_MAX_S", "cap on the embedding retry delay (s)"
    )
    nsfw_moderation: bool = setting(
        True,
        "REELS_NSFW_MODERATION",
        "score sampled frames with Triton's nsfw model before publishing (off: publish all)",
    )
    nsfw_review_threshold: float = setting(
        0.2,
        "REELS_NSFW_REVIEW_THRESHOLD",
        "NSFW score (max over frames) from which a video is held for a moderator",
    )
    nsfw_reject_threshold: float = setting(
        0.8, "REELS_NSFW_REJECT_THRESHOLD", "NSFW score from which a video is rejected"
    )
    nsfw_timeout_s: float = setting(
        20.0,
        "REELS_NSFW_TIMEOUT_S",
        "deadline of one video's NSFW request; past it the job is retried (s)",
    )
    report_status: bool = setting(
        True, "REELS_TRANSCODE_REPORT_STATUS", "report to svc_upload (off: the job row only)"
    )
    status_timeout_s: float = setting(
        5.0, "REELS_TRANSCODE_STATUS_TIMEOUT_S", "deadline of UpdateVideoStatus calls (s)"
    )
    consumer: bool = setting(True, "REELS_TRANSCODE_CONSUMER", "consume video.uploaded here")
    worker: bool = setting(True, "REELS_TRANSCODE_WORKER", "run transcode jobs here")
    relay: bool = setting(True, "REELS_TRANSCODE_RELAY", "relay this service's outbox here")

    @property
    def worker_config(self) -> WorkerConfig:
        return WorkerConfig(
            concurrency=max(1, self.concurrency),
            lease_s=self.lease_s,
            heartbeat_s=self.heartbeat_s or self.lease_s / 3,
            poll_s=self.poll_s,
            max_attempts=max(1, self.max_attempts),
            backoff_min_s=self.backoff_min_s,
            backoff_max_s=self.backoff_max_s,
            preset=self.preset,
            work_root=self.work_dir or Path(tempfile.gettempdir()),
            embeddings_retry_min_s=self.embeddings_retry_min_s,
            embeddings_retry_max_s=max(self.embeddings_retry_min_s, self.embeddings_retry_max_s),
            nsfw=Thresholds(self.nsfw_review_threshold, self.nsfw_reject_threshold),
        )
