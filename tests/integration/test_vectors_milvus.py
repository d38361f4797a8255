"""Milvus Lite 2.5 (the real C++ core) through reels.vectors, on a temp db file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from reels.vectors import VectorIndex, filter_eq

DIM = 256
N = 1000


def lite_servers_for(db: Path) -> list[str]:
    """Command lines of running milvus-lite server processes serving ``db``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended while we looked
            continue
        line = " ".join(a.decode(errors="replace") for a in args)
        if "milvus_lite/lib/milvus" in line and str(db) in line:
            found.append(line)
    return found


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rng = np.random.default_rng(42)
    x = rng.normal(size=(N, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("milvus") / "reels.db"


@pytest.fixture(scope="module")
def index(db_path: Path, vectors: np.ndarray) -> Iterator[VectorIndex]:
    idx = VectorIndex(str(db_path), "videos", DIM)
    idx.ensure_collection()
    idx.upsert(
        {"id": f"v{i:04d}", "vector": vectors[i], "creator_id": f"c{i % 10}", "published_at": i}
        for i in range(N)
    )
    yield idx
    idx.close()


async def test_thousand_vectors_are_counted(index: VectorIndex) -> None:
    assert await index.acount() == N


async def test_stored_vector_comes_back_first_with_cosine_one(
    index: VectorIndex, vectors: np.ndarray
) -> None:
    for i in (0, 417, 999):
        hits = await index.asearch(vectors[i].tolist(), limit=10)
        assert len(hits) == 10
        assert hits[0][0] == f"v{i:04d}"
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
        assert all(hits[k][1] >= hits[k + 1][1] for k in range(9))


async def test_search_matches_brute_force_top10(index: VectorIndex, vectors: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    q = rng.normal(size=DIM).astype(np.float32)
    q /= np.linalg.norm(q)
    expected = [f"v{i:04d}" for i in np.argsort(-(vectors @ q))[:10]]
    assert [h[0] for h in await index.asearch(q.tolist(), limit=10)] == expected


async def test_filter_by_creator_returns_only_that_creator(
    index: VectorIndex, vectors: np.ndarray
) -> None:
    hits = await index.asearch(vectors[3].tolist(), limit=50, filter=filter_eq("creator_id", "c7"))
    assert len(hits) == 50
    assert all(int(vid[1:]) % 10 == 7 for vid, _ in hits)
    # v0003 belongs to c3, so it must be filtered out despite being the exact match.
    assert "v0003" not in {vid for vid, _ in hits}

    newer = await index.asearch(vectors[3].tolist(), limit=5, filter="published_at >= 990")
    assert {vid for vid, _ in newer} <= {f"v{i:04d}" for i in range(990, 1000)}


async def test_upsert_replaces_instead_of_duplicating(
    index: VectorIndex, vectors: np.ndarray
) -> None:
    await index.aupsert(
        [{"id": "v0010", "vector": vectors[11], "creator_id": "c0", "published_at": 10}]
    )
    assert await index.acount() == N
    hits = await index.asearch(vectors[11].tolist(), limit=2)
    assert {vid for vid, _ in hits} == {"v0010", "v0011"}
    await index.aupsert(
        [{"id": "v0010", "vector": vectors[10], "creator_id": "c0", "published_at": 10}]
    )


async def test_delete_removes_from_search_and_count(
    index: VectorIndex, vectors: np.ndarray
) -> None:
    assert await index.adelete(["v0500", "v0501"]) == 2
    assert await index.acount() == N - 2
    hits = await index.asearch(vectors[500].tolist(), limit=10)
    assert "v0500" not in {vid for vid, _ in hits}
    assert hits[0][1] < 0.9


def test_wrong_dimension_is_rejected(index: VectorIndex) -> None:
    with pytest.raises(ValueError, match="dims"):
        index.upsert([{"id": "bad", "vector": [0.1] * (DIM - 1)}])


def test_long_or_odd_db_names_are_rejected_before_starting_milvus(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="36"):
        VectorIndex(str(tmp_path / ("x" * 34 + ".db")), "videos", 8)
    with pytest.raises(ValueError):
        VectorIndex(str(tmp_path / "my reels.db"), "videos", 8)


def test_close_stops_the_lite_server_and_data_persists(tmp_path: Path) -> None:
    db = tmp_path / "persist.db"
    idx = VectorIndex(str(db), "videos", 4)
    idx.ensure_collection()
    idx.upsert([{"id": "a", "vector": [1, 0, 0, 0]}, {"id": "b", "vector": [0, 1, 0, 0]}])
    assert len(lite_servers_for(db)) == 1
    idx.close()
    assert lite_servers_for(db) == []

    with VectorIndex(str(db), "videos", 4) as again:
        again.ensure_collection()
        assert again.count() == 2
        assert again.search([0, 1, 0, 0], limit=1)[0][0] == "b"
    assert lite_servers_for(db) == []


def test_ivf_flat_index_finds_the_stored_vector(tmp_path: Path, vectors: np.ndarray) -> None:
    with VectorIndex(str(tmp_path / "ivf.db"), "ivf", DIM, index_type="IVF_FLAT", nlist=16) as idx:
        idx.ensure_collection()
        idx.upsert({"id": f"v{i}", "vector": vectors[i]} for i in range(N))
        hits = idx.search(vectors[123], limit=3)
        assert hits[0][0] == "v123"
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
