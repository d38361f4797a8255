"""Settings of the dev launchers (Tansu, Triton, the OTLP sink), read by reels.config's
loader like every other setting. Envoy's are ``reels.config.FrontDoorSettings``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reels.config import REPO_ROOT, FromEnv, PlatformSettings, setting, var_dir


@dataclass(frozen=True)
class InfraSettings(FromEnv):
    kafka_port: int = setting(9092, "REELS_KAFKA_PORT", "Tansu (Kafka protocol) listener")
    kafka_journal_url: str = setting(
        "",
        "REELS_KAFKA_JOURNAL_URL",
        "PostgreSQL the dev broker journals to before it acknowledges "
        "(empty: REELS_DATABASE_URL; off: memory-only Tansu)",
    )
    triton_http_port: int = setting(18000, "REELS_TRITON_HTTP_PORT", "Triton HTTP port")
    triton_grpc_port: int = setting(18001, "REELS_TRITON_GRPC_PORT", "Triton gRPC port")
    triton_metrics_port: int = setting(18002, "REELS_TRITON_METRICS_PORT", "Triton metrics port")
    triton_model_repository: Path = setting(
        REPO_ROOT / "models" / "repository",
        "REELS_TRITON_MODEL_REPOSITORY",
        "models Triton serves",
    )
    pytriton_dir: Path = setting(
        REPO_ROOT / ".tools" / "pytriton",
        "REELS_PYTRITON_DIR",
        "where the nvidia-pytriton wheel (tritonserver) is unpacked",
    )
    triton_venv: Path = setting(
        REPO_ROOT / ".tools" / "triton-venv",
        "REELS_TRITON_VENV",
        "venv Triton's Python-backend stub runs in",
    )
    otlp_port: int = setting(4317, "REELS_OTLP_PORT", "the dev OTLP sink's port")
    clamd_port: int = setting(3310, "REELS_CLAMD_PORT", "clamd's TCP port (malware scan)")
    otlp_file: Path = setting(
        env="REELS_OTLP_FILE",
        doc="where the dev OTLP sink writes spans",
        factory=lambda: var_dir() / "traces" / "otlp.jsonl",
        shown="<var>/traces/otlp.jsonl",
    )
    demo_base_url: str = setting(
        "",
        "REELS_DEMO_BASE_URL",
        "Envoy for `make demo` (empty: 127.0.0.1:REELS_ENVOY_PORT)",
    )

    def journal_url(self) -> str | None:
        """The broker journal's database URL, or None when the journal is off."""
        if self.kafka_journal_url.strip().lower() == "off":
            return None
        if self.kafka_journal_url:
            return self.kafka_journal_url
        return PlatformSettings.from_env().database_url
