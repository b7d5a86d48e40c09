"""Screenshots of the agent desk, the wallboard and the test phone for the README.

    .venv/bin/python scripts/screenshots.py [--config config.toml] [--out docs/screenshots]

Simulates a day of calls (``ivr.loadsim``, as ``ivr simulate-load`` does) into a
temporary event log, serves ``ivr serve``'s application on it in-process on a loopback
port with the clock stopped late that afternoon, brings a few agents and callers to
life, and photographs the pages with Debian's chromium (``/usr/bin/chromium``) driven by
Playwright. Nothing is downloaded and nothing outside ``--out`` is written. The same
seed gives the same pictures (up to the fonts of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestServer  # noqa: E402

from ivr.config import load_settings  # noqa: E402
from ivr.flowcheck import FlowContext, load_flow  # noqa: E402
from ivr.loadsim import LoadSimulation, Profile  # noqa: E402
from ivr.privacy import DEMO_KEY  # noqa: E402
from ivr.server import Runtime, make_app  # noqa: E402
from ivr.store import EventLog  # noqa: E402
from ivr.vocabulary import Digits  # noqa: E402
from ivr.web import api as api_module  # noqa: E402
from ivr.web import pages as pages_module  # noqa: E402
from ivr.web import phone as phone_module  # noqa: E402

STOCKHOLM = ZoneInfo("Europe/Stockholm")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 860}
WAIT_MS = 10_000


class StoppedClock:
    """The server's clock, stopped at one moment (moved by hand)."""

    def __init__(self, at: datetime):
        self.at = at

    def now(self) -> datetime:
        return self.at


def simulate_day(settings, db: Path, day: date, *, calls: int, seed: int) -> int:
    flow = load_flow(settings.flows_dir / "switchboard.toml", FlowContext.from_settings(settings))
    log = EventLog.open(db, hash_key=DEMO_KEY)
    try:
        sim = LoadSimulation(settings, flow, log, Profile(calls_per_day=calls), seed=seed, agents=None,
                             start=day, progress=False)
        return sim.run(1)
    finally:
        log.close()


def live_scene(runtime: Runtime, phone: phone_module.PhoneTransport) -> None:
    """Agents at work and callers waiting, so the pages have something to show."""
    center, clock = runtime.center, runtime.clock
    for agent in ("erik", "fatima", "lars", "maria", "johan", "anna"):  # anna waits for the phone
        center.agent(clock.now(), agent, "login")
    center.agent(clock.now(), "maria", "pause", reason="lunch")
    # two callers answered (erik and lars talking), then callers waiting in the queues
    for keys, agent in ((("2", "1"), "erik"), (("5",), "lars")):
        call = phone.start(next(iter(phone.flows)), "+46701000001")
        for key in keys:
            center.call_event(call.call_id, Digits(clock.now(), key))
        clock.at += timedelta(seconds=12)  # it rings a while (less than ring_timeout_s)
        center.agent(clock.now(), agent, "accept")
    center.agent(clock.now(), "johan", "pause", reason="admin")
    center.agent(clock.now(), "fatima", "pause", reason="meeting")
    # in queues anna does not serve, so her desk rings for the test phone's call
    for n, keys in enumerate((("3",), ("3",), ("2", "2"), ("5",), ("2", "4", "4711#"))):
        call = phone.start(next(iter(phone.flows)), f"+4670200000{n}")
        for key in keys:
            center.call_event(call.call_id, Digits(clock.now(), key))
        clock.at += timedelta(seconds=35)
    runtime.poke()


async def photograph(base: str, out: Path) -> list[Path]:
    from playwright.async_api import async_playwright

    shots = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            chef = await browser.new_context(viewport=VIEWPORT, locale="sv-SE")
            anna = await browser.new_context(viewport=VIEWPORT, locale="sv-SE")
            for context, user in ((chef, "chef"), (anna, "anna")):
                page = await context.new_page()
                await page.goto(f"{base}/login")
                await page.fill("#username", user)
                await page.fill("#password", "demo")
                await page.click("#login-submit")
                await page.wait_for_load_state("networkidle")
                await page.close()

            # the test phone calls children and education; it rings at anna's desk
            phone = await chef.new_page()
            await phone.goto(f"{base}/phone")
            await phone.click("#phone-call")
            await phone.wait_for_selector('#phone-path li[data-node="main_menu"]', timeout=WAIT_MS)
            await phone.click('button[data-digit="1"]')
            await phone.wait_for_selector('#phone-status[data-state="ringing"]', timeout=WAIT_MS)

            desk = await anna.new_page()
            await desk.goto(f"{base}/desk")
            await desk.wait_for_selector("#offer:not([hidden])", timeout=WAIT_MS)
            shots.append(out / "desk.png")
            await desk.screenshot(path=shots[-1], full_page=True)
            shots.append(out / "phone.png")
            await phone.screenshot(path=shots[-1], full_page=True)

            wallboard = await chef.new_page()
            await wallboard.goto(f"{base}/wallboard")
            await wallboard.wait_for_function(
                "!['', '–'].includes(document.querySelector('#last-update')?.textContent.trim() ?? '')",
                timeout=WAIT_MS)
            await wallboard.wait_for_load_state("networkidle")
            shots.append(out / "wallboard.png")
            await wallboard.screenshot(path=shots[-1], full_page=True)
        finally:
            await browser.close()
    return shots


async def main_async(args: argparse.Namespace) -> int:
    os.environ.setdefault("IVR_SESSION_KEY", secrets.token_hex(16))  # one server, one key: no warning
    settings = load_settings(Path(args.config), env={})
    day = date.fromisoformat(args.date)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ivr-screenshots-") as tmp:
        db = Path(tmp) / "ivr.db"
        calls = simulate_day(settings, db, day, calls=args.calls, seed=args.seed)
        print(f"simulated {calls} calls on {day}", file=sys.stderr)
        clock = StoppedClock(datetime.combine(day, time.fromisoformat(args.at), STOCKHOLM))
        log = EventLog.open(db, hash_key=DEMO_KEY)
        runtime = Runtime(settings, sink=log, clock=clock, timers=False)
        app = make_app(runtime, setups=[lambda a, r, m=m: m.setup(a, r, demo=True)
                                        for m in (api_module, pages_module, phone_module)])
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        try:
            live_scene(runtime, app[phone_module.PHONE])
            shots = await photograph(str(server.make_url("")).rstrip("/"), out)
        finally:
            await server.close()
    for shot in shots:
        print(f"wrote {shot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config.toml"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--date", default="2026-03-10", help="the simulated day (a weekday)")
    parser.add_argument("--at", default="15:40", help="the server's stopped clock that day, local time")
    parser.add_argument("--calls", type=int, default=300, help="calls in the simulated day")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"screenshots: {CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
