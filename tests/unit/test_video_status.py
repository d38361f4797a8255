"""The video status state machine (svc_upload/status.py), as a creator and svc_transcode see it.

uploading -> processing -> published | failed(reason) | in_review (held by NSFW
moderation); in_review -> published | failed (a moderator's decision); deleted from
anywhere; failed -> processing when a job is re-queued. Reports arrive at least once and late,
so a repeat is a no-op and a move backwards out of a terminal state is refused.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from reels.v1 import common_pb2, upload_pb2

from reels import errors
from svc_upload.models import Video, VideoStatus
from svc_upload.status import TERMINAL, StatusSnapshot, check_transition
from svc_upload.videos import PROTO_TO_STATUS, STATUS_TO_PROTO, VideoBook

U, PR, PU, F, D, R = (
    VideoStatus.UPLOADING,
    VideoStatus.PROCESSING,
    VideoStatus.PUBLISHED,
    VideoStatus.FAILED,
    VideoStatus.DELETED,
    VideoStatus.IN_REVIEW,
)

# The whole table, written out from the rules above: "change", "repeat" or "refused".
EXPECTED: dict[tuple[VideoStatus, VideoStatus], str] = {
    (U, U): "repeat", (U, PR): "change", (U, PU): "refused", (U, F): "change", (U, D): "change",
    (PR, U): "refused", (PR, PR): "repeat", (PR, PU): "change", (PR, F): "change",
    (PR, D): "change",
    (PU, U): "refused", (PU, PR): "refused", (PU, PU): "repeat", (PU, F): "refused",
    (PU, D): "change",
    (F, U): "refused", (F, PR): "change", (F, PU): "refused", (F, F): "repeat", (F, D): "change",
    (D, U): "refused", (D, PR): "refused", (D, PU): "refused", (D, F): "refused",
    (D, D): "repeat",
    # NSFW moderation: held after processing, then published or failed by a moderator.
    (U, R): "refused", (PR, R): "change", (PU, R): "refused", (F, R): "refused",
    (D, R): "refused", (R, U): "refused", (R, PR): "refused", (R, PU): "change",
    (R, F): "change", (R, D): "change", (R, R): "repeat",
}  # fmt: skip


def verdict(current: VideoStatus, target: VideoStatus) -> str:
    try:
        return "change" if check_transition(current, target, "vid-1") else "repeat"
    except errors.FailedPrecondition:
        return "refused"


def test_the_table_covers_every_pair_of_statuses() -> None:
    assert set(EXPECTED) == set(itertools.product(VideoStatus, VideoStatus))


@pytest.mark.parametrize(("current", "target"), sorted(EXPECTED, key=str))
def test_every_transition_follows_the_documented_rules(
    current: VideoStatus, target: VideoStatus
) -> None:
    assert verdict(current, target) == EXPECTED[(current, target)]


def test_the_happy_path_reaches_published() -> None:
    assert [verdict(a, b) for a, b in [(U, PR), (PR, PR), (PR, PU)]] == [
        "change",
        "repeat",
        "change",
    ]


def test_a_late_progress_report_cannot_unpublish_a_video() -> None:
    with pytest.raises(errors.FailedPrecondition):
        check_transition(PU, PR, "vid-1")


def test_a_late_failure_cannot_take_down_a_published_video() -> None:
    with pytest.raises(errors.FailedPrecondition):
        check_transition(PU, F, "vid-1")


def test_a_requeued_job_may_restart_a_failed_video() -> None:
    assert check_transition(F, PR, "vid-1") is True


def test_a_video_cannot_skip_processing() -> None:
    with pytest.raises(errors.FailedPrecondition):
        check_transition(U, PU, "vid-1")


def test_a_deleted_video_stays_deleted() -> None:
    for target in (U, PR, PU, F):
        with pytest.raises(errors.FailedPrecondition):
            check_transition(D, target, "vid-1")
    assert check_transition(D, D, "vid-1") is False  # deleting twice is fine


def test_a_refusal_is_failed_precondition_naming_the_video_and_both_states() -> None:
    with pytest.raises(errors.FailedPrecondition) as caught:
        check_transition(PU, PR, "0f6c-video")
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    message = caught.value.message
    assert "0f6c-video" in message and "published" in message and "processing" in message


def test_watchers_stop_on_terminal_statuses_only() -> None:
    assert TERMINAL == {PU, F, D}

    def snap(status: VideoStatus) -> StatusSnapshot:
        return StatusSnapshot("v", status.value, "", 0.0, "", "2024-01-01T00:00:00+00:00")

    assert [s for s in VideoStatus if snap(s).terminal] == [PU, F, D]


def test_a_snapshot_change_worth_announcing_ignores_the_timestamp() -> None:
    a = StatusSnapshot("v", "processing", "encode", 40.0, "", "2024-01-01T00:00:00+00:00")
    b = StatusSnapshot("v", "processing", "encode", 40.0, "", "2024-01-01T00:00:05+00:00")
    c = StatusSnapshot("v", "processing", "encode", 41.0, "", "2024-01-01T00:00:06+00:00")
    assert a.visible() == b.visible() != c.visible()
    assert a.updated() < b.updated()


def test_every_status_has_a_wire_value_and_back() -> None:
    assert set(STATUS_TO_PROTO) == {s.value for s in VideoStatus}
    assert {PROTO_TO_STATUS[STATUS_TO_PROTO[s.value]] for s in VideoStatus} == set(VideoStatus)
    assert common_pb2.VIDEO_STATUS_UNSPECIFIED not in PROTO_TO_STATUS


# --------------------------------------------------------------------------- status reports
# VideoBook.update_status with an in-memory session: what svc_transcode's reports do.


class _Session:
    def __init__(self, video: Video) -> None:
        self.video = video

    async def __aenter__(self) -> _Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def begin(self) -> _Session:
        return self

    async def get(self, model: type, ident: uuid.UUID, **_: object) -> Video | None:
        return self.video if ident == self.video.id else None


class _Channel:
    def __init__(self) -> None:
        self.sent: list[StatusSnapshot] = []

    async def publish(self, snap: StatusSnapshot) -> None:
        self.sent.append(snap)


VIDEO_ID = uuid.UUID("0b3c5a7e-1d2f-4e6a-9b8c-7d6e5f4a3b2c")


def _book(status: VideoStatus, **fields: object) -> tuple[VideoBook, Video, _Channel]:
    video = Video(
        id=VIDEO_ID, creator_id="creator", status=status.value, stage=None, percent=0,
        failure_reason=None, renditions=[], updated_at=datetime(2024, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    for name, value in fields.items():
        setattr(video, name, value)
    channel = _Channel()
    book = VideoBook(lambda: _Session(video), None, None, channel)  # type: ignore[arg-type]
    return book, video, channel


def _report(status: int, **fields: object) -> upload_pb2.UpdateVideoStatusRequest:
    return upload_pb2.UpdateVideoStatusRequest(
        video_id=str(VIDEO_ID),
        status=status,
        **fields,  # type: ignore[arg-type]
    )


def _send(
    book: VideoBook, request: upload_pb2.UpdateVideoStatusRequest, caller: str = "svc_transcode"
) -> Video:  # noqa: E501
    return asyncio.run(book.update_status(caller, request))


def test_progress_is_announced_once_and_a_repeat_is_silent() -> None:
    book, video, channel = _book(PR, stage="encode", percent=10)
    _send(book, _report(common_pb2.VIDEO_STATUS_PROCESSING, stage="encode", percent=40.4))
    _send(book, _report(common_pb2.VIDEO_STATUS_PROCESSING, stage="encode", percent=40.4))
    assert video.percent == 40
    assert [(s.status, s.stage, s.percent) for s in channel.sent] == [
        ("processing", "encode", 40.0)
    ]


def test_progress_percent_is_clamped_to_0_100() -> None:
    book, video, _ = _book(PR)
    _send(book, _report(common_pb2.VIDEO_STATUS_PROCESSING, percent=250))
    assert video.percent == 100
    _send(book, _report(common_pb2.VIDEO_STATUS_PROCESSING, percent=-5))
    assert video.percent == 0


def test_a_late_progress_report_leaves_a_published_video_published() -> None:
    book, video, channel = _book(PU, stage="published", percent=100)
    with pytest.raises(errors.FailedPrecondition):
        _send(book, _report(common_pb2.VIDEO_STATUS_PROCESSING, stage="encode", percent=50))
    assert (video.status, video.stage, video.percent) == ("published", "published", 100)
    assert channel.sent == []


def test_publication_records_the_outputs_and_a_retried_report_changes_nothing() -> None:
    book, video, channel = _book(PR, stage="encode", percent=90)
    report = _report(
        common_pb2.VIDEO_STATUS_PUBLISHED, width=1080, height=1920,
        master_playlist_key=f"videos/{VIDEO_ID}/master.m3u8",
    )  # fmt: skip
    _send(book, report)
    published_at = video.published_at
    assert (video.status, video.stage, video.percent) == ("published", "published", 100)
    assert (video.width, video.height) == (1080, 1920)
    assert video.master_playlist_key == f"videos/{VIDEO_ID}/master.m3u8"
    _send(book, report)
    assert video.published_at == published_at
    assert [s.status for s in channel.sent] == ["published"]


def test_a_failure_needs_a_reason_a_creator_can_read() -> None:
    book, video, channel = _book(PR)
    with pytest.raises(errors.InvalidArgument):
        _send(book, _report(common_pb2.VIDEO_STATUS_FAILED, failure_reason="   "))
    assert video.status == "processing" and channel.sent == []
    _send(book, _report(common_pb2.VIDEO_STATUS_FAILED, failure_reason="  no video stream "))
    assert (video.status, video.failure_reason) == ("failed", "no video stream")
    assert [s.failure_reason for s in channel.sent] == ["no video stream"]


def test_a_requeued_job_clears_the_old_failure_reason() -> None:
    book, video, _ = _book(F, failure_reason="transcoder crashed")
    _send(book, _report(common_pb2.VIDEO_STATUS_PROCESSING, stage="probe", percent=0))
    assert (video.status, video.failure_reason) == ("processing", None)


@pytest.mark.parametrize(
    "status",
    [common_pb2.VIDEO_STATUS_UNSPECIFIED, common_pb2.VIDEO_STATUS_UPLOADING,
     common_pb2.VIDEO_STATUS_DELETED],
)  # fmt: skip
def test_svc_transcode_may_only_report_processing_published_or_failed(status: int) -> None:
    book, video, _ = _book(PR)
    with pytest.raises(errors.InvalidArgument):
        _send(book, _report(status))
    assert video.status == "processing"


def test_only_the_transcode_worker_may_report_status() -> None:
    book, video, _ = _book(PR)
    with pytest.raises(errors.PermissionDenied):
        _send(book, _report(common_pb2.VIDEO_STATUS_PUBLISHED), caller="creator")
    assert video.status == "processing"


def test_a_report_for_an_unknown_or_malformed_video_id_is_not_found() -> None:
    book, _, _ = _book(PR)
    for video_id in ["00000000-0000-0000-0000-000000000000", "not-a-uuid"]:
        with pytest.raises(errors.NotFound):
            _send(book, upload_pb2.UpdateVideoStatusRequest(
                video_id=video_id, status=common_pb2.VIDEO_STATUS_PROCESSING))  # fmt: skip
