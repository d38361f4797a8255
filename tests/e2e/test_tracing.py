"""One upload, one trace: Envoy → svc_upload (tus) → outbox relay → Kafka → svc_transcode job
→ UpdateVideoStatus → video.published → svc_stream's catalog.

The whole mesh runs as processes behind Envoy (tests/fixtures/mesh.py) and exports spans
over OTLP to the sink, which writes them to a JSON-lines file. The client (tuspy, as a
browser's tus-js-client would) sends a ``traceparent``; Envoy continues it, the tus
endpoint's span (aiohttp instrumentation) is Envoy's child, the completing PATCH stores
the context with the outbox row, the relay's PRODUCER span and each consumer's CONSUMER
span carry it over Kafka, and the transcode job keeps it in its row.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from pathlib import Path

import aiohttp
import pytest
from tusclient.client import TusClient

from reels import topics
from reels_dev.infra.envoy import EnvoySettings
from reels_dev.infra.otlp_sink import read_spans
from reels_dev.keys import mint_token
from tests.fixtures.mesh import Mesh
from tests.media import make_clip
from tests.polling import eventually_value
from tests.tus import RecordingUploader

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/setup.sh)"
)

# OTLP span kinds (opentelemetry.proto.trace.v1.Span.SpanKind).
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5


async def test_one_upload_is_one_trace_from_envoy_to_the_catalog(
    envoy: EnvoySettings, mesh: Mesh, tmp_path: Path
) -> None:
    clip = await make_clip(tmp_path / "traced.mp4", width=360, height=640, seconds=2)
    trace_id = secrets.token_hex(16)
    client_span = secrets.token_hex(8)
    base = f"http://127.0.0.1:{envoy.listen_port}"
    token = mint_token("trace-creator")
    client = TusClient(
        f"{base}/api/v1/uploads/tus/",
        headers={
            "Authorization": f"Bearer {token}",
            "traceparent": f"00-{trace_id}-{client_span}-01",
        },
    )
    uploader = RecordingUploader(
        file_path=str(clip),
        client=client,
        chunk_size=64 * 1024,
        metadata={"filename": "traced.mp4", "title": "One trace", "hashtags": "e2e"},
    )
    await asyncio.to_thread(uploader.upload)
    assert uploader.video_id
    video_id = uploader.video_id
    auth = {"authorization": f"Bearer {token}"}

    async with aiohttp.ClientSession() as http:

        async def published() -> bool:
            async with http.get(f"{base}/api/v1/reels/{video_id}/status", headers=auth) as r:
                body = await r.json(content_type=None)
            assert body.get("status") != "VIDEO_STATUS_FAILED", body
            return body.get("status") == "VIDEO_STATUS_PUBLISHED"

        async def in_catalog() -> bool:
            async with http.get(f"{base}/api/v1/reels/{video_id}/playback", headers=auth) as r:
                return r.status == 200

        await eventually_value(published, 120, f"video {video_id} published")
        await eventually_value(in_catalog, 60, f"video {video_id} in svc_stream's catalog")

    def key(span: dict[str, object]) -> tuple[object, object, object]:
        return span["service"], span["name"], span["kind"]

    # (service, name, kind); None: any. Each topic's owner relays its own outbox rows,
    # so the PRODUCER span belongs to the service that wrote the event.
    wanted = {
        ("svc_upload", f"{topics.VIDEO_UPLOADED} publish", PRODUCER),
        ("svc_transcode", f"{topics.VIDEO_UPLOADED} process", CONSUMER),
        ("svc_transcode", "transcode.job", None),
        ("svc_upload", "/reels.v1.UploadService/UpdateVideoStatus", SERVER),
        ("svc_transcode", f"{topics.VIDEO_PUBLISHED} publish", PRODUCER),
        ("svc_stream", f"{topics.VIDEO_PUBLISHED} process", CONSUMER),
    }

    def missing(spans: list[dict[str, object]]) -> set[tuple[object, object, object]]:
        have = {
            variant
            for s in spans
            for variant in (
                key(s),
                (s["service"], s["name"], None),
                (None, s["name"], s["kind"]),
            )
        }
        return wanted - have

    def orphans(spans: list[dict[str, object]]) -> list[object]:
        # Envoy exports its spans on its own schedule: wait until every tus span's parent
        # (Envoy's span for that request) has arrived too.
        ids = {s["span_id"] for s in spans}
        tus = [
            s
            for s in spans
            if s["service"] == "svc_upload" and s["kind"] == SERVER
            and str(s["name"]).startswith("PATCH")
        ]  # fmt: skip
        return [s["parent_span_id"] for s in tus if s["parent_span_id"] not in ids]

    async def all_spans() -> list[dict[str, object]] | None:
        spans = [s for s in read_spans(mesh.spans_path) if s["trace_id"] == trace_id]
        return None if missing(spans) or orphans(spans) else spans

    try:
        spans = await eventually_value(all_spans, 30, "every span of the upload's trace")
    except AssertionError:
        spans = [s for s in read_spans(mesh.spans_path) if s["trace_id"] == trace_id]
        raise AssertionError(
            f"missing {sorted(map(str, missing(spans)))}, parents {orphans(spans)}; have:\n"
            + "\n".join(sorted({f"{s['service']}: {s['name']} ({s['kind']})" for s in spans}))
        ) from None
    assert isinstance(spans, list)
    await asyncio.sleep(1.0)  # spans that end a little later (the job's own) are flushed
    spans = [s for s in read_spans(mesh.spans_path) if s["trace_id"] == trace_id]

    services = {s["service"] for s in spans}
    assert {"envoy", "svc_upload", "svc_transcode", "svc_stream"} <= services, services

    # The tus endpoint is traced, under Envoy's span: the completing PATCH's server span.
    by_id = {s["span_id"]: s for s in spans}
    tus = [s for s in spans if s["service"] == "svc_upload" and s["kind"] == SERVER
           and str(s["name"]).startswith("PATCH")]  # fmt: skip
    assert tus, sorted({f"{s['service']}: {s['name']}" for s in spans})
    assert all(by_id[str(s["parent_span_id"])]["service"] == "envoy" for s in tus)

    # Kafka: each CONSUMER span is the child of its PRODUCER span (same topic).
    for topic in (topics.VIDEO_UPLOADED, topics.VIDEO_PUBLISHED):
        producers = [s for s in spans if s["name"] == f"{topic} publish"]
        consumers = [s for s in spans if s["name"] == f"{topic} process"]
        assert producers and consumers, topic
        producer_ids = {s["span_id"] for s in producers}
        assert all(c["parent_span_id"] in producer_ids for c in consumers), (topic, consumers)

    # The uploaded event's PRODUCER span hangs under the tus PATCH (the outbox row's context).
    uploaded = next(s for s in spans if s["name"] == f"{topics.VIDEO_UPLOADED} publish")
    assert by_id[str(uploaded["parent_span_id"])] in tus

    # One connected tree: every span's parent is in the trace, except the client's span.
    orphans = [s for s in spans if s["parent_span_id"] not in by_id]
    assert all(s["parent_span_id"] == client_span for s in orphans), json.dumps(orphans, indent=1)
