"""Configuration from environment variables, with defaults that work on one machine.

Every service and adapter reads its settings here so that pointing the mesh at a
production engine is a matter of environment variables only (see README, "Ports
and production settings").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def var_dir() -> Path:
    return Path(os.environ.get("REELS_VAR_DIR", REPO_ROOT / "var"))


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


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


def service_addr(service: str) -> str:
    """Where to reach `service` (e.g. "stream"): REELS_<SERVICE>_ADDR or the local default."""
    return _env(f"REELS_{service.upper()}_ADDR", f"127.0.0.1:{DEFAULT_PORTS[service]}")


@dataclass(frozen=True)
class AuthConfig:
    """JWT settings shared by Envoy (jwt_authn) and the services' interceptor."""

    issuer: str = field(default_factory=lambda: _env("REELS_JWT_ISSUER", "reels-dev"))
    audience: str = field(default_factory=lambda: _env("REELS_JWT_AUDIENCE", "reels-api"))
    public_key_path: Path = field(
        default_factory=lambda: Path(
            _env("REELS_JWT_PUBLIC_KEY", str(var_dir() / "keys" / "jwt_public.pem"))
        )
    )
    private_key_path: Path = field(
        default_factory=lambda: Path(
            _env("REELS_JWT_PRIVATE_KEY", str(var_dir() / "keys" / "jwt_private.pem"))
        )
    )
    jwks_path: Path = field(
        default_factory=lambda: Path(_env("REELS_JWKS_PATH", str(var_dir() / "keys" / "jwks.json")))
    )
    # "false" turns the check off in a service (never in production: Envoy also checks).
    required: bool = field(default_factory=lambda: _env("REELS_AUTH_REQUIRED", "true") == "true")


@dataclass(frozen=True)
class ServerConfig:
    service: str
    host: str
    port: int
    grace_seconds: float

    @classmethod
    def for_service(cls, service: str) -> ServerConfig:
        return cls(
            service=service,
            host=_env("REELS_HOST", "127.0.0.1"),
            port=_env_int(f"REELS_{service.upper()}_PORT", DEFAULT_PORTS[service]),
            grace_seconds=float(_env("REELS_SHUTDOWN_GRACE_SECONDS", "10")),
        )


def telemetry_file() -> Path:
    return Path(_env("REELS_OTEL_FILE", str(var_dir() / "traces" / "spans.jsonl")))


def otlp_endpoint() -> str | None:
    """OTLP gRPC collector; when unset, spans go to a local JSONL file."""
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
