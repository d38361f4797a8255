"""Shared fixtures: each starts a real component on free loopback ports."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest_asyncio

pytest_plugins = ["tests.fixtures.mesh", "tests.fixtures.infra"]

log = logging.getLogger("tests")


@pytest_asyncio.fixture(scope="session", autouse=True)
async def _no_task_outlives_the_suite() -> AsyncIterator[None]:
    """At the end of the session, cancel what tests left running on the shared loop and
    name any task that ignores cancellation: pytest-asyncio's own teardown would wait
    for it forever (the suite hangs after its last test, with no summary)."""
    yield
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in left:
        task.cancel()
    if not left:
        return
    _, pending = await asyncio.wait(left, timeout=10)
    for task in pending:
        log.error("task ignores cancellation at the end of the suite: %r", task)
        print(f"\nLEFT RUNNING (ignores cancellation): {task!r}")
