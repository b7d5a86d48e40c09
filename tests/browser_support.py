"""Helpers for the browser tests: Debian's chromium driven by Playwright, never a download.

``.ci/run`` installs ``chromium`` and exports ``IVR_REQUIRE_BROWSER=1``: then a missing
browser fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# This machine's network is closed: no GPU, no QUIC, nothing fetched in the background.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_browser() -> None:
    """Skip (or, with IVR_REQUIRE_BROWSER=1, fail) when chromium or Playwright is missing."""
    required = os.environ.get("IVR_REQUIRE_BROWSER") == "1"
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (pip install -e .[test])"
    if problem is None:
        return
    if required:
        pytest.fail(f"browser tests required (IVR_REQUIRE_BROWSER=1) but {problem}")
    pytest.skip(f"browser tests skipped: {problem}")


async def launch(playwright):
    """A headless chromium from Debian's package."""
    return await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)


async def log_in(page, base: str, user: str, password: str = "demo") -> None:
    """The login form, as a person fills it."""
    await page.goto(f"{base}/login")
    await page.fill("#username", user)
    await page.fill("#password", password)
    await page.click("#login-submit")
