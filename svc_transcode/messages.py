"""The Kafka messages svc_transcode emits: video.published, video.failed and dead letters.

Built here, written by jobs.py into the outbox in the same transaction as the job's
state change, so an event exists exactly when the change committed.

Dead-letter format (topic ``video.uploaded.dlq``, key video_id): the value is the
original ``VideoUploaded`` bytes, unchanged, so an operator (or a replay tool) can
put it back on ``video.uploaded`` as it was. Why it was parked travels in headers:
``dlq-reason``, ``dlq-permanent`` ("true"/"false"), ``dlq-attempts``, ``dlq-job-id``,
``dlq-original-event-id``, ``dlq-original-topic``, plus a fresh ``event-id``.
"""

from __future__ import annotations

import uuid

from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import common_pb2, events_pb2

from reels import topics
from reels.events import inject_trace_headers, new_event_id
from svc_transcode.embeddings import VideoEmbeddings
from svc_transcode.jobs import OutgoingMessage
from svc_transcode.models import TranscodeJob
from svc_transcode.publish import PublishedVideo

PRODUCER = "svc_transcode"
MAX_HEADER_REASON = 1000


def _meta(event_id: uuid.UUID) -> events_pb2.EventMeta:
    """Envelope with the current span's trace context (the job's span, child of the upload's)."""
    meta = events_pb2.EventMeta(event_id=str(event_id), producer=PRODUCER)
    meta.occurred_at.GetCurrentTime()
    for key, value in inject_trace_headers().items():
        meta.trace_context[key] = value
    return meta


def duration_of(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(round(seconds * 1e9)))
    return out


def renditions_of(video: PublishedVideo) -> list[common_pb2.Rendition]:
    return [
        common_pb2.Rendition(
            name=r.name,
            width=r.width,
            height=r.height,
            bandwidth_bps=r.bandwidth,
            average_bandwidth_bps=r.average_bandwidth,
            codecs=r.codecs,
            frame_rate=r.frame_rate,
            playlist_key=video.key(r.playlist),
        )
        for r in video.result.renditions
    ]


def _set_embeddings(event: events_pb2.VideoPublished, embeddings: VideoEmbeddings) -> None:
    event.visual_embedding[:] = embeddings.visual.tolist()
    event.text_embedding[:] = embeddings.text.tolist()
    event.video_embedding[:] = embeddings.video.tolist()
    event.embedding_model_version = embeddings.model_version


def video_published(
    uploaded: events_pb2.VideoUploaded,
    video: PublishedVideo,
    embeddings: VideoEmbeddings | None,
) -> OutgoingMessage:
    """video.published: everything svc_rank and svc_stream need to index and play it.

    With ``embeddings``: ``visual_embedding`` (1280 floats), ``text_embedding`` (384),
    ``video_embedding`` (256), each unit norm, and ``embedding_model_version``.
    Without (Triton unavailable, or embeddings off) all four are empty; a pending
    video gets them in a follow-up event (``video_published_with_embeddings``).
    """
    event_id = new_event_id()
    published_at = timestamp_pb2.Timestamp()
    published_at.GetCurrentTime()
    result = video.result
    event = events_pb2.VideoPublished(
        meta=_meta(event_id),
        video_id=uploaded.video_id,
        creator_id=uploaded.creator_id,
        duration=duration_of(result.duration_s),
        width=result.width,
        height=result.height,
        renditions=renditions_of(video),
        thumbnail_key=video.thumbnail_key,
        preview_key=video.preview_key,
        storyboard_key=video.storyboard_key,
        master_playlist_key=video.master_playlist_key,
        hashtags=list(uploaded.hashtags),
        published_at=published_at,
        title=uploaded.title,
        content_type=uploaded.content_type,
    )
    if embeddings is not None:
        _set_embeddings(event, embeddings)
    return OutgoingMessage(
        topics.VIDEO_PUBLISHED, uploaded.video_id, event.SerializeToString(), event_id
    )


def video_published_with_embeddings(first: bytes, embeddings: VideoEmbeddings) -> OutgoingMessage:
    """The follow-up ``video.published`` of a video first published without vectors.

    ``first`` is the event as it was sent (``transcode_jobs.pending_event``). The
    follow-up is the same video, field for field (``published_at`` included), with a
    new event id and ``occurred_at`` and the vectors filled in: consumers handle it as
    the upsert of a republish (svc_stream's catalog replaces the row, ClickHouse's
    replacing tables keep the newer version, svc_rank indexes the vectors).
    """
    event = events_pb2.VideoPublished.FromString(first)
    event_id = new_event_id()
    event.meta.CopyFrom(_meta(event_id))
    _set_embeddings(event, embeddings)
    return OutgoingMessage(
        topics.VIDEO_PUBLISHED, event.video_id, event.SerializeToString(), event_id
    )


def video_failed(job: TranscodeJob, *, reason: str, stage: str) -> OutgoingMessage:
    """video.failed: a terminal failure, for the creator's notifications and dashboards.

    ``permanent`` is true for both terminal kinds, as the contract says (retrying on
    its own will not help); the job's state tells which kind it was.
    """
    event_id = new_event_id()
    event = events_pb2.VideoFailed(
        meta=_meta(event_id),
        video_id=job.video_id,
        reason=reason,
        permanent=True,
        attempts=job.attempts,
        creator_id=job.creator_id,
        stage=stage,
    )
    return OutgoingMessage(topics.VIDEO_FAILED, job.video_id, event.SerializeToString(), event_id)


def dead_letter(job: TranscodeJob, *, reason: str, permanent: bool) -> OutgoingMessage:
    """The original video.uploaded bytes, parked with why (see the module docstring)."""
    return dead_letter_record(
        job.video_id,
        job.payload,
        reason=reason,
        permanent=permanent,
        attempts=job.attempts,
        job_id=str(job.id),
        original_event_id=job.source_event_id,
    )


def dead_letter_record(
    key: str,
    payload: bytes,
    *,
    reason: str,
    permanent: bool,
    attempts: int,
    job_id: str,
    original_event_id: str,
) -> OutgoingMessage:
    """A dead letter with or without a job (the consumer parks events it cannot read)."""
    headers = {
        "dlq-reason": " ".join(reason.split())[:MAX_HEADER_REASON],
        "dlq-permanent": "true" if permanent else "false",
        "dlq-attempts": str(attempts),
        "dlq-job-id": job_id,
        "dlq-original-event-id": original_event_id,
        "dlq-original-topic": topics.VIDEO_UPLOADED.name,
    }
    return OutgoingMessage(topics.VIDEO_UPLOADED_DLQ, key, payload, new_event_id(), headers)
