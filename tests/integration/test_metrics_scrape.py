"""Prometheus can scrape a service: a real App served by run_app with REELS_METRICS_PORT.

svc_rank is started in this process exactly as ``python -m svc_rank`` starts it (only
the port numbers differ); its /metrics is fetched over HTTP and parsed with
prometheus_client's text parser, as Prometheus would. The key metrics of
reels/metrics.py are then recorded through the same recorders the services call, and
the next scrape must show each under the Prometheus name alerts.yml uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from reels.v1 import rank_pb2, rank_pb2_grpc

from reels import metrics
from reels.config import AuthConfig, PlatformSettings, ServerSettings
from reels.server import RunningServer, run_app
from reels.telemetry import stop_metrics_servers
from reels_dev.infra.process import free_port
from svc_rank.app import build
from svc_rank.settings import Settings


@pytest.fixture
async def rank_with_metrics(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, int]]:
    metrics_port = free_port()
    platform = dataclasses.replace(
        PlatformSettings(),
        metrics_port=metrics_port,
        otel_file=tmp_path / "spans.jsonl",
        stream_addr=f"127.0.0.1:{free_port()}",  # nothing there: GetFeed fails fast
        auth=AuthConfig(required=False),
    )
    app = build(Settings(server=ServerSettings(port=0), platform=platform))
    running = await run_app(app, port=0)
    try:
        yield running, metrics_port
    finally:
        await running.stop(0.5)
        stop_metrics_servers()


async def _scrape(port: int) -> dict[str, object]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["content-type"].startswith("text/plain")
            text = await resp.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


async def test_prometheus_scrapes_a_running_service(
    rank_with_metrics: tuple[RunningServer, int],
) -> None:
    running, metrics_port = rank_with_metrics
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await rank_pb2_grpc.FeedServiceStub(channel).GetFeed(
                rank_pb2.GetFeedRequest(), timeout=5
            )

    families = await _scrape(metrics_port)
    # The RPC just served, under its translated name (unit suffix), as a histogram.
    rpc = families["rpc_server_duration_milliseconds"]
    assert rpc.type == "histogram"  # type: ignore[attr-defined]
    samples = rpc.samples  # type: ignore[attr-defined]
    assert any(
        s.name == "rpc_server_duration_milliseconds_count"
        and s.labels.get("rpc_method", "").endswith("FeedService/GetFeed")
        and s.value >= 1
        for s in samples
    ), samples
    assert "target_info" in families  # service.name and friends, for joins

    # The key metrics, recorded as the services record them.
    metrics.upload_duration.record(12.5)
    metrics.record_transcode_attempt(metrics.SUCCEEDED, 42.0)
    metrics.record_transcode_attempt(metrics.FAILED, 3.0)
    metrics.transcode_queue_depth.set(7)
    metrics.record_player_event(1, 0.0, 30.0, "360p")  # watch_start
    metrics.record_player_event(3, 15.0, 30.0, "360p")  # progress_50
    metrics.feed_ranking_latency.record(12.0, {"cache_hit": "false"})
    metrics.deep_model_inference_duration.record(3.0, {"outcome": "ok"})
    metrics.feed_fallbacks.add(1, {"fallback": "rule_scorer"})
    await asyncio.sleep(0)
    families = await _scrape(metrics_port)
    kinds = {"histogram": "histogram", "counter": "counter", "gauge": "gauge"}
    for exported in metrics.EXPORTED:
        family = families.get(exported.prometheus)
        assert family is not None, f"{exported.name} not scraped as {exported.prometheus}"
        assert family.type == kinds[exported.kind], exported  # type: ignore[attr-defined]
        names = {s.name for s in family.samples}  # type: ignore[attr-defined]
        assert set(exported.series) <= names, (exported, names)

    jobs = families["video_transcode_jobs"]
    outcomes = {
        s.labels["outcome"]: s.value
        for s in jobs.samples  # type: ignore[attr-defined]
        if s.name == "video_transcode_jobs_total"
    }
    assert outcomes[metrics.SUCCEEDED] >= 1 and outcomes[metrics.FAILED] >= 1
    starts = families["playback_rendition_starts"]
    assert any(s.labels.get("rendition") == "360p" for s in starts.samples)  # type: ignore[attr-defined]
    completion = families["watch_completion_rate_distribution"]
    buckets = {
        s.labels["le"]
        for s in completion.samples  # type: ignore[attr-defined]
        if s.name.endswith("_bucket")
    }
    assert {"0.5", "0.6", "1.0", "+Inf"} <= buckets  # P50 is derivable at 10 % steps
    assert families["video_transcode_queue_depth"].samples[0].value == 7  # type: ignore[attr-defined]
