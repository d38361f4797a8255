"""svc_upload in-process against real Postgres, Redis, Tansu and ffmpeg-made media.

The gRPC server and the tus HTTP endpoint run in this process on free ports; each
test uses fresh user ids, so the small limits set here (20 MB, 2 uploads a day)
apply per test.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.rpc import error_details_pb2
from reels.v1 import common_pb2, events_pb2, upload_pb2, upload_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tusclient.client import TusClient

from reels import topics
from reels.config import ServerSettings, platform
from reels.db.engine import create_database, drop_database, make_engine
from reels.db.migrate import migrate
from reels.errors import from_rpc_error
from reels.server import RunningServer, run_app
from reels.storage import LocalObjectStore
from reels_dev.infra.process import free_port
from reels_dev.keys import mint_token
from svc_upload.app import App, build
from svc_upload.limits import MB
from svc_upload.settings import ScanSettings, Settings
from tests.fixtures.infra import TansuBroker, _test_database_url
from tests.media import MediaFactory

MAX_BYTES = 20 * MB
QUOTA = 2


@dataclass
class Service:
    app: App
    server: RunningServer
    store: LocalObjectStore
    engine: AsyncEngine
    bootstrap: str

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def tus_url(self) -> str:
        return f"http://127.0.0.1:{self.app.http_port}/api/v1/uploads/tus/"

    async def scalar(self, sql: str, **params: object) -> object:
        async with self.engine.connect() as conn:
            return await conn.scalar(text(sql), params)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    return MediaFactory(tmp_path_factory.mktemp("upload-media"))


@pytest.fixture(scope="module")
async def svc(
    kafka: TansuBroker, clamd: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    url = _test_database_url()
    await create_database(url)
    await migrate(url)
    store = LocalObjectStore(tmp_path_factory.mktemp("objects"))
    settings = upload_settings(url, kafka.bootstrap, scan=ScanSettings(clamd_address=clamd))
    app = App(settings=settings, store=store)
    server = await run_app(app, port=0)
    engine = make_engine(url)
    try:
        yield Service(app, server, store, engine, kafka.bootstrap)
    finally:
        await server.stop(0.5)
        await engine.dispose()
        await drop_database(url)


def upload_settings(database_url: str, bootstrap: str, **overrides: object) -> Settings:
    """Small limits, free ports, this test's database, broker and Redis namespace."""
    return Settings(
        server=ServerSettings(port=0),
        platform=dataclasses.replace(
            platform(),
            database_url=database_url,
            kafka_bootstrap=bootstrap,
            redis_prefix=f"reels-test-{uuid.uuid4().hex[:8]}:",
        ),
        max_bytes=MAX_BYTES,
        daily_quota=QUOTA,
        chunk_bytes=256 * 1024,
        http_port=0,
        **overrides,  # type: ignore[arg-type]
    )


def size_of(path: Path) -> int:
    return path.stat().st_size


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def auth(who: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token(who)}"),)


def stub(channel: grpc.aio.Channel) -> upload_pb2_grpc.UploadServiceStub:
    return upload_pb2_grpc.UploadServiceStub(channel)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def create(
    api: upload_pb2_grpc.UploadServiceStub, who: str, path: Path, **extra: object
) -> upload_pb2.CreateUploadResponse:
    request = upload_pb2.CreateUploadRequest(
        title="My reel",
        description="testing",
        hashtags=["dance", "#fun"],
        content_type=common_pb2.CONTENT_TYPE_ORIGINAL,
        declared_size_bytes=size_of(path),
        filename=path.name,
        mime_type="video/mp4",
        **extra,  # type: ignore[arg-type]
    )
    return await api.CreateUpload(request, metadata=auth(who))


async def send_all(
    api: upload_pb2_grpc.UploadServiceStub,
    who: str,
    upload_id: str,
    data: bytes,
    start: int = 0,
    chunk: int = 256 * 1024,
) -> int:
    offset = start
    while offset < len(data):
        reply = await api.UploadChunk(
            upload_pb2.UploadChunkRequest(
                upload_id=upload_id, offset=offset, data=data[offset : offset + chunk]
            ),
            metadata=auth(who),
        )
        offset = reply.offset
    return offset


async def upload_whole(svc: Service, who: str, path: Path) -> str:
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        created = await create(api, who, path)
        await send_all(api, who, created.upload_id, await asyncio.to_thread(path.read_bytes))
        done = await api.CompleteUpload(
            upload_pb2.CompleteUploadRequest(upload_id=created.upload_id), metadata=auth(who)
        )
        assert done.status == common_pb2.VIDEO_STATUS_PROCESSING
        return done.video_id


async def uploaded_events(bootstrap: str, video_id: str, settle: float = 1.5) -> list:
    """Every video.uploaded record for ``video_id``, read without a consumer group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        found: list[events_pb2.VideoUploaded] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = consumer.partitions_for_topic(topics.VIDEO_UPLOADED.name) or set()
            if partitions:
                break
            await asyncio.sleep(0.3)
        tps = [TopicPartition(topics.VIDEO_UPLOADED.name, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        idle_since = loop.time()
        while loop.time() - idle_since < settle and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    event = topics.VIDEO_UPLOADED.parse(record.value)
                    if event.video_id == video_id:
                        found.append(event)
                        idle_since = loop.time()
            if not found:
                idle_since = loop.time() if loop.time() - idle_since > settle else idle_since
        return found
    finally:
        await consumer.stop()


# --- gRPC: resumable chunks ---------------------------------------------------------------


async def test_resume_after_dropped_connection_keeps_offset_and_sha256(
    svc: Service, clips: MediaFactory
) -> None:
    path = await clips.get("portrait")
    data = path.read_bytes()
    who = user()
    half = (len(data) // 2) // (256 * 1024) * (256 * 1024)

    channel = grpc.aio.insecure_channel(svc.addr)
    api = stub(channel)
    created = await create(api, who, path, sha256_hex=sha256(path))
    assert await send_all(api, who, created.upload_id, data[:half]) == half
    # Drop the connection while a chunk is in flight.
    call = api.UploadChunk(
        upload_pb2.UploadChunkRequest(
            upload_id=created.upload_id, offset=half, data=data[half : half + 256 * 1024]
        ),
        metadata=auth(who),
    )
    call.cancel()
    await channel.close(grace=None)
    # A service restart forgets the running hash; the staged bytes are rehashed.
    svc.app.core.staging._hashes.clear()  # noqa: SLF001

    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        # The cancelled chunk either never landed or landed whole: never a torn offset.
        got = await api.GetUploadOffset(
            upload_pb2.GetUploadOffsetRequest(upload_id=created.upload_id),
            metadata=auth(who),
        )
        assert got.offset in (half, half + 256 * 1024)
        assert got.size_bytes == len(data)
        assert got.state == upload_pb2.UPLOAD_STATE_OPEN
        assert await send_all(api, who, created.upload_id, data, start=got.offset) == len(data)
        done = await api.CompleteUpload(
            upload_pb2.CompleteUploadRequest(upload_id=created.upload_id), metadata=auth(who)
        )
    assert done.status == common_pb2.VIDEO_STATUS_PROCESSING
    key = await svc.scalar("SELECT original_key FROM videos WHERE id = :v", v=done.video_id)
    assert key == f"originals/{done.video_id}/original.mp4"
    assert sha256(svc.store.path(str(key))) == sha256(path)


async def test_repeated_chunk_at_same_offset_is_idempotent(
    svc: Service, clips: MediaFactory
) -> None:
    path = await clips.get("small")
    data = path.read_bytes()
    who = user()
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        created = await create(api, who, path)
        first = upload_pb2.UploadChunkRequest(
            upload_id=created.upload_id, offset=0, data=data[: 256 * 1024]
        )
        assert (await api.UploadChunk(first, metadata=auth(who))).offset == 256 * 1024
        assert (await api.UploadChunk(first, metadata=auth(who))).offset == 256 * 1024
        await send_all(api, who, created.upload_id, data, start=256 * 1024)
        again = await api.UploadChunk(first, metadata=auth(who))
        assert again.offset == len(data)
        done = await api.CompleteUpload(
            upload_pb2.CompleteUploadRequest(upload_id=created.upload_id), metadata=auth(who)
        )
    key = await svc.scalar("SELECT original_key FROM videos WHERE id = :v", v=done.video_id)
    assert sha256(svc.store.path(str(key))) == sha256(path)


async def test_chunk_at_wrong_offset_fails_precondition_naming_expected_offset(
    svc: Service, clips: MediaFactory
) -> None:
    path = await clips.get("small")
    data = path.read_bytes()
    who = user()
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        created = await create(api, who, path)
        await send_all(api, who, created.upload_id, data[:1000])
        for offset, body in ((5000, data[5000:6000]), (500, data[500:1500])):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await api.UploadChunk(
                    upload_pb2.UploadChunkRequest(
                        upload_id=created.upload_id, offset=offset, data=body
                    ),
                    metadata=auth(who),
                )
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "resume at offset 1000" in info.value.details()
            (detail,) = from_rpc_error(info.value)
            assert isinstance(detail, error_details_pb2.ErrorInfo)
            assert detail.metadata["expected_offset"] == "1000"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.UploadChunk(
                upload_pb2.UploadChunkRequest(
                    upload_id=created.upload_id, offset=1000, data=data[1000:] + b"extra"
                ),
                metadata=auth(who),
            )
        assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE


async def test_size_over_limit_is_resource_exhausted_before_bytes_are_stored(
    svc: Service,
) -> None:
    who = user()
    staged_before = sorted(svc.app.core.staging.root.iterdir())
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub(ch).CreateUpload(
                upload_pb2.CreateUploadRequest(
                    title="too big", declared_size_bytes=MAX_BYTES + 1, filename="big.mp4"
                ),
                metadata=auth(who),
            )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(MAX_BYTES) in info.value.details()
    assert await svc.scalar("SELECT count(*) FROM videos WHERE creator_id = :u", u=who) == 0
    assert sorted(svc.app.core.staging.root.iterdir()) == staged_before


async def test_bad_metadata_lists_every_field_violation(svc: Service) -> None:
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub(ch).CreateUpload(
                upload_pb2.CreateUploadRequest(
                    title="x" * 151, hashtags=["ok", "not\x00ok"], declared_size_bytes=0
                ),
                metadata=auth(user()),
            )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (bad,) = from_rpc_error(info.value)
    assert {v.field for v in bad.field_violations} == {
        "title",
        "hashtags",
        "declared_size_bytes",
    }


async def test_daily_quota_is_resource_exhausted_with_retry_info(
    svc: Service, clips: MediaFactory
) -> None:
    path = await clips.get("small")
    who = user()
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        for _ in range(QUOTA):
            await create(api, who, path)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await create(api, who, path)
        await create(api, user(), path)  # someone else still may
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota" in info.value.details()
    (retry,) = from_rpc_error(info.value)
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert 0 < retry.retry_delay.seconds <= 24 * 3600


async def test_another_user_can_neither_write_nor_see_an_upload(
    svc: Service, clips: MediaFactory
) -> None:
    path = await clips.get("small")
    alice, bob = user(), user()
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        created = await create(api, alice, path)
        calls = [
            api.UploadChunk(
                upload_pb2.UploadChunkRequest(upload_id=created.upload_id, offset=0, data=b"x"),
                metadata=auth(bob),
            ),
            api.GetUploadOffset(
                upload_pb2.GetUploadOffsetRequest(upload_id=created.upload_id), metadata=auth(bob)
            ),
            api.CompleteUpload(
                upload_pb2.CompleteUploadRequest(upload_id=created.upload_id), metadata=auth(bob)
            ),
            api.GetVideoStatus(
                upload_pb2.GetVideoStatusRequest(video_id=created.video_id), metadata=auth(bob)
            ),
            api.DeleteVideo(
                upload_pb2.DeleteVideoRequest(video_id=created.video_id), metadata=auth(bob)
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        mine = await api.GetVideoStatus(
            upload_pb2.GetVideoStatusRequest(video_id=created.video_id), metadata=auth(alice)
        )
        assert mine.status == common_pb2.VIDEO_STATUS_UPLOADING
        offset = await api.GetUploadOffset(
            upload_pb2.GetUploadOffsetRequest(upload_id=created.upload_id), metadata=auth(alice)
        )
        assert offset.offset == 0


def header_smashed(good: Path, out: Path) -> Path:
    """The first 4 KiB (ftyp/moov) overwritten: a file no player can open."""
    data = bytearray(good.read_bytes())
    data[:4096] = bytes((i * 31 + 7) % 256 for i in range(4096))
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(
    ("kind", "reason_part"),
    [
        ("text", "not a video file"),
        ("truncated", "truncated"),
        ("smashed", "not a video file"),
    ],
)
async def test_unusable_file_is_invalid_argument_failed_with_reason_and_nothing_queued(
    kind: str, reason_part: str, svc: Service, clips: MediaFactory, tmp_path: Path
) -> None:
    if kind == "smashed":
        path = header_smashed(await clips.get("small"), tmp_path / "smashed.mp4")
    else:
        path = await clips.get(kind)
    who = user()
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        created = await create(api, who, path)
        await send_all(api, who, created.upload_id, path.read_bytes())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.CompleteUpload(
                upload_pb2.CompleteUploadRequest(upload_id=created.upload_id), metadata=auth(who)
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_part in info.value.details()
        status = await api.GetVideoStatus(
            upload_pb2.GetVideoStatusRequest(video_id=created.video_id), metadata=auth(who)
        )
    assert status.status == common_pb2.VIDEO_STATUS_FAILED
    assert reason_part in status.failure_reason
    queued = await svc.scalar(
        "SELECT count(*) FROM outbox WHERE key = convert_to(:v, 'UTF8')", v=created.video_id
    )
    assert queued == 0
    assert await svc.store.list(f"originals/{created.video_id}") == []
    assert not svc.app.core.staging.path(created.upload_id).exists()


async def test_declared_sha256_mismatch_is_invalid_argument_and_nothing_queued(
    svc: Service, clips: MediaFactory
) -> None:
    path = await clips.get("small")
    who = user()
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        created = await create(api, who, path, sha256_hex="0" * 64)
        await send_all(api, who, created.upload_id, path.read_bytes())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.CompleteUpload(
                upload_pb2.CompleteUploadRequest(upload_id=created.upload_id), metadata=auth(who)
            )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sha256 mismatch" in info.value.details()
    assert await svc.scalar("SELECT status FROM videos WHERE id = :v", v=created.video_id) == (
        "failed"
    )
    assert (
        await svc.scalar(
            "SELECT count(*) FROM outbox WHERE key = convert_to(:v, 'UTF8')", v=created.video_id
        )
        == 0
    )


# --- the good path: one event --------------------------------------------------------------


async def test_portrait_clip_streams_in_becomes_processing_with_one_uploaded_event(
    svc: Service, clips: MediaFactory
) -> None:
    path = await clips.get("portrait")
    who = user()

    async def messages() -> AsyncIterator[upload_pb2.UploadVideoRequest]:
        yield upload_pb2.UploadVideoRequest(
            metadata=upload_pb2.UploadMetadata(
                title="Portrait",
                hashtags=["tall"],
                content_type=common_pb2.CONTENT_TYPE_DUET,
                audio_attribution="original sound",
                declared_size_bytes=path.stat().st_size,
                sha256_hex=sha256(path),
                filename="phone.MP4",
                mime_type="video/mp4",
            )
        )
        with path.open("rb") as fh:
            while chunk := fh.read(300_000):
                yield upload_pb2.UploadVideoRequest(chunk=chunk)

    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        reply = await api.UploadVideo(messages(), metadata=auth(who))
        assert reply.status == common_pb2.VIDEO_STATUS_PROCESSING
        status = await api.GetVideoStatus(
            upload_pb2.GetVideoStatusRequest(video_id=reply.video_id), metadata=auth(who)
        )
    assert status.status == common_pb2.VIDEO_STATUS_PROCESSING

    events = await uploaded_events(svc.bootstrap, reply.video_id)
    assert len(events) == 1
    (event,) = events
    assert event.creator_id == who
    assert event.original_key == f"originals/{reply.video_id}/original.mp4"
    assert await svc.store.exists(event.original_key)
    assert event.sha256_hex == sha256(path)
    assert event.size_bytes == path.stat().st_size
    assert event.content_type == common_pb2.CONTENT_TYPE_DUET
    assert (event.title, list(event.hashtags)) == ("Portrait", ["tall"])
    assert (event.probe.width, event.probe.height) == (1080, 1920)
    assert event.probe.video_codec == "h264"
    assert 4.5 < event.probe.duration.ToNanoseconds() / 1e9 < 5.5
    assert uuid.UUID(event.meta.event_id)
    assert event.meta.producer == "svc_upload"
    assert event.meta.occurred_at.seconds > 0
    assert "traceparent" in event.meta.trace_context


# --- tus ----------------------------------------------------------------------------------


def tus_headers(who: str | None) -> dict[str, str]:
    headers = {"Tus-Resumable": "1.0.0"}
    if who:
        headers["Authorization"] = f"Bearer {mint_token(who)}"
    return headers


def drop_mid_patch(url: str, who: str, offset: int, body: bytes, send: int) -> None:
    """A PATCH that announces ``len(body)`` bytes, sends ``send`` of them and hangs up."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    head = (
        f"PATCH {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
        f"Tus-Resumable: 1.0.0\r\nAuthorization: Bearer {mint_token(who)}\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((parsed.hostname, parsed.port)) as sock:
        sock.sendall(head + body[:send])
        sock.shutdown(socket.SHUT_RDWR)


async def test_tus_upload_resumes_after_dropped_connection(
    svc: Service, clips: MediaFactory
) -> None:
    path = await clips.get("portrait")
    size = path.stat().st_size
    who = user()
    client = TusClient(svc.tus_url, headers={"Authorization": f"Bearer {mint_token(who)}"})
    metadata = {
        "filename": "clip.mp4",
        "title": "Via tus",
        "hashtags": "#one, two three",
        "filetype": "video/mp4",
    }
    first = await asyncio.to_thread(
        client.uploader, str(path), metadata=metadata, chunk_size=64 * 1024
    )
    await asyncio.to_thread(first.upload, 200 * 1024)  # part of the file, then "crash"
    url = first.url
    assert first.offset == 200 * 1024

    data = path.read_bytes()
    await asyncio.to_thread(drop_mid_patch, url, who, 200 * 1024, data[200 * 1024 :], 300 * 1024)
    offset = 0
    for _ in range(50):
        head = await asyncio.to_thread(requests.head, url, headers=tus_headers(who))
        offset = int(head.headers["Upload-Offset"])
        if offset == 500 * 1024:
            break
        await asyncio.sleep(0.1)
    assert offset == 500 * 1024  # what arrived before the drop was kept
    assert head.headers["Tus-Resumable"] == "1.0.0"
    video_id = head.headers["Reels-Video-Id"]

    # A new client resumes: constructing it with the URL asks the server for the offset.
    second = await asyncio.to_thread(
        client.uploader, str(path), url=url, chunk_size=256 * 1024, upload_checksum=True
    )
    assert second.offset == offset
    await asyncio.to_thread(second.upload)
    assert second.offset == size

    status = await svc.scalar("SELECT status FROM videos WHERE id = :v", v=video_id)
    assert status == "processing"
    assert await svc.scalar("SELECT hashtags FROM videos WHERE id = :v", v=video_id) == [
        "one",
        "two",
        "three",
    ]
    key = await svc.scalar("SELECT original_key FROM videos WHERE id = :v", v=video_id)
    assert sha256(svc.store.path(str(key))) == sha256(path)


async def test_tus_options_post_and_errors(svc: Service) -> None:
    who = user()

    def run() -> dict[str, requests.Response]:
        meta = "title " + base64.b64encode(b"big one").decode()
        out = {
            "options": requests.options(svc.tus_url),
            "no_token": requests.post(
                svc.tus_url, headers={**tus_headers(None), "Upload-Length": "10"}
            ),
            "too_big": requests.post(
                svc.tus_url,
                headers={
                    **tus_headers(who),
                    "Upload-Length": str(MAX_BYTES + 1),
                    "Upload-Metadata": meta,
                },
            ),
            "no_version": requests.post(svc.tus_url, headers={"Upload-Length": "10"}),
        }
        created = requests.post(
            svc.tus_url,
            headers={**tus_headers(who), "Upload-Length": "10", "Upload-Metadata": meta},
        )
        out["created"] = created
        url = requests.compat.urljoin(svc.tus_url, created.headers["Location"])
        out["bad_offset"] = requests.patch(
            url,
            data=b"12345",
            headers={
                **tus_headers(who),
                "Upload-Offset": "3",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        out["bad_checksum"] = requests.patch(
            url,
            data=b"12345",
            headers={
                **tus_headers(who),
                "Upload-Offset": "0",
                "Upload-Checksum": "sha1 " + base64.b64encode(b"x" * 20).decode(),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        out["head_after_checksum"] = requests.head(url, headers=tus_headers(who))
        out["other_user"] = requests.head(url, headers=tus_headers(user()))
        out["delete"] = requests.delete(url, headers=tus_headers(who))
        out["head_after_delete"] = requests.head(url, headers=tus_headers(who))
        return out

    r = await asyncio.to_thread(run)
    assert r["options"].status_code == 204
    assert r["options"].headers["Tus-Version"] == "1.0.0"
    assert "creation" in r["options"].headers["Tus-Extension"]
    assert "termination" in r["options"].headers["Tus-Extension"]
    assert r["options"].headers["Tus-Max-Size"] == str(MAX_BYTES)
    assert r["no_token"].status_code == 401
    assert r["too_big"].status_code == 413
    assert r["no_version"].status_code == 412
    assert r["created"].status_code == 201
    assert r["created"].headers["Reels-Video-Id"]
    assert r["bad_offset"].status_code == 409
    assert r["bad_checksum"].status_code == 460
    assert r["head_after_checksum"].headers["Upload-Offset"] == "0"
    assert r["other_user"].status_code == 404
    assert r["delete"].status_code == 204
    assert r["head_after_delete"].status_code == 404
    assert all(resp.headers.get("Tus-Resumable") == "1.0.0" for resp in r.values())
    assert await svc.scalar("SELECT count(*) FROM videos WHERE creator_id = :u", u=who) == 1


async def test_tus_quota_answers_429_with_retry_after(svc: Service) -> None:
    who = user()

    def post() -> requests.Response:
        return requests.post(
            svc.tus_url,
            headers={
                **tus_headers(who),
                "Upload-Length": "100",
                "Upload-Metadata": "title " + base64.b64encode(b"q").decode(),
            },
        )

    statuses = [await asyncio.to_thread(post) for _ in range(QUOTA + 1)]
    assert [s.status_code for s in statuses] == [201] * QUOTA + [429]
    assert 0 < int(statuses[-1].headers["Retry-After"]) <= 24 * 3600


async def test_tus_text_file_named_mp4_answers_422_with_reason(
    svc: Service, tmp_path: Path
) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n" * 100)
    who = user()
    client = TusClient(svc.tus_url, headers={"Authorization": f"Bearer {mint_token(who)}"})
    uploader = await asyncio.to_thread(client.uploader, str(path), metadata={"title": "fake"})
    from tusclient.exceptions import TusUploadFailed

    with pytest.raises(TusUploadFailed) as info:
        await asyncio.to_thread(uploader.upload)
    assert info.value.status_code == 422
    assert b"not a video file" in info.value.response_content


# --- status: watch, transcode reports, delete ---------------------------------------------


async def test_watch_streams_processing_then_published_as_transcode_reports(
    svc: Service, clips: MediaFactory
) -> None:
    who = user()
    video_id = await upload_whole(svc, who, await clips.get("small"))
    worker = auth("svc_transcode")
    seen: list[upload_pb2.WatchVideoStatusResponse] = []

    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        watch = api.WatchVideoStatus(
            upload_pb2.WatchVideoStatusRequest(video_id=video_id), metadata=auth(who)
        )

        first = asyncio.Event()

        async def collect() -> None:
            async for message in watch:
                seen.append(message)
                first.set()

        task = asyncio.create_task(collect())
        await asyncio.wait_for(first.wait(), 10)  # subscribed: the snapshot arrived

        def report(**fields: object) -> upload_pb2.UpdateVideoStatusRequest:
            return upload_pb2.UpdateVideoStatusRequest(video_id=video_id, **fields)  # type: ignore[arg-type]

        progress = report(status=common_pb2.VIDEO_STATUS_PROCESSING, stage="transcode", percent=40)
        await api.UpdateVideoStatus(progress, metadata=worker)
        await api.UpdateVideoStatus(progress, metadata=worker)  # redelivered: no new message
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.UpdateVideoStatus(progress, metadata=auth(who))  # creators may not
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        published = report(
            status=common_pb2.VIDEO_STATUS_PUBLISHED,
            width=640,
            height=360,
            master_playlist_key=f"videos/{video_id}/master.m3u8",
            thumbnail_key=f"videos/{video_id}/thumb.jpg",
            renditions=[common_pb2.Rendition(name="360p", width=640, height=360)],
        )
        await api.UpdateVideoStatus(published, metadata=worker)
        await asyncio.wait_for(task, 10)  # the stream ends after a terminal state

        assert (await api.UpdateVideoStatus(published, metadata=worker)).video.status == (
            common_pb2.VIDEO_STATUS_PUBLISHED
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.UpdateVideoStatus(progress, metadata=worker)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        video = (
            await api.GetVideo(upload_pb2.GetVideoRequest(video_id=video_id), metadata=auth(user()))
        ).video  # published: anyone may see it
    assert [(m.status, m.stage, round(m.percent)) for m in seen] == [
        (common_pb2.VIDEO_STATUS_PROCESSING, "queued", 0),
        (common_pb2.VIDEO_STATUS_PROCESSING, "transcode", 40),
        (common_pb2.VIDEO_STATUS_PUBLISHED, "published", 100),
    ]
    assert video.master_playlist_key == f"videos/{video_id}/master.m3u8"
    assert [r.name for r in video.renditions] == ["360p"]
    assert video.published_at.seconds > 0


async def test_failed_job_can_be_requeued_but_published_cannot_go_back(
    svc: Service, clips: MediaFactory
) -> None:
    video_id = await upload_whole(svc, user(), await clips.get("small"))
    worker = auth("svc_transcode")
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)

        async def report(status: int, **fields: object) -> upload_pb2.Video:
            reply = await api.UpdateVideoStatus(
                upload_pb2.UpdateVideoStatusRequest(video_id=video_id, status=status, **fields),  # type: ignore[arg-type]
                metadata=worker,
            )
            return reply.video

        failed = await report(common_pb2.VIDEO_STATUS_FAILED, failure_reason="ffmpeg crashed")
        assert failed.failure_reason == "ffmpeg crashed"
        again = await report(common_pb2.VIDEO_STATUS_PROCESSING, stage="transcode", percent=5)
        assert again.status == common_pb2.VIDEO_STATUS_PROCESSING and not again.failure_reason


async def test_soft_delete_removes_media_and_hides_the_video(
    svc: Service, clips: MediaFactory
) -> None:
    who = user()
    video_id = await upload_whole(svc, who, await clips.get("small"))
    await svc.store.put_bytes(f"videos/{video_id}/master.m3u8", b"#EXTM3U\n")
    assert await svc.store.list(f"originals/{video_id}")
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        api = stub(ch)
        deleted = await api.DeleteVideo(
            upload_pb2.DeleteVideoRequest(video_id=video_id), metadata=auth(who)
        )
        assert deleted.status == common_pb2.VIDEO_STATUS_DELETED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.GetVideo(upload_pb2.GetVideoRequest(video_id=video_id), metadata=auth(who))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        status = await api.GetVideoStatus(
            upload_pb2.GetVideoStatusRequest(video_id=video_id), metadata=auth(who)
        )
        assert status.status == common_pb2.VIDEO_STATUS_DELETED
    assert await svc.store.list(f"originals/{video_id}") == []
    assert await svc.store.list(f"videos/{video_id}") == []
    assert await svc.scalar("SELECT deleted_at IS NOT NULL FROM videos WHERE id = :v", v=video_id)


async def test_single_shot_create_video_returns_status_url(
    svc: Service, clips: MediaFactory
) -> None:
    path = await clips.get("tiny")
    who = user()
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        reply = await stub(ch).CreateVideo(
            upload_pb2.CreateVideoRequest(
                title="seed", filename="seed.mp4", video=path.read_bytes()
            ),
            metadata=auth(who),
        )
    assert reply.status == common_pb2.VIDEO_STATUS_PROCESSING
    assert reply.status_url == f"/api/v1/reels/{reply.video_id}/status"


def test_settings_default_to_500_mb_and_100_a_day() -> None:
    settings = Settings.from_env({})
    assert (settings.limits.max_bytes, settings.limits.daily_quota) == (500 * MB, 100)
    assert settings.http_port == 50061 and settings.status_writers == ("svc_transcode",)
    custom = Settings.from_env(
        {"REELS_UPLOAD_MAX_BYTES": "1024", "REELS_UPLOAD_STATUS_WRITERS": "a, b"}
    )
    assert custom.limits.max_bytes == 1024 and custom.status_writers == ("a", "b")


async def test_tus_answers_503_with_retry_after_when_the_database_is_down(
    kafka: TansuBroker, tmp_path: Path
) -> None:
    """A dependency outage is the shared mapper's 503 + Retry-After, never a 500."""
    closed = free_port()  # nothing listens here
    down = f"postgresql+psycopg://postgres:postgres@127.0.0.1:{closed}/reels_down"
    app = build(upload_settings(down, kafka.bootstrap, relay=False))
    app.store = LocalObjectStore(tmp_path / "objects")
    await app.start()
    try:
        url = f"http://127.0.0.1:{app.http_port}/api/v1/uploads/tus/"
        headers = {
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "1000",
            "Upload-Metadata": "filename " + base64.b64encode(b"a.mp4").decode(),
            "Authorization": f"Bearer {mint_token(user())}",
        }
        resp = await asyncio.to_thread(requests.post, url, headers=headers, timeout=30)
        assert resp.status_code == 503, resp.text
        assert int(resp.headers["Retry-After"]) >= 1
        assert resp.headers["Tus-Resumable"] == "1.0.0"
        assert resp.json()["code"] == "UNAVAILABLE"
        head = await asyncio.to_thread(
            requests.head, url + str(uuid.uuid4()), headers=headers, timeout=30
        )
        assert head.status_code == 503 and "Retry-After" in head.headers
    finally:
        await app.stop()


# -- a stop at the worst moment, a lost staging area, a failing store (issue 14 breaker) --


async def _tus_create(svc: Service, who: str, size: int) -> tuple[str, str]:
    """tus creation of a ``size``-byte clip.mp4 for ``who``: (upload URL, upload id)."""
    meta = "filename " + base64.b64encode(b"clip.mp4").decode()
    post = await asyncio.to_thread(
        requests.post,
        svc.tus_url,
        headers={**tus_headers(who), "Upload-Length": str(size), "Upload-Metadata": meta},
        timeout=30,
    )
    assert post.status_code == 201, post.text
    url = post.headers["Location"]
    if url.startswith("/"):
        url = f"http://127.0.0.1:{svc.app.http_port}{url}"
    return url, url.rstrip("/").rsplit("/", 1)[1]


async def _all_bytes_in(svc: Service, who: str, path: Path) -> tuple[str, str, str]:
    """An upload through tus with every byte received but not completed, as a process
    killed right after the last PATCH leaves it: (upload URL, upload id, video id)."""
    size = size_of(path)
    url, upload_id = await _tus_create(svc, who, size)
    async with grpc.aio.insecure_channel(svc.addr) as ch:
        await send_all(stub(ch), who, upload_id, await asyncio.to_thread(path.read_bytes))
    head = await asyncio.to_thread(requests.head, url, headers=tus_headers(who), timeout=30)
    assert head.headers["Upload-Offset"] == str(size)
    return url, upload_id, head.headers["Reels-Video-Id"]


def _empty_patch(url: str, who: str, offset: int, token: str = "") -> requests.Response:
    headers = {
        **tus_headers(who),
        **({"Authorization": f"Bearer {token}"} if token else {}),
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": str(offset),
    }
    return requests.patch(url, headers=headers, data=b"", timeout=60)


async def _published_but_not_handed_over(svc: Service, upload_id: str, video_id: str) -> str:
    """What ``complete`` does just before its hand-over commit: the staged file moved
    into the store. A kill -9 at that moment leaves exactly this behind."""
    from svc_upload.uploads import original_key

    key = original_key(video_id, "clip.mp4", "video/mp4")
    await svc.app.core.staging.publish(upload_id, svc.store, key)
    assert not svc.app.core.staging.path(upload_id).exists()
    assert await svc.store.exists(key)
    return key


async def test_a_stop_between_storing_the_original_and_its_hand_over_is_finished_on_resume(
    svc: Service, clips: MediaFactory
) -> None:
    """The client's resume (an empty PATCH at the end, what tus clients send) completes
    the upload instead of a 500 on every retry; the original ends where it belongs."""
    path, who = await clips.get("portrait"), user()
    url, upload_id, video_id = await _all_bytes_in(svc, who, path)
    key = await _published_but_not_handed_over(svc, upload_id, video_id)
    size = path.stat().st_size
    resp = await asyncio.to_thread(_empty_patch, url, who, size)
    assert resp.status_code == 204, resp.text
    assert await svc.scalar("SELECT status FROM videos WHERE id = :v", v=video_id) == "processing"
    assert await svc.scalar("SELECT state FROM uploads WHERE id = :u", u=upload_id) == "completed"
    assert await svc.scalar("SELECT original_key FROM videos WHERE id = :v", v=video_id) == key
    assert sha256(svc.store.path(key)) == sha256(path)
    assert not svc.app.core.staging.path(upload_id).exists()


async def test_the_sweeper_finishes_an_upload_stopped_before_its_hand_over(
    svc: Service, clips: MediaFactory
) -> None:
    """Nobody resumes: the sweeper (every 30 s under make up) completes it, so an upload
    answered 204 is published even though its process died at the worst moment."""
    path, who = await clips.get("portrait"), user()
    _, upload_id, video_id = await _all_bytes_in(svc, who, path)
    await _published_but_not_handed_over(svc, upload_id, video_id)
    async with svc.engine.begin() as conn:
        await conn.execute(
            text("UPDATE uploads SET updated_at = now() - interval '5 minutes' WHERE id = :u"),
            {"u": upload_id},
        )
    assert await svc.app.core.sweep_stranded(older_than_s=60) >= 1
    for _ in range(300):
        status = await svc.scalar("SELECT status FROM videos WHERE id = :v", v=video_id)
        if status != "uploading":
            break
        await asyncio.sleep(0.1)
    assert status == "processing"


async def test_lost_staged_bytes_fail_the_upload_with_a_reason_not_a_500(
    svc: Service, clips: MediaFactory
) -> None:
    """The staging directory emptied under an unfinished upload: nothing can be appended
    to bytes that are gone. 409 (tus) saying to upload again, the video failed with
    the reason; never an internal error on every retry."""
    path, who = await clips.get("portrait"), user()
    data = await asyncio.to_thread(path.read_bytes)
    size = len(data)
    url, upload_id = await _tus_create(svc, who, size)
    headers = {**tus_headers(who), "Content-Type": "application/offset+octet-stream"}
    half = size // 2
    first = await asyncio.to_thread(
        requests.patch, url, headers={**headers, "Upload-Offset": "0"}, data=data[:half]
    )
    assert first.status_code == 204, first.text
    svc.app.core.staging.path(upload_id).unlink()
    svc.app.core.staging.forget_hash(upload_id)
    rest = await asyncio.to_thread(
        requests.patch, url, headers={**headers, "Upload-Offset": str(half)}, data=data[half:]
    )
    assert rest.status_code == 409, rest.text
    assert "upload the file again" in rest.json()["message"]
    video_id = await svc.scalar("SELECT video_id FROM uploads WHERE id = :u", u=upload_id)
    row = await svc.scalar(
        "SELECT status || ': ' || failure_reason FROM videos WHERE id = :v", v=video_id
    )
    assert row == "failed: the server lost this upload's received bytes; upload the file again"


@pytest.mark.parametrize("target", ["disk", "storage"])
async def test_a_failing_store_makes_the_completing_patch_a_503_and_a_retry_completes_it(
    svc: Service, clips: MediaFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """A full disk (ENOSPC) or a failing store (EIO) when the original is stored: 503 +
    Retry-After (a dependency outage, not our bug and not the client's), the bytes kept;
    once the store works again the client's retry completes the upload."""
    from reels import faults

    path, who = await clips.get("portrait"), user()
    url, upload_id, video_id = await _all_bytes_in(svc, who, path)
    size = path.stat().st_size
    token = mint_token(who)  # before the flags' var dir moves (dev keys live in var/)
    monkeypatch.setenv("REELS_VAR_DIR", str(tmp_path))
    monkeypatch.setattr(faults, "_flags", faults._Flags())
    faults.set_fault(faults.Fault(target, error_rate=1.0))
    try:
        resp = await asyncio.to_thread(_empty_patch, url, who, size, token)
        assert resp.status_code == 503, resp.text
        assert int(resp.headers["Retry-After"]) >= 1
        assert resp.json()["code"] == "UNAVAILABLE"
        assert svc.app.core.staging.path(upload_id).exists()  # nothing lost
    finally:
        faults.clear(target)
    await asyncio.sleep(faults.CHECK_INTERVAL_S + 0.1)
    resp = await asyncio.to_thread(_empty_patch, url, who, size, token)
    assert resp.status_code == 204, resp.text
    assert await svc.scalar("SELECT status FROM videos WHERE id = :v", v=video_id) == "processing"
