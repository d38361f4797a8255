"""Debian's Chromium for the browser tests, driven by Playwright (``playwright install``
cannot download here; DESIGN.md). The fixtures are in tests/browser/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("REELS_CHROMIUM", "/usr/bin/chromium"))
BASE_ARGS = ("--no-sandbox", "--disable-dev-shm-usage")  # root in containers/CI
MEDIA_ARGS = ("--autoplay-policy=no-user-gesture-required", "--mute-audio")
"""For bare player pages: autoplay without a gesture, no sound."""

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"chromium is not installed at {CHROMIUM} (make setup installs it from apt)",
)


async def launch(pw: Any, *, media: bool = False) -> Any:
    """A headless Chromium; ``media``: with :data:`MEDIA_ARGS` (the app's own pages are
    tested without them, under the browser's real autoplay policy)."""
    return await pw.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        timeout=30_000,
        args=[*BASE_ARGS, *(MEDIA_ARGS if media else ())],
    )
