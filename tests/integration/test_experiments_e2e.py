"""Experiments end to end: config file -> GetFeed -> exposure (outbox -> Kafka
``feed.exposures`` -> svc_stream's sink -> ClickHouse ``feed_exposures``) -> watches
and likes through svc_stream -> ``GetExperimentResults``.

svc_rank and svc_stream run in-process on real Postgres, Redis, Tansu, Milvus Lite
and chDB, as in test_feed.py. svc_rank reads its experiments from
``REELS_RANK_EXPERIMENTS`` (here a JSON file). Users request several pages; each one is
logged exactly once per phase; the results RPC counts exposures per arm exactly as the
assignment function splits the users, with the outcomes recorded after exposure.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest
from reels.v1 import rank_pb2, stream_pb2
from sqlalchemy import text

from reels import topics
from reels.cache import delete_prefix, redis_client
from reels.db.engine import create_database, drop_database
from reels.db.migrate import migrate
from reels.server import run_app
from reels_dev.keys import ensure_dev_keys
from svc_rank.app import build as build_rank
from svc_rank.experiments import Experiments
from svc_stream.app import build as build_stream
from tests.fixtures.infra import _test_database_url
from tests.fixtures.stream import stream_settings
from tests.integration.test_feed import DIM, FeedHarness, rank_settings, unit
from tests.polling import eventually, eventually_value

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

TOPICS = (
    topics.VIDEO_EVENTS.name,
    topics.ENGAGEMENT_EVENTS.name,
    topics.VIDEO_PUBLISHED.name,
    topics.FEED_EXPOSURES.name,
)
EXPERIMENT = {
    "experiments": [
        {
            "experiment_id": "e2e-weights",
            "phase": 1,
            "salt": "e2e-weights/p1",
            "control": "control",
            "arms": [
                {"name": "control", "share_bp": 5000},
                {
                    "name": "treatment",
                    "share_bp": 5000,
                    "config": {
                        "weights": {"completion": 0.1, "engagement": 0.6},
                        "exploration_share": 0.2,
                    },
                },
            ],
        }
    ]
}
USERS = [f"exp-user-{i:02d}" for i in range(24)]


@pytest.fixture(scope="module")
async def harness(
    kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FeedHarness]:
    ensure_dev_keys()
    url = _test_database_url()
    await create_database(url)
    await migrate(url)
    prefix = f"reels-test-{uuid.uuid4().hex[:8]}:"
    await kafka.create_topics(*TOPICS)
    root = tmp_path_factory.mktemp("experiments")
    config = root / "experiments.json"
    config.write_text(json.dumps(EXPERIMENT))
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
    rank_app = build_rank(
        rank_settings(
            database_url=url,
            kafka_bootstrap=kafka.bootstrap,
            redis_prefix=prefix,
            milvus_path=root / "milvus" / "exp.db",
            stream_addr=f"127.0.0.1:{stream_server.port}",
            experiments=str(config),
        )
    )
    rank_server = await run_app(rank_app, port=0)
    h = FeedHarness(
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
        owners = (rank_app.catalog, stream_app.catalog)
        joined = all(o.active_consumer and o.active_consumer.assigned.is_set() for o in owners)
        sink = stream_app.sink_consumer
        return joined and sink is not None and sink.assigned.is_set()

    try:
        await eventually(ready, 60, "consumers did not join")
        rng = np.random.default_rng(11)
        ids = []
        for i in range(6):
            vid = f"x{i:02d}-{uuid.uuid4().hex[:6]}"
            await h.publish(vid, f"exp-creator-{i % 3}", unit(rng.normal(size=DIM)), ["misc"])
            ids.append(vid)
        await h.wait_published(ids)
        yield h
    finally:
        await h.channel.close()
        await h.stream_channel.close()
        await rank_server.stop(1.0)
        await stream_server.stop(1.0)
        redis = redis_client()
        await delete_prefix(redis, prefix)
        await redis.aclose()
        await drop_database(url)


async def _exposure_outbox_users(h: FeedHarness) -> list[str]:
    async with h.rank.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT key FROM outbox WHERE topic = :t"), {"t": topics.FEED_EXPOSURES.name}
        )
        return [bytes(r.key).decode() for r in rows]


async def test_exposures_once_per_user_and_results_by_arm(harness: FeedHarness) -> None:
    h = harness
    experiments = Experiments.from_dict(EXPERIMENT)
    assigned = {u: experiments.assignment(u) for u in USERS}
    assert all(a is not None for a in assigned.values())  # 100 % enrolled
    arm_of = {u: a.arm.name for u, a in assigned.items() if a is not None}
    expected = Counter(arm_of.values())
    assert set(expected) == {"control", "treatment"}  # both arms have users

    # Every user: page 1, page 1 again (cache hit), page 2 through the cursor.
    for user in USERS:
        first = await h.get_feed(user, limit=3)
        assert first.items, "an enrolled user got an empty page"
        assert first.experiment == f"e2e-weights:1:{arm_of[user]}"
        again = await h.get_feed(user, limit=3)
        assert again.cache_hit
        await h.get_feed(user, limit=3, cursor=first.cursor)
    # A forced arm is served, but is not randomised traffic: never logged.
    forced = await h.feed.GetFeed(
        rank_pb2.GetFeedRequest(limit=3, experiment="treatment"),
        metadata=h.auth("exp-forced-user"),
        timeout=30,
    )
    assert forced.items and forced.experiment == "e2e-weights:1:treatment"
    recorder = h.rank.recorder
    assert recorder is not None
    await recorder.drain()
    assert recorder.recorded == len(USERS)
    keys = await _exposure_outbox_users(h)
    assert sorted(keys) == sorted(USERS)  # one outbox row per user, none for forced traffic

    # Outcomes after exposure: every third user watches one video to completion
    # (30 s: watch 0+3+6+9+12 across the five events), every sixth likes it.
    video = next(iter(h.creators))
    watchers = USERS[::3]
    for user in watchers:
        await h.watch(user, video)
    likers = USERS[::6]
    for user in likers:
        await h.stream_stub.LikeVideo(
            stream_pb2.LikeVideoRequest(video_id=video), metadata=h.auth(user), timeout=10
        )
    watch_by_arm = Counter(arm_of[u] for u in watchers)
    likes_by_arm = Counter(arm_of[u] for u in likers)

    def metrics(arm: rank_pb2.ExperimentArmResult) -> dict[str, rank_pb2.ArmMetric]:
        return {m.name: m for m in arm.metrics}

    async def settled() -> rank_pb2.GetExperimentResultsResponse | None:
        try:
            reply = await h.feed.GetExperimentResults(
                rank_pb2.GetExperimentResultsRequest(experiment_id="e2e-weights"),
                metadata=h.auth("exp-analyst"),
                timeout=30,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                return None
            raise
        arms = {a.name: a for a in reply.arms}
        for name, arm in arms.items():
            m = metrics(arm)
            if arm.exposures != expected[name]:
                return None
            total_watch = m["watch_seconds_per_user"].value * arm.exposures
            if round(total_watch) != 30 * watch_by_arm[name]:
                return None
            if likes_by_arm[name] and not m["likes_per_impression"].value > 0:
                return None
        return reply

    reply = await eventually_value(settled, 60, "exposures and outcomes did not reach results")
    assert reply.experiment_id == "e2e-weights" and reply.phase == 1
    assert reply.salt == "e2e-weights/p1" and reply.control == "control"
    arms = {a.name: a for a in reply.arms}
    assert [a.name for a in reply.arms] == ["control", "treatment"]
    assert {n: a.exposures for n, a in arms.items()} == dict(expected)
    assert all(a.share_bp == 5000 for a in reply.arms)
    for name, arm in arms.items():
        m = metrics(arm)
        assert set(m) == {
            "watch_seconds_per_user",
            "watch_seconds_per_impression",
            "completion_rate",
            "likes_per_impression",
        }
        if watch_by_arm[name]:
            # Each watcher played one item and completed it.
            assert m["completion_rate"].value == pytest.approx(1.0)
            assert m["watch_seconds_per_impression"].value == pytest.approx(30.0)
        if name == "control":
            assert not arm.metrics[0].HasField("vs_control")
        else:
            c = m["watch_seconds_per_user"].vs_control
            assert c.ci_low <= c.diff <= c.ci_high
            assert c.control_mean == pytest.approx(m["watch_seconds_per_user"].value - c.diff)
    # SRM: exactly the configured split's sampling noise, not flagged.
    assert reply.srm.df == 1
    assert 0.001 < reply.srm.p_value <= 1.0 and not reply.srm.flagged
    assert dict(reply.srm.expected) == pytest.approx({"control": 12.0, "treatment": 12.0})

    # Requests after the results are in log nothing new (the phase is done for them).
    await h.get_feed(USERS[0], limit=3)
    await recorder.drain()
    assert recorder.recorded == len(USERS)

    # CUPED on request (nobody watched before exposure: theta is 0, values unchanged).
    cuped = await h.feed.GetExperimentResults(
        rank_pb2.GetExperimentResultsRequest(experiment_id="e2e-weights", cuped=True),
        metadata=h.auth("exp-analyst"),
        timeout=30,
    )
    assert cuped.cuped and "watch_seconds_per_user" in cuped.cuped_theta


async def test_an_unknown_experiment_is_not_found(harness: FeedHarness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await harness.feed.GetExperimentResults(
            rank_pb2.GetExperimentResultsRequest(experiment_id="no-such"),
            metadata=harness.auth("exp-analyst"),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_results_route_is_annotated() -> None:
    desc = rank_pb2.DESCRIPTOR.services_by_name["FeedService"].methods_by_name[
        "GetExperimentResults"
    ]
    from google.api import annotations_pb2

    rule = desc.GetOptions().Extensions[annotations_pb2.http]
    assert rule.get == "/api/v1/experiments/{experiment_id}/results"


def test_the_experiments_setting_loads_yaml(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT))
    assert Experiments.load(path) == Experiments.from_dict(EXPERIMENT)
