from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr.flowcheck import FlowContext

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def ctx() -> FlowContext:
    """A small config context: what the fixture flows are checked against."""
    return FlowContext(
        schedules=frozenset({"office"}),
        queues={"vaxeln": ("ovrigt", "personsokning")},
        slots={"storning": frozenset({"sv", "en"})},
        recordings_dir=FIXTURES / "recordings",
    )


# ----------------------------------------------------------------- the server's tests

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)  # a Tuesday, 09:30 in Stockholm: open
HASH_KEY = b"api-test-hash-key-0123456"


class ManualClock:
    """The server's clock in tests: moves only when told."""

    def __init__(self, now: datetime):
        self.value = now

    def now(self) -> datetime:
        return self.value

    def advance(self, seconds: float = 0.0, **kw: float) -> datetime:
        """Move on by ``seconds`` (and/or ``timedelta`` keywords: ``minutes=2``)."""
        self.value += timedelta(seconds=seconds, **kw)
        return self.value


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def runtime(tmp_path, clock):
    """A server runtime on the shipped config.toml, a real event log and the manual clock."""
    from ivr.config import load_settings
    from ivr.server import Runtime
    from ivr.store import EventLog

    settings = load_settings(ROOT / "config.toml", env={})
    log = EventLog.open(tmp_path / "ivr.db", hash_key=HASH_KEY)
    return Runtime(settings, sink=log, clock=clock, timers=False)


@pytest.fixture
async def browser(server):
    """Debian's chromium driven by Playwright, for a module's ``server`` fixture (browser tests)."""
    from playwright.async_api import async_playwright

    from .browser_support import launch

    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            yield browser
        finally:
            await browser.close()
