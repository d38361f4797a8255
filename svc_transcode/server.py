"""TranscodeService: the operators' view of the job queue (assembled in ``app.py``).

Jobs are created by the consumer from video.uploaded, never through this API; these
RPCs make every job visible (GetJob, ListJobs) and give an operator the two levers
PeerTube users miss most: re-queue a failed job (RetryJob) and stop one (CancelJob).
"""

from __future__ import annotations

import logging

from google.protobuf import timestamp_pb2
from reels.v1 import common_pb2, transcode_pb2, transcode_pb2_grpc, upload_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels.server import Registration
from svc_transcode import jobs
from svc_transcode.jobs import EMBEDDINGS_PENDING, JobState
from svc_transcode.models import TranscodeJob
from svc_transcode.status import StatusReporter, StatusReportError
from svc_transcode.worker import CANCELLED_REASON

log = logging.getLogger(__name__)

_TO_PROTO = {
    JobState.QUEUED: transcode_pb2.JOB_STATE_QUEUED,
    JobState.RUNNING: transcode_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: transcode_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: transcode_pb2.JOB_STATE_FAILED,
    JobState.DEAD_LETTERED: transcode_pb2.JOB_STATE_DEAD_LETTERED,
    JobState.CANCELLED: transcode_pb2.JOB_STATE_CANCELLED,
}
_FROM_PROTO = {v: k for k, v in _TO_PROTO.items()}


def _ts(value: object) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)  # type: ignore[arg-type]
    return out


def job_to_proto(job: TranscodeJob) -> transcode_pb2.Job:
    out = transcode_pb2.Job(
        job_id=str(job.id),
        video_id=job.video_id,
        state=_TO_PROTO[JobState(job.state)],
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        last_error=job.last_error or "",
        stage=job.stage or "",
        percent=float(job.percent or 0.0),
        worker_id=job.lease_owner or "",
    )
    for name in ("created_at", "updated_at"):
        stamp = _ts(getattr(job, name))
        if stamp is not None:
            getattr(out, name).CopyFrom(stamp)
    if (job.state == JobState.QUEUED and job.attempts > 0) or (
        job.state == JobState.SUCCEEDED and job.stage == EMBEDDINGS_PENDING
    ):
        # A retry is scheduled (the contract sets next_attempt_at only then): of the
        # job, or of the embeddings of its published video (stage embeddings_pending).
        stamp = _ts(job.next_attempt_at)
        if stamp is not None:
            out.next_attempt_at.CopyFrom(stamp)
    return out


class TranscodeService(transcode_pb2_grpc.TranscodeServiceServicer):
    """The job API over the Postgres queue (jobs.py does the transitions)."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], reporter: StatusReporter
    ) -> None:
        self.sessionmaker = sessionmaker
        self.reporter = reporter

    async def GetJob(  # noqa: N802 - gRPC method name
        self, request: transcode_pb2.GetJobRequest, context: object
    ) -> transcode_pb2.GetJobResponse:
        async with self.sessionmaker() as session:
            job = await jobs.get_job(session, request.job_id)
        return transcode_pb2.GetJobResponse(job=job_to_proto(job))

    async def ListJobs(  # noqa: N802 - gRPC method name
        self, request: transcode_pb2.ListJobsRequest, context: object
    ) -> transcode_pb2.ListJobsResponse:
        state = _FROM_PROTO.get(request.state) if request.state else None
        async with self.sessionmaker() as session:
            rows, token = await jobs.list_jobs(
                session,
                state=state,
                video_id=request.video_id,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return transcode_pb2.ListJobsResponse(
            jobs=[job_to_proto(j) for j in rows], next_page_token=token
        )

    async def RetryJob(  # noqa: N802 - gRPC method name
        self, request: transcode_pb2.RetryJobRequest, context: object
    ) -> transcode_pb2.RetryJobResponse:
        async with self.sessionmaker() as session, session.begin():
            job = await jobs.retry_job(session, request.job_id)
        if job.state != JobState.SUCCEEDED:  # not an embeddings re-try: the video is published
            await self._report(job, common_pb2.VIDEO_STATUS_PROCESSING, stage="queued")
        return transcode_pb2.RetryJobResponse(job=job_to_proto(job))

    async def CancelJob(  # noqa: N802 - gRPC method name
        self, request: transcode_pb2.CancelJobRequest, context: object
    ) -> transcode_pb2.CancelJobResponse:
        async with self.sessionmaker() as session, session.begin():
            job, was_running = await jobs.cancel_job(session, request.job_id)
        if not was_running:
            # A running job's worker reports once ffmpeg is dead, so no late progress
            # report can overtake this one.
            await self._report(
                job, common_pb2.VIDEO_STATUS_FAILED, stage="cancelled", reason=CANCELLED_REASON
            )
        return transcode_pb2.CancelJobResponse(job=job_to_proto(job))

    async def _report(
        self, job: TranscodeJob, status: int, *, stage: str, reason: str = ""
    ) -> None:
        """Tell svc_upload; the job change already committed, so a failure here is logged."""
        try:
            await self.reporter.update(
                upload_pb2.UpdateVideoStatusRequest(
                    video_id=job.video_id,
                    status=status,  # type: ignore[arg-type]
                    stage=stage,
                    failure_reason=reason,
                    job_id=str(job.id),
                )
            )
        except StatusReportError as exc:
            log.warning("job %s: status not reported to svc_upload: %s", job.id, exc)


def registrations(service: TranscodeService) -> list[Registration]:
    return [
        (
            transcode_pb2_grpc.add_TranscodeServiceServicer_to_server,
            service,
            "reels.v1.TranscodeService",
        )
    ]
