"""Fault flags (reels.faults): switched on and off through the file every process reads,
and what a choke point raises while one is on."""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path

import pytest

from reels import faults
from reels.storage import LocalObjectStore


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REELS_VAR_DIR", str(tmp_path))
    monkeypatch.setattr(faults, "_flags", faults._Flags())
    return tmp_path


async def test_full_disk_flag_fails_writes_with_enospc_until_cleared(var: Path) -> None:
    store = LocalObjectStore(var / "objects")
    faults.set_fault(faults.Fault("disk", error_rate=1.0))
    with pytest.raises(OSError) as failed:
        await store.put_bytes("a/b.bin", b"x")
    assert failed.value.errno == errno.ENOSPC
    assert await store.list("a") == []  # nothing half-written is visible
    faults.clear("disk")
    await asyncio.sleep(faults.CHECK_INTERVAL_S)
    assert await store.put_bytes("a/b.bin", b"x") == 1
    assert await store.get_bytes("a/b.bin") == b"x"


def test_flags_expire_and_unknown_targets_are_refused(var: Path) -> None:
    faults.set_fault(faults.Fault("triton", delay_ms=10, expires_at=time.time() - 1))
    assert faults.read()["triton"].delay_ms == 10
    assert faults.active("triton") is None  # expired
    with pytest.raises(ValueError, match="unknown fault target"):
        faults.set_fault(faults.Fault("mongodb", error_rate=1.0))
    with pytest.raises(ValueError, match="error_rate"):
        faults.set_fault(faults.Fault("redis", error_rate=2.0))


async def test_injected_error_is_the_dependencys_own(var: Path) -> None:
    faults.set_fault(faults.Fault("stream", error_rate=1.0))
    with pytest.raises(ConnectionError, match="fault injected: stream"):
        await faults.inject("stream", ConnectionError)
    await faults.inject("triton", ConnectionError)  # no flag: nothing happens


def test_out_of_range_flags_are_refused_naming_the_range(var: Path) -> None:
    for bad in (
        faults.Fault("redis", delay_ms=faults.MAX_DELAY_MS + 1),
        faults.Fault("redis", delay_ms=-1),
        faults.Fault("redis", delay_ms=float("inf")),  # type: ignore[arg-type]
        faults.Fault("redis", error_rate=float("nan")),
        faults.Fault("redis", expires_at=float("nan")),
    ):
        with pytest.raises(ValueError, match=r"within 0\.\.|finite"):
            faults.set_fault(bad)
    assert faults.read() == {}


def test_a_hand_edited_file_is_clamped_to_the_same_bounds(var: Path) -> None:
    (var / "run").mkdir()
    faults.faults_path().write_text(
        '{"redis": {"delay_ms": 99999999999999999999, "error_rate": -2},'
        ' "triton": {"delay_ms": NaN, "error_rate": Infinity},'
        ' "stream": {"delay_ms": "slow"}, "disk": {"error_rate": 1}}'
    )
    assert faults.read() == {
        "redis": faults.Fault("redis", faults.MAX_DELAY_MS, 0.0),
        "triton": faults.Fault("triton", 0, 1.0),
        "disk": faults.Fault("disk", 0, 1.0),  # one bad entry ("stream") loses no other
    }


async def test_a_call_sleeping_on_a_delay_wakes_when_the_flag_is_cleared(var: Path) -> None:
    faults.set_fault(faults.Fault("redis", delay_ms=faults.MAX_DELAY_MS))
    started = time.monotonic()
    call = asyncio.create_task(faults.inject("redis", ConnectionError))
    await asyncio.sleep(0.2)
    assert not call.done()  # the delay holds the call
    faults.clear("redis")
    cleared = time.monotonic()
    await asyncio.wait_for(call, 2 * faults.CHECK_INTERVAL_S + 0.5)  # not the 60 s
    woke = time.monotonic()
    assert woke - cleared <= faults.CHECK_INTERVAL_S + 0.25, woke - cleared
    assert woke - started < 1.5


async def test_a_sync_delay_ends_at_the_flags_expiry(var: Path) -> None:
    expires = time.time() + 0.3
    faults.set_fault(faults.Fault("storage", delay_ms=faults.MAX_DELAY_MS, expires_at=expires))
    started = time.monotonic()
    await asyncio.to_thread(faults.inject_sync, "storage", lambda m: OSError(errno.EIO, m))
    took = time.monotonic() - started
    assert 0.25 <= took <= 0.3 + 0.25, took  # at the expiry, not at the next look
