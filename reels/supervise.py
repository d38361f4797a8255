"""One supervisor for every background loop of a service (consumers, relays, jobs).

A loop is an ``async`` callable that runs until cancelled. When it raises, or returns
while the service is not stopping, the supervisor logs why, waits a backoff with full
jitter (0.5 s doubling to 30 s by default; AWS Architecture Blog, "Exponential Backoff
And Jitter", 2015) and runs it again. A loop that stayed up for ``stable_after_s``
resets its backoff.

Loops marked ``required`` are ones the service cannot answer correctly without: while
one is down (crashed, in backoff, or restarted less than ``stable_after_s`` ago) the
supervisor sets the service's gRPC health to NOT_SERVING, so Envoy's health checks
route around the instance; it goes back to SERVING when every required loop is up.
A loop may also report its own readiness through the :class:`LoopHandle` it can
take as its only argument (``handle.ready()`` / ``handle.not_ready(reason)``), or,
from code deep inside it that knows nothing of the supervisor (a Kafka consumer whose
broker went away, an outbox relay that cannot reach it), through
:func:`report_ready` / :func:`report_not_ready`, which act on the loop running the
current task and do nothing outside a supervised loop. Every change of a loop's
readiness is logged once (not once per retry).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("reels.supervise")

_current: contextvars.ContextVar[LoopHandle | None] = contextvars.ContextVar(
    "reels_supervised_loop", default=None
)


def current_loop() -> LoopHandle | None:
    """The handle of the supervised loop running this task (None outside one)."""
    return _current.get()


def report_ready() -> None:
    """The current supervised loop works again (no-op outside one)."""
    handle = _current.get()
    if handle is not None:
        handle.ready()


def report_not_ready(reason: str) -> None:
    """The current supervised loop cannot do its work now, and why (no-op outside one)."""
    handle = _current.get()
    if handle is not None:
        handle.not_ready(reason)


LoopFn = Callable[..., Awaitable[Any]]


@dataclass
class LoopHandle:
    """What a loop may tell its supervisor about itself."""

    name: str
    _owner: Supervisor
    up: bool = False
    reason: str = "not started"

    def ready(self) -> None:
        if not self.up:
            if self.reason and self._owner._started:
                log.info(
                    "background loop ready again",
                    extra={
                        "fields": {
                            "service": self._owner.service,
                            "loop": self.name,
                            "was": self.reason,
                        }
                    },
                )
            self.up, self.reason = True, ""
            self._owner._changed()

    def not_ready(self, reason: str) -> None:
        if self.up or self.reason != reason:
            if self.up:
                log.warning(
                    "background loop not ready",
                    extra={
                        "fields": {
                            "service": self._owner.service,
                            "loop": self.name,
                            "reason": reason,
                        }
                    },
                )
            self.up, self.reason = False, reason
            self._owner._changed()


@dataclass
class _Loop:
    name: str
    fn: LoopFn
    required: bool
    min_backoff_s: float
    max_backoff_s: float
    handle: LoopHandle
    takes_handle: bool
    restarts: int = 0
    task: asyncio.Task[None] | None = None


@dataclass
class Supervisor:
    """Runs named loops, restarts them, and reports required ones to gRPC health.

    ``on_health`` (set by the server bootstrap) is called with True/False whenever the
    service's overall readiness flips.
    """

    service: str
    stable_after_s: float = 2.0
    on_health: Callable[[bool], Awaitable[None]] | None = None
    _loops: dict[str, _Loop] = field(default_factory=dict)
    _started: bool = False
    _stopping: bool = False
    _last_health: bool | None = None

    def add(
        self,
        name: str,
        fn: LoopFn,
        *,
        required: bool = False,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> LoopHandle:
        """Register a loop (run by :meth:`start`, or at once if already started).

        ``fn`` takes no argument, or one :class:`LoopHandle`.
        """
        if name in self._loops:
            raise ValueError(f"loop {name!r} already supervised")
        takes_handle = len(inspect.signature(fn).parameters) >= 1
        handle = LoopHandle(name, self)
        loop = _Loop(name, fn, required, min_backoff_s, max_backoff_s, handle, takes_handle)
        self._loops[name] = loop
        if self._started:
            self._spawn(loop)
        return handle

    def _spawn(self, loop: _Loop) -> None:
        # A loop counts as up from its start (health must not flap at boot).
        loop.handle.up, loop.handle.reason = True, ""
        loop.task = asyncio.create_task(self._run(loop), name=f"{self.service}:{loop.name}")

    async def start(self) -> None:
        """Start every registered loop in the background and return at once."""
        self._started = True
        for loop in self._loops.values():
            if loop.task is None:
                self._spawn(loop)

    @property
    def healthy(self) -> bool:
        """True when every required loop is up."""
        return all(lp.handle.up for lp in self._loops.values() if lp.required)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per loop: up, required, restarts, last reason (logs, tests)."""
        return {
            lp.name: {
                "up": lp.handle.up,
                "required": lp.required,
                "restarts": lp.restarts,
                "reason": lp.handle.reason,
            }
            for lp in self._loops.values()
        }

    async def _settle(self, loop: _Loop) -> None:
        await asyncio.sleep(self.stable_after_s)
        loop.handle.ready()

    async def _run(self, loop: _Loop) -> None:
        _current.set(loop.handle)  # this task's context: report_ready()/report_not_ready()
        backoff = loop.min_backoff_s
        while not self._stopping:
            started = time.monotonic()
            settle: asyncio.Task[None] | None = None
            if loop.restarts == 0:
                loop.handle.ready()
            else:
                # Up again only once it has survived stable_after_s.
                settle = asyncio.create_task(self._settle(loop))
            try:
                await (loop.fn(loop.handle) if loop.takes_handle else loop.fn())
                if self._stopping:
                    return
                reason = "returned"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure restarts the loop
                if self._stopping:
                    return
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                if settle is not None:
                    settle.cancel()
            loop.handle.not_ready(reason)
            loop.restarts += 1
            if time.monotonic() - started >= max(self.stable_after_s, backoff) * 2:
                backoff = loop.min_backoff_s
            delay = random.uniform(0, backoff)  # full jitter
            log.warning(
                "background loop stopped; restarting",
                extra={
                    "fields": {
                        "service": self.service,
                        "loop": loop.name,
                        "reason": reason,
                        "restart_in_s": round(delay, 2),
                        "restarts": loop.restarts,
                    }
                },
            )
            await asyncio.sleep(delay)
            backoff = min(loop.max_backoff_s, backoff * 2)

    def _changed(self) -> None:
        healthy = self.healthy
        if self.on_health is None or self._stopping or healthy == self._last_health:
            return
        self._last_health = healthy
        if not healthy:
            down = {
                n: s["reason"] for n, s in self.status().items() if s["required"] and not s["up"]
            }
            log.warning(
                "service NOT_SERVING: required loop down",
                extra={"fields": {"service": self.service, "down": down}},
            )
        else:
            log.info("service SERVING again", extra={"fields": {"service": self.service}})
        asyncio.ensure_future(self.on_health(healthy))

    async def attach_health(self, on_health: Callable[[bool], Awaitable[None]]) -> None:
        """Report readiness through ``on_health`` from now on (starting with the current)."""
        self.on_health = on_health
        self._last_health = self.healthy
        await on_health(self._last_health)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel every loop and wait (bounded) for them to finish."""
        self._stopping = True
        tasks = [lp.task for lp in self._loops.values() if lp.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
