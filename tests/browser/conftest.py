"""The console in a real browser: Debian's Chromium (scripts/test installs it) driven by
Playwright with ``executable_path`` (no browser download), against a real daemon."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.acceptance.conftest import daemons, embedded_state_dir  # noqa: F401 - fixtures

CHROMIUM = os.environ.get("TRIGGERD_TEST_CHROMIUM") or shutil.which("chromium") or \
    "/usr/bin/chromium"
# Without these Chromium reaches for Google's hosts at start; this network is closed.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
# Screenshots of every page are kept here (a test artifact).
ARTIFACTS = Path(os.environ.get("TRIGGERD_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[2] / ".artifacts" / "console")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run scripts/test, which"
                    " installs Debian's chromium package")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                    args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
