"""Settings: typed, frozen dataclasses read from the environment once, by one loader.

Every setting is declared with :func:`setting` (default, environment variable, one-line
doc). :func:`load` builds a dataclass from a mapping (``os.environ`` by default); it is
the only code in the project that reads the environment. A service reads its
``Settings.from_env()`` once in ``__main__`` and hands parts of it down; tests build
settings directly (``Settings(port=0, ...)``, ``dataclasses.replace``).

``python -m reels.config docs`` renders every service's settings as Markdown tables;
``make gen`` writes them into README.md between the ``settings-table`` markers and
``make check-gen`` fails when they drift.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")
_MISSING = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    env: str = "",
    doc: str = "",
    *,
    factory: Any = _MISSING,
    shown: str = "",
) -> Any:
    """A dataclass field read from environment variable ``env`` by :func:`load`.

    ``default`` (or ``factory`` for mutable or computed defaults) applies when the
    variable is unset or empty. ``doc`` is the one line the README table shows.
    """
    metadata = {"env": env, "doc": doc, "shown_default": shown or "(computed)"}
    if factory is not _MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def group(cls: type[T], doc: str = "") -> Any:
    """A nested settings dataclass (its own fields carry their own variables)."""
    return field(default_factory=lambda: load(cls), metadata={"group": True, "doc": doc})


class FromEnv:
    """Mixin: ``Settings.from_env()`` is ``load(Settings)``."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        return load(cls, environ)


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def environ() -> Mapping[str, str]:
    """The process environment, for the few places that must pass it on (subprocesses)."""
    return os.environ


def _parse(tp: Any, raw: str, env: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _parse(args[0], raw, env)
    if origin is tuple:
        (item, *_rest) = typing.get_args(tp)
        return tuple(_parse(item, part.strip(), env) for part in raw.split(",") if part.strip())
    if tp is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise SettingError(f"{env}={raw!r}: expected on/off, true/false, yes/no or 1/0")
    if tp in (int, float):
        try:
            return tp(raw)
        except ValueError as exc:
            raise SettingError(f"{env}={raw!r}: expected a number ({tp.__name__})") from exc
    if tp is Path:
        return Path(raw)
    return raw


def load(cls: type[T], env: Mapping[str, str] | None = None) -> T:
    """Build settings dataclass ``cls`` from ``env`` (default: the process environment).

    Raises SettingError naming the variable when a value cannot be parsed.
    """
    env = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        tp = hints[f.name]
        if f.metadata.get("group") and is_dataclass(tp):
            kwargs[f.name] = load(tp, env)  # type: ignore[arg-type]
            continue
        if f.metadata.get("server"):
            kwargs[f.name] = server_settings(f.metadata["server"], env)
            continue
        name = f.metadata.get("env")
        if not name:
            continue
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        kwargs[f.name] = _parse(tp, raw, name)
    return cls(**kwargs)


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(variable, type, default, doc) for every setting of ``cls``, groups expanded."""
    rows: list[tuple[str, str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        tp = hints[f.name]
        if f.metadata.get("group") and is_dataclass(tp):
            rows.extend(describe(tp))  # type: ignore[arg-type]
            continue
        if not f.metadata.get("env"):
            continue
        if f.default is not _MISSING:
            default = f.default
        elif f.default_factory is not _MISSING:  # type: ignore[misc]
            default = f.metadata.get("shown_default", "(computed)")
        else:
            default = ""
        if isinstance(default, Path):
            default = _repo_relative(default)
        if isinstance(default, tuple):
            default = ",".join(str(d) for d in default)
        if isinstance(default, bool):
            default = "on" if default else "off"
        if default is None:
            default = ""
        type_name = getattr(tp, "__name__", str(tp)).replace("typing.", "").replace("pathlib.", "")
        rows.append((f.metadata["env"], type_name, str(default), f.metadata.get("doc", "")))
    return rows


def _repo_relative(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- the platform


def var_dir() -> Path:
    """Where this checkout keeps its data (``REELS_VAR_DIR``, default ``<repo>/var``;
    ``<var>`` in the settings tables)."""
    return Path(os.environ.get("REELS_VAR_DIR") or REPO_ROOT / "var")


def checkout_slug(root: Path = REPO_ROOT) -> str:
    """A short stable name for this checkout, so two clones never share a dev database."""
    name = re.sub(r"[^a-z0-9]+", "_", root.name.lower()).strip("_")[:20] or "reels"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:6]
    return f"{name}_{digest}"


def default_database_url() -> str:
    return f"postgresql+psycopg://postgres:postgres@127.0.0.1:5432/reels_{checkout_slug()}"


# Default loopback ports of `make up`. Tests pick free ports instead.
DEFAULT_PORTS: dict[str, int] = {
    "upload": 50051,
    "transcode": 50052,
    "rank": 50053,
    "stream": 50054,
    "chat": 50055,
}
SERVICE_NAMES: dict[str, str] = {
    "upload": "reels.v1.UploadService",
    "transcode": "reels.v1.TranscodeService",
    "rank": "reels.v1.FeedService",
    "stream": "reels.v1.StreamService",
    "chat": "reels.v1.ChatService",
}


@dataclass(frozen=True)
class AuthConfig(FromEnv):
    """JWT settings shared by Envoy (jwt_authn) and the services' interceptor."""

    issuer: str = setting("reels-dev", "REELS_JWT_ISSUER", "JWT issuer (`iss`) accepted")
    audience: str = setting("reels-api", "REELS_JWT_AUDIENCE", "JWT audience (`aud`) accepted")
    public_key_path: Path = setting(
        env="REELS_JWT_PUBLIC_KEY",
        doc="PEM public key that verifies tokens",
        factory=lambda: var_dir() / "keys" / "jwt_public.pem",
        shown="<var>/keys/jwt_public.pem",
    )
    private_key_path: Path = setting(
        env="REELS_JWT_PRIVATE_KEY",
        doc="PEM private key a service signs its own service token with (dev: the dev key)",
        factory=lambda: var_dir() / "keys" / "jwt_private.pem",
        shown="<var>/keys/jwt_private.pem",
    )
    jwks_path: Path = setting(
        env="REELS_JWKS_PATH",
        doc="JWKS file Envoy's jwt_authn reads",
        factory=lambda: var_dir() / "keys" / "jwks.json",
        shown="<var>/keys/jwks.json",
    )
    # Off only in tests of a service alone (Envoy also checks in the real mesh).
    required: bool = setting(True, "REELS_AUTH_REQUIRED", "verify bearer tokens in the service")


@dataclass(frozen=True)
class TextModerationSettings(FromEnv):
    """What every typed text is moderated against (``reels.moderation``): one blocklist
    file and, optionally, a classifier run after it."""

    blocklist: Path = setting(
        REPO_ROOT / "safety" / "text" / "blocklist.txt",
        "REELS_TEXT_BLOCKLIST",
        "blocked terms and phrases of typed text, one a line (`reels.moderation`)",
    )
    classifier: str = setting(
        "",
        "REELS_TEXT_CLASSIFIER",
        "text classifier `package.module:factory` run after the blocklist (empty: none)",
    )


@dataclass(frozen=True)
class PlatformSettings(FromEnv):
    """Where the shared components are: the same code points at production engines
    by these variables alone (README, "Production")."""

    database_url: str = setting(
        env="REELS_DATABASE_URL",
        doc="PostgreSQL (SQLAlchemy URL); default: one database per checkout",
        factory=default_database_url,
        shown="postgresql+psycopg://postgres:postgres@127.0.0.1:5432/reels_<checkout>",
    )
    kafka_bootstrap: str = setting(
        "127.0.0.1:9092", "REELS_KAFKA_BOOTSTRAP", "Kafka bootstrap servers"
    )
    kafka_partitions: int = setting(3, "REELS_KAFKA_PARTITIONS", "partitions of topics we create")
    kafka_session_timeout_ms: int = setting(
        6000,
        "REELS_KAFKA_SESSION_TIMEOUT_MS",
        "consumer group session timeout (Tansu: keep 2000-6000)",
    )
    kafka_idempotence: bool = setting(
        False, "REELS_KAFKA_IDEMPOTENCE", "idempotent producer (Apache Kafka yes; Tansu rejects it)"
    )
    redis_url: str = setting("redis://127.0.0.1:6379/0", "REELS_REDIS_URL", "Redis URL")
    redis_prefix: str = setting(
        env="REELS_REDIS_PREFIX",
        doc="prefix of every Redis key; default: one per checkout",
        factory=lambda: f"reels:{checkout_slug()}:",
        shown="reels:<checkout>:",
    )
    storage_url: str = setting(
        env="REELS_STORAGE_URL",
        doc="object store (file:// directory)",
        factory=lambda: (var_dir() / "objects").as_uri(),
        shown="file://<var>/objects",
    )
    clickhouse_dsn: str = setting(
        env="REELS_CLICKHOUSE_DSN",
        doc="ClickHouse (chdb:///path in-process, or https://...)",
        factory=lambda: f"chdb://{var_dir() / 'chdb'}",
        shown="chdb://<var>/chdb",
    )
    milvus_uri: str = setting(
        env="REELS_MILVUS_URI",
        doc="Milvus (Lite db file path, or http://host:19530)",
        factory=lambda: str(var_dir() / "milvus" / "reels.db"),
        shown="<var>/milvus/reels.db",
    )
    triton_addr: str = setting("127.0.0.1:18001", "REELS_TRITON_ADDR", "Triton gRPC address")
    otlp_endpoint: str = setting(
        "", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP gRPC collector; empty: spans to REELS_OTEL_FILE"
    )
    otel_file: Path = setting(
        env="REELS_OTEL_FILE",
        doc="span file when no OTLP endpoint is set",
        factory=lambda: var_dir() / "traces" / "spans.jsonl",
        shown="<var>/traces/spans.jsonl",
    )
    metrics_port: int = setting(
        0, "REELS_METRICS_PORT", "Prometheus /metrics port of this process (0: none)"
    )
    log_level: str = setting("INFO", "REELS_LOG_LEVEL", "log level")
    log_file: Path | None = setting(None, "REELS_LOG_FILE", "also write JSON logs to this file")
    ffmpeg: str = setting("ffmpeg", "REELS_FFMPEG", "ffmpeg binary")
    ffprobe: str = setting("ffprobe", "REELS_FFPROBE", "ffprobe binary")
    service_token: str = setting(
        "",
        "REELS_SERVICE_TOKEN",
        "bearer token background work calls services with "
        "(empty: signed with REELS_JWT_PRIVATE_KEY)",
    )
    media_signing_key: str = setting(
        "", "REELS_MEDIA_SIGNING_KEY", "HMAC key of signed media URLs (empty: the key file)"
    )
    media_signing_key_file: Path = setting(
        env="REELS_MEDIA_SIGNING_KEY_FILE",
        doc="file holding the media signing key (created if missing)",
        factory=lambda: var_dir() / "keys" / "media_signing.key",
        shown="<var>/keys/media_signing.key",
    )
    outbox_batch: int = setting(100, "REELS_OUTBOX_BATCH", "outbox rows a relay sends per round")
    upload_addr: str = setting("127.0.0.1:50051", "REELS_UPLOAD_ADDR", "where svc_upload is")
    transcode_addr: str = setting(
        "127.0.0.1:50052", "REELS_TRANSCODE_ADDR", "where svc_transcode is"
    )
    rank_addr: str = setting("127.0.0.1:50053", "REELS_RANK_ADDR", "where svc_rank is")
    stream_addr: str = setting("127.0.0.1:50054", "REELS_STREAM_ADDR", "where svc_stream is")
    chat_addr: str = setting("127.0.0.1:50055", "REELS_CHAT_ADDR", "where svc_chat is")
    auth: AuthConfig = group(AuthConfig)
    text_moderation: TextModerationSettings = group(TextModerationSettings)

    def addr(self, service: str) -> str:
        """host:port of ``service`` ("upload", "stream", ...)."""
        return str(getattr(self, f"{service}_addr"))


@functools.cache
def platform() -> PlatformSettings:
    """The platform settings of this process, read once.

    Services receive their settings explicitly; this is the default for adapters used
    outside a service (dev tools, scripts) and is never reloaded.
    """
    return PlatformSettings.from_env()


@dataclass(frozen=True)
class ServerSettings:
    """How a service's gRPC server listens and drains (each service sets its port's variable)."""

    port: int
    host: str = "127.0.0.1"
    grace_seconds: float = 10.0
    # Admission control (reels.admission): unary calls in progress at once (0: no
    # limit) and how long a call waits for a slot before RESOURCE_EXHAUSTED, seconds.
    max_inflight_rpcs: int = 256
    admission_wait_s: float = 1.0


def server_settings(service: str, env: Mapping[str, str] | None = None) -> ServerSettings:
    """``REELS_<SERVICE>_PORT``, ``REELS_HOST``, ``REELS_SHUTDOWN_GRACE_SECONDS``,
    ``REELS_MAX_INFLIGHT_RPCS`` and ``REELS_ADMISSION_WAIT_MS`` (each of the last two
    overridable per service: ``REELS_<SERVICE>_MAX_INFLIGHT_RPCS``...)."""
    env = os.environ if env is None else env
    name = f"REELS_{service.upper()}_PORT"
    port = _parse(int, env.get(name) or str(DEFAULT_PORTS[service]), name)
    grace = _parse(
        float, env.get("REELS_SHUTDOWN_GRACE_SECONDS") or "10", "REELS_SHUTDOWN_GRACE_SECONDS"
    )

    def per_service(var: str, default: str) -> tuple[str, str]:
        own = f"REELS_{service.upper()}_{var}"
        if env.get(own):
            return own, env[own]
        return f"REELS_{var}", env.get(f"REELS_{var}") or default

    inflight_name, inflight = per_service("MAX_INFLIGHT_RPCS", "256")
    wait_name, wait_ms = per_service("ADMISSION_WAIT_MS", "1000")
    max_inflight = _parse(int, inflight, inflight_name)
    wait = _parse(float, wait_ms, wait_name)
    if max_inflight < 0 or wait < 0:
        raise SettingError(f"{inflight_name} and {wait_name} must be >= 0")
    return ServerSettings(
        port=port,
        host=env.get("REELS_HOST") or "127.0.0.1",
        grace_seconds=grace,
        max_inflight_rpcs=max_inflight,
        admission_wait_s=wait / 1000,
    )


def server_group(service: str) -> Any:
    """The ``server`` field of a service's Settings (documented as three variables)."""
    return field(
        default_factory=lambda: server_settings(service),
        metadata={"server": service, "doc": "gRPC listen address and drain"},
    )


def service_addr(service: str) -> str:
    """Where to reach ``service`` (e.g. "stream"): ``REELS_<SERVICE>_ADDR`` or the local default."""
    return platform().addr(service)


# Browser origins of the local web client (`make up`'s Envoy port, and Vite's dev server).
DEFAULT_CORS_ORIGINS: tuple[str, ...] = (
    "http://127.0.0.1:8080",
    "http://localhost:8080",
    "http://127.0.0.1:5173",
    "http://localhost:5173",
)


@dataclass(frozen=True)
class FrontDoorSettings(FromEnv):
    """Envoy, the front door (rendered by ``reels_dev.infra.envoy``): its ports, what it
    routes to, and the browser origins its CORS policy allows."""

    port: int = setting(8080, "REELS_ENVOY_PORT", "Envoy listener (HTTP/JSON, gRPC-web, gRPC)")
    admin_port: int = setting(
        9901, "REELS_ENVOY_ADMIN_PORT", "Envoy admin (stats, clusters, config dump)"
    )
    cors_origins: tuple[str, ...] = setting(
        DEFAULT_CORS_ORIGINS,
        "REELS_CORS_ORIGINS",
        "browser origins allowed to call the API (comma list; `*` allows any)",
    )
    # Rate limits (docs/DECISIONS.md, "Rate limits (issue 14)"): one bucket per client
    # and class, holding its budget and refilled by it every REELS_RATE_LIMIT_FILL_SECONDS.
    rate_limit_reads: int = setting(
        100, "REELS_RATE_LIMIT_READS", "reads (Get/List/Watch RPCs) per fill interval, per user"
    )
    rate_limit_writes: int = setting(
        50, "REELS_RATE_LIMIT_WRITES", "other RPCs (likes, comments, events...) per user"
    )
    rate_limit_uploads: int = setting(
        100, "REELS_RATE_LIMIT_UPLOADS", "tus requests and upload RPCs per fill interval, per user"
    )
    rate_limit_chat: int = setting(
        50, "REELS_RATE_LIMIT_CHAT", "ChatService calls and chat WebSocket opens, per user"
    )
    rate_limit_media_per_ip: int = setting(
        500, "REELS_RATE_LIMIT_MEDIA_PER_IP", "`/media/` requests per fill interval, per client IP"
    )
    rate_limit_public_per_ip: int = setting(
        100,
        "REELS_RATE_LIMIT_PUBLIC_PER_IP",
        "other requests without a token (tus OPTIONS, chat tickets), per client IP",
    )
    rate_limit_fill_seconds: int = setting(
        1, "REELS_RATE_LIMIT_FILL_SECONDS", "the buckets' refill interval (and Retry-After), s"
    )
    rate_limit_clients: int = setting(
        100_000, "REELS_RATE_LIMIT_CLIENTS", "clients tracked per class (least recent forgotten)"
    )
    rate_limit_tokens: int = setting(
        10_000,
        "REELS_RATE_LIMIT_TOKENS",
        "requests per fill interval the whole front door admits, all clients together",
    )
    media_port: int = setting(8090, "REELS_MEDIA_PORT", "media origin behind `/media/`")
    upload_http_port: int = setting(
        50061, "REELS_UPLOAD_HTTP_PORT", "svc_upload's tus endpoint behind `/api/v1/uploads/tus/`"
    )
    chat_ws_port: int = setting(
        50065,
        "REELS_CHAT_WS_PORT",
        "svc_chat's chat WebSocket behind `/api/v1/streams/{id}/chat/ws`",
    )
    otlp_port: int = setting(4317, "REELS_OTLP_PORT", "OTLP collector Envoy sends spans to")

    def service_ports(self, env: Mapping[str, str] | None = None) -> dict[str, int]:
        """Each service's gRPC port (``REELS_<SERVICE>_PORT``), as the services read it."""
        return {name: server_settings(name, env).port for name in DEFAULT_PORTS}


def service_settings_classes() -> dict[str, type]:
    """Every service's Settings class, for the README tables."""
    import importlib

    out: dict[str, type] = {}
    for svc in DEFAULT_PORTS:
        try:
            out[f"svc_{svc}"] = importlib.import_module(f"svc_{svc}.settings").Settings
        except ModuleNotFoundError:
            continue
    return out


def markdown_tables() -> str:
    """README tables: the platform's settings, then each service's own."""

    def cell(text: str) -> str:  # `Path | None` must not end the cell
        return text.replace("|", "\\|")

    def table(rows: list[tuple[str, str, str, str]]) -> list[str]:
        out = ["| variable | type | default | meaning |", "|---|---|---|---|"]
        out += [
            f"| `{v}` | {cell(t)} | `{d}` | {cell(doc)} |"
            if d
            else f"| `{v}` | {cell(t)} | | {cell(doc)} |"
            for v, t, d, doc in rows
        ]
        return out

    platform_rows = describe(PlatformSettings)
    lines = ["### Platform (every service)", "", *table(platform_rows), ""]
    shared = set(platform_rows)
    for name, cls in service_settings_classes().items():
        svc = name.removeprefix("svc_")
        rows = [
            (f"REELS_{svc.upper()}_PORT", "int", str(DEFAULT_PORTS[svc]), "gRPC port"),
            *(row for row in describe(cls) if row not in shared),  # not the platform again
        ]
        lines += [f"### {name}", "", *table(rows), ""]
    lines += ["### Front door (Envoy)", "", *table(describe(FrontDoorSettings)), ""]
    lines += [
        "`REELS_HOST` (127.0.0.1) and `REELS_SHUTDOWN_GRACE_SECONDS` (10) apply to every "
        "service's gRPC server, and so do its admission control's `REELS_MAX_INFLIGHT_RPCS` "
        "(256 unary calls in progress; 0: no limit) and `REELS_ADMISSION_WAIT_MS` (1000: how "
        "long a call waits for a slot before RESOURCE_EXHAUSTED + RetryInfo), each of which "
        "`REELS_<SERVICE>_MAX_INFLIGHT_RPCS` / `REELS_<SERVICE>_ADMISSION_WAIT_MS` overrides "
        "for one service.",
    ]
    return "\n".join(lines)


BEGIN_MARK = (
    "<!-- settings-table: begin (generated by `make gen` from the Settings dataclasses) -->"
)
END_MARK = "<!-- settings-table: end -->"


def render_readme(readme: Path) -> bool:
    """Rewrite the README's settings section; True when it changed."""
    text = readme.read_text()
    if BEGIN_MARK not in text or END_MARK not in text:
        raise SystemExit(f"{readme}: settings-table markers missing")
    head, rest = text.split(BEGIN_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    new = f"{head}{BEGIN_MARK}\n{markdown_tables()}\n{END_MARK}{tail}"
    if new != text:
        readme.write_text(new)
        return True
    return False


if __name__ == "__main__":
    import sys

    command = sys.argv[1] if len(sys.argv) > 1 else "docs"
    if command == "docs":
        print(markdown_tables())
    elif command == "readme":
        render_readme(REPO_ROOT / "README.md")
    else:
        raise SystemExit("usage: python -m reels.config [docs|readme]")
