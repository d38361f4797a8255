"""Model operations (issue 13) on a real tritonserver and a real svc_rank: hot reload of
the ranker under continuous feed traffic, rollback by version, a version that fails
to load, and Triton's own latency quantiles.

Triton serves a throwaway copy of the repository (the built ranker as version 1) in
explicit model-control mode; the operator (reels_dev/models.py) publishes versions
there the way ``make models`` or a training run would (a new ``ranker/<N>/``) and
switches traffic with Triton's load RPC, without restarting Triton or svc_rank.
The tests run in file order: each starts from the state the previous one left.

svc_rank runs one experiment whose arms both keep the service's ranker (no pinned
version), so every GetFeed user is exposed once and the exposure event
(``feed.exposures``, read from svc_rank's outbox) must name the ranker version that
actually served that user's page, the same as the response's ``scorer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest
from reels.v1 import events_pb2
from sqlalchemy import text

from reels_dev.infra.process import ManagedProcess, free_port
from reels_dev.infra.triton import MODEL_REPOSITORY, triton_process
from reels_dev.models import LoadFailed, Operator, failed, main, summarize
from svc_rank.experiments.exposure import FEED_EXPOSURES
from tests.integration.test_feed import FeedHarness, open_harness, unit
from tests.polling import eventually

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

DIM = 256
# Both arms keep the service's ranker ("" pin): the event cannot know the version from
# the arm, only from what Triton answered.
EXPERIMENT = {
    "experiments": [
        {
            "experiment_id": "ops-served",
            "phase": 1,
            "salt": "ops-served/p1",
            "control": "control",
            "arms": [
                {"name": "control", "share_bp": 5000},
                {"name": "treatment", "share_bp": 5000, "config": {"weights": {"engagement": 0.6}}},
            ],
        }
    ]
}


@dataclass
class Triton:
    proc: ManagedProcess
    repository: Path
    grpc_port: int
    http_port: int
    metrics_port: int

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def publish_version(repository: Path, model: str, source: int, version: int) -> Path:
    """A new version directory, as a build would publish it: a copy of ``source``
    with its own build_info (same ONNX: the served scores do not change)."""
    src, dst = repository / model / str(source), repository / model / str(version)
    tmp = dst.with_name(f".{version}.tmp")
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    info = json.loads((tmp / "build_info.json").read_text())
    info["version"] = str(version)
    (tmp / "build_info.json").write_text(json.dumps(info, indent=2))
    tmp.rename(dst)  # whole, or not there: Triton never sees half a version
    return dst


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Triton]:
    if not (MODEL_REPOSITORY / "ranker" / "1" / "model.onnx").exists():
        pytest.fail("the ranker is not built: run `bash scripts/models.sh`")
    repository = tmp_path_factory.mktemp("model-repository")
    shutil.copytree(
        MODEL_REPOSITORY / "ranker",
        repository / "ranker",
        ignore=shutil.ignore_patterns("__pycache__", "[2-9]*"),
    )
    # Every version's model.py loads the repository's shared onnxruntime set-up.
    shutil.copy2(MODEL_REPOSITORY / "reels_onnx.py", repository / "reels_onnx.py")
    http, grpc_port, metrics = free_port(), free_port(), free_port()
    proc = triton_process(
        http,
        grpc_port,
        metrics,
        model_repository=repository,
        models=["ranker"],
        log_dir=tmp_path_factory.mktemp("triton-log"),
    )
    proc.start()
    try:
        yield Triton(proc, repository, grpc_port, http, metrics)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def operator(triton: Triton) -> Iterator[Operator]:
    op = Operator(triton.addr, triton.repository)
    try:
        yield op
    finally:
        op.close()


@pytest.fixture(scope="module")
async def harness(
    kafka: TansuBroker, triton: Triton, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FeedHarness]:
    # A generous ranker deadline: this proves there is no gap in serving during a
    # switch, not the 30 ms budget on a shared 2-core CI machine.
    root = tmp_path_factory.mktemp("feed")
    (root / "experiments.json").write_text(json.dumps(EXPERIMENT))
    await kafka.create_topics(FEED_EXPOSURES.name)
    async with open_harness(
        kafka,
        root,
        triton_addr=triton.addr,
        ranker_timeout_s=2.0,
        experiments=str(root / "experiments.json"),
    ) as harness:
        rng = np.random.default_rng(13)
        ids = []
        for i in range(12):
            vid = f"mo{i:02d}-{uuid.uuid4().hex[:6]}"
            await harness.publish(vid, f"creator-{i % 6}", unit(rng.normal(size=DIM)), ["misc"])
            ids.append(vid)
        await harness.wait_published(ids)
        ranker = harness.rank.ranker
        assert ranker is not None

        async def warm() -> bool:
            return ranker.warm

        await eventually(warm, 60, "svc_rank's ranker never warmed up on Triton")
        yield harness


async def exposures(harness: FeedHarness) -> dict[str, events_pb2.FeedExposure]:
    """Every exposure svc_rank wrote to its outbox so far, by user."""
    assert harness.rank.recorder is not None, "svc_rank runs no experiment"
    await harness.rank.recorder.drain()  # GetFeed records them in the background
    async with harness.rank.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT payload FROM outbox WHERE topic = :t"), {"t": FEED_EXPOSURES.name}
        )
        events = [FEED_EXPOSURES.parse(bytes(r.payload)) for r in rows]
    assert all(isinstance(e, events_pb2.FeedExposure) for e in events)
    return {e.user_id: e for e in events}  # type: ignore[union-attr]


@dataclass
class Traffic:
    """GetFeed calls in a loop (each for a new user: every call ranks, none is a cache
    hit), recording what ranked each response, for which user, and every failed call."""

    harness: FeedHarness
    scorers: list[tuple[float, float, str]] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def loop(self, worker: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            started = time.monotonic()
            user = f"ops-{worker}-{i}-{uuid.uuid4().hex[:4]}"
            try:
                reply = await self.harness.get_feed(user)
            except grpc.aio.AioRpcError as exc:
                self.errors.append(f"{exc.code().name}: {exc.details()}")
                continue
            if not reply.items:
                self.errors.append("empty feed")
            self.scorers.append((started, time.monotonic(), reply.scorer))
            self.users[user] = reply.scorer

    def count(self, scorer: str, after: float = 0.0) -> int:
        return sum(1 for s, _, name in self.scorers if name == scorer and s >= after)


@contextlib.asynccontextmanager
async def traffic(harness: FeedHarness, workers: int = 3) -> AsyncIterator[Traffic]:
    t = Traffic(harness)
    tasks = [asyncio.create_task(t.loop(w)) for w in range(workers)]
    try:
        yield t
    finally:
        t.stop.set()
        await asyncio.gather(*tasks)


async def test_loading_v2_under_feed_traffic_switches_versions_with_no_failed_request(
    harness: FeedHarness, triton: Triton, operator: Operator
) -> None:
    assert operator.serving("ranker") == ["1"]
    async with traffic(harness) as t:

        async def on_v1() -> bool:
            return t.count("ranker:1") >= 15

        await eventually(on_v1, 60, "the feed is not ranked by ranker v1")
        publish_version(triton.repository, "ranker", 1, 2)
        states = await asyncio.to_thread(operator.load, "ranker")
        assert any(s.version == "2" and s.state == "READY" for s in states), states

        async def v1_gone() -> bool:
            return operator.serving("ranker") == ["2"] and all(
                s.state != "UNLOADING" for s in operator.status("ranker")
            )

        await eventually(v1_gone, 30, "ranker v1 was not unloaded")
        switched = time.monotonic()

        async def on_v2() -> bool:
            return t.count("ranker:2", after=switched) >= 15

        await eventually(on_v2, 60, "the feed is not ranked by ranker v2 after the load")
    names = [name for _, _, name in t.scorers]
    print(f"{len(names)} GetFeed calls, {names.count('ranker:1')} on v1, "
          f"{names.count('ranker:2')} on v2, retries {harness.rank.ranker.retries}")  # fmt: skip
    assert t.errors == []
    # No gap: every response was ranked by a ranker version (no rule-scorer fallback) ...
    assert set(names) == {"ranker:1", "ranker:2"}, set(names)
    # ... v1 first, v2 last, and nothing answered by v1 once it was unloaded.
    assert names[0] == "ranker:1" and names[-1] == "ranker:2"
    assert not [s for s, _, name in t.scorers if name == "ranker:1" and s >= switched]
    # Each user's exposure names the version that served that user's page (the arms
    # pin none), and the arm that served it.
    logged = await exposures(harness)
    assert set(t.users) <= set(logged)
    served = {u: logged[u].ranker_model_version for u in t.users}
    assert served == t.users
    assert {logged[u].arm for u in t.users} == {"control", "treatment"}


async def test_rollback_by_version_serves_the_older_version_again(
    harness: FeedHarness, operator: Operator
) -> None:
    states = await asyncio.to_thread(operator.rollback, "ranker", 1)
    assert [s.version for s in states if s.state == "READY"] == ["1"]
    back = f"rollback-{uuid.uuid4().hex[:6]}"
    reply = await harness.get_feed(back)
    assert reply.scorer == "ranker:1"
    # and forward again: load without a version serves the newest directory.
    await asyncio.to_thread(operator.load, "ranker")
    forward = f"forward-{uuid.uuid4().hex[:6]}"
    reply = await harness.get_feed(forward)
    assert reply.scorer == "ranker:2"
    # The exposure events follow the served version, not the arms' (empty) pin.
    logged = await exposures(harness)
    assert logged[back].ranker_model_version == "ranker:1"
    assert logged[forward].ranker_model_version == "ranker:2"
    assert logged[back].experiment_id == logged[forward].experiment_id == "ops-served"


async def test_a_version_that_fails_to_load_leaves_the_previous_one_serving_and_says_why(
    harness: FeedHarness, triton: Triton, operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = publish_version(triton.repository, "ranker", 2, 3)
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    async with traffic(harness, workers=2) as t:
        with pytest.raises(LoadFailed) as info:
            await asyncio.to_thread(operator.load, "ranker")
        after = time.monotonic()

        async def some_after() -> bool:
            return t.count("ranker:2", after=after) >= 5

        await eventually(some_after, 30, "v2 stopped answering after the failed load")
    assert t.errors == []
    assert {name for _, _, name in t.scorers} == {"ranker:2"}
    assert "version 3" in str(info.value)
    assert operator.serving("ranker") == ["2"]
    (v3,) = [s for s in failed(operator.status("ranker")) if s.version == "3"]
    assert v3.state == "UNAVAILABLE" and "Protobuf parsing failed" in v3.reason
    assert "ranker v2" in summarize(operator.status()) and "Protobuf" in summarize(
        operator.status()
    )
    # The operator command says what serves and why v3 does not.
    capsys.readouterr()
    code = await asyncio.to_thread(
        main, ["--addr", triton.addr, "--repository", str(triton.repository), "status"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "ranker v2: READY" in out and "ranker v3: UNAVAILABLE" in out and "Protobuf" in out
    code = await asyncio.to_thread(
        main, ["--addr", triton.addr, "--repository", str(triton.repository), "load", "ranker"]
    )
    captured = capsys.readouterr()
    assert code == 1 and "still serving v2" in captured.out, captured
    # `make status` (reels_dev.status) shows it on Triton's row.
    from reels_dev.status import _triton

    ok, detail = _triton(triton.http_port)
    assert not ok and "ranker v2" in detail and "v3: UNAVAILABLE" in detail, detail


async def test_triton_reports_per_model_latency_quantiles(triton: Triton) -> None:
    """``--metrics-config summary_latencies=true``: p50/p95/p99 per model and version."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{triton.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    quantiles = {}
    for line in text.splitlines():
        if line.startswith("nv_inference_request_summary_us{") and 'version="2"' in line:
            labels, value = line.rsplit(" ", 1)
            if 'model="ranker"' in labels and "quantile=" in labels:
                q = labels.split('quantile="')[1].split('"')[0]
                quantiles[q] = float(value)
    assert {"0.5", "0.95", "0.99"} <= set(quantiles), text[:2000]
    assert 0 < quantiles["0.5"] <= quantiles["0.95"] <= quantiles["0.99"]
    print("ranker v2 request p50/p95/p99 (us):", [quantiles[q] for q in ("0.5", "0.95", "0.99")])
