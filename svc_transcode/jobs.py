"""The transcode job queue in Postgres: every state transition of a job, in one place.

Postgres rather than Kafka holds the queue because a job needs what a log cannot
give: a lease that runs out when its worker dies (the next worker redoes the job),
a retry time in the future (backoff), and state an operator can read and change
(RetryJob, CancelJob). Kafka only *feeds* the queue (consumer.py) and carries what
comes out of it (video.published, video.failed, the dead-letter topic) through the
outbox, always in the same transaction as the state change it announces.

States::

    queued ──claim──► running ──► succeeded
      ▲                 │ ├─────► failed         (permanent: the input is unusable)
      │  transient      │ ├─────► dead_lettered  (transient, attempts exhausted)
      └──(backoff)──────┘ └─────► cancelled      (CancelJob; also from queued)
    failed | dead_lettered | cancelled ──RetryJob──► queued (fresh attempt budget)

A transient failure with attempts left goes back to ``queued`` with a future
``next_attempt_at`` and ``last_error`` set, so "waiting to retry" is visible without
a state of its own.

Embeddings never hold a video back: when Triton could not embed it, the job still
ends ``succeeded`` (the video is published, without vectors) but with
``stage = 'embeddings_pending'``, ``last_error`` saying why and ``next_attempt_at``
the next try; the backfill (backfill.py) claims due ones, and on success sets the
stage to ``done`` and writes the follow-up ``video.published`` (with the vectors) in
the same transaction. ``embeddings_failed`` is the stage of one that cannot be
embedded at all (its stored frames are unreadable: a bug, not an outage); RetryJob
makes a pending one due at once. Every transition a worker makes is guarded by its lease
(``lease_owner`` and ``state = 'running'``): a worker that lost its job (cancelled,
or its lease ran out and another worker took over) can no longer change it.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import errors
from reels.events import inject_trace_headers
from reels.outbox import enqueue
from reels.topics import Topic
from svc_transcode.models import TranscodeJob

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500  # the contract's limit (transcode.proto, ListJobsRequest.page_size)
MAX_ERROR_CHARS = 4000


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"


RETRYABLE_STATES = (JobState.FAILED, JobState.DEAD_LETTERED, JobState.CANCELLED)
# Stages of a succeeded job whose video was published without vectors.
EMBEDDINGS_PENDING = "embeddings_pending"
EMBEDDINGS_FAILED = "embeddings_failed"
# Stage of a succeeded job whose video the NSFW classifier held for a moderator
# (svc_transcode/moderation.py): its video.published waits in pending_event.
IN_REVIEW = "in_review"
# Stage of a held job a moderator rejected (state failed).
MODERATION_REJECTED = "moderation_rejected"


@dataclass(frozen=True)
class PendingEmbeddings:
    """What a job published without vectors keeps for the backfill."""

    frames: bytes  # svc_transcode.frames.pack_frames
    event: bytes  # the VideoPublished sent without vectors
    error: str  # why the embeddings failed
    retry_in_s: float  # first backfill attempt after this delay


CANCELLABLE_STATES = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class OutgoingMessage:
    """An event to write to the outbox with a transition (built by messages.py)."""

    topic: Topic
    key: str
    payload: bytes
    event_id: uuid.UUID
    headers: dict[str, str] | None = None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def parse_job_id(job_id: str) -> uuid.UUID:
    """Job ids are UUIDs; anything else names no job (NOT_FOUND, not a server error)."""
    try:
        return uuid.UUID(job_id)
    except (ValueError, AttributeError, TypeError):
        raise errors.NotFound("transcode job", job_id) from None


# --------------------------------------------------------------------------- creation


async def create_job(
    session: AsyncSession,
    *,
    video_id: str,
    source_event_id: str,
    original_key: str,
    creator_id: str,
    payload: bytes,
    max_attempts: int,
    trace_context: Mapping[str, str] | None = None,
) -> uuid.UUID | None:
    """Queue a job for a video in the caller's transaction; None when it already has one.

    ``ON CONFLICT (video_id) DO NOTHING``: the processed-events ledger already stops a
    redelivered event, this also stops a second event for the same video (a producer
    retry with a new event id) from making a second job.

    ``trace_context`` (default: the current span's, i.e. the consumer's) is stored with
    the job: every attempt's span continues that trace, after retries and restarts too.
    """
    if trace_context is None:
        trace_context = inject_trace_headers()
    job_id = uuid.uuid4()
    inserted = await session.scalar(
        insert(TranscodeJob)
        .values(
            id=job_id,
            video_id=video_id,
            source_event_id=source_event_id,
            original_key=original_key,
            creator_id=creator_id,
            payload=payload,
            max_attempts=max_attempts,
            trace_context=dict(trace_context),
        )
        .on_conflict_do_nothing(index_elements=[TranscodeJob.video_id])
        .returning(TranscodeJob.id)
    )
    return inserted


async def queue_depth(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Jobs waiting to be processed (``queued``, including those waiting out a backoff)."""
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(TranscodeJob)
            .where(TranscodeJob.state == JobState.QUEUED.value)
        )
    return int(count or 0)


# --------------------------------------------------------------------------- worker side


async def claim(
    sessionmaker: async_sessionmaker[AsyncSession], owner: str, lease_s: float
) -> TranscodeJob | None:
    """Take one due job: queued and due, or running with a lease that ran out.

    ``FOR UPDATE SKIP LOCKED`` lets any number of workers claim concurrently without
    taking the same job or waiting on each other. ``attempts`` counts claims, so a
    worker killed mid-job still uses up an attempt (a file that kills workers ends up
    dead-lettered instead of looping forever).
    """
    due = (
        select(TranscodeJob.id)
        .where(
            or_(
                and_(
                    TranscodeJob.state == JobState.QUEUED.value,
                    TranscodeJob.next_attempt_at <= func.now(),
                ),
                and_(
                    TranscodeJob.state == JobState.RUNNING.value,
                    TranscodeJob.lease_expires_at < func.now(),
                ),
            )
        )
        .order_by(TranscodeJob.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    async with sessionmaker() as session, session.begin():
        result = await session.execute(
            update(TranscodeJob)
            .where(TranscodeJob.id == due)
            .values(
                state=JobState.RUNNING.value,
                lease_owner=owner,
                lease_expires_at=func.now() + timedelta(seconds=lease_s),
                attempts=TranscodeJob.attempts + 1,
                stage="starting",
                percent=0.0,
                updated_at=func.now(),
            )
            .returning(TranscodeJob)
            .execution_options(synchronize_session=False)
        )
        return result.scalars().one_or_none()


async def renew_lease(
    sessionmaker: async_sessionmaker[AsyncSession],
    job_id: uuid.UUID,
    owner: str,
    lease_s: float,
    *,
    stage: str | None = None,
    percent: float | None = None,
) -> bool:
    """Extend the lease (and record progress); False when the job is no longer ours.

    False means it was cancelled, or our lease ran out and another worker took it:
    either way the caller must stop working on it.
    """
    values: dict[str, object] = {
        "lease_expires_at": func.now() + timedelta(seconds=lease_s),
        "updated_at": func.now(),
    }
    if stage is not None:
        values["stage"] = stage
    if percent is not None:
        values["percent"] = percent
    async with sessionmaker() as session, session.begin():
        found = await session.scalar(
            update(TranscodeJob)
            .where(
                TranscodeJob.id == job_id,
                TranscodeJob.lease_owner == owner,
                TranscodeJob.state == JobState.RUNNING.value,
            )
            .values(**values)
            .returning(TranscodeJob.id)
        )
    return found is not None


async def lock_owned(session: AsyncSession, job_id: uuid.UUID, owner: str) -> TranscodeJob | None:
    """Lock our running job for a final transition (None: it is no longer ours).

    Holding the row lock while the final report goes to svc_upload means a concurrent
    CancelJob waits for the outcome instead of racing it.
    """
    return await session.scalar(
        select(TranscodeJob)
        .where(
            TranscodeJob.id == job_id,
            TranscodeJob.lease_owner == owner,
            TranscodeJob.state == JobState.RUNNING.value,
        )
        .with_for_update()
    )


async def write_messages(session: AsyncSession, messages: Sequence[OutgoingMessage]) -> None:
    """Add events to the caller's transaction (published only if it commits)."""
    for m in messages:
        await enqueue(session, m.topic, m.key, m.payload, m.event_id, m.headers)


async def mark_succeeded(
    session: AsyncSession,
    job: TranscodeJob,
    messages: Sequence[OutgoingMessage],
    *,
    pending: PendingEmbeddings | None = None,
) -> None:
    """Job done and its video.published event, in the caller's (locked) transaction.

    With ``pending`` the video was published without vectors: the stage is
    ``embeddings_pending`` and the backfill's first try is due after ``retry_in_s``
    (the attempt at publish counts as the first).
    """
    values: dict[str, object] = {
        "state": JobState.SUCCEEDED.value,
        "stage": "done",
        "percent": 100.0,
        "lease_owner": None,
        "lease_expires_at": None,
        "permanent": False,
        "updated_at": func.now(),
        "finished_at": func.now(),
    }
    if pending is not None:
        values |= {
            "stage": EMBEDDINGS_PENDING,
            "last_error": _clip(f"embeddings pending: {pending.error}"),
            "embedding_attempts": 1,
            "next_attempt_at": func.now() + timedelta(seconds=pending.retry_in_s),
            "pending_frames": pending.frames,
            "pending_event": pending.event,
        }
    await session.execute(update(TranscodeJob).where(TranscodeJob.id == job.id).values(**values))
    await write_messages(session, messages)


# --------------------------------------------------------------------------- review holds


async def mark_held(
    session: AsyncSession,
    job: TranscodeJob,
    *,
    event: bytes,
    frames: bytes | None,
    error: str,
) -> None:
    """Job done, video held for review, in the caller's (locked) transaction: the
    ``video.published`` it will get waits in ``pending_event`` (no outbox row), and,
    when its embeddings failed, the frames for the backfill after approval."""
    await session.execute(
        update(TranscodeJob)
        .where(TranscodeJob.id == job.id)
        .values(
            state=JobState.SUCCEEDED.value,
            stage=IN_REVIEW,
            percent=100.0,
            lease_owner=None,
            lease_expires_at=None,
            permanent=False,
            last_error=_clip(f"embeddings pending: {error}") if frames is not None else None,
            pending_event=event,
            pending_frames=frames,
            updated_at=func.now(),
            finished_at=func.now(),
        )
    )


@dataclass(frozen=True)
class HeldJob:
    """A held job, locked in the caller's transaction."""

    job: TranscodeJob
    event: bytes
    frames: bytes | None


async def lock_held(session: AsyncSession, video_id: str) -> HeldJob | None:
    """The video's job if it is held for review (``FOR UPDATE``); None otherwise (no
    job, or already released: a redelivered decision)."""
    row = (
        await session.execute(
            select(TranscodeJob, TranscodeJob.pending_event, TranscodeJob.pending_frames)
            .where(TranscodeJob.video_id == video_id, TranscodeJob.stage == IN_REVIEW)
            .with_for_update()
        )
    ).one_or_none()
    if row is None or row[1] is None:
        return None
    return HeldJob(row[0], row[1], row[2])


async def release_held(
    session: AsyncSession,
    held: HeldJob,
    messages: Sequence[OutgoingMessage],
    *,
    embeddings_retry_in_s: float | None,
) -> None:
    """Approved: the video.published goes to the outbox; the stage is ``done``, or
    ``embeddings_pending`` (due after ``embeddings_retry_in_s``) when it was held
    without vectors, so the backfill republishes it with them."""
    values: dict[str, object] = {"stage": "done", "pending_event": None, "updated_at": func.now()}
    if held.frames is not None and embeddings_retry_in_s is not None:
        values |= {
            "stage": EMBEDDINGS_PENDING,
            "embedding_attempts": 1,
            "next_attempt_at": func.now() + timedelta(seconds=embeddings_retry_in_s),
            "pending_event": messages[0].payload if messages else None,
        }
    else:
        values["pending_frames"] = None
    await session.execute(
        update(TranscodeJob).where(TranscodeJob.id == held.job.id).values(**values)
    )
    await write_messages(session, messages)


async def reject_held(
    session: AsyncSession,
    held: HeldJob,
    messages: Sequence[OutgoingMessage],
    *,
    reason: str,
) -> None:
    """Rejected by a moderator: the job ends failed (permanent), nothing published."""
    await session.execute(
        update(TranscodeJob)
        .where(TranscodeJob.id == held.job.id)
        .values(
            state=JobState.FAILED.value,
            stage=MODERATION_REJECTED,
            last_error=_clip(reason),
            permanent=True,
            pending_event=None,
            pending_frames=None,
            updated_at=func.now(),
        )
    )
    await write_messages(session, messages)


# --------------------------------------------------------------------------- embeddings backfill


@dataclass(frozen=True)
class EmbeddingsClaim:
    """A published job whose embeddings the backfill now owns until ``next_attempt_at``."""

    job_id: uuid.UUID
    video_id: str
    attempts: int  # embedding attempts including this one
    frames: bytes | None
    event: bytes | None
    uploaded: bytes  # the original video.uploaded (title, description, hashtags)
    trace_context: dict[str, str]


async def claim_embeddings(
    sessionmaker: async_sessionmaker[AsyncSession], lease_s: float
) -> EmbeddingsClaim | None:
    """Take one job whose embeddings are due (``FOR UPDATE SKIP LOCKED``).

    The claim moves ``next_attempt_at`` ``lease_s`` ahead: that is the lease. A
    backfill that dies mid-try leaves the job due again when it runs out.
    """
    due = (
        select(TranscodeJob.id)
        .where(
            TranscodeJob.stage == EMBEDDINGS_PENDING,
            TranscodeJob.state == JobState.SUCCEEDED.value,
            TranscodeJob.next_attempt_at <= func.now(),
        )
        .order_by(TranscodeJob.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    async with sessionmaker() as session, session.begin():
        row = (
            await session.execute(
                update(TranscodeJob)
                .where(TranscodeJob.id == due)
                .values(
                    embedding_attempts=TranscodeJob.embedding_attempts + 1,
                    next_attempt_at=func.now() + timedelta(seconds=lease_s),
                    updated_at=func.now(),
                )
                .returning(
                    TranscodeJob.id,
                    TranscodeJob.video_id,
                    TranscodeJob.embedding_attempts,
                    TranscodeJob.pending_frames,
                    TranscodeJob.pending_event,
                    TranscodeJob.payload,
                    TranscodeJob.trace_context,
                )
            )
        ).one_or_none()
    if row is None:
        return None
    return EmbeddingsClaim(row[0], row[1], row[2], row[3], row[4], row[5], dict(row[6] or {}))


async def finish_embeddings(
    session: AsyncSession, job_id: uuid.UUID, messages: Sequence[OutgoingMessage]
) -> bool:
    """Embeddings done: stage ``done``, stored frames dropped, the follow-up event
    written, in the caller's transaction. False (nothing written) when the job is no
    longer pending (another backfill finished it after our lease ran out)."""
    done = await session.scalar(
        update(TranscodeJob)
        .where(TranscodeJob.id == job_id, TranscodeJob.stage == EMBEDDINGS_PENDING)
        .values(
            stage="done",
            last_error=None,
            pending_frames=None,
            pending_event=None,
            updated_at=func.now(),
        )
        .returning(TranscodeJob.id)
    )
    if done is None:
        return False
    await write_messages(session, messages)
    return True


async def retry_embeddings_later(
    sessionmaker: async_sessionmaker[AsyncSession],
    job_id: uuid.UUID,
    *,
    error: str,
    delay_s: float | None,
) -> None:
    """A failed backfill try: due again after ``delay_s``; ``None``: give up
    (stage ``embeddings_failed``, the frames are useless)."""
    values: dict[str, object] = {
        "last_error": _clip(f"embeddings pending: {error}"),
        "updated_at": func.now(),
    }
    if delay_s is None:
        values |= {
            "stage": EMBEDDINGS_FAILED,
            "last_error": _clip(f"embeddings failed: {error}"),
            "pending_frames": None,
        }
    else:
        values["next_attempt_at"] = func.now() + timedelta(seconds=delay_s)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(TranscodeJob)
            .where(TranscodeJob.id == job_id, TranscodeJob.stage == EMBEDDINGS_PENDING)
            .values(**values)
        )


async def mark_terminal_failure(
    session: AsyncSession,
    job: TranscodeJob,
    *,
    reason: str,
    permanent: bool,
    stage: str,
    messages: Sequence[OutgoingMessage],
) -> JobState:
    """failed (permanent) or dead_lettered (attempts exhausted), with its events."""
    state = JobState.FAILED if permanent else JobState.DEAD_LETTERED
    await session.execute(
        update(TranscodeJob)
        .where(TranscodeJob.id == job.id)
        .values(
            state=state.value,
            stage=stage,
            last_error=_clip(reason),
            permanent=permanent,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=func.now(),
            finished_at=func.now(),
        )
    )
    await write_messages(session, messages)
    return state


async def schedule_retry(
    session: AsyncSession,
    job: TranscodeJob,
    *,
    error: str,
    delay_s: float,
    count_attempt: bool = True,
    stage: str = "queued",
) -> None:
    """Back to queued, due after the backoff delay, with the error kept for operators.

    ``count_attempt=False`` gives the claim's attempt back (an outage of a model, not
    a fault of the job: it must never dead-letter it); ``stage`` is what the job row
    shows while it waits."""
    extra = {} if count_attempt else {"attempts": func.greatest(TranscodeJob.attempts - 1, 0)}
    await session.execute(
        update(TranscodeJob)
        .where(TranscodeJob.id == job.id)
        .values(
            **extra,
            state=JobState.QUEUED.value,
            stage=stage,
            percent=0.0,
            last_error=_clip(error),
            next_attempt_at=func.now() + timedelta(seconds=delay_s),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=func.now(),
        )
    )


async def release(
    sessionmaker: async_sessionmaker[AsyncSession], job_id: uuid.UUID, owner: str
) -> bool:
    """Give a job back unfinished (worker draining); the attempt is not counted."""
    async with sessionmaker() as session, session.begin():
        found = await session.scalar(
            update(TranscodeJob)
            .where(
                TranscodeJob.id == job_id,
                TranscodeJob.lease_owner == owner,
                TranscodeJob.state == JobState.RUNNING.value,
            )
            .values(
                state=JobState.QUEUED.value,
                stage="queued",
                percent=0.0,
                attempts=func.greatest(TranscodeJob.attempts - 1, 0),
                next_attempt_at=func.now(),
                lease_owner=None,
                lease_expires_at=None,
                updated_at=func.now(),
            )
            .returning(TranscodeJob.id)
        )
    return found is not None


# --------------------------------------------------------------------------- operator side


async def get_job(session: AsyncSession, job_id: str) -> TranscodeJob:
    job = await session.get(TranscodeJob, parse_job_id(job_id))
    if job is None:
        raise errors.NotFound("transcode job", job_id)
    return job


def _encode_cursor(job: TranscodeJob) -> str:
    raw = json.dumps([job.created_at.isoformat(), str(job.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, job_id = json.loads(raw)
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise errors.InvalidArgument(
            "page_token is not one this service issued",
            [("page_token", "pass next_page_token from the previous response unchanged")],
        ) from None


async def list_jobs(
    session: AsyncSession,
    *,
    state: JobState | None,
    video_id: str,
    page_size: int,
    page_token: str,
) -> tuple[list[TranscodeJob], str]:
    """Newest first, keyset-paginated on (created_at, id): stable while jobs are added."""
    if page_size < 0:
        raise errors.InvalidArgument(
            "page_size must not be negative", [("page_size", "use 0 for the default")]
        )
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    query = select(TranscodeJob)
    if state is not None:
        query = query.where(TranscodeJob.state == state.value)
    if video_id:
        query = query.where(TranscodeJob.video_id == video_id)
    if page_token:
        created, last_id = _decode_cursor(page_token)
        query = query.where(tuple_(TranscodeJob.created_at, TranscodeJob.id) < (created, last_id))
    rows = list(
        (
            await session.scalars(
                query.order_by(TranscodeJob.created_at.desc(), TranscodeJob.id.desc()).limit(
                    size + 1
                )
            )
        ).all()
    )
    more = len(rows) > size
    rows = rows[:size]
    return rows, (_encode_cursor(rows[-1]) if more and rows else "")


async def retry_job(session: AsyncSession, job_id: str) -> TranscodeJob:
    """Re-queue a finished-unsuccessfully job now, with a fresh attempt budget.

    A published job whose embeddings are pending has its backfill try made due now
    instead (nothing is transcoded again).
    """
    job = await session.get(TranscodeJob, parse_job_id(job_id), with_for_update=True)
    if job is None:
        raise errors.NotFound("transcode job", job_id)
    if job.state == JobState.SUCCEEDED and job.stage == EMBEDDINGS_PENDING:
        job.next_attempt_at = await session.scalar(select(func.now()))
        job.updated_at = job.next_attempt_at
        await session.flush()
        return job
    if job.state not in RETRYABLE_STATES:
        raise errors.FailedPrecondition(
            f"transcode job {job_id} is {job.state}; only failed, dead_lettered or "
            "cancelled jobs can be retried"
        )
    job.state = JobState.QUEUED.value
    job.attempts = 0
    job.next_attempt_at = await session.scalar(select(func.now()))
    job.stage = "queued"
    job.percent = 0.0
    job.permanent = False
    job.finished_at = None
    job.lease_owner = None
    job.lease_expires_at = None
    job.updated_at = job.next_attempt_at
    await session.flush()
    return job


async def cancel_job(session: AsyncSession, job_id: str) -> tuple[TranscodeJob, bool]:
    """Cancel a queued or running job; returns (job, whether a worker was running it).

    A running job's worker notices at its next heartbeat (its lease guard no longer
    matches), kills ffmpeg and cleans its staging prefix.
    """
    job = await session.get(TranscodeJob, parse_job_id(job_id), with_for_update=True)
    if job is None:
        raise errors.NotFound("transcode job", job_id)
    if job.state not in CANCELLABLE_STATES:
        raise errors.FailedPrecondition(
            f"transcode job {job_id} is {job.state}; only queued or running jobs can be cancelled"
        )
    was_running = job.state == JobState.RUNNING
    now = await session.scalar(select(func.now()))
    job.state = JobState.CANCELLED.value
    job.stage = "cancelled"
    job.lease_owner = None
    job.lease_expires_at = None
    job.finished_at = now
    job.updated_at = now
    await session.flush()
    return job, was_running
