"""The ranked feed on real components: svc_rank and svc_stream Apps in-process, real
Postgres, Redis, Tansu and Milvus Lite; videos announced by real ``video.published``
events carrying random unit vectors (no transcoding needed), watches and follows sent
through svc_stream's RPCs so they reach svc_rank the way production events do.

One harness per module (group joins and Milvus Lite are not free); each test uses its
own users so served histories never mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2
from reels.v1 import common_pb2, events_pb2, rank_pb2, rank_pb2_grpc, stream_pb2, stream_pb2_grpc
from sqlalchemy import select

from reels import topics
from reels.cache import delete_prefix, key, redis_client
from reels.db.engine import create_database, drop_database
from reels.db.migrate import migrate
from reels.events import EVENT_ID_HEADER, EventProducer
from reels.server import RunningServer, run_app
from reels_dev.infra.process import ManagedProcess, free_port
from reels_dev.keys import ensure_dev_keys, mint_token
from svc_rank import feed_cache
from svc_rank.app import App as RankApp
from svc_rank.app import build as build_rank
from svc_rank.models import RankFollow
from svc_rank.settings import Settings as RankSettings
from svc_rank.side_effect.served import served_ids
from svc_stream.app import App as StreamApp
from svc_stream.app import build as build_stream
from tests.fixtures.infra import _test_database_url
from tests.fixtures.stream import player_event, stream_settings, ts
from tests.polling import eventually

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

DIM = 256
TOPICS = (topics.VIDEO_EVENTS.name, topics.ENGAGEMENT_EVENTS.name, topics.VIDEO_PUBLISHED.name)
F = rank_pb2


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def rank_settings(
    *,
    database_url: str,
    kafka_bootstrap: str,
    redis_prefix: str,
    milvus_path: Path,
    stream_addr: str,
    redis_url: str | None = None,
    **overrides: Any,
) -> RankSettings:
    base = RankSettings.from_env()
    platform = dataclasses.replace(
        base.platform,
        database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
        kafka_session_timeout_ms=3000,
        redis_prefix=redis_prefix,
        redis_url=redis_url or base.platform.redis_url,
        milvus_uri=str(milvus_path),
        stream_addr=stream_addr,
        triton_addr=f"127.0.0.1:{free_port()}",  # no Triton: the rule scorer ranks
        metrics_port=0,
    )
    fast = {
        "consumer_heartbeat_ms": 500,
        "consumer_commit_timeout_s": 2.0,
        "consumer_retry_backoff_max_s": 0.5,
        "indexer_interval_s": 0.2,
        "stream_timeout_s": 2.0,
        "milvus_timeout_s": 2.0,
        "ranker_retry_s": 0.2,
    }
    return dataclasses.replace(base, platform=platform, **{**fast, **overrides})


@dataclass
class FeedHarness:
    rank: RankApp
    rank_server: RunningServer
    stream: StreamApp
    stream_server: RunningServer
    kafka: TansuBroker
    channel: grpc.aio.Channel
    stream_channel: grpc.aio.Channel
    vectors: dict[str, np.ndarray]
    creators: dict[str, str]

    @staticmethod
    def auth(user: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {mint_token(user)}"),)

    @property
    def feed(self) -> rank_pb2_grpc.FeedServiceStub:
        return rank_pb2_grpc.FeedServiceStub(self.channel)

    @property
    def stream_stub(self) -> stream_pb2_grpc.StreamServiceStub:
        return stream_pb2_grpc.StreamServiceStub(self.stream_channel)

    async def get_feed(self, user: str, limit: int = 20, cursor: str = "") -> Any:
        return await self.feed.GetFeed(
            F.GetFeedRequest(limit=limit, cursor=cursor), metadata=self.auth(user), timeout=30
        )

    async def publish(
        self, video_id: str, creator_id: str, vector: np.ndarray | None, hashtags: list[str]
    ) -> None:
        now = datetime.now(UTC)
        event_id = str(uuid.uuid4())
        message = events_pb2.VideoPublished(
            meta=events_pb2.EventMeta(event_id=event_id, occurred_at=ts(now)),
            video_id=video_id,
            creator_id=creator_id,
            duration=duration_pb2.Duration(seconds=15),
            width=720,
            height=1280,
            renditions=[
                common_pb2.Rendition(
                    name="720p",
                    width=720,
                    height=1280,
                    bandwidth_bps=2_000_000,
                    playlist_key=f"videos/{video_id}/720p/index.m3u8",
                )
            ],
            master_playlist_key=f"videos/{video_id}/master.m3u8",
            thumbnail_key=f"videos/{video_id}/thumb.jpg",
            published_at=ts(now),
            title=f"title of {video_id}",
            hashtags=hashtags,
            video_embedding=[] if vector is None else vector.tolist(),
            embedding_model_version="test-v1",
        )
        topic = topics.VIDEO_PUBLISHED
        async with EventProducer(self.kafka.bootstrap) as producer:
            await producer.send(
                topic.name,
                topic.key(message),
                message.SerializeToString(),
                {EVENT_ID_HEADER: event_id},
            )
        if vector is not None:
            self.vectors[video_id] = vector
        self.creators[video_id] = creator_id

    async def wait_published(self, video_ids: list[str]) -> None:
        async def known() -> bool:
            for vid in video_ids:
                self.rank.catalog.forget(vid)
                self.stream.catalog.forget(vid)
                if await self.rank.catalog.get(vid) is None:
                    return False
                if await self.stream.catalog.get(vid) is None:
                    return False
            return True

        await eventually(known, 30, "video.published not applied by both catalogs")

    async def watch(self, user: str, video_id: str, *, session: str = "s1", play: int = 0) -> None:
        """One full play (start, 25/50/75 %, complete) in view session ``session``;
        ``play`` numbers replays within it (distinct client event ids)."""
        kinds = [
            common_pb2.EVENT_TYPE_WATCH_START,
            common_pb2.EVENT_TYPE_PROGRESS_25,
            common_pb2.EVENT_TYPE_PROGRESS_50,
            common_pb2.EVENT_TYPE_PROGRESS_75,
            common_pb2.EVENT_TYPE_WATCH_COMPLETE,
        ]
        events = [
            player_event(
                f"{user}-{video_id}-{session}-{play}-{k}",
                video_id,
                k,
                position=3.0 * i,
                watch=3.0 * i,
                session=session,
            )
            for i, k in enumerate(kinds)
        ]
        reply = await self.stream_stub.RecordEvents(
            stream_pb2.RecordEventsRequest(events=events), metadata=self.auth(user), timeout=10
        )
        assert reply.accepted_count == len(events), reply


@contextlib.asynccontextmanager
async def open_harness(
    kafka: TansuBroker,
    root: Path,
    *,
    triton_addr: str | None = None,
    **rank_overrides: Any,
) -> AsyncIterator[FeedHarness]:
    """A throwaway migrated database and Redis prefix, svc_stream and svc_rank Apps
    served on free ports, consumers joined and Milvus open; everything removed after.
    ``triton_addr``: a Triton for svc_rank (default: none, the rule scorer ranks)."""
    ensure_dev_keys()
    url = _test_database_url()
    await create_database(url)
    await migrate(url)
    prefix = f"reels-test-{uuid.uuid4().hex[:8]}:"
    await kafka.create_topics(*TOPICS)
    stream_app = build_stream(
        stream_settings(
            database_url=url,
            kafka_bootstrap=kafka.bootstrap,
            chdb_path=root / "chdb",
            redis_prefix=prefix,
            sink_linger_s=0.05,
        )
    )
    stream_server = await run_app(stream_app, port=0)
    settings = rank_settings(
        database_url=url,
        kafka_bootstrap=kafka.bootstrap,
        redis_prefix=prefix,
        milvus_path=root / "milvus" / "feed.db",
        stream_addr=f"127.0.0.1:{stream_server.port}",
        **rank_overrides,
    )
    if triton_addr is not None:
        settings = dataclasses.replace(
            settings, platform=dataclasses.replace(settings.platform, triton_addr=triton_addr)
        )
    rank_app = build_rank(settings)
    rank_server = await run_app(rank_app, port=0)
    harness = FeedHarness(
        rank_app,
        rank_server,
        stream_app,
        stream_server,
        kafka,
        grpc.aio.insecure_channel(f"127.0.0.1:{rank_server.port}"),
        grpc.aio.insecure_channel(f"127.0.0.1:{stream_server.port}"),
        {},
        {},
    )

    async def ready() -> bool:
        owners = (rank_app.catalog, rank_app.engagement, rank_app.watches, stream_app.catalog)
        joined = all(o.active_consumer and o.active_consumer.assigned.is_set() for o in owners)
        sink = stream_app.sink_consumer
        return joined and rank_app.vectors.available and sink is not None

    try:
        await eventually(ready, 60, "consumers did not join / Milvus did not open")
        yield harness
    finally:
        await harness.channel.close()
        await harness.stream_channel.close()
        await rank_server.stop(1.0)
        if harness.stream_server is not None:
            await harness.stream_server.stop(1.0)
        redis = redis_client()
        await delete_prefix(redis, prefix)
        await redis.aclose()
        await drop_database(url)


@pytest.fixture(scope="module")
async def harness(
    kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FeedHarness]:
    async with open_harness(kafka, tmp_path_factory.mktemp("feed")) as harness:
        # 12 videos by 6 creators: 0-5 near one direction ("cats"), 6-11 random.
        rng = np.random.default_rng(7)
        cats = unit(rng.normal(size=DIM))
        ids = []
        for i in range(12):
            vid = f"v{i:02d}-{uuid.uuid4().hex[:6]}"
            if i < 6:
                vec = unit(cats + 0.5 * unit(rng.normal(size=DIM)))
                tags = ["cats"]
            else:
                vec = unit(rng.normal(size=DIM))
                tags = ["misc"]
            await harness.publish(vid, f"creator-{i % 6}", vec, tags)
            ids.append(vid)
        await harness.wait_published(ids)
        yield harness


def ids_of(reply: Any) -> list[str]:
    return [i.video_id for i in reply.items]


def unseen_ids(reply: Any) -> list[str]:
    """The page's ids that were not served to the user before."""
    return [i.video_id for i in reply.items if i.reason != F.FEED_REASON_SEEN_BEFORE]


# --------------------------------------------------------------------------- tests


async def test_a_new_user_gets_every_published_video_with_all_fields(harness: FeedHarness) -> None:
    reply = await harness.get_feed("newbie-1", limit=20)
    assert set(ids_of(reply)) == set(harness.creators)  # all 12, nothing else
    assert len(ids_of(reply)) == 12
    for item in reply.items:
        assert item.creator_id == harness.creators[item.video_id]
        assert item.title == f"title of {item.video_id}"
        assert item.duration_seconds == 15.0
        assert item.streaming_url.startswith("http") and "sig=" in item.streaming_url
        assert item.manifest_url == item.streaming_url
        assert item.thumbnail_url and "sig=" in item.thumbnail_url
        assert item.score > 0
        assert item.reason in (
            F.FEED_REASON_FRESH,
            F.FEED_REASON_EXPLORATION,
            F.FEED_REASON_TRENDING,
        )
        assert item.explanation
    assert [i.rank for i in reply.items] == list(range(12))
    assert F.FEED_FALLBACK_RULE_SCORER in reply.fallbacks  # no Triton here
    assert reply.scorer == "rules"
    assert not reply.cache_hit
    assert reply.response_time_ms > 0
    assert not reply.has_more and not reply.cursor


async def test_cursor_pages_through_one_cached_list_without_duplicates_or_gaps(
    harness: FeedHarness,
) -> None:
    first = await harness.get_feed("pager-1", limit=5)
    assert first.has_more and first.cursor == first.next_cursor
    second = await harness.get_feed("pager-1", limit=5, cursor=first.cursor)
    third = await harness.get_feed("pager-1", limit=5, cursor=second.cursor)
    assert second.cache_hit and third.cache_hit
    seen = ids_of(first) + ids_of(second) + ids_of(third)
    assert len(seen) == len(set(seen)) == 12
    assert [i.rank for i in second.items] == list(range(5, 10))
    assert not third.has_more


async def test_urls_are_signed_a_page_ahead_and_every_page_is_playable(
    harness: FeedHarness,
) -> None:
    """A new list signs its first two pages (plus a margin) on the request path; the
    rest is signed a page ahead of the reader, or when its page is served."""
    user = "pager-signed-1"
    first = await harness.get_feed(user, limit=2)
    cached = await feed_cache.load(harness.rank.redis, user)
    assert cached is not None
    assert [i.signed for i in cached.items[:9]] == [True] * 9  # 2 pages of 2 + margin 5
    assert not any(i.signed or i.streaming_url for i in cached.items[9:])  # never paged to
    pages = [first]
    while pages[-1].has_more:
        pages.append(await harness.get_feed(user, limit=2, cursor=pages[-1].cursor))
    served = [i for p in pages for i in p.items]
    assert len(served) == len({i.video_id for i in served}) == 12
    for item in served:
        assert "sig=" in item.streaming_url and "sig=" in item.thumbnail_url, item.video_id


async def test_a_replay_in_the_same_view_session_is_not_another_view(
    harness: FeedHarness,
) -> None:
    """recsim's contract: views are impressions, completions are views whose ratio
    reached 1, skips views under 25 %. A loop in one session is one view (its watch
    time adds up); a new session is a new view."""
    from svc_rank.feature_hydrator import aggregates

    user, video = "replayer-1", sorted(harness.creators)[1]
    creator = harness.creators[video]
    await harness.watch(user, video, session="a", play=0)
    await harness.watch(user, video, session="a", play=1)  # the video loops
    await harness.watch(user, video, session="b", play=0)  # watched again, later

    async def all_applied() -> bool:
        raw = await harness.rank.redis.hget(key("rank", "user", user), "w")
        return raw is not None and float(raw) >= 3 * 2.0 - 1e-6

    await eventually(all_applied, 30, "the three plays did not reach the aggregates")
    agg = await aggregates.read(harness.rank.redis, user, [video], [creator])
    row = agg.video[video]
    assert (row["s"], row["q"], row["c"]) == (2, 2, 2)  # two views, both completed
    assert agg.user.views == 2 and agg.pair[creator]["s"] == 2 and agg.pair[creator]["c"] == 2
    assert agg.user.watch_sum == pytest.approx(3 * 2.0)  # every play's watch time counts


async def test_a_view_that_jumps_to_complete_is_not_a_skip(harness: FeedHarness) -> None:
    """A player may send watch_start then watch_complete (a short video, no
    milestones in between): that view got past 25 %."""
    from svc_rank.feature_hydrator import aggregates

    user, video = "jumper-1", sorted(harness.creators)[2]
    events = [
        player_event(f"{user}-start", video, common_pb2.EVENT_TYPE_WATCH_START, session="j"),
        player_event(
            f"{user}-done", video, common_pb2.EVENT_TYPE_WATCH_COMPLETE, watch=15.0, session="j"
        ),
    ]
    await harness.stream_stub.RecordEvents(
        stream_pb2.RecordEventsRequest(events=events), metadata=harness.auth(user), timeout=10
    )

    async def applied() -> bool:
        return (await harness.rank.redis.hget(key("rank", "user", user), "w")) is not None

    await eventually(applied, 30, "the view did not reach the aggregates")
    creator = harness.creators[video]
    agg = await aggregates.read(harness.rank.redis, user, [video], [creator])
    assert agg.pair[creator]["s"] == 1 and agg.pair[creator]["q"] == 1  # not a skip
    assert agg.pair[creator]["c"] == 1


async def test_a_finished_list_is_not_served_again_on_refresh(harness: FeedHarness) -> None:
    user = "finisher-1"
    pages = [await harness.get_feed(user, limit=5)]
    while pages[-1].has_more:
        pages.append(await harness.get_feed(user, limit=5, cursor=pages[-1].cursor))
    served = {i for p in pages for i in ids_of(p)}
    assert len(served) == 12
    again = await harness.get_feed(user, limit=5)  # within the 60 s TTL
    assert not again.cache_hit
    # Nothing unseen is left: the page repeats what was served longest ago, flagged.
    assert not unseen_ids(again)
    assert set(ids_of(again)) == set(ids_of(pages[0]))


async def test_a_second_feed_after_everything_was_served_still_has_reels_flagged(
    harness: FeedHarness,
) -> None:
    """A user with few videos around: the first page served all of them; a reload
    (new list, every id in the served history) repeats them instead of going empty,
    each item and the response saying so."""
    user = "reloader-1"
    first = await harness.get_feed(user, limit=20)
    assert len(first.items) == 12 and not first.has_more
    assert F.FEED_FALLBACK_SEEN_BEFORE not in first.fallbacks
    assert all(i.reason != F.FEED_REASON_SEEN_BEFORE for i in first.items)
    second = await harness.get_feed(user, limit=20)
    assert not second.cache_hit
    assert set(ids_of(second)) == set(ids_of(first))
    assert F.FEED_FALLBACK_SEEN_BEFORE in second.fallbacks
    for item in second.items:
        assert item.reason == F.FEED_REASON_SEEN_BEFORE
        assert "caught up" in item.explanation
        assert item.streaming_url.startswith("http") and "sig=" in item.streaming_url
        assert item.title == f"title of {item.video_id}"
    assert [i.rank for i in second.items] == list(range(12))
    # Least recently served first: serve 5 again, then the next list starts with the
    # 7 that were served longest ago.
    again = await harness.get_feed(user, limit=5)
    assert len(again.items) == 5 and not unseen_ids(again)
    third = await harness.get_feed(user, limit=7)
    assert F.FEED_FALLBACK_SEEN_BEFORE in third.fallbacks
    assert set(ids_of(third)) == set(ids_of(second)) - set(ids_of(again))


async def test_user_ids_with_colons_never_share_cached_lists(harness: FeedHarness) -> None:
    """``feed:{user}:last`` once was user ``{user}:last``'s list."""
    victim = await harness.get_feed("colon-1", limit=4)
    other = await harness.get_feed("colon-1:last", limit=4)
    assert victim.items and not other.cache_hit
    assert feed_cache.last_key("colon-1") != feed_cache.feed_key("colon-1:last")


async def test_trending_items_are_playable_and_a_region_without_its_own_set_gets_global(
    harness: FeedHarness,
) -> None:
    from svc_stream.analytics.trending import publish_scores

    top = sorted(harness.creators)[:3]
    await publish_scores(harness.stream.redis, [(v, 10.0 - i) for i, v in enumerate(top)])
    for region in ("", "zz"):  # ZZ: no regional set of its own -> the global one
        reply = await harness.feed.GetTrending(
            F.GetTrendingRequest(limit=10, region=region), metadata=harness.auth("t-1"), timeout=10
        )
        assert ids_of(reply) == top
        for item in reply.items:
            assert item.title and item.creator_id == harness.creators[item.video_id]
            assert "sig=" in item.streaming_url and "sig=" in item.thumbnail_url
            assert item.duration_seconds == 15.0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ("feed_region", "region"),
        ("feed_experiment", "experiment"),
        ("explain_long_id", "video_id"),
        ("explain_nul_id", "video_id"),
        ("see_fewer_nul", "creator_id"),
        ("trending_region", "region"),
    ],
)
async def test_bad_ids_regions_and_arms_are_invalid_argument(
    harness: FeedHarness, call: str, field: str
) -> None:
    md = harness.auth("validator-1")
    calls = {
        "feed_region": lambda: harness.feed.GetFeed(F.GetFeedRequest(region="USA"), metadata=md),
        "feed_experiment": lambda: harness.feed.GetFeed(
            F.GetFeedRequest(experiment="nope"), metadata=md
        ),
        "explain_long_id": lambda: harness.feed.ExplainFeedItem(
            F.ExplainFeedItemRequest(video_id="v" * 5000), metadata=md
        ),
        "explain_nul_id": lambda: harness.feed.ExplainFeedItem(
            F.ExplainFeedItemRequest(video_id="a\x00b"), metadata=md
        ),
        "see_fewer_nul": lambda: harness.feed.SeeFewer(
            F.SeeFewerRequest(creator_id="\x00"), metadata=md
        ),
        "trending_region": lambda: harness.feed.GetTrending(
            F.GetTrendingRequest(region="\U0001f600"), metadata=md
        ),
    }
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await calls[call]()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in info.value.details() and len(info.value.details()) < 300


async def test_refreshing_page_one_within_the_ttl_is_a_cache_hit(harness: FeedHarness) -> None:
    a = await harness.get_feed("refresher-1", limit=4)
    b = await harness.get_feed("refresher-1", limit=4)
    assert b.cache_hit and ids_of(a) == ids_of(b)


async def test_an_expired_lists_cursor_starts_a_fresh_list_that_repeats_nothing(
    harness: FeedHarness,
) -> None:
    first = await harness.get_feed("expired-1", limit=5)
    await harness.rank.redis.delete(feed_cache.feed_key("expired-1"))  # the TTL passed
    after = await harness.get_feed("expired-1", limit=5, cursor=first.cursor)
    assert not after.cache_hit
    assert ids_of(after) and not set(ids_of(after)) & set(ids_of(first))
    # And page 1 after the TTL is a fresh order of what is left.
    await harness.rank.redis.delete(feed_cache.feed_key("expired-1"))
    again = await harness.get_feed("expired-1", limit=20)
    fresh = unseen_ids(again)
    assert len(fresh) == 2 and not set(fresh) & set(ids_of(first) + ids_of(after))
    # Too few unseen for the page: topped up with served ones after them, flagged.
    # Unseen reels are never mixed with repeats: the refill comes only once nothing
    # unseen is left (recsim's guardrails: no repeats, creator cap on every page).
    assert ids_of(again) == fresh


async def test_a_watch_brings_similar_videos_and_the_watched_one_is_not_served_again(
    harness: FeedHarness,
) -> None:
    user = "watcher-1"
    cats = sorted(
        v for v in harness.creators if v.startswith(("v00", "v01", "v02", "v03", "v04", "v05"))
    )
    watched = cats[0]
    await harness.watch(user, watched)

    async def has_vector() -> bool:
        return bool(await harness.rank.redis.hexists(key("rank", "user", user), "vec"))

    await eventually(has_vector, 30, "the watch did not reach the user vector")
    await eventually(
        lambda: _async_true(harness.rank.vectors.indexed >= 12), 30, "vectors not indexed"
    )
    reply = await harness.get_feed(user, limit=20)
    got = ids_of(reply)
    assert watched not in unseen_ids(reply)  # (the page may end with it, seen before)
    similar = [i for i in reply.items if i.reason == F.FEED_REASON_SIMILAR]
    assert {i.video_id for i in similar} >= set(cats[1:4]), [
        (i.video_id, i.reason) for i in reply.items
    ]
    assert any(i.explanation == "Because you watched #cats" for i in similar)
    # The cats come first: the deep-model term ranks them above the random ones.
    assert set(got[:3]) <= set(cats)


async def test_a_follow_brings_the_creators_videos_with_a_readable_reason(
    harness: FeedHarness,
) -> None:
    user = "follower-1"
    await harness.stream_stub.FollowCreator(
        stream_pb2.FollowCreatorRequest(creator_id="creator-3"),
        metadata=harness.auth(user),
        timeout=10,
    )

    async def followed() -> bool:
        async with harness.rank.sessionmaker() as session:
            row = await session.scalar(select(RankFollow).where(RankFollow.user_id == user))
            return row is not None

    await eventually(followed, 30, "the follow did not reach svc_rank")
    reply = await harness.get_feed(user, limit=20)
    from_followee = [i for i in reply.items if i.reason == F.FEED_REASON_FOLLOWEE]
    assert {i.creator_id for i in from_followee} == {"creator-3"}
    assert from_followee[0].explanation == "From @creator-3 you follow"


async def test_explain_feed_item_returns_the_score_breakdown(harness: FeedHarness) -> None:
    vid = next(iter(harness.creators))
    reply = await harness.feed.ExplainFeedItem(
        F.ExplainFeedItemRequest(video_id=vid), metadata=harness.auth("explainer-1"), timeout=10
    )
    parts = {c.name: (c.value, c.weight) for c in reply.components}
    assert set(parts) == {"completion", "engagement", "affinity", "deep_model"}
    assert parts["completion"][1] == pytest.approx(0.40)
    assert reply.score == pytest.approx(sum(v * w for v, w in parts.values()))
    assert reply.scorer == "rules" and reply.explanation
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.feed.ExplainFeedItem(
            F.ExplainFeedItemRequest(video_id="nope"), metadata=harness.auth("x"), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_own_videos_are_never_in_the_creators_feed(harness: FeedHarness) -> None:
    reply = await harness.get_feed("creator-2", limit=20)
    assert ids_of(reply) and all(i.creator_id != "creator-2" for i in reply.items)


async def test_near_duplicates_never_share_a_page(harness: FeedHarness) -> None:
    original = sorted(harness.creators)[7]
    copy = f"dup-{uuid.uuid4().hex[:6]}"
    vec = unit(harness.vectors[original] + 0.01 * unit(np.random.default_rng(3).normal(size=DIM)))
    await harness.publish(copy, "copycat", vec, ["misc"])
    await harness.wait_published([copy])
    reply = await harness.get_feed("dup-viewer-1", limit=20)
    got = ids_of(reply)
    assert (original in got) != (copy in got)


async def test_a_republish_without_a_vector_keeps_the_stored_one(harness: FeedHarness) -> None:
    vid = sorted(harness.creators)[8]
    await harness.publish(vid, harness.creators[vid], None, ["changed"])

    async def applied() -> bool:
        harness.rank.catalog.forget(vid)
        video = await harness.rank.catalog.get(vid)
        return video is not None and video.hashtags == ("changed",)

    await eventually(applied, 30, "the republish was not applied")
    video = await harness.rank.catalog.get(vid)
    assert video is not None and video.embedding is not None
    np.testing.assert_allclose(video.embedding, harness.vectors[vid], rtol=1e-5)


async def test_the_learned_ranker_ranks_while_it_answers_and_rules_when_it_is_stopped(
    harness: FeedHarness,
) -> None:
    import tritonclient.grpc.service_pb2_grpc as pb_grpc

    from tests.integration.test_feed_ranker import FakeRanker

    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(FakeRanker(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ranker = harness.rank.ranker
    old_addr = ranker.addr
    await ranker.close()
    ranker.addr = f"127.0.0.1:{port}"
    ranker.timeout_s = 1.0
    ranker._closed_until = 0.0  # the breaker opened while no ranker answered (earlier tests)
    try:
        reply = await harness.get_feed("ranked-1", limit=5)
        assert reply.scorer == "ranker:3"
        assert F.FEED_FALLBACK_RULE_SCORER not in reply.fallbacks
        await server.stop(0)  # Triton goes away
        reply = await harness.get_feed("ranked-2", limit=5)
        assert reply.items and reply.scorer == "rules"
        assert F.FEED_FALLBACK_RULE_SCORER in reply.fallbacks
    finally:
        await server.stop(0)
        await ranker.close()
        ranker.addr, ranker.timeout_s = old_addr, harness.rank.settings.ranker_timeout_s


async def test_the_built_ranker_served_by_triton_ranks_the_feed_on_recsims_features(
    harness: FeedHarness, tmp_path: Path
) -> None:
    """The real model (``make models``: trained on recsim's logs) in a real tritonserver:
    svc_rank's learned path scores the page (no fallback), with the very rows
    ``recsim.features`` defines, and the scores are the ONNX model's on those rows."""
    import onnxruntime as ort

    from recsim.features import FEATURE_NAMES
    from reels_dev.infra.triton import MODEL_REPOSITORY, triton_process

    model = MODEL_REPOSITORY / "ranker" / "1" / "model.onnx"
    if not model.exists():
        pytest.fail(f"ranker is not built ({model}): run `bash scripts/models.sh`")
    http, grpc_port = free_port(), free_port()
    triton = triton_process(http, grpc_port, None, models=["ranker"], log_dir=tmp_path)
    await asyncio.to_thread(triton.start)
    ranker = harness.rank.ranker
    assert ranker is not None
    old_addr = ranker.addr
    await ranker.close()
    ranker.addr = f"127.0.0.1:{grpc_port}"
    ranker.timeout_s = 10.0  # the first inference of a fresh Triton warms it up (and CI is busy)
    ranker._closed_until = 0.0
    user = "triton-ranked-1"
    try:
        watched = sorted(harness.creators)[0]
        await harness.watch(user, watched)

        async def has_history() -> bool:
            # Every event of the watch applied (they may arrive over several batches).
            # "w": the user's watch-ratio sum (svc_rank/index/user_state.py).
            raw = await harness.rank.redis.hmget(key("rank", "user", user), "n", "w")
            return raw[1] is not None and float(raw[1]) >= 2.0 - 1e-6

        await eventually(has_history, 30, "the watch did not reach the user's aggregates")
        from svc_rank.feature_hydrator import aggregates

        creator = harness.creators[watched]
        agg = await aggregates.read(harness.rank.redis, user, [watched], [creator])
        assert agg.video[watched]["s"] == 1 and agg.video[watched]["q"] == 1
        assert agg.video[watched]["recent"] >= 1
        assert agg.user.views == 1 and agg.pair[creator]["s"] == 1
        # 0 + 3 + 6 + 9 + 12 s reported over five events of a 15 s video, each capped at 1.
        assert agg.user.watch_sum == pytest.approx(0.2 + 0.4 + 0.6 + 0.8)
        assert agg.pair[creator]["w"] == pytest.approx(agg.user.watch_sum)
        assert agg.creator[creator]["n"] >= 1
        reply = await harness.get_feed(user, limit=10)
        assert reply.items and reply.scorer == "ranker:1", reply.scorer
        assert F.FEED_FALLBACK_RULE_SCORER not in reply.fallbacks
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        for item in reply.items[:3]:
            explained = await harness.feed.ExplainFeedItem(
                F.ExplainFeedItemRequest(video_id=item.video_id),
                metadata=harness.auth(user),
                timeout=10,
            )
            assert explained.scorer == "ranker:1"
            assert [f.name for f in explained.features] == list(FEATURE_NAMES)
            row = np.array([[f.value for f in explained.features]], dtype=np.float32)
            want = session.run(["scores"], {"features": row})[0][0]
            assert explained.ranker_score == pytest.approx(float(want), abs=1e-4)
            assert explained.score == explained.ranker_score
        # The user's history is in the rows: they watched one video, so user_log_views > 0.
        values = {f.name: f.value for f in explained.features}
        assert values["user_log_views"] == pytest.approx(np.log1p(1.0))
    finally:
        await ranker.close()
        ranker.addr, ranker.timeout_s = old_addr, harness.rank.settings.ranker_timeout_s
        await asyncio.to_thread(triton.stop)


# --------------------------------------------------------------------------- fallbacks


async def test_milvus_down_serves_trending_and_fresh(harness: FeedHarness) -> None:
    user = "watcher-2"
    cats = sorted(harness.creators)[:6]
    await harness.watch(user, cats[0])

    async def has_vector() -> bool:
        return bool(await harness.rank.redis.hexists(key("rank", "user", user), "vec"))

    await eventually(has_vector, 30, "the watch did not reach the user vector")
    killed = _kill_milvus_lite(Path(harness.rank.vectors.uri))
    assert killed, "no Milvus Lite server found"
    reply = await harness.get_feed(user, limit=20)
    assert reply.items
    assert F.FEED_FALLBACK_NO_VECTORS in reply.fallbacks
    assert all(i.reason != F.FEED_REASON_SIMILAR for i in reply.items)
    # The vectors loop reopens Milvus by itself.
    await eventually(
        lambda: _async_true(harness.rank.vectors.available), 60, "Milvus was not reopened"
    )


async def test_redis_down_serves_an_uncached_ranked_list(
    harness: FeedHarness, tmp_path: Path
) -> None:
    port = free_port()
    server = ManagedProcess(
        "redis-private",
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        log_dir=tmp_path,
    ).start()
    rank = build_rank(
        rank_settings(
            database_url=harness.rank.platform.database_url,
            kafka_bootstrap=harness.kafka.bootstrap,
            redis_prefix=harness.rank.platform.redis_prefix,
            redis_url=f"redis://127.0.0.1:{port}/0",
            milvus_path=tmp_path / "milvus" / "alone.db",
            stream_addr=f"127.0.0.1:{harness.stream_server.port}",
        )
    )
    running = await run_app(rank, port=0)
    try:
        server.stop(grace=1)  # Redis goes away
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = rank_pb2_grpc.FeedServiceStub(ch)
            first = await stub.GetFeed(
                F.GetFeedRequest(limit=5), metadata=harness.auth("no-redis-1"), timeout=30
            )
            assert len(first.items) == 5 and all(i.streaming_url for i in first.items)
            assert F.FEED_FALLBACK_UNCACHED in first.fallbacks and not first.cache_hit
            second = await stub.GetFeed(
                F.GetFeedRequest(limit=5, cursor=first.cursor),
                metadata=harness.auth("no-redis-1"),
                timeout=30,
            )
            assert second.items and not set(ids_of(second)) & set(ids_of(first))
    finally:
        await running.stop(1.0)
        server.stop(grace=1)


async def test_overload_serves_a_stale_trending_page_instead_of_errors(
    harness: FeedHarness, tmp_path: Path
) -> None:
    """Every build slot taken (what a burst of cache misses does): GetFeed answers at
    once with a page of the stale trending list, flagged OVERLOAD, playable, not the
    user's own videos; the next page is ranked for the user again once there is room,
    repeating nothing. Other RPCs of a saturated service shed with RESOURCE_EXHAUSTED +
    RetryInfo (reels.admission); GetFeed never does (next test)."""
    rank = build_rank(
        rank_settings(
            database_url=harness.rank.platform.database_url,
            kafka_bootstrap=harness.kafka.bootstrap,
            redis_prefix=harness.rank.platform.redis_prefix,
            milvus_path=tmp_path / "milvus" / "overload.db",
            stream_addr=f"127.0.0.1:{harness.stream_server.port}",
            max_concurrent_builds=2,
            build_wait_ms=0.0,
        )
    )
    from svc_stream.analytics.trending import publish_scores

    ranked = sorted(harness.creators)
    await publish_scores(harness.stream.redis, [(v, 20.0 - i) for i, v in enumerate(ranked)])
    running = await run_app(rank, port=0)
    creator = harness.creators[ranked[0]]
    try:
        service = rank.feed_service
        assert service is not None
        for _ in range(2):  # a burst of builds holds every slot
            await service.builds.acquire()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = rank_pb2_grpc.FeedServiceStub(ch)
            users = [creator, *(f"overload-{i}" for i in range(11))]
            pages = await asyncio.gather(
                *(
                    stub.GetFeed(F.GetFeedRequest(limit=4), metadata=harness.auth(u), timeout=30)
                    for u in users
                )
            )
            for user, page in zip(users, pages, strict=True):
                assert F.FEED_FALLBACK_OVERLOAD in page.fallbacks, page.fallbacks
                assert len(page.items) == 4 and all(i.streaming_url for i in page.items)
                assert all(i.reason == F.FEED_REASON_TRENDING for i in page.items)
                assert "busy" in page.items[0].explanation
                assert page.has_more and page.cursor
                if user == creator:
                    assert all(harness.creators[i.video_id] != creator for i in page.items)
            # The stale list was made once and is shared: same order for everyone.
            assert ids_of(pages[1]) == ids_of(pages[2])
            for _ in range(2):
                service.builds.release()
            # Capacity is back: the next page is a list ranked for this user, and it
            # repeats nothing the overload page served.
            user, first = users[1], pages[1]
            second = await stub.GetFeed(
                F.GetFeedRequest(limit=4, cursor=first.cursor),
                metadata=harness.auth(user),
                timeout=30,
            )
            assert F.FEED_FALLBACK_OVERLOAD not in second.fallbacks
            assert second.items and not set(ids_of(second)) & set(ids_of(first))
    finally:
        await running.stop(1.0)


async def test_a_saturated_service_sheds_other_rpcs_with_retry_info_but_never_the_feed(
    harness: FeedHarness, tmp_path: Path
) -> None:
    rank = build_rank(
        rank_settings(
            database_url=harness.rank.platform.database_url,
            kafka_bootstrap=harness.kafka.bootstrap,
            redis_prefix=harness.rank.platform.redis_prefix,
            milvus_path=tmp_path / "milvus" / "shed.db",
            stream_addr=f"127.0.0.1:{harness.stream_server.port}",
        )
    )
    rank.settings = dataclasses.replace(
        rank.settings,
        server=dataclasses.replace(rank.settings.server, max_inflight_rpcs=1, admission_wait_s=0),
    )
    running = await run_app(rank, port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = rank_pb2_grpc.FeedServiceStub(ch)
            trending = [
                stub.GetTrending(
                    F.GetTrendingRequest(limit=5), metadata=harness.auth("t"), timeout=30
                )
                for _ in range(12)
            ]
            feeds = [
                stub.GetFeed(F.GetFeedRequest(limit=3), metadata=harness.auth(f"s{i}"), timeout=30)
                for i in range(6)
            ]
            results = await asyncio.gather(*trending, *feeds, return_exceptions=True)
        shed = [r for r in results[:12] if isinstance(r, grpc.aio.AioRpcError)]
        assert shed, "12 concurrent GetTrending on one slot: some must be shed"
        for err in shed:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
            assert "overloaded" in (err.details() or "")
            assert dict(err.trailing_metadata() or ()).get("retry-after") == "1"
        assert all(not isinstance(r, BaseException) and r.items for r in results[12:]), results[12:]
    finally:
        await running.stop(1.0)


async def test_svc_stream_down_serves_the_last_list_then_trending_from_redis(
    harness: FeedHarness,
) -> None:
    """Runs last in the module: it stops svc_stream for good."""
    user = "stream-down-1"
    before = await harness.get_feed(user, limit=4)
    deep_user = "stream-down-deep-1"
    deep = [await harness.get_feed(deep_user, limit=2)]  # 9 items signed, the rest not
    await harness.rank.redis.delete(feed_cache.feed_key(user))  # TTL passed
    await harness.stream_server.stop(0.5)
    harness.stream_server = None  # type: ignore[assignment]
    # A cached list's pages that were not signed yet: those items are left out (and not
    # counted as served), never sent without URLs.
    while deep[-1].has_more:
        deep.append(await harness.get_feed(deep_user, limit=2, cursor=deep[-1].cursor))
    assert any(F.FEED_FALLBACK_UNSIGNED in p.fallbacks for p in deep), [
        (len(p.items), list(p.fallbacks), p.cache_hit, p.has_more) for p in deep
    ]
    assert all(i.streaming_url for p in deep for i in p.items)
    shown = {i for p in deep for i in ids_of(p)}
    served = await served_ids(harness.rank.redis, deep_user, 3600)
    assert served == shown and len(shown) < 12
    reply = await harness.get_feed(user, limit=4)
    assert F.FEED_FALLBACK_LAST_LIST in reply.fallbacks
    assert reply.items and not set(ids_of(reply)) & set(ids_of(before))
    assert all(i.streaming_url for i in reply.items)  # signed before, still valid
    # A user without a last list still gets a page (trending/fresh from Redis and Postgres).
    fresh_user = await harness.get_feed("stream-down-2", limit=4)
    assert fresh_user.items
    assert F.FEED_FALLBACK_REDIS_TRENDING in fresh_user.fallbacks


# --------------------------------------------------------------------------- helpers


async def _async_true(value: bool) -> bool:
    return value


def _kill_milvus_lite(db: Path) -> int:
    import os
    import signal

    killed = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in args)
        if "milvus_lite/lib/milvus" in line and str(db.resolve()) in line:
            os.kill(int(cmdline.parent.name), signal.SIGKILL)
            killed += 1
    return killed


_ = asyncio  # keep the import for fixtures that await
