"""GetFeed with Redis down (fault flag ``redis``, reels/faults.py) on real components:
svc_rank and svc_stream Apps in-process (tests/integration/test_feed.py's harness),
real Postgres, Redis, Tansu, Milvus Lite.

The flag is process-wide here, as one Redis outage is for the whole mesh: svc_rank
loses its user state, served history and cache, and svc_stream its trending set.
The catalog is older than the fresh window and exploration is off, so trending (in
Redis) is the only source that has anything for a new user: with Redis down the
list built for them is empty. What the user must see then is never an empty page
that says the feed ended: a page of the stale trending list (flagged), or, when
svc_rank never made one, UNAVAILABLE with RetryInfo.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from reels.v1 import rank_pb2_grpc

from reels import errors, faults
from reels.config import var_dir
from reels.server import run_app
from svc_rank.app import build as build_rank
from svc_stream.analytics.trending import publish_scores
from tests.integration.test_feed import (
    DIM,
    F,
    FeedHarness,
    ids_of,
    open_harness,
    rank_settings,
    unit,
)
from tests.polling import eventually

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

NOT_FRESH = {"fresh_window_s": 0.001, "exploration_k": 0}
"""Nothing counts as fresh and exploration recalls nothing: trending is all there is."""


@pytest.fixture(scope="module")
async def harness(
    kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FeedHarness]:
    async with open_harness(kafka, tmp_path_factory.mktemp("feed-redis-down"), **NOT_FRESH) as h:
        rng = np.random.default_rng(11)
        ids = []
        for i in range(8):
            vid = f"rd{i:02d}-{uuid.uuid4().hex[:6]}"
            await h.publish(vid, f"rd-creator-{i % 4}", unit(rng.normal(size=DIM)), ["x"])
            ids.append(vid)
        await h.wait_published(ids)
        await publish_scores(h.stream.redis, [(v, 10.0 - i) for i, v in enumerate(ids)])
        yield h


@pytest.fixture
def flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fault-flag file of this test's own (``REELS_VAR_DIR``, keys linked to the
    checkout's so tokens still verify), cleared afterwards."""
    (tmp_path / "keys").symlink_to(var_dir() / "keys")
    monkeypatch.setenv("REELS_VAR_DIR", str(tmp_path))
    monkeypatch.setattr(faults, "_flags", faults._Flags())
    yield tmp_path
    faults.clear()


async def _redis_down() -> None:
    faults.set_fault(faults.Fault("redis", error_rate=1.0))
    await asyncio.sleep(faults.CHECK_INTERVAL_S + 0.2)  # every reader sees the flag


async def _redis_up() -> None:
    faults.clear("redis")
    await asyncio.sleep(faults.CHECK_INTERVAL_S + 0.2)


async def test_redis_down_after_a_good_list_serves_the_stale_trending_list_flagged(
    harness: FeedHarness, flags: Path
) -> None:
    up = await harness.get_feed("rd-warm-1", limit=4)
    assert up.items and F.FEED_FALLBACK_OVERLOAD not in up.fallbacks
    service = harness.rank.feed_service
    assert service is not None

    async def stale_made() -> bool:
        return bool(await service.stale.items(""))

    await eventually(stale_made, 30, "the stale trending list was not made")

    await _redis_down()
    try:
        first = await harness.get_feed("rd-new-1", limit=4)
        assert len(first.items) == 4, first
        assert all("sig=" in i.streaming_url for i in first.items)
        assert F.FEED_FALLBACK_OVERLOAD in first.fallbacks, first.fallbacks
        assert F.FEED_FALLBACK_UNCACHED in first.fallbacks
        assert all(i.reason == F.FEED_REASON_TRENDING for i in first.items)
        assert all("unavailable" in i.explanation for i in first.items)
        assert first.has_more and first.cursor  # not "the feed ended"
        # The next page goes on through the same stale list, repeating nothing.
        second = await harness.get_feed("rd-new-1", limit=4, cursor=first.cursor)
        assert second.items and not set(ids_of(second)) & set(ids_of(first))
        assert F.FEED_FALLBACK_OVERLOAD in second.fallbacks
        # Filtered for the user: a creator never gets their own videos.
        creator = "rd-creator-0"
        mine = await harness.get_feed(creator, limit=8)
        assert mine.items
        assert all(harness.creators[i.video_id] != creator for i in mine.items)
    finally:
        await _redis_up()
    # Redis back: a list ranked for the user again, not the stale one.
    back = await harness.get_feed("rd-new-2", limit=4)
    assert back.items and F.FEED_FALLBACK_OVERLOAD not in back.fallbacks
    assert F.FEED_FALLBACK_UNCACHED not in back.fallbacks


async def test_redis_down_from_the_start_is_unavailable_with_retry_info(
    harness: FeedHarness, flags: Path, tmp_path: Path
) -> None:
    """A fresh svc_rank process that never had Redis: no list, no stale list to serve."""
    rank = build_rank(
        rank_settings(
            database_url=harness.rank.platform.database_url,
            kafka_bootstrap=harness.kafka.bootstrap,
            redis_prefix=harness.rank.platform.redis_prefix,
            milvus_path=tmp_path / "milvus" / "cold.db",
            stream_addr=f"127.0.0.1:{harness.stream_server.port}",
            **NOT_FRESH,
        )
    )
    await _redis_down()
    running = await run_app(rank, port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = rank_pb2_grpc.FeedServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.GetFeed(
                    F.GetFeedRequest(limit=4), metadata=harness.auth("rd-cold-1"), timeout=30
                )
        err = failed.value
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err
        assert "Redis" in (err.details() or "")
        assert dict(err.trailing_metadata() or ()).get("retry-after") == "1"
        infos = [
            d for d in errors.from_rpc_error(err) if isinstance(d, error_details_pb2.RetryInfo)
        ]
        assert infos and infos[0].retry_delay.seconds == 1
    finally:
        await _redis_up()
        await running.stop(1.0)
