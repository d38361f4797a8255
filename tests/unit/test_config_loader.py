"""The settings loader: typed values from a mapping, clear errors, generated docs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from reels.config import (
    FromEnv,
    PlatformSettings,
    SettingError,
    describe,
    group,
    load,
    markdown_tables,
    server_group,
    setting,
)


@dataclass(frozen=True)
class Inner(FromEnv):
    depth: int = setting(3, "T_DEPTH", "how deep")


@dataclass(frozen=True)
class Sample(FromEnv):
    name: str = setting("x", "T_NAME", "a name")
    count: int = setting(2, "T_COUNT", "a count")
    ratio: float = setting(0.5, "T_RATIO", "a ratio")
    enabled: bool = setting(True, "T_ENABLED", "a switch")
    path: Path = setting(Path("/tmp/a"), "T_PATH", "a path")
    optional: Path | None = setting(None, "T_OPT", "maybe a path")
    items: tuple[str, ...] = setting(("a",), "T_ITEMS", "a list")
    inner: Inner = group(Inner)


def test_defaults_apply_when_variables_are_unset_or_empty() -> None:
    got = load(Sample, {"T_NAME": ""})
    assert got == Sample(inner=Inner())
    assert got.name == "x" and got.count == 2 and got.inner.depth == 3


def test_values_are_parsed_to_their_declared_types() -> None:
    got = Sample.from_env(
        {
            "T_NAME": "y",
            "T_COUNT": "7",
            "T_RATIO": "1.25",
            "T_ENABLED": "off",
            "T_PATH": "/srv/x",
            "T_OPT": "/srv/y",
            "T_ITEMS": "a, b,,c",
            "T_DEPTH": "9",
        }
    )
    assert got.count == 7 and got.ratio == 1.25 and got.enabled is False
    assert got.path == Path("/srv/x") and got.optional == Path("/srv/y")
    assert got.items == ("a", "b", "c")
    assert got.inner.depth == 9


@pytest.mark.parametrize(
    ("var", "value"), [("T_COUNT", "seven"), ("T_RATIO", "1,5"), ("T_ENABLED", "maybe")]
)
def test_a_bad_value_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingError, match=var):
        Sample.from_env({var: value})


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Sample().name = "z"  # type: ignore[misc]


def test_server_group_reads_the_services_port_variable() -> None:
    @dataclass(frozen=True)
    class Svc(FromEnv):
        server: object = server_group("rank")

    got = Svc.from_env({"REELS_RANK_PORT": "6001", "REELS_SHUTDOWN_GRACE_SECONDS": "2.5"})
    assert got.server.port == 6001 and got.server.grace_seconds == 2.5  # type: ignore[attr-defined]
    assert Svc.from_env({}).server.port == 50053  # type: ignore[attr-defined]


def test_every_setting_is_documented() -> None:
    rows = describe(PlatformSettings)
    assert {"REELS_DATABASE_URL", "REELS_KAFKA_BOOTSTRAP", "REELS_JWT_ISSUER"} <= {
        r[0] for r in rows
    }
    assert all(doc for _, _, _, doc in rows), [r for r in rows if not r[3]]


def test_platform_database_defaults_to_a_per_checkout_name() -> None:
    url = PlatformSettings.from_env({}).database_url
    assert url.rsplit("/", 1)[1].startswith("reels_")
    assert PlatformSettings.from_env({"REELS_DATABASE_URL": "postgresql://h/db"}).database_url == (
        "postgresql://h/db"
    )


def test_readme_tables_list_every_service_setting() -> None:
    text = markdown_tables()
    for service in ("svc_rank", "svc_chat"):
        assert f"### {service}" in text
    assert "`REELS_RANK_TRENDING_TIMEOUT_S`" in text
