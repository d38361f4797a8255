"""The web client's routes on the front door: web/dist, served by Envoy at `/`.

The app is served on the API's own listener, so its gRPC-web and JSON calls are
same-origin (no CORS, no preflight). Envoy has no stable static-file server, so each
built file becomes one route with a `direct_response` whose body Envoy reads from the
file when it loads the config (`make up` and the tests render the config from web/dist
as Envoy starts; a rebuild shows after a restart). One snapshot per Envoy: an
index.html and the hashed assets it names are always served together.

* `assets/` (Vite's content-hashed output) is `immutable` for a year; everything else
  (index.html, files from web/public) is `no-cache`: a new build shows on the next load.
* `/` and every path that looks like an app route (segments without a dot: `/feed`,
  `/live/<id>`) answer index.html, so deep links and reloads work (SPA fallback); the
  router in web/src/router.ts picks the page. A path with a dot that is no built file
  (`/favicon.ico`, `/wp-login.php`) stays the API's 404, as does everything under /api.
* Only GET and HEAD, and without a token (the app is public; its API calls are not).
* No web/dist (not built): Envoy still starts, and those paths answer 503 saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from reels_dev.infra.process import REPO_ROOT

WEB_DIST = REPO_ROOT / "web" / "dist"
HASHED_DIR = "assets"  # web/vite.config.ts build.assetsDir
# The route config's max_direct_response_body_size_bytes (Envoy's default: 4 KiB).
MAX_FILE_BYTES = 8 * 1024 * 1024
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
NOT_BUILT_MESSAGE = "web app not built: run make setup (it builds web/dist), then restart Envoy"
# An app route: `/`, or segments without a dot (a file name has one), optional final `/`.
APP_PATHS = r"/(?:[^/.]+(?:/[^/.]+)*/?)?"
# Under /api (any case: /API/V1/... too): never the app (an unknown API path is the
# API's 404, not index.html).
API_PATHS = r"(?i)/api(?:/.*)?"
# A fixed table (not `mimetypes`, which reads the machine's /etc/mime.types): the
# rendered config is the same everywhere.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".wasm": "application/wasm",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_GET_OR_HEAD = {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}
_PUBLIC = {
    "envoy.filters.http.jwt_authn": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig",
        "disabled": True,
    }
}


def _headers(**values: str) -> list[dict[str, Any]]:
    return [
        {
            "header": {"key": key.replace("_", "-"), "value": value},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
        for key, value in values.items()
    ]


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), DEFAULT_CONTENT_TYPE)


def built_files(dist: Path | None) -> list[Path]:
    """The files of a built app (paths relative to `dist`), sorted; [] when not built.

    Dot files (the build stamp) are not served."""
    if dist is None or not (dist / "index.html").is_file():
        return []
    files = []
    for path in sorted(dist.rglob("*")):
        rel = path.relative_to(dist)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ValueError(
                    f"{path} is {size} bytes; Envoy serves web files of at most "
                    f"{MAX_FILE_BYTES} (reels_dev/infra/web_app.py MAX_FILE_BYTES)"
                )
            files.append(rel)
    return files


def _file_route(name: str, match: dict[str, Any], file: Path, cache: str) -> dict[str, Any]:
    return {
        "name": name,
        "match": {**match, "headers": [_GET_OR_HEAD]},
        "direct_response": {"status": 200, "body": {"filename": str(file)}},
        "response_headers_to_add": _headers(
            content_type=content_type(file),
            cache_control=cache,
            x_content_type_options="nosniff",
        ),
        "typed_per_filter_config": _PUBLIC,
    }


def web_app_routes(dist: Path | None, api_not_found: dict[str, Any]) -> list[dict[str, Any]]:
    """The app's routes, in order: one per built file, `api_not_found` (the API's 404
    for /api paths, which would otherwise look like app routes), then the SPA fallback."""
    files = built_files(dist)
    routes: list[dict[str, Any]] = []
    for rel in files:
        assert dist is not None
        cache = IMMUTABLE if rel.parts[0] == HASHED_DIR and len(rel.parts) > 1 else NO_CACHE
        routes.append(
            _file_route("web_file", {"path": "/" + quote(rel.as_posix())}, dist / rel, cache)
        )
    routes.append({**api_not_found, "match": {"safe_regex": {"regex": API_PATHS}}})
    app_paths = {"safe_regex": {"regex": APP_PATHS}}
    if files:
        assert dist is not None
        routes.append(_file_route("web_app", app_paths, dist / "index.html", NO_CACHE))
    else:
        routes.append(
            {
                "name": "web_app",
                "match": {**app_paths, "headers": [_GET_OR_HEAD]},
                "direct_response": {"status": 503, "body": {"inline_string": NOT_BUILT_MESSAGE}},
                "response_headers_to_add": _headers(
                    content_type="text/plain; charset=utf-8", cache_control="no-store"
                ),
                "typed_per_filter_config": _PUBLIC,
            }
        )
    return routes
