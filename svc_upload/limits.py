"""Upload limits and metadata validation, shared by gRPC and tus.

Every limit is checked before a byte is stored, so a client learns "too big" or
"quota used up" from its first request, not after sending 500 MB.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from reels import errors, moderation, text

MB = 1024 * 1024
MIME_TYPE_MAX = 255  # RFC 6838: type and subtype are at most 127 characters each
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# The title of an upload whose title is empty (or invisible) and whose file name gives
# none either. Every door (gRPC, JSON through Envoy, tus) falls back the same way.
UNTITLED = "Untitled"
_PATH_SEPARATORS = re.compile(r"[/\\]")


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
    """`#a, b c` and ["#a", "b"] both become ["a", "b", "c"]: tus sends one string.

    Only splits (at whitespace, ``#``, punctuation and symbols of any script); refused
    characters stay, so :func:`validate` names them when it checks and folds the tags
    (``reels.text``).
    """
    return text.split_hashtags(raw)


def file_stem(filename: str) -> str:
    """``C:\\fakepath\\My clip.mp4`` -> ``My clip``: the last path part, less its extension."""
    base = _PATH_SEPARATORS.split(filename)[-1]
    stem = base.rpartition(".")[0] if "." in base else base
    return stem.strip().strip(".").strip()


def _title(
    violations: list[tuple[str, str]], meta: NewUpload, limits: UploadLimits
) -> tuple[str, bool]:
    """The title, and whether it was taken from the file name: as typed; when that is
    empty, or only invisible characters (the same thing, ``reels.text`` rule 5), the
    file name's stem cut to the title limit; else :data:`UNTITLED`. A title with refused
    characters is named, never replaced; so is a stem with them (the title would be made
    of them)."""
    try:
        title = text.normalise_text(
            meta.title, field="title", max_chars=limits.title_max, required=False
        )
    except text.TextError as exc:
        violations.extend(exc.violations)
        return meta.title, False
    if title:
        return title, False
    stem = file_stem(meta.filename)
    try:
        stem = text.normalise_text(
            stem, field="title", max_chars=max(limits.filename_max, len(stem)), required=False
        )
    except text.TextError as exc:
        violations.extend(exc.violations)
        return meta.title, False
    title = text.truncate(stem, limits.title_max)
    return (title, True) if title else (UNTITLED, False)


def _field(violations: list[tuple[str, str]], value: str, field: str, **rules: object) -> str:
    """``value`` normalised by ``reels.text``; a problem is added to ``violations``."""
    try:
        return text.normalise_text(value, field=field, **rules)  # type: ignore[arg-type]
    except text.TextError as exc:
        violations.extend(exc.violations)
        return value


def _hashtags_as_typed(raw: list[str] | str) -> str:
    """The hashtags text as typed (NFC), for moderation to show a blocked tag as typed."""
    return unicodedata.normalize("NFC", raw if isinstance(raw, str) else " ".join(raw))


# How a refusal names a title that the client did not type (taken from the file name).
FROM_NAME_LABEL = "title (taken from the file name)"
_EDIT = "; edit it and try again"


def _moderate(
    violations: list[tuple[str, str]], texts: dict[str, str], *, title_from_name: bool = False
) -> None:
    """The blocklist (``reels.moderation``) on each normalised text whose field has no
    problem yet; a refusal is added to ``violations``. A title taken from the file name
    says how to fix it (``contains a blocked term ("..."); type a title or rename the
    file``) and the message labels it :data:`FROM_NAME_LABEL`."""
    bad = {field for field, _ in violations}
    for field, value in texts.items():
        if field not in bad and (found := moderation.refusal(field, value)):
            reason = found.reason
            if field == "title" and title_from_name:
                reason = reason.removesuffix(_EDIT) + "; type a title or rename the file"
            violations.append((found.field, reason))


async def review(meta: NewUpload) -> None:
    """The text classifier (``REELS_TEXT_CLASSIFIER``, if any) on a validated upload's
    title, description, hashtags and audio attribution; INVALID_ARGUMENT naming each
    refused field. The blocklist already ran in :func:`validate`; call this right after
    it, where the caller is async."""
    await moderation.classify(
        {
            "title": meta.title,
            "description": meta.description,
            "hashtags": " ".join(f"#{tag}" for tag in meta.hashtags),
            "audio_attribution": meta.audio_attribution,
        }
    )


def validate(meta: NewUpload, limits: UploadLimits) -> NewUpload:
    """Raise InvalidArgument listing every bad field, or ResourceExhausted when too big.

    Every text goes through ``reels.text`` (NFC, control characters refused, invisible
    text is empty, lengths in characters after normalising); an empty title falls back
    to the file name's stem, then to :data:`UNTITLED` (:func:`_title`); hashtags are
    stored as their casefolded keys, distinct. Then title, description, hashtags and
    audio attribution (shown publicly) pass the blocklist of ``reels.moderation`` (whole
    words, after folding case, accents, leetspeak, look-alike letters...). All field
    problems are reported together (BadRequest violations) so a form can mark every
    wrong field at once. A blocked title taken from the file name is shown as
    :data:`FROM_NAME_LABEL`.
    """
    violations: list[tuple[str, str]] = []
    title, from_name = _title(violations, meta, limits)
    description = _field(
        violations,
        meta.description,
        "description",
        max_chars=limits.description_max,
        allow_newlines=True,
        required=False,
    )
    try:
        tags = text.normalise_hashtags(meta.hashtags, max_count=limits.hashtags_max)
    except text.TextError as exc:
        violations.extend(exc.violations)
        tags = []
    tags_text = _hashtags_as_typed(meta.hashtags)
    audio = _field(
        violations,
        meta.audio_attribution,
        "audio_attribution",
        max_chars=limits.audio_attribution_max,
        required=False,
    )
    filename = _field(
        violations, meta.filename, "filename", max_chars=limits.filename_max, required=False
    )
    mime_type = _field(
        violations, meta.mime_type, "mime_type", max_chars=MIME_TYPE_MAX, required=False
    )
    _moderate(
        violations,
        {
            "title": title,
            "description": description,
            "hashtags": tags_text,
            "audio_attribution": audio,
        },
        title_from_name=from_name,
    )
    if meta.declared_size <= 0:
        violations.append(("declared_size_bytes", "must be greater than 0"))
    sha = meta.sha256_hex.lower() if meta.sha256_hex else None
    if sha is not None and not SHA256_HEX.match(sha):
        violations.append(("sha256_hex", "must be 64 hex digits"))
    if violations:
        label = {"title": FROM_NAME_LABEL} if from_name else {}
        raise errors.InvalidArgument(
            "invalid upload metadata: "
            + "; ".join(f"{label.get(f, f)}: {d}" for f, d in violations),
            violations,
        )
    if meta.declared_size > limits.max_bytes:
        raise errors.ResourceExhausted(
            f"the file is {meta.declared_size} bytes; the limit is {limits.max_bytes} bytes"
        )
    return NewUpload(
        title=title,
        description=description,
        hashtags=tags,
        content_type=meta.content_type,
        audio_attribution=audio,
        declared_size=meta.declared_size,
        sha256_hex=sha,
        filename=filename,
        mime_type=mime_type,
    )


def utc_day_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def seconds_until_utc_midnight(now: datetime | None = None) -> float:
    """When the daily quota resets: the RetryInfo delay and the tus Retry-After."""
    now = now or datetime.now(UTC)
    return max(1.0, (utc_day_start(now) + timedelta(days=1) - now).total_seconds())
