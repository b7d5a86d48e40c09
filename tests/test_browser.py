"""End to end in a real headless browser (Debian's chromium, driven by Playwright).

The server runs in-process on a real port (aiohttp's test server) with a Runtime on a
manual clock and its timers off, so nothing happens unless a test makes it happen;
Playwright's async API shares the event loop. Skipped with a reason when chromium is
missing, failed instead when IVR_REQUIRE_BROWSER=1 (CI). Waits are Playwright's own
(polling the page until a condition holds, 5 s at most); nothing sleeps.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime

import pytest

from ivr.config import load_settings
from ivr.server import Runtime, make_app
from ivr.store import EventLog
from ivr.web import api as api_module
from ivr.web import pages as pages_module
from ivr.web import phone as phone_module

from .browser_support import log_in, require_browser
from .conftest import ROOT
from .test_api import ManualClock

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)  # a Tuesday, 09:30 in Stockholm: open
WAIT_MS = 15000  # the longest any condition is waited for: reached only when a test fails


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def server(aiohttp_server, tmp_path, clock, monkeypatch):
    require_browser()
    monkeypatch.setenv("IVR_SESSION_KEY", "browser-test-session-key-0123456789")
    settings = load_settings(ROOT / "config.toml", env={})
    log = EventLog.open(tmp_path / "ivr.db", hash_key=b"browser-test-hash-key-012345")
    runtime = Runtime(settings, sink=log, clock=clock, timers=False)
    app = make_app(runtime, setups=[functools.partial(module.setup, demo=True)
                                    for module in (api_module, pages_module, phone_module)])
    server = await aiohttp_server(app)
    server.runtime = runtime
    server.base = str(server.make_url("")).rstrip("/")
    return server


async def test_a_test_call_reaches_the_desk_and_its_wrap_up_the_wallboard_and_report(
        server, browser, clock) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base

    # an agent logs in, cannot open the supervisors' pages, and logs in to the queues
    desk = await (await browser.new_context()).new_page()
    await log_in(desk, base, "anna")
    await expect(desk).to_have_url(f"{base}/desk")
    for path in ("/wallboard", "/phone", "/reports/today"):
        assert (await desk.goto(f"{base}{path}")).status == 403, path
    await desk.goto(f"{base}/desk")
    await desk.click("#desk-login")
    await expect(desk.locator("#agent-state")).to_contain_text("Ledig")

    # a supervisor logs in to the wallboard; it is never reloaded from here on
    chef = await browser.new_context()
    wallboard = await chef.new_page()
    await log_in(wallboard, base, "chef")
    await expect(wallboard).to_have_url(f"{base}/wallboard")
    await wallboard.evaluate("window.notReloaded = true")
    anna = wallboard.locator('#agents tr[data-agent="anna"] [data-field="state"]')
    await expect(anna).to_contain_text("Ledig")

    # the test phone calls children and education
    phone = await chef.new_page()
    await phone.goto(f"{base}/phone")
    await phone.select_option("#phone-flow", "switchboard")
    await phone.click("#phone-call")
    await expect(phone.locator('#phone-path li[data-node="main_menu"]')).to_be_attached()
    await expect(phone.locator("#phone-prompt")).not_to_be_empty()
    await phone.click('button[data-digit="1"]')
    await expect(phone.locator("#phone-status")).to_contain_text("Ringer hos anna")
    nodes = await phone.locator("#phone-path li").evaluate_all("items => items.map(i => i.dataset.node)")
    assert nodes == ["greeting", "disturbance", "opening", "main_menu", "barn"]
    call_id = await phone.evaluate("document.body.dataset.call")

    # it rings at the desk, with its queue and IVR path; the agent answers
    offer = desk.locator("#offer")
    await expect(offer).to_be_visible()
    await expect(offer.locator('[data-field="queue"]')).to_contain_text("Barn och utbildning")
    await expect(offer.locator('[data-field="path"]')).to_contain_text("main_menu")
    clock.advance(seconds=8)
    await desk.click("#accept")
    await expect(phone.locator("#phone-status")).to_have_text("Kopplad till anna / Connected to anna")
    await expect(anna).to_contain_text("I samtal")  # the wallboard, live

    # the agent hangs up and codes the call; the caller answers the survey and is let go
    clock.advance(seconds=95)
    await desk.click("#hangup")
    await expect(desk.locator("#wrapup-form")).to_be_visible()
    await expect(desk.locator("#wrapup-countdown")).not_to_be_empty()
    await desk.select_option("#wrapup-resolution", "resolved")
    await desk.select_option("#wrapup-code", "skola")
    await desk.fill("#wrapup-note", "Frågade om skolskjuts.")
    await expect(phone.locator('#phone-path li[data-node="survey"]')).to_be_attached()
    await desk.click("#wrapup-submit")
    await expect(desk.locator("#wrapup-form")).to_be_hidden()
    await phone.click('button[data-digit="1"]')
    await expect(phone.locator("#phone-status")).to_have_text("Avslutat / Ended")

    # the wrap-up shows on the wallboard without a reload, and in today's report
    recent = wallboard.locator(f'#recent li[data-call="{call_id}"]')
    await expect(recent).to_contain_text("Barn och utbildning")
    await expect(recent).to_contain_text("Anna Lindqvist")
    await expect(recent).to_contain_text("Löst")
    await expect(recent).to_contain_text("skola")
    await expect(anna).to_contain_text("Ledig")
    assert await wallboard.evaluate("window.notReloaded") is True
    href = await wallboard.locator("a#report-today").get_attribute("href")
    report = await chef.new_page()
    await report.goto(f"{base}{href}")
    await expect(report.locator("body")).to_contain_text("barn-utbildning")  # a column only with calls
    asa = report.get_by_role("row", name=re.compile("^Snittid till svar"))
    await expect(asa).to_contain_text("8.0 s")  # the 8 s it rang at the desk


async def test_sign_in_is_checked_and_forged_or_expired_sessions_are_refused(server, browser, clock) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    base = server.base
    context = await browser.new_context()
    page = await context.new_page()
    await log_in(page, base, "chef", "wrong-password")
    await expect(page.locator("#login-error")).to_be_visible()
    await expect(page.locator("#login-error")).to_have_attribute("role", "alert")

    await log_in(page, base, "chef")
    await expect(page).to_have_url(f"{base}/wallboard")
    cookie = next(c for c in await context.cookies() if c["name"] == "ivr_session")
    name, expiry, signature = cookie["value"].split(".")
    forged = {**cookie, "value": f"{name}.{int(expiry) + 86400}.{signature}"}
    other = await browser.new_context()
    await other.add_cookies([forged])
    stranger = await other.new_page()
    await stranger.goto(f"{base}/phone")
    await expect(stranger).to_have_url(re.compile(r"/login\?next=/phone$"))
    response = await stranger.request.post(f"{base}/phone/calls", data={})
    assert response.status == 401

    clock.advance(hours=12)  # the session's lifetime
    await page.goto(f"{base}/wallboard")
    await expect(page).to_have_url(re.compile(r"/login\?next=/wallboard$"))
