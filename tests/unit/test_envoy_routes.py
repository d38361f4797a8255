"""The rendered front door's RPC routes: which calls may run how long, how much a
unary call may send, and that routing them apart kept each one's rate-limit class
(reels_dev.infra.envoy RPC_TIMEOUT_S, SLOW_RPC_TIMEOUTS_S, BODY_LIMITS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reels.v1 import common_pb2, stream_pb2

from reels_dev.infra.envoy import (
    BODY_LIMIT_FILTER,
    BODY_LIMITS,
    MAX_MESSAGE_BYTES,
    RATE_LIMIT_METADATA,
    RPC_TIMEOUT_S,
    EnvoySettings,
    render,
    validate,
    write_config,
)
from svc_stream.events.validation import (
    KNOWN_TYPES,
    MAX_BATCH,
    MAX_CLIENT_EVENT_ID,
    MAX_RENDITION,
    MAX_SESSION_ID,
    MAX_VIDEO_ID,
)

STREAMING = {
    "/reels.v1.UploadService/UploadVideo",
    "/reels.v1.UploadService/WatchVideoStatus",
    "/reels.v1.ChatService/SubscribeChat",
    "/reels.v1.ChatService/Chat",
}


def _routes(settings: EnvoySettings | None = None) -> list[dict[str, Any]]:
    config = render(settings or EnvoySettings(web_dist=None))
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]


def _route_for(path: str) -> dict[str, Any]:
    """The route a gRPC request on ``path`` takes (the first whose path matcher fits)."""
    import re

    for route in _routes():
        match = route["match"]
        if not any(h["name"] == "content-type" for h in match.get("headers", [])):
            continue  # not a gRPC route (the CORS preflight's, the web app's...)
        if match.get("path") == path or path.startswith(match.get("prefix", "\0")):
            return route
        if "safe_regex" in match and re.fullmatch(match["safe_regex"]["regex"], path):
            return route
    raise AssertionError(f"no gRPC route for {path}")


def _class(route: dict[str, Any]) -> str:
    return route["metadata"]["filter_metadata"][RATE_LIMIT_METADATA]["class"]


def test_streaming_rpcs_stay_open_and_are_not_buffered() -> None:
    for path in STREAMING:
        route = _route_for(path)
        assert route["route"]["timeout"] == "0s", route
        assert BODY_LIMIT_FILTER not in route.get("typed_per_filter_config", {}), route


def test_unary_rpcs_have_a_bounded_timeout() -> None:
    assert _route_for("/reels.v1.FeedService/GetFeed")["route"]["timeout"] == f"{RPC_TIMEOUT_S}s"
    assert _route_for("/reels.v1.ChatService/SendMessage")["route"]["timeout"] == "15s"
    assert _route_for("/reels.v1.UploadService/CompleteUpload")["route"]["timeout"] == "300s"
    assert _route_for("/reels.v1.FeedService/GetExperimentResults")["route"]["timeout"] == "35s"
    for route in _routes():
        if route["name"].startswith(("upload", "transcode", "rank", "stream", "chat_")):
            if route["match"].get("path") not in STREAMING and "route" in route:
                if route["name"] != "chat_ws":
                    assert route["route"]["timeout"] != "0s", route


def test_routing_rpcs_apart_keeps_their_rate_limit_class() -> None:
    expected = {
        "/reels.v1.UploadService/WatchVideoStatus": "reads",
        "/reels.v1.UploadService/UploadVideo": "uploads",
        "/reels.v1.UploadService/CompleteUpload": "uploads",
        "/reels.v1.UploadService/CreateVideo": "writes",
        "/reels.v1.ChatService/SubscribeChat": "chat",
        "/reels.v1.ChatService/Chat": "chat",
        "/reels.v1.FeedService/GetExperimentResults": "reads",
        "/reels.v1.StreamService/RecordEvents": "writes",
        "/reels.v1.StreamService/GetPlayback": "reads",
    }
    assert {path: _class(_route_for(path)) for path in expected} == expected


def _limit(path: str) -> int:
    per_route = _route_for(path)["typed_per_filter_config"][BODY_LIMIT_FILTER]
    return per_route["buffer"]["max_request_bytes"]


def test_unary_bodies_are_limited_before_the_service() -> None:
    # The services' own gRPC limit (16 MiB) by default: a 4 MiB UploadChunk fits.
    assert _limit("/reels.v1.UploadService/UploadChunk") == MAX_MESSAGE_BYTES > 16 * 1024 * 1024
    assert _limit("/reels.v1.StreamService/RecordEvents") == BODY_LIMITS[("stream", "RecordEvents")]


def test_the_largest_valid_event_batch_fits_four_times() -> None:
    event = stream_pb2.PlayerEvent(
        client_event_id="x" * MAX_CLIENT_EVENT_ID,
        video_id="v" * MAX_VIDEO_ID,
        type=max(KNOWN_TYPES),  # type: ignore[arg-type]
        position_seconds=1e9 + 0.1,
        watch_seconds=1e9 + 0.1,
        rendition="r" * MAX_RENDITION,
        device=max(common_pb2.Device.values()),  # type: ignore[arg-type]
        country="ZZ",
        session_id="s" * MAX_SESSION_ID,
    )
    event.occurred_at.seconds, event.occurred_at.nanos = 253402300799, 999_999_999
    batch = stream_pb2.RecordEventsRequest(events=[event] * MAX_BATCH)
    batch.sent_at.CopyFrom(event.occurred_at)
    assert 4 * (batch.ByteSize() + 5) < BODY_LIMITS[("stream", "RecordEvents")]


def test_other_routes_are_not_buffered() -> None:
    for route in _routes():
        if route["name"] in {"tus", "chat_ws", "media", "v1_reflection", "not_found"}:
            assert BODY_LIMIT_FILTER not in route.get("typed_per_filter_config", {}), route


def test_the_config_validates(tmp_path: Path) -> None:
    path = write_config(EnvoySettings(web_dist=None), tmp_path / "envoy.yaml")
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
