"""Many uploads at once through the front door (issue 14, the bounded form of
``make bench B=upload-load``): every one is accepted, none is refused with a 5xx, and
every accepted one is published.

Each client is its own user with its own JWT and its own connection to Envoy; each
sends tus creation, then one PATCH with the whole clip (the checks of a completed
upload, the malware scan and ffprobe, run for every one).
"""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from svc_upload.models import Video, VideoStatus
from tests.fixtures.mesh import Mesh
from tests.media import make_clip
from tests.polling import eventually
from tests.tus import tus_upload_many

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/setup.sh)"
)

# 40 keeps the module near a minute here: publishing, not accepting, is the slow part
# (svc_transcode runs one job at a time, ~2 s per clip on this machine). The bench
# (make bench B=upload-load) runs 100, 500 and 1,000 clients.
CLIENTS = 40


async def test_concurrent_uploads_are_accepted_without_5xx_and_all_published(
    envoy: EnvoySettings, mesh: Mesh, tmp_path: Path
) -> None:
    clip = await make_clip(
        tmp_path / "clip.mp4", width=144, height=256, seconds=1, fps=15, audio=False
    )
    body = clip.read_bytes()
    run = uuid.uuid4().hex[:8]
    tokens = [mint_token(f"load-{run}-{i}") for i in range(CLIENTS)]
    url = f"http://127.0.0.1:{envoy.listen_port}/api/v1/uploads/tus/"

    outcomes = await tus_upload_many(url, tokens, body, timeout_s=300)

    refused = [o for o in outcomes if o.status != 204]
    assert not refused, (Counter(o.status for o in outcomes), refused[:5])
    ids = [uuid.UUID(o.video_id) for o in outcomes if o.video_id]
    assert len(set(ids)) == CLIENTS

    engine = create_async_engine(mesh.backends.database_url, poolclass=NullPool)
    statuses: Counter[str] = Counter()

    async def all_published() -> bool:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(Video.status).where(Video.id.in_(ids)))).all()
        statuses.clear()
        statuses.update(status for (status,) in rows)
        # A refusal (failed) or a loss would never turn published: fail at once.
        assert not statuses[VideoStatus.FAILED.value], statuses
        return statuses[VideoStatus.PUBLISHED.value] == CLIENTS

    try:
        await eventually(
            all_published, within=600, what="every accepted upload published", interval=2
        )
    finally:
        await engine.dispose()
    assert sum(statuses.values()) == CLIENTS
