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
