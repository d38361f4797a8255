"""A browser page on the local web client's origin can call every JSON route.

The routes come from the descriptor set Envoy transcodes with (gen/reels.pb): every
method with a google.api.http annotation, so a route added to a .proto is covered
without touching this file.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import aiohttp
import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from reels.config import DEFAULT_CORS_ORIGINS
from reels_dev.infra.envoy import DESCRIPTOR, EnvoySettings, render, settings_from_env
from reels_dev.keys import mint_token

ORIGIN = "http://localhost:5173"  # the web client's Vite dev server
OTHER_ORIGIN = "http://evil.example"
BODY_VERBS = {"post", "put", "patch"}


@dataclass(frozen=True)
class Route:
    rpc: str  # reels.v1.FeedService/GetFeed
    verb: str  # get, post, put, patch, delete
    template: str  # /api/v1/reels/{video_id}/playback

    @property
    def path(self) -> str:
        """The template with every variable filled (`{video_id}` -> `x-1`)."""
        return re.sub(r"\{[^}]*\}", "x-1", self.template)

    def __str__(self) -> str:
        return f"{self.verb.upper()} {self.template}"


def annotated_routes() -> list[Route]:
    """Every google.api.http binding in gen/reels.pb (additional bindings included)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR.read_bytes())
    routes = []
    for file in files.file:
        if not file.package.startswith("reels."):
            continue
        for service in file.service:
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in [rule, *rule.additional_bindings]:
                    verb = binding.WhichOneof("pattern")
                    assert verb != "custom", f"{method.name}: custom verbs are not covered"
                    routes.append(
                        Route(
                            f"{file.package}.{service.name}/{method.name}",
                            verb,
                            getattr(binding, verb),
                        )
                    )
    return routes


ROUTES = annotated_routes()


def test_every_service_has_json_routes() -> None:
    services = {r.rpc.split("/")[0] for r in ROUTES}
    assert len(ROUTES) > 30
    assert {
        "reels.v1.UploadService",
        "reels.v1.TranscodeService",
        "reels.v1.FeedService",
        "reels.v1.StreamService",
        "reels.v1.ChatService",
    } <= services


def _requested_headers(route: Route) -> str:
    """What a browser's fetch() asks for: the bearer token, and a JSON body's type."""
    return "authorization,content-type" if route.verb in BODY_VERBS else "authorization"


def _preflight(route: Route, origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": route.verb.upper(),
        "access-control-request-headers": _requested_headers(route),
    }


def _split(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


@pytest.fixture(scope="module")
def token() -> str:
    return mint_token("cors-user")


@pytest.mark.parametrize("route", ROUTES, ids=str)
async def test_browser_preflight_then_call_carries_cors_headers(
    route: Route, envoy: EnvoySettings, token: str
) -> None:
    url = f"http://127.0.0.1:{envoy.listen_port}{route.path}"
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        # The preflight carries no token (browsers never send credentials on it).
        async with http.options(url, headers=_preflight(route, ORIGIN)) as pre:
            assert pre.status in (200, 204), await pre.text()
            assert pre.headers.get("access-control-allow-origin") == ORIGIN
            assert route.verb in _split(pre.headers.get("access-control-allow-methods"))
            assert set(_requested_headers(route).split(",")) <= _split(
                pre.headers.get("access-control-allow-headers")
            )
            assert int(pre.headers.get("access-control-max-age", "0")) > 0

        # The actual call: whatever the service answers (a made-up id is mostly a 4xx),
        # the browser may only read it with these headers.
        headers = {"origin": ORIGIN, "authorization": f"Bearer {token}"}
        kwargs: dict[str, object] = {}
        if route.verb in BODY_VERBS:
            headers["content-type"] = "application/json"
            kwargs["data"] = "{}"
        async with http.request(route.verb.upper(), url, headers=headers, **kwargs) as resp:
            assert resp.headers.get("access-control-allow-origin") == ORIGIN, (
                resp.status,
                await _text(resp),
            )
            exposed = _split(resp.headers.get("access-control-expose-headers"))
            assert {"grpc-status", "grpc-message"} <= exposed
            # Reached the service (transcoded), not the front door's catch-all 404.
            assert resp.headers.get("x-envoy-upstream-service-time") is not None, (
                resp.status,
                await _text(resp),
            )


async def _text(resp: aiohttp.ClientResponse) -> str:
    # Streaming routes keep the body open: read what is there, briefly.
    try:
        return (await asyncio.wait_for(resp.content.read(500), 1)).decode(errors="replace")
    except TimeoutError:
        return "<streaming>"


@pytest.mark.parametrize(
    "route",
    [r for r in ROUTES if r.verb == "get"][:1] + [r for r in ROUTES if r.verb == "post"][:1],
    ids=str,
)
async def test_an_origin_not_allowed_gets_no_allow_origin(
    route: Route, envoy: EnvoySettings, token: str
) -> None:
    url = f"http://127.0.0.1:{envoy.listen_port}{route.path}"
    async with aiohttp.ClientSession() as http:
        async with http.options(url, headers=_preflight(route, OTHER_ORIGIN)) as pre:
            assert "access-control-allow-origin" not in pre.headers
        headers = {"origin": OTHER_ORIGIN, "authorization": f"Bearer {token}"}
        kwargs: dict[str, object] = {}
        if route.verb in BODY_VERBS:
            headers["content-type"] = "application/json"
            kwargs["data"] = "{}"
        async with http.request(route.verb.upper(), url, headers=headers, **kwargs) as resp:
            assert "access-control-allow-origin" not in resp.headers


async def test_unauthenticated_answers_are_readable_by_the_page(envoy: EnvoySettings) -> None:
    """A 401 from the front door carries CORS headers, so the page can see it and log in."""
    url = f"http://127.0.0.1:{envoy.listen_port}/api/v1/reels"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"origin": ORIGIN}) as resp:
            assert resp.status == 401
            assert resp.headers.get("access-control-allow-origin") == ORIGIN
            # The services' JSON error form, not Envoy's text/plain "Jwt is missing".
            assert resp.headers["content-type"].startswith("application/json")
            body = await resp.json()
            assert body["code"] == 16 and "Jwt is missing" in body["message"]
            assert resp.headers["grpc-status"] == "16"
        expired = mint_token("cors-user", ttl_seconds=-600)
        async with http.get(url, headers={"authorization": f"Bearer {expired}"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["code"] == 16
        foreign = mint_token("cors-user", audience="someone-else")
        async with http.get(url, headers={"authorization": f"Bearer {foreign}"}) as resp:
            assert resp.status == 403
            body = await resp.json()
            assert body["code"] == 7 and "Audiences" in body["message"]


async def test_options_that_is_no_preflight_is_not_a_route(envoy: EnvoySettings) -> None:
    url = f"http://127.0.0.1:{envoy.listen_port}/api/v1/reels"
    token = mint_token("cors-user")
    async with aiohttp.ClientSession() as http:
        async with http.options(url, headers={"authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 404


def _allowed_origins(settings: EnvoySettings) -> list[dict[str, object]]:
    config = yaml.safe_load(yaml.safe_dump(render(settings)))
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    vhost = hcm["typed_config"]["route_config"]["virtual_hosts"][0]
    policy = vhost["typed_per_filter_config"]["envoy.filters.http.cors"]
    return policy["allow_origin_string_match"]


def test_allowed_origins_default_to_the_local_web_client() -> None:
    settings = settings_from_env({})
    assert settings.cors_origins == list(DEFAULT_CORS_ORIGINS)
    assert {"http://localhost:8080", "http://127.0.0.1:5173"} <= set(settings.cors_origins)
    assert _allowed_origins(settings) == [{"exact": o} for o in DEFAULT_CORS_ORIGINS]


def test_allowed_origins_come_from_reels_cors_origins() -> None:
    settings = settings_from_env(
        {"REELS_CORS_ORIGINS": "https://app.example.com, https://admin.example.com"}
    )
    assert settings.cors_origins == ["https://app.example.com", "https://admin.example.com"]
    assert _allowed_origins(settings) == [
        {"exact": "https://app.example.com"},
        {"exact": "https://admin.example.com"},
    ]
    anything = settings_from_env({"REELS_CORS_ORIGINS": "*"})
    assert _allowed_origins(anything) == [{"safe_regex": {"regex": ".*"}}]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/reels?_=1700000000",  # jQuery / fetch wrappers' cache buster
        "/api/v1/reels?limit=2&utm_source=mail",
        "/api/v1/reels?unknown=1",
        "/api/v1/transcode/jobs?limit=100",  # ListJobs takes pageSize, not limit
    ],
)
async def test_unknown_query_parameters_are_ignored(
    path: str, envoy: EnvoySettings, token: str
) -> None:
    """A query parameter that names no field of the request does not stop transcoding
    (which ended in the catch-all 404): it is ignored, as browsers need."""
    url = f"http://127.0.0.1:{envoy.listen_port}{path}"
    headers = {"origin": ORIGIN, "authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers.get("access-control-allow-origin") == ORIGIN
            assert resp.headers.get("x-envoy-upstream-service-time") is not None


# Answers Envoy writes itself, before the CORS filter (the transcoder) or on a route
# without a route entry (direct responses): (method, path, body, HTTP status).
LOCAL_REPLIES = {
    "body_not_json": ("POST", "/api/v1/events", "{", 400),
    "query_value_wrong_type": ("GET", "/api/v1/reels?limit=abc", None, 400),
    "plain_http_on_grpc_path": ("GET", "/reels.v1.FeedService/GetFeed", None, 415),
    "no_such_route": ("GET", "/api/v1/no/such/route", None, 404),
}


@pytest.mark.parametrize("kind", LOCAL_REPLIES)
@pytest.mark.parametrize("origin", [ORIGIN, OTHER_ORIGIN])
async def test_the_front_doors_own_errors_are_readable_by_an_allowed_page(
    kind: str, origin: str, envoy: EnvoySettings, token: str
) -> None:
    method, path, data, status = LOCAL_REPLIES[kind]
    headers = {"origin": origin, "authorization": f"Bearer {token}"}
    if data is not None:
        headers["content-type"] = "application/json"
    url = f"http://127.0.0.1:{envoy.listen_port}{path}"
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, headers=headers, data=data) as resp:
            assert resp.status == status, await resp.text()
            body = await resp.json()
            assert body["code"] > 0 and body["message"], body
            if origin == ORIGIN:
                assert resp.headers.get("access-control-allow-origin") == ORIGIN
                exposed = _split(resp.headers.get("access-control-expose-headers"))
                assert {"grpc-status", "grpc-message"} <= exposed
            else:
                assert "access-control-allow-origin" not in resp.headers


async def test_a_grpc_web_preflight_is_still_answered(envoy: EnvoySettings) -> None:
    """gRPC paths take gRPC content types only; a browser's preflight has none, and is
    still answered by the CORS filter."""
    url = f"http://127.0.0.1:{envoy.listen_port}/reels.v1.FeedService/GetFeed"
    headers = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type,x-grpc-web",
    }
    async with aiohttp.ClientSession() as http:
        async with http.options(url, headers=headers) as pre:
            assert pre.status in (200, 204), await pre.text()
            assert pre.headers.get("access-control-allow-origin") == ORIGIN
