"""svc_upload's probe on real camera files: open-GOP H.264 is accepted (decoder warnings
from a seek into its tail are not corruption), a cut-off one is still refused, and an
anamorphic file is stored with its display size.

Uses test_upload_service.py's service harness (real Postgres, Tansu, gRPC).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pytest
from reels.v1 import common_pb2, upload_pb2

from tests.integration.test_upload_service import (  # noqa: F401 - `svc` is a fixture
    Service,
    auth,
    create,
    send_all,
    stub,
    svc,
    user,
)
from tests.media import make_anamorphic, make_open_gop, truncated_copy

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe are not installed (scripts/setup.sh installs them)",
)


async def complete(service: Service, path: Path) -> tuple[str, upload_pb2.CompleteUploadResponse]:
    who = user()
    data = await asyncio.to_thread(path.read_bytes)
    async with grpc.aio.insecure_channel(service.addr) as ch:
        api = stub(ch)
        created = await create(api, who, path)
        await send_all(api, who, created.upload_id, data)
        reply = await api.CompleteUpload(
            upload_pb2.CompleteUploadRequest(upload_id=created.upload_id), metadata=auth(who)
        )
    return created.video_id, reply


async def test_open_gop_upload_is_accepted(svc: Service, tmp_path: Path) -> None:  # noqa: F811
    path = await make_open_gop(tmp_path / "camera.mp4")
    video_id, reply = await complete(svc, path)
    assert reply.status == common_pb2.VIDEO_STATUS_PROCESSING
    assert await svc.scalar("SELECT status FROM videos WHERE id = :v", v=video_id) == "processing"


async def test_cut_off_open_gop_upload_is_still_refused(
    svc: Service,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = truncated_copy(await make_open_gop(tmp_path / "camera.mp4"), tmp_path / "cut.mp4", 0.5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await complete(svc, path)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "truncated" in info.value.details() or "corrupt" in info.value.details()


async def test_anamorphic_upload_is_stored_with_its_display_size(
    svc: Service,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = await make_anamorphic(tmp_path / "hdv.mp4", width=1440, height=1080, sar="4:3")
    video_id, _ = await complete(svc, path)
    width = await svc.scalar("SELECT width FROM videos WHERE id = :v", v=video_id)
    height = await svc.scalar("SELECT height FROM videos WHERE id = :v", v=video_id)
    assert (width, height) == (1920, 1080)
