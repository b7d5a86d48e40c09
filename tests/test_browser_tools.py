"""The desk's switchboard tools in a real headless browser (Debian's chromium, Playwright).

As tests/test_browser.py: the server runs in-process on a real port with a Runtime on a
manual clock and its timers off; skipped with a reason when chromium is missing, failed
instead when IVR_REQUIRE_BROWSER=1. Waits are Playwright's own (at most 5 s, reached only
when the test fails); nothing sleeps. E-mail is not configured, so a message stays
"not yet delivered".
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import pytest

from ivr.config import load_settings
from ivr.directory import Directory
from ivr.hours import STOCKHOLM
from ivr.server import Runtime, make_app
from ivr.store import EventLog
from ivr.web import api as api_module
from ivr.web import directory as directory_module
from ivr.web import messages as messages_module
from ivr.web import pages as pages_module

from .browser_support import log_in, require_browser
from .conftest import ROOT
from .test_api import ManualClock, call_in

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)  # a Tuesday, 09:30 in Stockholm
WAIT_MS = 15000  # reached only when a test fails (or the machine is heavily loaded)
STAFF = ROOT / "tests" / "fixtures" / "directory" / "good_sv_semicolon.csv"


@pytest.fixture
async def server(aiohttp_server, tmp_path, monkeypatch):
    require_browser()
    monkeypatch.setenv("IVR_SESSION_KEY", "browser-tools-session-key-0123456789")
    settings = load_settings(ROOT / "config.toml", env={})
    assert not settings.smtp.enabled  # the message must wait: "not yet delivered"
    with Directory(tmp_path / "ivr.db", now=lambda: T0) as directory:
        directory.import_bytes(STAFF.read_bytes())
        directory.set_status("1001", "leave", "Åter efter nyår", datetime(2027, 1, 11, tzinfo=STOCKHOLM))
    log = EventLog.open(tmp_path / "ivr.db", hash_key=b"browser-tools-hash-key-0123")
    runtime = Runtime(settings, sink=log, clock=ManualClock(T0), timers=False)
    app = make_app(runtime, setups=[functools.partial(module.setup, demo=True) for module in
                                    (api_module, pages_module, directory_module, messages_module)])
    server = await aiohttp_server(app)
    server.base = str(server.make_url("")).rstrip("/")
    server.runtime = runtime
    return server


async def open_page(browser):
    """A page that records its script errors and console errors (a CSP violation is one)."""
    page = await browser.new_page()
    page.set_default_timeout(WAIT_MS)
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    expected = "the server responded with a status of 400"  # the bad input these tests send on purpose
    page.on("console",
            lambda m: m.type == "error" and expected not in m.text and page.problems.append(m.text))
    return page


async def test_the_switchboard_tools_at_the_desk_and_the_directory_page(server, browser) -> None:
    """One browser for the three parts (a launch costs about a second)."""
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    desk = await open_page(browser)
    await log_in(desk, server.base, "anna")
    await expect(desk).to_have_url(f"{server.base}/desk")
    await an_agent_finds_the_unit_and_leaves_a_message_closed_by_the_callback(desk)
    await the_transfer_panel_works_while_talking_and_shows_what_the_server_refuses(desk, server)
    assert desk.problems == []
    supervisor = await open_page(browser)
    await a_supervisor_sets_a_status_and_a_bad_import_lists_its_problems(supervisor, server)
    assert supervisor.problems == []


async def an_agent_finds_the_unit_and_leaves_a_message_closed_by_the_callback(desk) -> None:
    from playwright.async_api import expect

    # a misspelt search lists the unit first, people with their status after it
    search = desk.locator("#dir-search")
    await search.press_sequentially("bygglof")
    hits = desk.locator("#dir-results li[data-entry]")
    await expect(hits.first).to_have_attribute("data-entry", "u-bygglov")
    await expect(hits.first).to_contain_text("Bygglovsenheten")
    await expect(hits.first).to_contain_text("3010")
    await expect(search).to_have_attribute("aria-expanded", "true")
    asa = desk.locator('#dir-results li[data-entry="1001"]')
    await expect(asa.locator(".dir-status")).to_contain_text("Ledig")
    await expect(asa.locator(".dir-status")).to_contain_text("Åter efter nyår")
    await expect(asa.locator(".dir-status time")).to_contain_text("2027")
    await expect(desk.locator("#dir-count")).to_contain_text("träffar")

    # the keyboard: down and up move the highlight, Enter chooses the unit
    await search.press("ArrowDown")
    await expect(hits.nth(1)).to_have_attribute("aria-selected", "true")
    await search.press("ArrowUp")
    await expect(search).to_have_attribute("aria-activedescendant", await hits.first.get_attribute("id"))
    await search.press("Enter")
    await expect(desk.locator("#dir-selected")).to_contain_text("Bygglovsenheten")
    await expect(desk.locator("#msg-target")).to_contain_text("Bygglovsenheten")
    await expect(desk.locator("#xfer-directory-name")).to_have_text("Bygglovsenheten")
    await expect(desk.locator("#xfer-blind")).to_be_disabled()  # not talking to anyone

    # a number without the caller's consent is refused next to the field
    await desk.fill("#msg-caller-name", "Karin Svensson")
    await desk.fill("#msg-callback-number", "070-123 45 67")
    await desk.select_option("#msg-category", "arende")
    await desk.fill("#msg-question", "Hur långt har mitt bygglov kommit?")
    await desk.fill("#msg-case-number", "BN 2026/117")
    await expect(desk.locator("#msg-promised-by")).to_have_value("2026-12-02T09:30")  # 24 h, server time
    await desk.click("#msg-submit")
    await expect(desk.locator("#msg-err-callback_number")).to_contain_text("consent")
    await expect(desk.locator("#msg-callback-number")).to_have_attribute("aria-invalid", "true")
    await expect(desk.locator("#msg-error")).to_be_visible()
    await expect(desk.locator("#messages li[data-message]")).to_have_count(0)

    # with consent it is saved and listed as not yet delivered (e-mail is off)
    await desk.check("#msg-consent")
    await desk.click("#msg-submit")
    message = desk.locator("#messages li[data-message]")
    await expect(message).to_have_count(1)
    await expect(message).to_contain_text("Bygglovsenheten")
    await expect(message.locator('[data-field="delivery"]')).to_contain_text("Ej levererat")
    await expect(message).to_contain_text("+46 70-*** ** 67")  # masked in the list
    await expect(desk.locator("#messages-email")).to_be_visible()
    await expect(desk.locator("#msg-err-callback_number")).to_be_hidden()
    await expect(desk.locator("#msg-question")).to_have_value("")  # the form is ready for the next

    # registering the callback closes it
    await message.locator("select").select_option("reached")
    await message.locator('button[data-action="close"]').click()
    await expect(message).to_have_count(0)
    await expect(desk.locator("#messages")).to_contain_text("Inga öppna meddelanden")
    await expect(desk.locator("#desk-status")).to_contain_text("registrerad")


async def a_supervisor_sets_a_status_and_a_bad_import_lists_its_problems(page, server) -> None:
    from playwright.async_api import expect

    await log_in(page, server.base, "chef")
    await page.click('a[href="/directory"]')
    await expect(page).to_have_url(f"{server.base}/directory")
    erik = page.locator('#entries tr[data-entry="1004"]')
    await expect(erik).to_contain_text("I möte")
    await expect(page.locator("#entries tbody tr")).to_have_count(10)
    await page.fill("#entry-filter", "miljö")
    await expect(page.locator("#entries tbody tr")).to_have_count(2)

    # the status quick-set: Ola Öberg is away until tomorrow
    await page.locator('#entries tr[data-entry="1003"] button[data-action="status"]').click()
    await expect(page.locator("#status-title")).to_be_focused()
    await page.select_option("#status-value", "away")
    await page.fill("#status-note", "Borta till i morgon")
    await page.fill("#status-until", "2026-12-02T08:00")
    await page.click("#status-save")
    ola = page.locator('#entries tr[data-entry="1003"] .dir-status')
    await expect(ola).to_contain_text("Borta")
    await expect(ola).to_contain_text("Borta till i morgon")

    # an entry with a bad phone number: the error is next to the field, nothing saved
    await page.locator('#entries tr[data-entry="1003"] button[data-action="edit"]').click()
    await expect(page.locator("#entry-name")).to_have_value("Ola Öberg")
    await page.fill("#entry-phone", "12345")
    await page.click("#entry-save")
    await expect(page.locator("#entry-err-phone")).to_contain_text("12345")
    await expect(page.locator("#entry-phone")).to_have_attribute("aria-invalid", "true")

    # a bad file: every problem by line, nothing imported
    await page.set_input_files("#import-file", str(STAFF.parent / "bad_rows.csv"))
    await page.click("#import-submit")
    await expect(page.locator("#import-problems li")).to_have_count(10)
    await expect(page.locator("#import-problems")).to_contain_text("bad_rows.csv:4: telefon:")
    await expect(page.locator("#import-result")).to_contain_text("inget importerades")
    await page.fill("#entry-filter", "")
    await expect(page.locator("#entries tbody tr")).to_have_count(10)


async def the_transfer_panel_works_while_talking_and_shows_what_the_server_refuses(desk, server) -> None:
    from playwright.async_api import expect

    await desk.click("#desk-login")
    await expect(desk.locator("#agent-state")).to_contain_text("Ledig")
    await expect(desk.locator("#xfer-blind")).to_be_disabled()
    call_in(server.runtime, "c1", "1")  # children and education: offered to anna
    server.app[api_module.API].changed("call")  # no transport owns the call to announce it: tell the desks
    await desk.click("#accept")
    await expect(desk.locator("#agent-state")).to_contain_text("I samtal")

    # a premium-rate number is refused by the server: said in the alert, the call stays
    await desk.fill("#xfer-number", "0900-123 45 67")
    await expect(desk.locator("#xfer-to-number")).to_be_checked()
    await desk.click("#xfer-blind")
    await expect(desk.locator("#xfer-error")).to_contain_text("blocked number")
    await expect(desk.locator("#xfer-error")).to_have_attribute("role", "alert")
    await expect(desk.locator("#agent-state")).to_contain_text("I samtal")

    # attended transfers to a queue are not offered; a blind one hands the call on
    await desk.select_option("#xfer-queue", "omsorg")
    await expect(desk.locator("#xfer-to-queue")).to_be_checked()
    await expect(desk.locator("#xfer-attended")).to_be_disabled()
    await desk.click("#xfer-blind")
    await expect(desk.locator("#agent-state")).to_contain_text("Efterarbete")
    await expect(desk.locator("#xfer-error")).to_be_hidden()
    assert server.runtime.queues.position("c1") == 1  # waiting in omsorg
