"""One Chromium per session for the browser tests (each test opens its own context)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.browser.chromium import CHROMIUM, launch


async def _chromium(*, media: bool) -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM} (make setup installs it from apt)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await launch(pw, media=media)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """Chromium as a user has it (real autoplay policy)."""
    async for chromium in _chromium(media=False):
        yield chromium


@pytest.fixture(scope="session")
async def media_browser() -> AsyncIterator[Any]:
    """Chromium for bare player pages: autoplay allowed, audio muted."""
    async for chromium in _chromium(media=True):
        yield chromium
