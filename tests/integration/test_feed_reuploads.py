"""Re-upload detection at publish, "see fewer of this creator" and regional trending,
on the feed harness of test_feed (real Postgres, Redis, Tansu, Milvus Lite, svc_stream).

Re-uploads use the vectors the real pipeline produces: the clips of
test_transcode_embeddings (an original, a re-encoded + cropped copy, a padded copy
and a different test pattern, the hardest negative) are sampled with
svc_transcode's frame sampler and embedded by the real ``visual_embedding`` model in
a real tritonserver; the visual vectors then travel in ``video.published`` as
svc_transcode sends them.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2
from reels.v1 import common_pb2, events_pb2, rank_pb2, stream_pb2
from sqlalchemy import select

from reels import topics
from reels.embedding_space import NEAR_DUPLICATE_COSINE, cosine
from reels.events import EVENT_ID_HEADER, EventProducer
from svc_rank.filter import see_fewer
from svc_rank.models import RankVideo
from svc_stream.analytics import trending
from svc_transcode.embeddings import TritonEmbedder
from svc_transcode.frames import sample_frames
from tests.fixtures.stream import player_event, ts
from tests.integration.test_feed import DIM, FeedHarness, ids_of, unit
from tests.integration.test_feed import harness as harness  # noqa: F401,PLC0414 - fixture
from tests.integration.test_transcode_embeddings import SECONDS
from tests.integration.test_transcode_embeddings import clips as clips  # noqa: F401,PLC0414
from tests.integration.test_transcode_embeddings import (  # noqa: F401
    embedder as embedder,  # noqa: PLC0414
)
from tests.integration.test_transcode_embeddings import triton as triton  # noqa: F401,PLC0414
from tests.polling import eventually

F = rank_pb2


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def publish_visual(
    h: FeedHarness, video_id: str, creator_id: str, visual: np.ndarray, at: datetime
) -> None:
    """``video.published`` as svc_transcode sends it, with the real visual vector."""
    event_id = str(uuid.uuid4())
    rng = np.random.default_rng(abs(hash(video_id)) % 2**32)
    message = events_pb2.VideoPublished(
        meta=events_pb2.EventMeta(event_id=event_id, occurred_at=ts(at)),
        video_id=video_id,
        creator_id=creator_id,
        duration=duration_pb2.Duration(seconds=3),
        width=360,
        height=640,
        renditions=[
            common_pb2.Rendition(
                name="360p",
                width=360,
                height=640,
                bandwidth_bps=800_000,
                playlist_key=f"videos/{video_id}/360p/index.m3u8",
            )
        ],
        master_playlist_key=f"videos/{video_id}/master.m3u8",
        thumbnail_key=f"videos/{video_id}/thumb.jpg",
        published_at=ts(at),
        title=f"title of {video_id}",
        hashtags=["clip"],
        visual_embedding=visual.tolist(),
        video_embedding=unit(rng.normal(size=DIM)).tolist(),
        embedding_model_version="test-v1",
    )
    topic = topics.VIDEO_PUBLISHED
    async with EventProducer(h.kafka.bootstrap) as producer:
        await producer.send(
            topic.name, topic.key(message), message.SerializeToString(), {EVENT_ID_HEADER: event_id}
        )
    h.creators[video_id] = creator_id


async def rows_of(h: FeedHarness, ids: list[str]) -> dict[str, tuple[bool, str]]:
    async with h.rank.sessionmaker() as session:
        rows = await session.execute(
            select(RankVideo.video_id, RankVideo.visual_checked, RankVideo.reupload_of).where(
                RankVideo.video_id.in_(ids)
            )
        )
        return {r.video_id: (r.visual_checked, r.reupload_of) for r in rows}


async def test_a_reencoded_cropped_copy_is_a_reupload_and_a_different_clip_is_not(
    harness: FeedHarness, embedder: TritonEmbedder, clips: dict[str, Path]
) -> None:
    h = harness
    visual = {}
    for name in ("orig", "reencoded_cropped", "padded", "other_testsrc"):
        frames = await sample_frames(clips[name], SECONDS)
        visual[name] = (await embedder.embed(frames, "a clip")).visual
    # The real vectors straddle the threshold as measured (copies >= 0.947, others <= 0.75).
    assert cosine(visual["orig"], visual["reencoded_cropped"]) >= NEAR_DUPLICATE_COSINE
    assert cosine(visual["orig"], visual["other_testsrc"]) < NEAR_DUPLICATE_COSINE
    assert h.rank.settings.reupload_cosine == NEAR_DUPLICATE_COSINE

    t0 = datetime.now(UTC) - timedelta(minutes=5)
    orig, copy, padded, other = _id("orig"), _id("copy"), _id("padded"), _id("other")
    own = _id("own-copy")  # the original's creator posting it again: not a re-upload
    await publish_visual(h, orig, "artist", visual["orig"], t0)
    await publish_visual(
        h, copy, "freebooter", visual["reencoded_cropped"], t0 + timedelta(seconds=60)
    )
    await publish_visual(
        h, padded, "another-freebooter", visual["padded"], t0 + timedelta(seconds=90)
    )
    await publish_visual(h, other, "painter", visual["other_testsrc"], t0 + timedelta(seconds=120))
    await publish_visual(h, own, "artist", visual["reencoded_cropped"], t0 + timedelta(seconds=30))
    ids = [orig, copy, padded, other, own]
    await h.wait_published(ids)

    async def checked() -> bool:
        rows = await rows_of(h, ids)
        return len(rows) == len(ids) and all(c for c, _ in rows.values())

    await eventually(checked, 30, "visual vectors were not checked for re-uploads")
    rows = await rows_of(h, ids)
    assert rows[copy] == (True, orig)
    assert rows[padded] == (True, orig)
    assert rows[other] == (True, "")
    assert rows[orig] == (True, "")
    assert rows[own] == (True, "")  # same creator: not a re-upload of anyone

    # Exposed: ExplainFeedItem names the original (the catalog's read cache may hold
    # the row from before the check for up to its TTL; drop it, as expiry would).
    for vid in ids:
        h.rank.catalog.forget(vid)
    explained = await h.feed.ExplainFeedItem(
        F.ExplainFeedItemRequest(video_id=copy), metadata=h.auth("reupload-viewer"), timeout=30
    )
    assert explained.reupload_of == orig
    explained = await h.feed.ExplainFeedItem(
        F.ExplainFeedItemRequest(video_id=other), metadata=h.auth("reupload-viewer"), timeout=30
    )
    assert explained.reupload_of == ""

    # Never served: the feed holds the original and the different clip, not the copies.
    got = set(ids_of(await h.get_feed("reupload-viewer", limit=100)))
    assert {orig, other, own} <= got
    assert not {copy, padded} & got


async def test_see_fewer_of_a_creator_keeps_them_out_of_the_feed(harness: FeedHarness) -> None:
    h = harness
    user = _id("fewer")
    control = await h.get_feed(_id("not-fewer"), limit=100)
    assert "creator-3" in {i.creator_id for i in control.items}
    first = await h.get_feed(user, limit=2)  # caches the user's list
    reply = await h.feed.SeeFewer(
        F.SeeFewerRequest(creator_id="creator-3"), metadata=h.auth(user), timeout=10
    )
    assert reply.creator_id == "creator-3"
    ttl = h.rank.settings.see_fewer_ttl_s
    assert reply.until.seconds == pytest.approx(time.time() + ttl, abs=60)
    # Stored per user with a TTL.
    redis = h.rank.redis
    assert 0 < await redis.ttl(see_fewer.fewer_key(user)) <= ttl + 1
    assert await see_fewer.creators(redis, user) == {"creator-3"}
    # The next request builds a fresh list (the cached one was dropped) without them,
    # whatever source would have brought them (a follow included).
    again = await h.get_feed(user, limit=100)
    assert not again.cache_hit
    assert again.items and all(i.creator_id != "creator-3" for i in again.items)
    unseen = {i.video_id for i in again.items if i.reason != F.FEED_REASON_SEEN_BEFORE}
    assert not set(ids_of(first)) & unseen
    # Bad requests.
    for bad in ("", user):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await h.feed.SeeFewer(
                F.SeeFewerRequest(creator_id=bad), metadata=h.auth(user), timeout=10
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_trending_source_uses_the_users_region_from_their_player_events(
    harness: FeedHarness,
) -> None:
    h = harness
    ids = sorted(vid for vid, c in h.creators.items() if c.startswith("creator-"))
    de_hit, fr_hit = ids[0], ids[1]
    de_user, fr_user = _id("de-viewer"), _id("fr-viewer")

    async def watch(user: str, video: str, country: str, n: int) -> None:
        for k in range(n):
            viewer = f"{user}-{k}" if k else user
            events = [
                player_event(
                    f"{viewer}-{video}-{i}",
                    video,
                    kind,
                    position=pos,
                    watch=pos,
                    session=f"{viewer}-s",
                    country=country,
                )
                for i, (kind, pos) in enumerate(
                    [
                        (common_pb2.EVENT_TYPE_WATCH_START, 0.0),
                        (common_pb2.EVENT_TYPE_WATCH_COMPLETE, 15.0),
                    ]
                )
            ]
            await h.stream_stub.RecordEvents(
                stream_pb2.RecordEventsRequest(events=events), metadata=h.auth(viewer), timeout=10
            )

    await watch(de_user, de_hit, "de", 3)
    await watch(fr_user, fr_hit, "FR", 2)
    store = await h.stream.analytics.wait()

    async def in_clickhouse() -> bool:
        n = await store.query_rows(
            "SELECT count() FROM video_events FINAL WHERE type = 5 AND video_id IN "
            "{ids:Array(String)}",
            {"ids": [de_hit, fr_hit]},
        )
        return int(n[0][0]) >= 5

    await eventually(in_clickhouse, 30, "completions did not reach ClickHouse")
    await trending.recompute(store, h.stream.redis, weights=h.stream.trending_weights)

    # svc_stream: ListTrending honours the region (case-insensitive).
    de = await h.stream_stub.ListTrending(
        stream_pb2.ListTrendingRequest(limit=50, region="de"), metadata=h.auth(de_user), timeout=10
    )
    assert [e.video_id for e in de.entries][:1] == [de_hit]
    assert fr_hit not in {e.video_id for e in de.entries}
    fr = await h.stream_stub.ListTrending(
        stream_pb2.ListTrendingRequest(limit=50, region="FR"), metadata=h.auth(fr_user), timeout=10
    )
    assert [e.video_id for e in fr.entries] == [fr_hit]

    # svc_rank: the region it learnt from the player events picks the regional list.
    async def region_known() -> bool:
        request, _, _ = await h.rank.pipeline.request_for(de_user, region="", seed=0)
        return request.region == "DE"

    await eventually(region_known, 30, "svc_rank did not learn the user's region")
    request, _, _ = await h.rank.pipeline.request_for(de_user, region="", seed=0)
    fallbacks: set[int] = set()
    got = {
        c.video_id: c.trending_score
        for c in await h.rank.pipeline.trending.fetch(request, fallbacks)
    }
    regional = dict((e.video_id, e.score) for e in de.entries)
    assert de_hit in got and got[de_hit] >= regional[de_hit]
    request_fr, _, _ = await h.rank.pipeline.request_for(fr_user, region="", seed=0)
    assert request_fr.region == "FR"
