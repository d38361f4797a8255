"""Dev tooling without a mesh: `make status`'s reading of Envoy, `make reset`'s guards,
`make token`'s user, the per-checkout Redis prefix, the README's settings section."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reels.config import (
    BEGIN_MARK,
    END_MARK,
    REPO_ROOT,
    PlatformSettings,
    checkout_slug,
    markdown_tables,
    render_readme,
)
from reels_dev import reset, status

CLUSTERS = """\
svc_rank::observability_name::svc_rank
svc_rank::default_priority::max_connections::1024
svc_rank::127.0.0.1:50053::cx_active::1
svc_rank::127.0.0.1:50053::health_flags::healthy
svc_chat::127.0.0.1:50055::health_flags::/failed_active_hc
media_origin::127.0.0.1:8090::health_flags::healthy
"""


def test_status_reads_envoys_cluster_health(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "_http", lambda url, timeout=1.0: (200, CLUSTERS))
    clusters = status.envoy_clusters(9901)
    assert clusters == {
        "svc_rank": ["healthy"],
        "svc_chat": ["/failed_active_hc"],
        "media_origin": ["healthy"],
    }
    assert status._envoy_view(clusters, "svc_rank") == (True, "svc_rank: healthy")
    assert status._envoy_view(clusters, "svc_chat") == (False, "svc_chat: failed_active_hc")
    assert status._envoy_view(clusters, "svc_upload") == (False, "svc_upload: no hosts")
    assert status._envoy_view(None, "svc_rank") == (False, "-")
    assert status._envoy_view(clusters, "") == (True, "")


def test_status_table_has_a_row_per_part() -> None:
    parts = [row.part for row in status.rows()]
    for part in ("postgres", "redis", "otlp-sink", "kafka (tansu)", "triton", "envoy"):
        assert part in parts
    assert [p for p in parts if p.startswith("svc_") and " " not in p] == [
        "svc_upload",
        "svc_transcode",
        "svc_rank",
        "svc_stream",
        "svc_chat",
    ]


def test_reset_leaves_remote_things_alone(capsys: pytest.CaptureFixture[str]) -> None:
    reset.reset_database("postgresql+psycopg://u:p@db.prod.internal:5432/reels")
    reset.reset_objects("s3://bucket/prefix")
    reset.reset_analytics("https://user:pw@ch:8443/reels")
    reset.reset_vectors("http://milvus:19530")
    out = capsys.readouterr().out
    assert out.count("left alone") == 4
    assert "pw" not in out


def test_reset_refuses_an_empty_redis_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    reset.reset_redis("redis://127.0.0.1:1/0", "")  # never connects
    assert "refusing" in capsys.readouterr().out


def test_reset_deletes_local_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    objects = tmp_path / "objects"
    (objects / "videos").mkdir(parents=True)
    (objects / "videos" / "a.ts").write_bytes(b"x")
    chdb = tmp_path / "chdb"
    chdb.mkdir()
    milvus = tmp_path / "m" / "reels.db"
    milvus.parent.mkdir()
    milvus.write_bytes(b"x")
    (milvus.parent / ".reels.db.lock").write_bytes(b"")
    reset.reset_objects(objects.as_uri())
    reset.reset_analytics(f"chdb://{chdb}")
    reset.reset_vectors(str(milvus))
    assert not objects.exists() and not chdb.exists() and not milvus.exists()
    assert not (milvus.parent / ".reels.db.lock").exists()


def test_redis_glob_is_escaped() -> None:
    assert reset._glob_escape("reels:a*b?[c]:") == "reels:a\\*b\\?\\[c\\]:"


def test_redis_prefix_is_per_checkout() -> None:
    assert PlatformSettings.from_env({}).redis_prefix == f"reels:{checkout_slug()}:"
    assert PlatformSettings.from_env({"REELS_REDIS_PREFIX": "x:"}).redis_prefix == "x:"


def _token_user(*args: str, env: dict[str, str] | None = None) -> str:
    """The user `make token` would mint for (make -n prints the command)."""
    out = subprocess.run(
        ["make", "-n", "-s", "token", *args],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "USER": "root", **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if "reels_dev token" in line)
    return line.split("--user", 1)[1].strip().strip('"')


def test_make_token_ignores_the_login_shells_user() -> None:
    assert _token_user() == "dev-user"
    assert _token_user("AS=alice") == "alice"
    assert _token_user("USER=bob") == "bob"
    assert _token_user(env={"AS": "carol"}) == "carol"


def test_readme_settings_section_is_current(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN_MARK}\nstale\n{END_MARK}\noutro\n")
    assert render_readme(readme) is True
    assert markdown_tables() in readme.read_text()
    assert render_readme(readme) is False
