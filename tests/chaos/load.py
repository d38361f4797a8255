"""Load for chaos tests and the chaos bench: tus uploads through Envoy and player
events (RecordEvents) into svc_stream while a fault happens, and the invariants checked
afterwards (every accepted upload published; every accepted event counted once, in
Redis and in the analytics store). Shared by tests/e2e/test_chaos_e2e.py and
bench/bench_chaos.py."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import redis.asyncio as aioredis
from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import common_pb2, events_pb2, stream_pb2, stream_pb2_grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from reels_dev.keys import mint_token
from svc_upload.models import Video, VideoStatus
from tests.fixtures.chaos import ChaosMesh, FaultReport
from tests.polling import eventually
from tests.publishing import send_published
from tests.tus import tus_upload_once


def _auth(user: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token(user)}"),)


async def publish_video(chaos: ChaosMesh, creator: str) -> str:
    """A published video in svc_stream's catalog (as svc_transcode's relay sends it),
    ready to take events; returns its id."""
    vid = str(uuid.uuid4())
    now = timestamp_pb2.Timestamp()
    now.FromDatetime(datetime.now(UTC))
    await send_published(
        chaos.mesh.backends.kafka_bootstrap,
        events_pb2.VideoPublished(
            meta=events_pb2.EventMeta(event_id=str(uuid.uuid4()), occurred_at=now),
            video_id=vid,
            creator_id=creator,
            duration=duration_pb2.Duration(seconds=10),
            width=720,
            height=1280,
            master_playlist_key=f"videos/{vid}/master.m3u8",
            published_at=now,
            title="chaos",
        ),
    )
    return vid


@dataclass
class Load:
    """Events and uploads at a steady pace until :meth:`stop`. Every event is a
    WATCH_START in a session of its own, so each accepted one is exactly one view."""

    chaos: ChaosMesh
    video_id: str
    clip: bytes
    events_per_batch: int = 20
    event_interval_s: float = 0.1
    upload_interval_s: float = 1.0
    accepted_events: set[str] = field(default_factory=set)
    accepted_uploads: list[str] = field(default_factory=list)
    refused_uploads: list[tuple[int, str]] = field(default_factory=list)
    outcomes: list[tuple[float, bool]] = field(default_factory=list)  # (time, batch all ok)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._events()),
            asyncio.create_task(self._uploads()),
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _events(self) -> None:
        viewer = f"chaos-viewer-{uuid.uuid4().hex[:6]}"
        meta = _auth(viewer)
        async with grpc.aio.insecure_channel(self.chaos.mesh.addr("stream")) as channel:
            stub = stream_pb2_grpc.StreamServiceStub(channel)
            unanswered: list[stream_pb2.PlayerEvent] = []
            # Like a player SDK: a batch that got no answer (refused, or the service died
            # mid-call) is sent again as it is, same client_event_ids, until it is
            # answered; svc_stream's event ids (user + client_event_id) make the resend
            # count once even when the first attempt did reach Kafka. The load stops
            # only once nothing is left unanswered, so "accepted" is exact.
            give_up_at = float("inf")
            while not self._stop.is_set() or unanswered:
                if self._stop.is_set():
                    give_up_at = min(give_up_at, time.monotonic() + 60)
                    if time.monotonic() > give_up_at:
                        break  # never answered again: the invariants will say so
                now = timestamp_pb2.Timestamp()
                now.FromDatetime(datetime.now(UTC))
                batch = unanswered or [
                    stream_pb2.PlayerEvent(
                        client_event_id=str(uuid.uuid4()),
                        video_id=self.video_id,
                        type=common_pb2.EVENT_TYPE_WATCH_START,
                        occurred_at=now,
                        session_id=str(uuid.uuid4()),
                        device=common_pb2.DEVICE_WEB,
                    )
                    for _ in range(self.events_per_batch)
                ]
                ok = False
                try:
                    reply = await stub.RecordEvents(
                        stream_pb2.RecordEventsRequest(events=batch), metadata=meta, timeout=5
                    )
                    got = {r.client_event_id for r in reply.results if r.accepted}
                    assert len(got) == reply.accepted_count, reply
                    self.accepted_events |= got
                    ok = reply.accepted_count == len(batch)
                    unanswered = []
                except grpc.aio.AioRpcError:
                    unanswered = batch  # resent next round
                self.outcomes.append((time.monotonic(), ok))
                await asyncio.sleep(self.event_interval_s)

    async def _uploads(self) -> None:
        url = f"http://127.0.0.1:{self.chaos.envoy.listen_port}/api/v1/uploads/tus/"
        pending: set[asyncio.Task[None]] = set()

        async def one() -> None:
            out = await tus_upload_once(
                url, mint_token(f"chaos-up-{uuid.uuid4().hex[:8]}"), self.clip, timeout_s=120
            )
            if out.status == 204 and out.video_id:
                self.accepted_uploads.append(out.video_id)
            else:
                self.refused_uploads.append((out.status, out.error[:200]))

        while not self._stop.is_set():
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            try:
                await asyncio.wait_for(self._stop.wait(), self.upload_interval_s)
            except TimeoutError:
                pass
        if pending:
            await asyncio.gather(*pending)

    def recovered_after(self, t0: float) -> float:
        """Seconds from ``t0`` until events were fully accepted again after the last
        refused batch (0 when no batch was refused)."""
        failures = [t for t, ok in self.outcomes if t >= t0 and not ok]
        if not failures:
            return 0.0
        last = max(failures)
        after = [t for t, ok in self.outcomes if t > last and ok]
        return (min(after) if after else last) - t0


async def counted(chaos: ChaosMesh, video_id: str, creator: str) -> tuple[int, int]:
    """(views in svc_stream's Redis counters, views in its analytics store)."""
    client = aioredis.Redis.from_url(chaos.redis_url)
    try:
        raw = await client.hget(f"{chaos.mesh.redis_prefix}video:{video_id}:counters", "views")
    finally:
        await client.aclose()
    async with grpc.aio.insecure_channel(chaos.mesh.addr("stream")) as channel:
        reply = await stream_pb2_grpc.StreamServiceStub(channel).GetVideoAnalytics(
            stream_pb2.GetVideoAnalyticsRequest(video_id=video_id),
            metadata=_auth(creator),
            timeout=10,
        )
    return int(raw or 0), int(reply.views)


async def wait_ready_for_events(chaos: ChaosMesh, video_id: str) -> None:
    async def accepted() -> bool:
        async with grpc.aio.insecure_channel(chaos.mesh.addr("stream")) as channel:
            try:
                reply = await stream_pb2_grpc.StreamServiceStub(channel).RecordEvents(
                    stream_pb2.RecordEventsRequest(
                        events=[
                            stream_pb2.PlayerEvent(
                                client_event_id=str(uuid.uuid4()),
                                video_id=video_id,
                                type=common_pb2.EVENT_TYPE_WATCH_START,
                                occurred_at=timestamp_pb2.Timestamp(seconds=int(time.time())),
                                session_id="probe",
                            )
                        ]
                    ),
                    metadata=_auth("chaos-probe"),
                    timeout=5,
                )
            except grpc.aio.AioRpcError:
                return False
            return reply.accepted_count == 1

    await eventually(accepted, within=60, what="svc_stream knows the chaos video", interval=0.5)


async def run_fault(
    chaos: ChaosMesh,
    name: str,
    clip: bytes,
    fault: Callable[[], Awaitable[float]],
    *,
    before_s: float = 2.0,
    after_s: float = 3.0,
    catch_up_s: float = 240.0,
    upload_interval_s: float = 1.0,
    events_per_batch: int = 20,
) -> FaultReport:
    """Load, then ``fault()`` (returns the seconds until the broken part was back), then
    load ``after_s`` more; then wait until every invariant holds and report."""
    creator = f"chaos-creator-{uuid.uuid4().hex[:6]}"
    video = await publish_video(chaos, creator)
    await wait_ready_for_events(chaos, video)
    # The probe event counts too (one session, "probe").
    load = Load(
        chaos,
        video,
        clip,
        events_per_batch=events_per_batch,
        upload_interval_s=upload_interval_s,
    )
    load.start()
    await asyncio.sleep(before_s)
    t0 = time.monotonic()
    restart_s = await fault()
    await asyncio.sleep(after_s)
    await load.stop()
    recover_s = load.recovered_after(t0)
    report = FaultReport(
        name,
        uploads_accepted=len(load.accepted_uploads),
        uploads_refused=load.refused_uploads,
        events_accepted=len(load.accepted_events) + 1,
        restart_s=restart_s,
        recover_s=max(recover_s, restart_s),
    )
    engine = create_async_engine(chaos.mesh.backends.database_url, poolclass=NullPool)
    ids = [uuid.UUID(v) for v in load.accepted_uploads]

    async def all_in() -> bool:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(Video.status).where(Video.id.in_(ids)))).all()
        statuses = [s for (s,) in rows]
        assert VideoStatus.FAILED.value not in statuses, statuses
        report.uploads_published = statuses.count(VideoStatus.PUBLISHED.value)
        try:
            redis_views, analytics_views = await counted(chaos, video, creator)
        except (grpc.aio.AioRpcError, OSError, aioredis.RedisError):
            return False
        report.events_counted_redis = redis_views
        report.events_counted_analytics = analytics_views
        # Never more than accepted (counted twice), and eventually all of them.
        assert redis_views <= report.events_accepted, report
        assert analytics_views <= report.events_accepted, report
        return (
            report.uploads_published == len(ids)
            and redis_views == report.events_accepted
            and analytics_views == report.events_accepted
        )

    try:
        await eventually(all_in, within=catch_up_s, what=f"{name}: nothing lost", interval=1)
    finally:
        await engine.dispose()
        report.caught_up_s = time.monotonic() - t0
        print(report.line(), flush=True)
    # A refusal during a fault is allowed only as an explicit 503 (retry later) or 429.
    assert all(s in (429, 503) for s, _ in load.refused_uploads), load.refused_uploads[:3]
    return report
