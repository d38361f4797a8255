"""GetFeed over 100k videos and 10k users vs a bare Milvus top-k search and a bare Redis GET.

Goals (issue 9, section 7), inside the service: a cache miss (a new ranked list: five
candidate sources, hydration, scoring, mixing, URL signing) p95 < 50 ms; a cache hit
(the next page of the cached list) p99 < 5 ms. Baselines, measured in the same run on
the same data: the cheapest possible similar recall, one bare Milvus top-k search of
the same size (``similar_k`` neighbours of the same user vectors, the same index and
filter, through the same thread hop the service uses), and for a hit one bare Redis
GET of the same cached list. Then the same two calls through Envoy
(``GET /api/v1/reels``: JWT, JSON transcoding, HTTP/1.1 on loopback), and the
throughput of one svc_rank process, with how many would serve the seed's fleet figure
of 100k requests/s.

Setup (loopback only, everything of its own, removed at the end): a throwaway
migrated Postgres database, a Redis key prefix, Milvus Lite under a temp directory,
Envoy on free ports. svc_rank and svc_stream are built from their Settings by their
own ``build()`` and served by ``reels.server.run_app`` on free ports, with their Kafka
consumers and background jobs idle (the data is already loaded, and nothing else
arrives). The ranker is Triton's if one answers on ``REELS_TRITON_ADDR``, else the rule
scorer (the output says which).

The data is written by bulk loaders that write what the consumers would write:

* ``rank_videos`` rows from ``svc_rank.index.catalog.Catalog.row_values`` (the
  ``video.published`` consumer's row), already marked ``vector_indexed``, and their
  vectors upserted into Milvus in batches with the fields ``VectorStore.index_pending``
  copies (id, vector, creator_id, published_at);
* ``stream_videos`` rows from svc_stream's catalog (``video_from_event`` → its row);
* per user, the Redis state ``svc_rank.index.user_state.apply_watch`` leaves after
  the user's watch events (each watch: WATCH_START, then PROGRESS_25/50/75 and
  WATCH_COMPLETE up to how far it got, each reporting a quarter of the duration):
  the decayed user vector and ``t``, ``n``/``w``/``tw``/``te``, region, the affinity
  counters, hashtags, served history, per-creator and per-video starts, the hourly
  recent-views buckets. The per-event ledger keys (``rank:seen:*``, which only
  deduplicate redeliveries) are not written;
* svc_stream's per-video counters (views, plays, completions, watch_ms, likes),
  creators' follower counts, the follow graph (``rank_follows`` + the ``|f``
  affinity flag), and the global trending set through svc_stream's own
  ``publish_scores``.

Vectors: unit 256-d, clustered by topic (each creator posts in one topic; users watch
mostly their two favourite topics), so similar recall has real neighbours.

Run: .venv/bin/python bench/bench_feed.py [--videos 100000] [--users 10000]
(``--videos 5000 --users 500 --misses 100`` is a one-minute smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))

import numpy as np  # noqa: E402
from google.protobuf import duration_pb2, timestamp_pb2  # noqa: E402
from reels.v1 import events_pb2, rank_pb2  # noqa: E402
from sqlalchemy import insert, make_url  # noqa: E402

from reels.admission import Admission  # noqa: E402
from reels.auth import current_token, current_user  # noqa: E402
from reels.cache import delete_prefix, redis_client, set_key_prefix  # noqa: E402
from reels.config import DEFAULT_PORTS  # noqa: E402
from reels.db.engine import create_database, database_url, drop_database  # noqa: E402
from reels.db.migrate import migrate  # noqa: E402
from reels.server import RunningServer, run_app  # noqa: E402
from reels.vectors import VectorIndex, filter_eq  # noqa: E402
from reels_dev.infra.process import free_port  # noqa: E402
from reels_dev.keys import ensure_dev_keys, mint_token  # noqa: E402
from svc_rank import feed_cache  # noqa: E402
from svc_rank.app import build as build_rank  # noqa: E402
from svc_rank.feature_hydrator.aggregates import creator_counters_key  # noqa: E402
from svc_rank.feature_hydrator.counters import counters_key  # noqa: E402
from svc_rank.index import user_state as us  # noqa: E402
from svc_rank.index.catalog import Catalog  # noqa: E402
from svc_rank.models import RankFollow, RankVideo  # noqa: E402
from svc_rank.settings import Settings as RankSettings  # noqa: E402
from svc_rank.side_effect.served import served_key  # noqa: E402
from svc_stream.analytics.trending import publish_scores  # noqa: E402
from svc_stream.app import build as build_stream  # noqa: E402
from svc_stream.playback.catalog import _row_values, video_from_event  # noqa: E402
from svc_stream.playback.models import StreamVideo  # noqa: E402
from svc_stream.settings import Settings as StreamSettings  # noqa: E402

DIM = 256
GOAL_MISS_P95_MS = 50.0
GOAL_HIT_P99_MS = 5.0
FLEET_RPS = 100_000
REGIONS = ("US", "DE", "BR", "JP", "IN")
DAY_MS = 86_400_000
FULL = 1.0


# --------------------------------------------------------------------------- figures


def pct(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def report(name: str, samples: Sequence[float]) -> dict[str, float]:
    fig = {p: pct(samples, p) for p in (50, 95, 99)}
    print(
        f"  {name:<44} p50 {fig[50]:7.2f} ms  p95 {fig[95]:7.2f} ms  p99 {fig[99]:7.2f} ms"
        f"  mean {statistics.fmean(samples):7.2f} ms  (n={len(samples)})"
    )
    return fig


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    t0 = time.perf_counter_ns()
    result = await call()
    return (time.perf_counter_ns() - t0) / 1e6, result


# --------------------------------------------------------------------------- the data


@dataclasses.dataclass
class Data:
    video_ids: list[str]
    creators: list[str]
    vectors: np.ndarray  # [V, DIM] float32, unit rows
    durations: np.ndarray  # seconds
    published_ms: np.ndarray
    topics: np.ndarray
    users: list[str]


def make_data(videos: int, users: int, seed: int) -> Data:
    rng = np.random.default_rng(seed)
    n_topics = max(10, videos // 1000)
    centers = rng.normal(size=(n_topics, DIM))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    creator_of = np.arange(videos) // 10  # 10 videos per creator, one topic each
    topics = creator_of % n_topics
    vecs = centers[topics] + rng.normal(scale=0.07, size=(videos, DIM))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    now_ms = int(time.time() * 1000)
    age_ms = np.minimum(rng.exponential(10 * DAY_MS, size=videos), 60 * DAY_MS)
    return Data(
        video_ids=[f"bench-v{i:06d}" for i in range(videos)],
        creators=[f"bench-c{c:05d}" for c in creator_of],
        vectors=vecs,
        durations=rng.uniform(8, 60, size=videos).round(1),
        published_ms=(now_ms - age_ms).astype(np.int64),
        topics=topics,
        users=[f"bench-u{j:05d}" for j in range(users)],
    )


def published_event(d: Data, i: int) -> events_pb2.VideoPublished:
    vid = d.video_ids[i]
    at = timestamp_pb2.Timestamp()
    at.FromMilliseconds(int(d.published_ms[i]))
    return events_pb2.VideoPublished(
        meta=events_pb2.EventMeta(event_id=str(uuid.uuid4()), occurred_at=at),
        video_id=vid,
        creator_id=d.creators[i],
        duration=duration_pb2.Duration(seconds=int(d.durations[i])),
        width=720,
        height=1280,
        master_playlist_key=f"videos/{vid}/master.m3u8",
        thumbnail_key=f"videos/{vid}/thumb.jpg",
        published_at=at,
        title=f"Bench reel {i} about topic {d.topics[i]}",
        hashtags=[f"topic{d.topics[i]}", "bench"],
        video_embedding=d.vectors[i].tolist(),
        embedding_model_version="bench-v1",
    )


async def load_catalogs(
    d: Data, rank_settings: RankSettings, sessionmaker: Any, index: VectorIndex
) -> None:
    """rank_videos + Milvus (what catalog + vectors loops leave), stream_videos."""
    catalog = Catalog(sessionmaker, embedding_dim=rank_settings.embedding_dim)
    chunk = 2000
    for start in range(0, len(d.video_ids), chunk):
        events = [published_event(d, i) for i in range(start, min(start + chunk, len(d.video_ids)))]
        rank_rows = []
        for event in events:
            row = catalog.row_values(event)
            row["vector_indexed"] = True  # copied to Milvus below, as index_pending does
            rank_rows.append(row)
        stream_rows = [_row_values(video_from_event(e)) for e in events]
        milvus_rows = [
            {
                "id": r["video_id"],
                "vector": r["embedding"],
                "creator_id": r["creator_id"],
                "published_at": int(r["published_at"].timestamp() * 1000),
            }
            for r in rank_rows
        ]
        async with sessionmaker() as session, session.begin():
            await session.execute(insert(RankVideo), rank_rows)
            await session.execute(insert(StreamVideo), stream_rows)
        await asyncio.to_thread(index.upsert, milvus_rows)


async def load_users(d: Data, redis: Any, sessionmaker: Any, seed: int, watches: int) -> None:
    """The Redis state apply_watch leaves after each user's watches, svc_stream's
    counters, follows and trending: see the module docstring."""
    rng = np.random.default_rng(seed + 1)
    now_ms = int(time.time() * 1000)
    half_life_s = RankSettings.from_env().user_vector_half_life_s
    by_topic: dict[int, np.ndarray] = {}
    order = np.argsort(d.topics, kind="stable")
    bounds = np.searchsorted(d.topics[order], np.arange(d.topics.max() + 2))
    for t in range(int(d.topics.max()) + 1):
        by_topic[t] = order[bounds[t] : bounds[t + 1]]
    fracs = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    frac_p = np.array([0.2, 0.1, 0.1, 0.15, 0.45])
    video_s: dict[int, int] = defaultdict(int)
    video_q: dict[int, int] = defaultdict(int)
    video_c: dict[int, int] = defaultdict(int)
    video_wms: dict[int, int] = defaultdict(int)
    video_likes: dict[int, int] = defaultdict(int)
    recent: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    creator_nw: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    followers: dict[str, int] = defaultdict(int)
    follows: list[dict[str, str]] = []
    hour_now = now_ms // 3_600_000
    n_topics = int(d.topics.max()) + 1
    pipe_users = 500
    pipe = redis.pipeline(transaction=False)
    for j, user in enumerate(d.users):
        favourite = rng.choice(n_topics, size=2, replace=False)
        picks = [
            int(rng.choice(by_topic[int(favourite[k % 2])]))
            if rng.random() < 0.9
            else int(rng.integers(len(d.video_ids)))
            for k in range(watches)
        ]
        picks = list(dict.fromkeys(picks))
        t_ms = (now_ms - rng.uniform(0, 7 * DAY_MS, size=len(picks))).astype(np.int64)
        frac = rng.choice(fracs, size=len(picks), p=frac_p)
        e = d.vectors[picks].astype(np.float64)
        tw = frac @ e  # Σ ratio·e (each milestone reports a quarter of the duration)
        te = e.sum(axis=0)  # Σ e per view started
        credited = frac > 0
        ukey = us.user_key(user)
        mapping: dict[str, Any] = {
            "te": te.astype(np.float32).tobytes(),
            "n": len(picks),
            "region": REGIONS[j % len(REGIONS)],
        }
        if credited.any():
            vt = int(t_ms[credited].max())  # decayed_sum's t_ref: newest credited event
            # Σ credit·e·2^(−Δt/H), credit 0.25 per milestone reached = frac per view
            vec = (frac * 2.0 ** (-(vt - t_ms) / 1000.0 / half_life_s)) @ e
            mapping |= {
                "vec": vec.astype(np.float32).tobytes(),
                "t": vt,
                "tw": tw.astype(np.float32).tobytes(),
                "w": float(frac.sum()),
            }
        pipe.hset(ukey, mapping=mapping)
        pipe.expire(ukey, us.USER_TTL_S)
        pair: dict[str, float] = defaultdict(float)
        tags: dict[str, float] = defaultdict(float)
        for v, f, t in zip(picks, frac, t_ms, strict=True):
            c = d.creators[v]
            pair[f"{c}|s"] += 1
            video_s[v] += 1
            creator_nw[c][0] += 1
            if f >= 0.25:
                pair[f"{c}|q"] += 1
                video_q[v] += 1
            if f > 0:
                pair[f"{c}|w"] += float(f)
                creator_nw[c][1] += float(f)
                for tag in (f"topic{d.topics[v]}", "bench"):
                    tags[tag] += float(f)
            video_wms[v] += int(f * d.durations[v] * 1000)
            if f == FULL:
                pair[f"{c}|c"] += 1
                video_c[v] += 1
                if rng.random() < 0.2:
                    pair[f"{c}|l"] += 1
                    video_likes[v] += 1
            hour = int(t) // 3_600_000
            if hour > hour_now - 24:
                recent[hour][v] += 1
        for c in dict.fromkeys(d.creators[v] for v in picks[:5]):
            follows.append({"user_id": user, "creator_id": c})
            pair[f"{c}|f"] = 1
            followers[c] += 1
        pkey = us.pair_key(user)
        pipe.hset(pkey, mapping=dict(pair))
        pipe.expire(pkey, us.USER_TTL_S)
        if tags:
            pipe.zadd(us.tags_key(user), dict(tags))
            pipe.expire(us.tags_key(user), us.USER_TTL_S)
        watched = {d.video_ids[v]: int(t) for v, t in zip(picks, t_ms, strict=True)}
        pipe.zadd(served_key(user), watched)
        if (j + 1) % pipe_users == 0:
            await pipe.execute()
    await pipe.execute()
    batch = 0
    for v, s in video_s.items():
        vid = d.video_ids[v]
        pipe.hset(
            us.video_key(vid), mapping={"s": s, "q": video_q.get(v, 0), "c": video_c.get(v, 0)}
        )
        pipe.expire(us.video_key(vid), us.USER_TTL_S)
        pipe.hset(
            counters_key(vid),
            mapping={
                "views": s,
                "plays": s,
                "completions": video_c.get(v, 0),
                "watch_ms": video_wms.get(v, 0),
                "likes": video_likes.get(v, 0),
            },
        )
        batch += 1
        if batch % 5000 == 0:
            await pipe.execute()
    for c, (n, w) in creator_nw.items():
        pipe.hset(us.creator_key(c), mapping={"n": n, "w": w})
        pipe.expire(us.creator_key(c), us.USER_TTL_S)
    for c, n in followers.items():
        pipe.hset(creator_counters_key(c), "followers", n)
    for hour, counts in recent.items():
        rkey = us.recent_key(hour)
        pipe.hset(rkey, mapping={d.video_ids[v]: n for v, n in counts.items()})
        pipe.expire(rkey, us.RECENT_TTL_S)
    await pipe.execute()
    # Trending (svc_stream's job): completions, likes weigh more than views.
    score = {
        d.video_ids[v]: video_c.get(v, 0) + 2.0 * video_likes.get(v, 0) + 0.1 * s
        for v, s in video_s.items()
    }
    top = sorted(score.items(), key=lambda kv: -kv[1])[:1000]
    await publish_scores(redis, top)
    async with sessionmaker() as session, session.begin():
        for start in range(0, len(follows), 5000):
            await session.execute(insert(RankFollow), follows[start : start + 5000])


# --------------------------------------------------------------------------- the services


async def _idle(*_: Any, **__: Any) -> None:
    await asyncio.Event().wait()


def stream_settings(db_url: str, prefix: str, root: Path, front_port: int) -> StreamSettings:
    base = StreamSettings.from_env()
    platform = dataclasses.replace(
        base.platform,
        database_url=db_url,
        redis_prefix=prefix,
        storage_url=(root / "store").as_uri(),
        clickhouse_dsn=f"chdb://{root / 'chdb'}",
        media_signing_key=secrets.token_hex(32),
        metrics_port=0,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
    )
    return dataclasses.replace(
        base, platform=platform, media_base_url=f"http://127.0.0.1:{front_port}/media"
    )


def rank_settings(db_url: str, prefix: str, root: Path, stream_port: int) -> RankSettings:
    base = RankSettings.from_env()
    platform = dataclasses.replace(
        base.platform,
        database_url=db_url,
        redis_prefix=prefix,
        milvus_uri=str(root / "milvus" / "bench.db"),
        stream_addr=f"127.0.0.1:{stream_port}",
        metrics_port=0,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
    )
    # No Triton answering: the rule scorer ranks (as the service falls back to), without
    # a connection attempt to a dead address every ranker_retry_s inside the figures.
    triton = port_open(*base.platform.triton_addr.rsplit(":", 1))
    return dataclasses.replace(
        base, platform=platform, ranker_enabled=base.ranker_enabled and triton
    )


def port_open(host: str, port: str) -> bool:
    import socket

    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> int:
    ensure_dev_keys()
    db_url = (
        make_url(database_url())
        .set(database=f"reels_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    prefix = f"reels-bench-{uuid.uuid4().hex[:8]}:"
    await create_database(db_url)
    redis = None
    stack: list[Callable[[], Awaitable[Any]]] = []
    try:
        await migrate(db_url)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "store").mkdir()
            front_port = free_port()
            stream_app = build_stream(stream_settings(db_url, prefix, root, front_port))
            for loop in (
                "_serve_media",
                "_run_catalog",
                "_run_producer",
                "_run_sink",
                "_run_trending",
                "_run_relay",
            ):
                setattr(stream_app, loop, _idle)  # nothing arrives: no consumers, no jobs
            stream_server = await run_app(stream_app, port=0)
            stack.append(lambda: stream_server.stop(1))
            rs = rank_settings(db_url, prefix, root, stream_server.port)
            rank_app = build_rank(rs)
            rank_app._consume = _idle  # type: ignore[method-assign] # no Kafka consumers
            if hasattr(rank_app, "_run_relay"):
                rank_app._run_relay = _idle  # type: ignore[method-assign] # nothing to relay
            set_key_prefix(prefix)
            redis = redis_client(rs.platform.redis_url)

            index = VectorIndex(
                rs.platform.milvus_uri,
                rs.milvus_collection,
                rs.embedding_dim,
                "COSINE",
                index_type=rs.milvus_index,
                nlist=rs.milvus_nlist,
                nprobe=rs.milvus_nprobe,
            )
            stack.append(lambda: asyncio.to_thread(index.close))
            await asyncio.to_thread(index.ensure_collection)
            d = make_data(args.videos, args.users, args.seed)
            t0 = time.perf_counter()
            await load_catalogs(d, rs, rank_app.sessionmaker, index)
            t1 = time.perf_counter()
            await load_users(d, redis, rank_app.sessionmaker, args.seed, args.watches)
            t2 = time.perf_counter()
            count = await asyncio.to_thread(index.count)
            print(
                f"loaded {len(d.video_ids)} videos ({DIM}-d unit vectors; Milvus holds {count}, "
                f"{rs.milvus_index} nlist {rs.milvus_nlist} nprobe {rs.milvus_nprobe}) in "
                f"{t1 - t0:.0f} s, {len(d.users)} users x {args.watches} watches in "
                f"{t2 - t1:.0f} s"
            )
            print(
                "ranker: "
                + (
                    f"Triton at {rs.platform.triton_addr}"
                    if rs.ranker_enabled
                    else f"no Triton on {rs.platform.triton_addr}: the rule scorer ranks"
                )
            )
            rank_server = await run_app(rank_app, port=0)
            stack.append(lambda: rank_server.stop(1))
            deadline = time.monotonic() + 60
            while not rank_app.vectors.available:
                if time.monotonic() > deadline:
                    print("svc_rank never opened Milvus", file=sys.stderr)
                    return 1
                await asyncio.sleep(0.1)
            return await measure_all(
                args, d, rank_app, rank_server, stream_server, redis, index, stack
            )
    finally:
        for stop in reversed(stack):
            try:
                await stop()
            except Exception as exc:  # noqa: BLE001 - clean up the rest regardless
                print(f"cleanup: {exc!r}", file=sys.stderr)
        if redis is not None:
            await delete_prefix(redis, prefix)
            await redis.aclose()
        await drop_database(db_url)


def _feed_servicer(rank_app: Any) -> Any:
    for _add, servicer, name in rank_app.registrations():
        if name == "reels.v1.FeedService":
            return servicer
    raise RuntimeError("svc_rank registers no FeedService")


async def measure_all(
    args: argparse.Namespace,
    d: Data,
    rank_app: Any,
    rank_server: RunningServer,
    stream_server: RunningServer,
    redis: Any,
    index: VectorIndex,
    stack: list[Callable[[], Awaitable[Any]]],
) -> int:
    feed = _feed_servicer(rank_app)
    rs: RankSettings = rank_app.settings
    users = iter(d.users)

    tokens: dict[str, str] = {}

    def signed_in(user: str) -> None:
        """What the auth interceptor sets for a call with the user's JWT (svc_rank
        forwards the token on its calls to svc_stream)."""
        if user not in tokens:
            tokens[user] = f"Bearer {mint_token(user)}"
        current_user.set(user)
        current_token.set(tokens[user])

    async def get_feed(user: str, cursor: str = "") -> rank_pb2.GetFeedResponse:
        request = rank_pb2.GetFeedRequest(limit=args.limit, cursor=cursor)
        return await feed.GetFeed(request, None)

    # Warm-up: connection pools, catalog caches of what trending/fresh bring.
    for _ in range(args.warmup):
        user = next(users)
        signed_in(user)
        first = await get_feed(user)
        await get_feed(user, first.next_cursor)
    fields_ok = bool(first.items) and all(
        i.video_id
        and i.creator_id
        and i.title
        and i.thumbnail_url
        and i.streaming_url
        and i.duration_seconds > 0
        and i.explanation
        for i in first.items
    )
    names = [rank_pb2.FeedFallback.Name(f) for f in first.fallbacks]
    print(
        f"a first page: {len(first.items)} items, every field filled: {fields_ok}; "
        f"scorer {first.scorer}; fallbacks {names}"
    )

    # Stage timings of each measured miss (FeedPipeline.build's BuiltList.stages_ms).
    stage_ms: dict[str, list[float]] = defaultdict(list)
    recording = False
    build = feed.pipeline.build

    async def build_recorded(*a: Any, **kw: Any) -> Any:
        built = await build(*a, **kw)
        if recording:
            for stage, ms in built.stages_ms.items():
                stage_ms[stage].append(ms)
        return built

    feed.pipeline.build = build_recorded

    # ---------------------------------------------------------------- inside the service
    recording = True
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    miss, hit, bare_search, bare_search_sync, bare_get = [], [], [], [], []
    fallbacks: dict[str, int] = defaultdict(int)
    sizes = []
    measured = []
    for _ in range(args.misses):
        user = next(users)
        signed_in(user)
        ms, page = await timed(lambda u=user: get_feed(u))
        assert not page.cache_hit
        miss.append(ms)
        sizes.append(len(page.items))
        for f in page.fallbacks:
            fallbacks[rank_pb2.FeedFallback.Name(f)] += 1
        ms, page2 = await timed(lambda u=user, c=page.next_cursor: get_feed(u, c))
        assert page2.cache_hit, "the second page was not served from the cache"
        hit.append(ms)
        measured.append(user)
    recording = False
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    # Baselines on the same users: their vectors, the same k, index and filter.
    for user in measured:
        profile = await us.profile(redis, user)
        if profile.vector is None:
            continue
        vec = profile.vector.tolist()
        expr = filter_eq("creator_id", user).replace(" == ", " != ", 1)
        ms, _ = await timed(
            lambda v=vec, e=expr: asyncio.to_thread(index.search, v, rs.similar_k, e)
        )
        bare_search.append(ms)
        t0 = time.perf_counter_ns()
        index.search(vec, rs.similar_k, expr)
        bare_search_sync.append((time.perf_counter_ns() - t0) / 1e6)
        ms, raw = await timed(lambda u=user: redis.get(feed_cache.feed_key(u)))
        if raw is not None:
            bare_get.append(ms)
    print(
        f"\ninside the service (FeedService.GetFeed in-process, limit {args.limit}, "
        f"list of {rs.list_size}; each user's first page, then its second page):"
    )
    m = report("GetFeed cache miss (new ranked list)", miss)
    b = report(f"baseline: bare Milvus top-{rs.similar_k} (thread hop)", bare_search)
    report(f"baseline: bare Milvus top-{rs.similar_k} (blocking)", bare_search_sync)
    print(
        "  where a miss spends its time (median / p95 per stage, ms): "
        + ", ".join(
            f"{stage} {statistics.median(v):.1f}/{np.percentile(v, 95):.1f}"
            for stage, v in stage_ms.items()
        )
    )
    h = report("GetFeed cache hit (next page, cursor)", hit)
    g = report("baseline: bare Redis GET of the cached list", bare_get)
    print(
        f"  miss p95 = {m[95] / b[95]:.1f}x the bare search p95; "
        f"hit p99 = {h[99] / g[99]:.1f}x the bare GET p99; "
        f"mean page {statistics.fmean(sizes):.1f} items; "
        f"fallbacks on misses: {dict(fallbacks) or 'none'}"
    )

    # ---------------------------------------------------------------- through Envoy
    env_figs = await through_envoy(args, users, rank_server, stream_server, stack)

    # ---------------------------------------------------------------- throughput
    print(
        f"\nthroughput of one svc_rank process ({args.concurrency} concurrent callers, "
        f"in-process, {os.cpu_count()} CPUs shared with Postgres, Redis, Milvus Lite):"
    )
    pool = list(users)
    for user in pool[: args.concurrency * 4]:
        signed_in(user)  # tokens minted outside the clock; the rest mint as they go
    # Raw build capacity: the overload gate off, so every miss builds a list.
    gate = feed.builds
    feed.builds = Admission("rank", 0, 0.0)
    miss_rps, miss_fb = await throughput(get_feed, signed_in, pool, args, hits=False)
    feed.builds = gate
    pool = pool[args.concurrency * 4 + int(miss_rps * args.seconds) + 1 :]
    # The measured users' lists have expired by now (60 s TTL): rebuild a hot set
    # outside the clock, so the hit phase times cached pages, not misses.
    hot = measured[: args.concurrency * 4]
    for user in hot:
        signed_in(user)
        await get_feed(user)
    hit_rps, hit_fb = await throughput(get_feed, signed_in, hot, args, hits=True)
    print(
        f"  cache misses: {miss_rps:8.0f} requests/s -> {math.ceil(FLEET_RPS / miss_rps):6d} "
        f"instances for {FLEET_RPS:,} req/s (fallbacks under load: {miss_fb or 'none'})"
    )
    print(
        f"  cache hits:   {hit_rps:8.0f} requests/s -> {math.ceil(FLEET_RPS / hit_rps):6d} "
        f"instances for {FLEET_RPS:,} req/s (misses in the hit phase: "
        f"{hit_fb.get('MISS_IN_HIT_PHASE', 0)})"
    )
    mix = 1 / (args.hit_share / hit_rps + (1 - args.hit_share) / miss_rps)
    print(
        f"  mix of {args.hit_share:.0%} hits (paging through a cached list): {mix:8.0f} "
        f"requests/s -> {math.ceil(FLEET_RPS / mix)} instances"
    )

    over_ok = True
    if args.overload_seconds > 0:
        over_ok = await overload(get_feed, signed_in, pool, miss_rps, args, rs)

    ok_miss, ok_hit = m[95] < GOAL_MISS_P95_MS, h[99] < GOAL_HIT_P99_MS
    print(
        f"\ngoal cache-miss p95 < {GOAL_MISS_P95_MS:g} ms inside the service: "
        f"{'MET' if ok_miss else 'NOT MET'} ({m[95]:.1f} ms)"
    )
    print(
        f"goal cache-hit p99 < {GOAL_HIT_P99_MS:g} ms inside the service: "
        f"{'MET' if ok_hit else 'NOT MET'} ({h[99]:.2f} ms)"
    )
    if env_figs:
        print(
            f"through Envoy (for the record): miss p95 {env_figs['miss'][95]:.1f} ms, "
            f"hit p99 {env_figs['hit'][99]:.2f} ms"
        )
    return 0 if ok_miss and ok_hit and fields_ok and over_ok else 1


async def through_envoy(
    args: argparse.Namespace,
    users: Any,
    rank_server: RunningServer,
    stream_server: RunningServer,
    stack: list[Callable[[], Awaitable[Any]]],
) -> dict[str, dict[str, float]]:
    if args.envoy_calls <= 0:
        print("\nthrough Envoy: skipped (--envoy-calls 0)")
        return {}
    import aiohttp

    from reels_dev.infra.envoy import EnvoySettings, envoy_process

    ports = {name: free_port() for name in DEFAULT_PORTS}
    ports["rank"], ports["stream"] = rank_server.port, stream_server.port
    settings = EnvoySettings(
        listen_port=free_port(),
        admin_port=free_port(),
        service_ports=ports,
        media_port=free_port(),
        upload_http_port=free_port(),
        otlp_port=free_port(),
        rate_limit_tokens=1_000_000,
    )
    log_dir = Path(tempfile.mkdtemp(prefix="bench-envoy-"))
    try:
        proc = envoy_process(
            settings, name="envoy-bench", log_dir=log_dir, config_path=log_dir / "envoy.yaml"
        )
        proc.start()
    except Exception as exc:  # noqa: BLE001 - no envoy binary: say so, measure the rest
        print(f"\nthrough Envoy: not measured ({exc})")
        return {}
    stack.append(lambda: asyncio.to_thread(proc.stop, 5))
    base = f"http://127.0.0.1:{settings.listen_port}/api/v1/reels"
    miss, hit, inside = [], [], []
    async with aiohttp.ClientSession() as http:

        async def get(user: str, cursor: str = "") -> dict[str, Any]:
            params = {"limit": str(args.limit), **({"cursor": cursor} if cursor else {})}
            headers = {"authorization": f"Bearer {mint_token(user)}"}
            async with http.get(base, params=params, headers=headers) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise RuntimeError(f"GET /api/v1/reels: {resp.status} {body}")
                return body

        deadline = time.monotonic() + 30
        while True:  # until Envoy's health checks find svc_rank
            try:
                await get(next(users))
                break
            except (RuntimeError, aiohttp.ClientError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        for _ in range(args.envoy_calls):
            user = next(users)
            ms, page = await timed(lambda u=user: get(u))
            miss.append(ms)
            inside.append(float(page.get("responseTimeMs", 0)))
            cursor = page.get("nextCursor") or page.get("cursor", "")
            ms, page2 = await timed(lambda u=user, c=cursor: get(u, c))
            assert page2.get("cacheHit"), "second page through Envoy was not a cache hit"
            hit.append(ms)
    print(
        "\nthrough Envoy (GET /api/v1/reels on loopback: JWT, JSON transcoding, HTTP/1.1 -> gRPC):"
    )
    figs = {"miss": report("GetFeed cache miss via Envoy", miss)}
    report("  (its responseTimeMs inside the service)", inside)
    figs["hit"] = report("GetFeed cache hit via Envoy", hit)
    return figs


async def throughput(
    get_feed: Callable[..., Awaitable[rank_pb2.GetFeedResponse]],
    signed_in: Callable[[str], None],
    users: list[str],
    args: argparse.Namespace,
    *,
    hits: bool,
) -> tuple[float, dict[str, int]]:
    """Requests/s with ``concurrency`` callers for ``seconds`` (misses: each a new user;
    hits: first pages of users whose list is cached)."""
    pending = iter(users)
    done = 0
    fallbacks: dict[str, int] = defaultdict(int)
    stop_at = time.perf_counter() + args.seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            if hits:
                user = users[done % len(users)]
            else:
                user = next(pending, None)
                if user is None:
                    return
            signed_in(user)
            page = await get_feed(user)
            if hits and not page.cache_hit:
                # The user's list expired (60 s TTL) on a slow machine: a miss, reported.
                fallbacks["MISS_IN_HIT_PHASE"] += 1
            for f in page.fallbacks:
                fallbacks[rank_pb2.FeedFallback.Name(f)] += 1
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(args.concurrency)))
    return done / (time.perf_counter() - t0), dict(fallbacks)


async def open_loop(
    get_feed: Callable[..., Awaitable[rank_pb2.GetFeedResponse]],
    signed_in: Callable[[str], None],
    users: Iterator[str],
    rate: float,
    seconds: float,
) -> tuple[list[float], int, dict[str, int], int]:
    """Cache misses (a new user each) sent at ``rate``/s for ``seconds``, whatever the
    answers' latency (open loop: an overloaded server is not given time to catch up).
    Returns latencies (ms), errors, fallback counts and requests sent."""
    latencies: list[float] = []
    fallbacks: dict[str, int] = defaultdict(int)
    errors = 0

    async def one(user: str) -> None:
        nonlocal errors
        signed_in(user)
        t0 = time.perf_counter()
        try:
            page = await get_feed(user)
        except Exception:  # noqa: BLE001 - any failure is an error of the feed
            errors += 1
            return
        latencies.append((time.perf_counter() - t0) * 1000)
        if not page.items:
            errors += 1  # an empty page under load is a failure too
        for f in page.fallbacks:
            fallbacks[rank_pb2.FeedFallback.Name(f)] += 1

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        user = next(users, None)
        if user is None:
            break
        tasks.append(asyncio.create_task(one(user)))
    await asyncio.gather(*tasks)
    return latencies, errors, dict(fallbacks), len(tasks)


async def overload(
    get_feed: Callable[..., Awaitable[rank_pb2.GetFeedResponse]],
    signed_in: Callable[[str], None],
    pool: list[str],
    sustainable_rps: float,
    args: argparse.Namespace,
    rs: RankSettings,
) -> bool:
    """Issue 14 section 2: cache misses at the sustainable rate (the baseline), then at
    twice it, open loop, with svc_rank's overload gate as configured. Goal: 0 errors
    and a bounded p99 at 2x (the stale list, FEED_FALLBACK_OVERLOAD, takes the excess)."""
    users = iter(pool)
    print(
        f"\noverload (issue 14 section 2): open-loop cache misses, build gate "
        f"{rs.max_concurrent_builds} lists at once, {rs.build_wait_ms:g} ms wait:"
    )
    rows = {}
    for factor in (1.0, 2.0):
        rate = max(1.0, sustainable_rps * factor)
        lat, errs, fb, sent = await open_loop(
            get_feed, signed_in, users, rate, args.overload_seconds
        )
        if not lat:
            print(f"  {factor:g}x: no answers")
            return False
        p = {q: float(np.percentile(lat, q)) for q in (50, 99)}
        rows[factor] = (p, errs)
        over = fb.get("FEED_FALLBACK_OVERLOAD", 0)
        print(
            f"  {factor:g}x sustainable ({rate:6.1f} req/s, {sent} sent): errors {errs}, "
            f"p50 {p[50]:7.1f} ms, p99 {p[99]:7.1f} ms, stale pages {over} "
            f"({over / max(1, sent):.0%})"
        )
    (base, _), (twice, errs2) = rows[1.0], rows[2.0]
    print(
        f"  at 2x: {errs2} errors; p99 {twice[99] / base[99]:.1f}x the p99 at the "
        f"sustainable rate (same run)"
    )
    return errs2 == 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--watches", type=int, default=20, help="watches per user")
    parser.add_argument("--misses", type=int, default=500, help="users measured one by one")
    parser.add_argument("--envoy-calls", type=int, default=200, help="0: skip Envoy")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--limit", type=int, default=20, help="page size")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="each throughput run")
    parser.add_argument("--hit-share", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the measured misses and hits"
    )
    parser.add_argument(
        "--overload-seconds", type=float, default=8.0, help="each overload run (0: skip)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="stop after this (s)")
    a = parser.parse_args()
    a.warmup = max(1, a.warmup)
    needed = a.warmup + a.misses + a.envoy_calls + 1
    if a.users < needed + a.concurrency:
        parser.error(f"--users must be at least {needed + a.concurrency} for these counts")
    try:
        sys.exit(asyncio.run(asyncio.wait_for(main(a), a.timeout)))
    except TimeoutError:
        print(f"bench_feed: stopped after {a.timeout:g} s", file=sys.stderr)
        sys.exit(2)
