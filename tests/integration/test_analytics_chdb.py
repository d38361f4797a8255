"""chDB through reels.analytics: the real embedded ClickHouse engine on a temp path.

chDB hosts one engine path per process, so every test opens the store, uses it and
closes it before the next test opens its own path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reels.analytics import Analytics, default_dsn
from reels.config import PlatformSettings, platform, var_dir


@pytest.fixture
async def analytics(tmp_path: Path) -> AsyncIterator[Analytics]:
    store = Analytics(f"chdb://{tmp_path / 'chdb'}")
    try:
        yield store
    finally:
        await store.aclose()


def test_default_dsn_is_chdb_under_var_dir() -> None:
    assert PlatformSettings.from_env({}).clickhouse_dsn == f"chdb://{var_dir() / 'chdb'}"
    got = PlatformSettings.from_env({"REELS_CLICKHOUSE_DSN": "http://ch.example:8123"})
    assert got.clickhouse_dsn == "http://ch.example:8123"
    assert default_dsn() == platform().clickhouse_dsn


async def test_merge_tree_rows_read_back_through_aggregate(analytics: Analytics) -> None:
    await analytics.command(
        "CREATE TABLE watch_events (video_id String, user_id String, watch_ms UInt32, "
        "ts DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY (video_id, ts)"
    )
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    rows = [(f"v{i % 3}", f"u{i}", 1000 * (i + 1), t0 + dt.timedelta(seconds=i)) for i in range(30)]
    written = await analytics.insert_rows(
        "watch_events", rows, ["video_id", "user_id", "watch_ms", "ts"]
    )
    assert written == 30

    result = await analytics.query_rows(
        "SELECT video_id, count(), sum(watch_ms), uniqExact(user_id) "
        "FROM watch_events GROUP BY video_id ORDER BY video_id"
    )
    expected = []
    for vid in ("v0", "v1", "v2"):
        mine = [r for r in rows if r[0] == vid]
        expected.append((vid, len(mine), sum(r[2] for r in mine), len(mine)))
    assert result == expected


async def test_second_table_is_independent_and_joinable(analytics: Analytics) -> None:
    await analytics.command(
        "CREATE TABLE videos (video_id String, creator_id String) "
        "ENGINE = MergeTree ORDER BY video_id"
    )
    await analytics.command(
        "CREATE TABLE likes (video_id String, user_id String) ENGINE = MergeTree ORDER BY video_id"
    )
    await analytics.insert_rows(
        "videos", [("v1", "c1"), ("v2", "c1"), ("v3", "c2")], ["video_id", "creator_id"]
    )
    await analytics.insert_rows(
        "likes", [("v1", "a"), ("v1", "b"), ("v3", "a")], ["video_id", "user_id"]
    )
    assert await analytics.query_rows("SELECT count() FROM videos") == [(3,)]
    assert await analytics.query_rows("SELECT count() FROM likes") == [(3,)]
    per_creator = await analytics.query_rows(
        "SELECT v.creator_id, count() FROM likes AS l INNER JOIN videos AS v USING video_id "
        "GROUP BY v.creator_id ORDER BY v.creator_id"
    )
    assert per_creator == [("c1", 2), ("c2", 1)]


async def test_parameters_bind_values_server_and_client_side(analytics: Analytics) -> None:
    await analytics.command(
        "CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id"
    )
    hostile = "x'); DROP TABLE t; --"
    await analytics.insert_rows("t", [(1, "a"), (2, "b"), (3, hostile)], ["id", "name"])

    server_side = await analytics.query_rows(
        "SELECT id FROM t WHERE name = {name:String} OR id > {min_id:UInt64} ORDER BY id",
        {"name": "a", "min_id": 2},
    )
    assert server_side == [(1,), (3,)]
    client_side = await analytics.query_rows(
        "SELECT id FROM t WHERE name = %(name)s", {"name": hostile}
    )
    assert client_side == [(3,)]
    assert await analytics.command("SELECT count() FROM t") == 3


async def test_data_survives_close_and_reopen_of_the_same_path(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'chdb'}"
    first = Analytics(dsn)
    await first.command("CREATE TABLE k (id UInt64) ENGINE = MergeTree ORDER BY id")
    await first.insert_rows("k", [(i,) for i in range(100)], ["id"])
    await first.aclose()

    second = Analytics(dsn)
    try:
        assert await second.query_rows("SELECT count(), max(id) FROM k") == [(100, 99)]
    finally:
        await second.aclose()


async def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = Analytics(f"chdb://{tmp_path / 'chdb'}")
    store.close()
    with pytest.raises(RuntimeError):
        await store.query_rows("SELECT 1")
