"""Faults on demand (issue 14): latency or errors in a dependency call, a full disk.

Modelled on the OpenTelemetry demo's feature flags: a flag names a dependency and what
goes wrong with it; every process reads the flags cheaply and each dependency client
checks them at one choke point. Switch them with ``python -m reels_dev.faults
set|clear|list`` (the same under ``make up`` and in tests).

Where the flags live: one JSON file, ``<var>/run/faults.json`` (``REELS_VAR_DIR``; a
test mesh has its own var dir, so its faults never reach another mesh). Not Redis:
Redis is one of the dependencies a fault takes away. A process re-reads the file when
its mtime changes, looked at no more often than every :data:`CHECK_INTERVAL_S`
(0.5 s): a flag takes effect within half a second, and a call costs a dict lookup, a
``stat`` at most twice a second per process.

Targets and their choke points (the error each raises is the one the real outage
raises there, so the callers' existing fallbacks are what is exercised):

=========  ==========================================  =====================================
target     choke point                                  error
=========  ==========================================  =====================================
triton     ``reels.model_client.ModelClient._infer``    ``InferenceServerException``
           and ``ready``                                 (→ ``ModelError``)
stream     ``svc_rank.stream_client.StreamClient``      ``SourceUnavailable`` (feed falls
                                                        back)
redis      every command of ``reels.cache.redis_client``  ``redis.exceptions.ConnectionError``
           clients (its connection class)
storage    every ``LocalObjectStore`` read and write     ``OSError(EIO)``
disk       ``LocalObjectStore`` writes ("fill a disk     ``OSError(ENOSPC)``
           path": a real full filesystem needs a
           tmpfs or loop mount, i.e. root)
milvus     ``svc_rank.index.vectors.VectorStore.search`` ``SourceUnavailable`` (no similar
                                                        recall: FEED_FALLBACK_NO_VECTORS)
=========  ==========================================  =====================================

A flag: ``delay_ms`` added before the call (0..:data:`MAX_DELAY_MS`, one minute),
``error_rate`` (0..1) the share of calls that fail, ``expires_at`` (epoch seconds, 0:
never) after which it is ignored. :func:`set_fault` refuses anything outside those ranges
(and NaN/inf); :func:`read` clamps a hand-edited file into them (NaN reads as 0), so no
process ever sleeps longer than a minute on a flag. A delay is slept in slices that end
when the next look at the file is due, so a ``clear`` (or the flag's expiry) cuts a call's
wait short within about :data:`CHECK_INTERVAL_S`; a changed delay applies to calls already
waiting (measured from the start of each call's wait).
Killing or pausing a whole component is not a flag: ``python -m reels_dev.faults kill
NAME`` / ``pause`` / ``resume`` (supervisor under ``make up``, the fixture's process in
tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from reels.config import var_dir

TARGETS = ("triton", "stream", "redis", "storage", "disk", "milvus")
CHECK_INTERVAL_S = 0.5
# The most a flag may add to one call. Longer than every request timeout on the mesh's
# paths (Envoy's media route 30 s, the services' 10 s drain grace), so "slower than the
# caller waits" is reachable; a longer wait is a hang, which ``pause`` (SIGSTOP) models.
MAX_DELAY_MS = 60_000
_MIN_SLICE_S = 0.01  # a sleeping call never spins faster than this


@dataclass(frozen=True)
class Fault:
    """What goes wrong with one dependency (``target``, one of :data:`TARGETS`)."""

    target: str
    delay_ms: int = 0
    error_rate: float = 0.0
    expires_at: float = 0.0

    def live(self, now: float | None = None) -> bool:
        return not self.expires_at or (now or time.time()) < self.expires_at


def faults_path() -> Path:
    """``<var>/run/faults.json``: the flags of this checkout (or test mesh)."""
    return var_dir() / "run" / "faults.json"


def _number(value: object) -> float:
    """A JSON number as a float, NaN as 0; ValueError for anything else (a string, a list)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    return 0.0 if math.isnan(value) else float(value)


def _clamped(target: str, value: object) -> Fault | None:
    """A flag from the file held to the ranges :func:`set_fault` enforces (a hand-edited file
    may say anything): delay 0..MAX_DELAY_MS, error rate 0..1, NaN as 0. None for an entry
    that is not an object of numbers."""
    if not isinstance(value, dict):
        return None
    try:
        delay = _number(value.get("delay_ms", 0))
        rate = _number(value.get("error_rate", 0.0))
        expires = _number(value.get("expires_at", 0.0))
    except ValueError:
        return None
    return Fault(
        target,
        int(min(max(delay, 0.0), MAX_DELAY_MS)),
        min(max(rate, 0.0), 1.0),
        expires,
    )


def read(path: Path | None = None) -> dict[str, Fault]:
    """Every flag in the file (expired ones included), clamped to the allowed ranges; {}
    when there is no file or it is unreadable (a half-written file never breaks a service:
    writes are atomic anyway). An entry that is not an object of numbers is skipped."""
    try:
        raw = json.loads((path or faults_path()).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    out = {name: _clamped(name, value) for name, value in raw.items() if name in TARGETS}
    return {name: fault for name, fault in out.items() if fault is not None}


def _write(faults: dict[str, Fault], path: Path | None = None) -> None:
    path = path or faults_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({n: asdict(f) for n, f in sorted(faults.items())}, indent=1))
    os.replace(tmp, path)


def check(fault: Fault) -> None:
    """Raise ValueError, naming the allowed range, for an unknown target, a delay outside
    0..MAX_DELAY_MS ms, an error rate outside 0..1, or a NaN/infinite number."""
    if fault.target not in TARGETS:
        raise ValueError(f"unknown fault target {fault.target!r}: one of {', '.join(TARGETS)}")
    if not (
        isinstance(fault.delay_ms, int | float)
        and math.isfinite(fault.delay_ms)
        and 0 <= fault.delay_ms <= MAX_DELAY_MS
    ):
        raise ValueError(f"delay_ms must be within 0..{MAX_DELAY_MS} ms, got {fault.delay_ms!r}")
    if not (isinstance(fault.error_rate, int | float) and 0.0 <= fault.error_rate <= 1.0):
        raise ValueError(f"error_rate must be within 0..1, got {fault.error_rate!r}")
    if not (isinstance(fault.expires_at, int | float) and math.isfinite(fault.expires_at)):
        raise ValueError(f"expires_at must be finite epoch seconds, got {fault.expires_at!r}")


def set_fault(fault: Fault, path: Path | None = None) -> None:
    """Add or replace the flag for ``fault.target``; ValueError as :func:`check` says."""
    check(fault)
    faults = read(path)
    faults[fault.target] = fault
    _write(faults, path)


def clear(target: str | None = None, path: Path | None = None) -> None:
    """Remove one flag, or every flag (``target`` None)."""
    faults = read(path) if target else {}
    faults.pop(target or "", None)
    _write(faults, path)


class _Flags:
    """This process's view of the file: re-read when its mtime changes, looked at
    at most every CHECK_INTERVAL_S."""

    def __init__(self) -> None:
        self.checked = 0.0
        self.mtime: float | None = None
        self.faults: dict[str, Fault] = {}

    def get(self, target: str) -> Fault | None:
        now = time.monotonic()
        if now - self.checked >= CHECK_INTERVAL_S:
            self.checked = now
            path = faults_path()
            try:
                mtime: float | None = path.stat().st_mtime
            except OSError:
                mtime = None
            if mtime != self.mtime:
                self.mtime = mtime
                self.faults = read(path) if mtime is not None else {}
        fault = self.faults.get(target)
        return fault if fault is not None and fault.live() else None


_flags = _Flags()


def active(target: str) -> Fault | None:
    """The live flag for ``target`` in this process, or None (the common case)."""
    return _flags.get(target)


def _fails(fault: Fault) -> bool:
    return fault.error_rate >= 1.0 or (fault.error_rate > 0 and random.random() < fault.error_rate)


def _next_wait(target: str, started: float) -> tuple[Fault | None, float]:
    """(the flag now, seconds to sleep next; 0: the wait is over). A slice ends when this
    process's next look at the file is due (or at the flag's expiry), so a cleared flag
    (None) ends the wait within about CHECK_INTERVAL_S, an expired one at once."""
    fault = active(target)
    if fault is None or not fault.delay_ms:
        return fault, 0.0
    now = time.monotonic()
    left = started + fault.delay_ms / 1000 - now
    if left <= 0:
        return fault, 0.0
    next_look = _flags.checked + CHECK_INTERVAL_S - now
    if fault.expires_at:  # wake at the expiry itself, not at the next look after it
        next_look = min(next_look, fault.expires_at - time.time())
    return fault, min(left, max(next_look, _MIN_SLICE_S))


async def inject(target: str, error: Callable[[str], BaseException]) -> None:
    """At a choke point, before the real call: wait the flag's delay (cut short when the
    flag is cleared or expires), then raise ``error(message)`` for the flag's share of
    calls. Does nothing without a flag."""
    started = time.monotonic()
    fault, wait = _next_wait(target, started)
    while wait > 0:
        await asyncio.sleep(wait)
        fault, wait = _next_wait(target, started)
    if fault is not None and _fails(fault):
        raise error(f"fault injected: {target} unavailable (python -m reels_dev.faults clear)")


def inject_sync(target: str, error: Callable[[str], BaseException]) -> None:
    """:func:`inject` for code that runs in a worker thread (file I/O)."""
    started = time.monotonic()
    fault, wait = _next_wait(target, started)
    while wait > 0:
        time.sleep(wait)
        fault, wait = _next_wait(target, started)
    if fault is not None and _fails(fault):
        raise error(f"fault injected: {target} (python -m reels_dev.faults clear)")


@contextlib.contextmanager
def injected(fault: Fault, path: Path | None = None):  # type: ignore[no-untyped-def]
    """A flag for the length of a ``with`` block (tests, benchmarks)."""
    set_fault(fault, path)
    try:
        yield fault
    finally:
        clear(fault.target, path)
