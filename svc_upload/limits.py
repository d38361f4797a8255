"""Upload limits and metadata validation, shared by gRPC and tus.

Every limit is checked before a byte is stored, so a client learns "too big" or
"quota used up" from its first request, not after sending 500 MB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from reels import errors

MB = 1024 * 1024
HASHTAG = re.compile(r"^[A-Za-z0-9_]{1,50}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class UploadLimits:
    """The limits an upload is held to (from ``Settings.limits``; tests set small ones)."""

    max_bytes: int = 500 * MB
    daily_quota: int = 100
    # Preferred gRPC chunk: large enough that per-chunk overhead (one DB round trip,
    # one fsync) is small, small enough to stay far below the 16 MB message limit.
    chunk_bytes: int = 4 * MB
    ttl_hours: int = 24
    title_max: int = 150
    description_max: int = 2200
    hashtags_max: int = 30
    audio_attribution_max: int = 200
    filename_max: int = 255

    def expires_at(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) + timedelta(hours=self.ttl_hours)


@dataclass(frozen=True)
class NewUpload:
    """Validated metadata of an upload, however it arrived (gRPC, tus, single shot)."""

    title: str
    description: str
    hashtags: list[str]
    content_type: int  # reels.v1.ContentType value
    audio_attribution: str
    declared_size: int
    sha256_hex: str | None
    filename: str
    mime_type: str


def normalize_hashtags(raw: list[str] | str) -> list[str]:
    """`#a, b c` and ["#a", "b"] both become ["a", "b", "c"]: tus sends one string."""
    items = re.split(r"[\s,]+", raw) if isinstance(raw, str) else list(raw)
    return [t.strip().lstrip("#") for t in items if t.strip().lstrip("#")]


def validate(meta: NewUpload, limits: UploadLimits) -> NewUpload:
    """Raise InvalidArgument listing every bad field, or ResourceExhausted when too big.

    All field problems are reported together (BadRequest violations) so a form can
    mark every wrong field at once.
    """
    violations: list[tuple[str, str]] = []
    title = meta.title.strip()
    if not title:
        violations.append(("title", "a title is required"))
    elif len(title) > limits.title_max:
        violations.append(("title", f"at most {limits.title_max} characters (got {len(title)})"))
    if len(meta.description) > limits.description_max:
        violations.append(("description", f"at most {limits.description_max} characters"))
    if len(meta.hashtags) > limits.hashtags_max:
        violations.append(
            ("hashtags", f"at most {limits.hashtags_max} hashtags (got {len(meta.hashtags)})")
        )
    bad = [t for t in meta.hashtags if not HASHTAG.match(t)]
    if bad:
        violations.append(
            ("hashtags", f"hashtags are 1-50 letters, digits or '_': {', '.join(bad[:5])}")
        )
    if len(meta.audio_attribution) > limits.audio_attribution_max:
        violations.append(
            ("audio_attribution", f"at most {limits.audio_attribution_max} characters")
        )
    if len(meta.filename) > limits.filename_max:
        violations.append(("filename", f"at most {limits.filename_max} characters"))
    if meta.declared_size <= 0:
        violations.append(("declared_size_bytes", "must be greater than 0"))
    sha = meta.sha256_hex.lower() if meta.sha256_hex else None
    if sha is not None and not SHA256_HEX.match(sha):
        violations.append(("sha256_hex", "must be 64 hex digits"))
    if violations:
        raise errors.InvalidArgument(
            "invalid upload metadata: " + "; ".join(f"{f}: {d}" for f, d in violations),
            violations,
        )
    if meta.declared_size > limits.max_bytes:
        raise errors.ResourceExhausted(
            f"the file is {meta.declared_size} bytes; the limit is {limits.max_bytes} bytes"
        )
    # Deduplicate hashtags case-insensitively, keeping the creator's spelling.
    seen: set[str] = set()
    tags = [t for t in meta.hashtags if not (t.lower() in seen or seen.add(t.lower()))]
    return NewUpload(
        title=title,
        description=meta.description,
        hashtags=tags,
        content_type=meta.content_type,
        audio_attribution=meta.audio_attribution,
        declared_size=meta.declared_size,
        sha256_hex=sha,
        filename=meta.filename,
        mime_type=meta.mime_type,
    )


def utc_day_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def seconds_until_utc_midnight(now: datetime | None = None) -> float:
    """When the daily quota resets: the RetryInfo delay and the tus Retry-After."""
    now = now or datetime.now(UTC)
    return max(1.0, (utc_day_start(now) + timedelta(days=1) - now).total_seconds())
