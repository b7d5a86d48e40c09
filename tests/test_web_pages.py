"""The web pages (login, agent desk, wallboard, today's report) and the API they use,
over real HTTP on a manual clock.

The app is ``make_app`` with ``ivr.web.api`` and ``ivr.web.pages`` on a Runtime whose
timers are off. Pages are checked through their HTML (the ids of the UI contract in
docs/web.md, which the browser tests rely on); the wallboard's figures against a log
written by hand, so each expected figure can be worked out on paper.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
import zlib
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ivr.server import make_app
from ivr.store import EventLog
from ivr.vocabulary import Trace
from ivr.web import api as api_module
from ivr.web import pages as pages_module
from ivr.web.api import PAUSE_REASONS
from ivr.web.auth import SESSION_COOKIE
from queues.model import RESOLUTIONS

from .test_api import NUMBER, SESSION_KEY, T0, call_in, get, post, read_event, session

STATIC = Path(pages_module.__file__).parent / "static"


@pytest.fixture
async def client(aiohttp_client, runtime, monkeypatch):
    monkeypatch.setenv("IVR_SESSION_KEY", SESSION_KEY)
    app = make_app(runtime, setups=[functools.partial(api_module.setup, demo=True),
                                    functools.partial(pages_module.setup, demo=True)])
    return await aiohttp_client(app)


class Page(HTMLParser):
    """The elements of a page: each start tag's attributes, and the text under each id."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self._open: list[str | None] = []
        self.text: dict[str, str] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        if tag not in ("input", "meta", "link", "br", "img"):
            self._open.append(attributes.get("id"))
            if attributes.get("id"):
                self.text.setdefault(attributes["id"], "")

    def handle_endtag(self, tag):
        if self._open and tag not in ("input", "meta", "link", "br", "img"):
            self._open.pop()

    def handle_data(self, data):
        for ident in self._open:
            if ident:
                self.text[ident] += data

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if (tag is None or t == tag)
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def by_id(self, ident: str) -> dict[str, str | None]:
        found = self.find(id=ident)
        assert len(found) == 1, f"#{ident}: {len(found)} elements"
        return found[0]

    def options(self, select_id: str) -> list[str]:
        values, inside = [], False
        for tag, a in self.elements:
            if tag == "select":
                inside = a.get("id") == select_id
            elif tag == "option" and inside:
                values.append(a["value"])
        return values


async def page(client, path: str, headers: dict[str, str], status: int = 200) -> Page:
    resp = await client.get(path, headers=headers, allow_redirects=False)
    html = await resp.text()
    assert resp.status == status, html
    assert resp.headers["Content-Type"].startswith("text/html")
    return Page(html)


async def form_login(client, user: str, password: str = "demo", next_: str = "",
                     origin: str | None = None):
    origin = origin or f"http://{client.host}:{client.port}"
    return await client.post("/login", data={"username": user, "password": password, "next": next_},
                             headers={"Origin": origin}, allow_redirects=False)


# --------------------------------------------------------------------------- login and roles


async def test_pages_without_a_session_redirect_to_the_login_page(client) -> None:
    for path in ("/desk", "/wallboard", "/reports/today", "/desk?agent=anna"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303, path
        assert resp.headers["Location"].startswith("/login?next=/"), resp.headers["Location"]
    forged = {"Cookie": f"{SESSION_COOKIE}=Y2hlZg.9999999999.{'0' * 64}"}
    resp = await client.get("/wallboard", headers=forged, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/wallboard"
    login = await page(client, "/login?next=/wallboard", {})
    assert login.by_id("username")["autocomplete"] == "username"
    assert login.by_id("password")["type"] == "password"
    assert login.by_id("login-submit")["type"] == "submit"
    assert login.by_id("login-error")["role"] == "alert" and "hidden" in login.by_id("login-error")
    assert login.find("input", name="next")[0]["value"] == "/wallboard"
    assert not login.find(id="logout")  # nobody to log out


async def test_the_login_form_sends_agents_to_the_desk_and_supervisors_to_the_wallboard(client) -> None:
    resp = await form_login(client, "anna", next_="/wallboard")  # an agent cannot go there
    assert resp.status == 303 and resp.headers["Location"] == "/desk"
    cookie = resp.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    anna = {"Cookie": f"{SESSION_COOKIE}={cookie.value}"}
    client.session.cookie_jar.clear()
    desk = await page(client, "/desk", anna)
    assert desk.text["desk-agent-name"] == "Anna Lindqvist"

    resp = await form_login(client, "chef")
    assert resp.status == 303 and resp.headers["Location"] == "/wallboard"
    resp = await form_login(client, "chef", next_="/desk?agent=erik")
    assert resp.headers["Location"] == "/desk?agent=erik"
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        resp = await form_login(client, "chef", next_=evil)
        assert resp.headers["Location"] == "/wallboard", evil


async def test_a_wrong_password_shows_the_error_on_the_form(client) -> None:
    resp = await form_login(client, "anna", "fel-lösenord")
    assert resp.status == 401 and SESSION_COOKIE not in resp.cookies
    login = Page(await resp.text())
    assert "hidden" not in login.by_id("login-error")
    assert "Fel användarnamn eller lösenord" in login.text["login-error"]
    assert login.by_id("username")["value"] == "anna"
    assert "fel-lösenord" not in await resp.text()


async def test_an_agent_gets_403_on_supervisor_pages_and_on_another_agents_desk(client) -> None:
    anna = await session(client, "anna")
    for path in ("/wallboard", "/reports/today", "/desk?agent=erik"):
        forbidden = await page(client, path, anna, status=403)
        assert forbidden.text["error-title"].startswith("403")
        assert forbidden.find(id="logout")  # still logged in, and can leave
    await page(client, "/desk", anna)
    resp = await client.get("/api/queues", headers=anna)
    assert resp.status == 403


async def test_login_and_logout_from_another_site_are_refused(client) -> None:
    resp = await form_login(client, "anna", origin="https://evil.example")
    assert resp.status == 403 and SESSION_COOKIE not in resp.cookies
    anna = await session(client, "anna")
    resp = await client.post("/logout", headers={**anna, "Origin": "https://evil.example"},
                             allow_redirects=False)
    assert resp.status == 403
    await page(client, "/desk", anna)  # the session survived the cross-site attempt
    resp = await client.post("/logout", headers={**anna, "Origin": f"http://{client.host}:{client.port}"},
                             allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    resp = await client.get("/desk", headers=anna, allow_redirects=False)
    assert resp.status == 303  # the cookie is dead, even replayed


# --------------------------------------------------------------------------- the pages' contract


async def test_the_desk_has_every_hook_of_the_ui_contract(client) -> None:
    resp = await client.get("/desk", headers=await session(client, "anna"))
    assert resp.status == 200
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    desk = Page(await resp.text())
    for ident in ("agent-state", "desk-login", "desk-logout", "pause", "pause-reason", "resume",
                  "offer", "accept", "decline", "hangup", "wrapup-form", "wrapup-resolution",
                  "wrapup-code", "wrapup-note", "wrapup-countdown", "wrapup-submit", "callbacks",
                  "logout", "desk-tools", "main"):
        desk.by_id(ident)
    assert "Utloggad" in desk.text["agent-state"] and "Offline" in desk.text["agent-state"]
    assert desk.by_id("agent-state")["aria-live"] == "polite"
    assert "hidden" in desk.by_id("offer")
    for field in ("queue", "path", "category", "case", "repeat"):
        assert desk.find(data_field=field), field
    assert desk.options("wrapup-resolution") == list(RESOLUTIONS)
    assert desk.options("pause-reason") == list(PAUSE_REASONS)
    assert desk.by_id("wrapup-note")["maxlength"] == "4000"
    # every form control has a label
    labelled = {a["for"] for a in desk.find("label")}
    controls = [a["id"] for t, a in desk.elements if t in ("select", "textarea")
                or (t == "input" and a.get("type") != "hidden")]
    assert controls and not [c for c in controls if c not in labelled]
    assert desk.find("a", href="#main")[0]["class"] == "skip-link"
    assert desk.find("html")[0]["lang"] == "sv" and desk.find(lang="en")
    config = json.loads(desk.text["desk-config"])
    assert config["agent"] == "anna" and config["acting_for"] is None
    assert config["labels"]["state"]["available"] == ["Ledig", "Available"]


async def test_a_supervisor_picks_an_agent_and_acts_for_them_at_the_desk(client) -> None:
    chef = await session(client, "chef")
    chooser = await page(client, "/desk", chef)
    assert {a["data-agent"] for a in chooser.find("a") if a.get("data-agent")} >= {"anna", "erik"}
    desk = await page(client, "/desk?agent=erik", chef)
    assert json.loads(desk.text["desk-config"])["acting_for"] == "erik"
    await page(client, "/desk?agent=nobody", chef, status=404)


async def test_the_wallboard_has_a_row_per_queue_and_agent(client, runtime) -> None:
    chef = await session(client, "chef")
    await post(client, "/api/agent/login?agent=anna", chef)
    board = await page(client, "/wallboard", chef)
    queues = [a["data-queue"] for a in board.find("tr") if a.get("data-queue")]
    assert queues == list(runtime.settings.queues)
    agents = [a["data-agent"] for a in board.find("tr") if a.get("data-agent")]
    assert agents == list(runtime.settings.agents)
    for field in ("waiting", "longest-wait", "service-level", "abandoned", "answered", "state", "since"):
        assert board.find(data_field=field), field
    assert board.find("td", data_field="state", data_state="available")  # anna, rendered at once
    for ident in ("agents", "fcr", "announcements", "charts", "recent", "last-update", "logout"):
        board.by_id(ident)
    assert board.by_id("report-today")["href"] == "/reports/today"
    toggle = board.find("button", data_slot="driftstorning")
    assert toggle and toggle[0]["aria-pressed"] == "false"
    assert board.by_id("recent")["aria-live"] == "polite"


async def test_every_script_and_style_the_pages_use_is_served(client) -> None:
    chef = await session(client, "chef")
    wanted: set[str] = set()
    for path in ("/login", "/desk?agent=anna", "/wallboard"):
        html = await (await client.get(path, headers=chef)).text()
        wanted |= set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html))
    for script in STATIC.glob("*.js"):  # ES module imports, relative to /static/
        wanted |= {f"/static/{name}" for name in
                   re.findall(r'from "\./([\w.-]+)"', script.read_text(encoding="utf-8"))}
    assert {"/static/ivr.css", "/static/desk.js", "/static/wallboard.js", "/static/common.js",
            "/static/charts.js"} <= wanted
    for path in sorted(wanted):
        resp = await client.get(path)
        assert resp.status == 200, path
        if path.endswith(".js"):
            assert "javascript" in resp.headers["Content-Type"], path
    for script in STATIC.glob("*.js"):  # nothing fetched from another server
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", script.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the desk's API


async def test_the_agent_stream_follows_one_agent(client, runtime, clock) -> None:
    anna = await session(client, "anna")
    erik = await session(client, "erik")
    resp = await client.get("/api/agent/stream", headers=anna)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    first = await read_event(resp)
    assert first["cause"] == "connect" and first["state"] == "offline" and first["call"] is None
    await post(client, "/api/agent/login", erik)  # another agent: anna's desk does not change
    await post(client, "/api/agent/login", anna)
    event = await read_event(resp)
    assert event["state"] == "available" and event["agent"] == "anna"

    call_in(runtime, "c1", "1")  # barn-utbildning: offered to anna
    event = await read_event(resp)
    assert event["state"] == "offered" and event["call"]["queue"] == "barn-utbildning"
    assert event["call"]["path"][-1] == "barn"
    assert event["deadline"] == (T0 + timedelta(seconds=20)).isoformat()
    await post(client, "/api/agent/accept", anna)
    assert (await read_event(resp))["state"] == "talking"
    clock.advance(seconds=60)
    await post(client, "/api/agent/hangup", anna)
    event = await read_event(resp)
    assert event["state"] == "wrapup" and event["call"]["call_id"] == "c1"
    assert event["deadline"] == (clock.now() + timedelta(seconds=30)).isoformat()  # wrapup_s of the queue
    assert event["at"] == clock.now().isoformat()
    other = await client.get("/api/agent/stream?agent=erik", headers=anna)
    assert other.status == 403
    resp.close()


async def test_the_desk_lists_callbacks_without_their_numbers(client, runtime) -> None:
    anna = await session(client, "anna")
    call_in(runtime, "cb", "1")
    assert runtime.center.request_callback(T0, "cb")
    state = await get(client, "/api/agent/state", anna)
    assert [(c["call_id"], c["queue"], c["stage"], c["attempts"]) for c in state["callbacks"]] == [
        ("cb", "barn-utbildning", "waiting", 0)]
    assert "701234567" not in json.dumps(state)
    assert state["dialling"] is False and state["deadline"] is None
    await post(client, "/api/agent/login", anna)
    state = await get(client, "/api/agent/state", anna)
    assert state["call"]["callback_number"] == NUMBER  # now it is needed: to dial
    await post(client, "/api/agent/accept", anna)
    assert (await get(client, "/api/agent/state", anna))["dialling"] is True


async def test_the_offer_counts_the_callers_recent_contacts(client, runtime, clock) -> None:
    anna = await session(client, "anna")
    for days in (3, 2):
        clock.value = T0 - timedelta(days=days)
        call_in(runtime, f"before-{days}")
    clock.value = T0
    await post(client, "/api/agent/login", anna)
    call_in(runtime, "now", "1")
    call = (await get(client, "/api/agent/state", anna))["call"]
    assert call["repeat_caller"] is True and call["repeat_contacts"] == 2
    assert call["repeat_window_days"] == 7


# --------------------------------------------------------------------------- the wallboard's figures


def hand_made_call(log: EventLog, call_id: str, at: datetime, queue: str, *, wait_s: float,
                   outcome: str, agent: str | None = None, resolution: str | None = None,
                   category: str | None = None) -> None:
    """One call as the engines would log it: started, queued, answered or abandoned, coded."""
    joined = at + timedelta(seconds=20)
    traces = [Trace(at, "call_started", None, {"flow": "switchboard", "transport": "sim",
                                               "caller": f"+4670{zlib.crc32(call_id.encode()) % 10**7:07d}"}),
              Trace(joined, "queue_joined", None, {"queue": queue, "category": category, "priority": 0,
                                                   "position": 1, "estimated_wait_s": None})]
    end = joined + timedelta(seconds=wait_s)
    if outcome == "answered":
        traces.append(Trace(end, "queue_answered", None, {"agent": agent, "queue": queue, "wait_s": wait_s}))
        end += timedelta(seconds=120)
        traces.append(Trace(end, "talk_ended", None, {"agent": agent, "talk_s": 120.0}))
        end += timedelta(seconds=10)
        traces.append(Trace(end, "wrapup", None, {"agent": agent, "category": category,
                                                  "resolution": resolution, "coded": True,
                                                  "wrapup_s": 10.0, "has_note": False}))
    else:
        traces.append(Trace(end, "queue_abandoned", None, {"queue": queue, "stage": "waiting",
                                                           "wait_s": wait_s}))
    traces.append(Trace(end, "call_ended", None, {"end": "hangup"}))
    log.append_many(call_id, traces)


async def test_the_wallboard_figures_from_a_hand_made_log(client, runtime, clock) -> None:
    log = runtime.sink
    monday = T0 - timedelta(days=1)  # the same week (T0 is a Tuesday)
    hand_made_call(log, "mon", monday, "barn-utbildning", wait_s=10, outcome="answered", agent="anna",
                   resolution="resolved", category="skola")
    hand_made_call(log, "a1", T0, "barn-utbildning", wait_s=30, outcome="answered", agent="anna",
                   resolution="resolved", category="skola")
    hand_made_call(log, "a2", T0 + timedelta(minutes=5), "barn-utbildning", wait_s=90,
                   outcome="answered", agent="fatima", resolution="forwarded", category="forskola")
    hand_made_call(log, "late", T0 + timedelta(minutes=6), "barn-utbildning", wait_s=100,
                   outcome="abandoned")
    hand_made_call(log, "short", T0 + timedelta(minutes=7), "vaxeln", wait_s=3, outcome="abandoned")
    clock.advance(hours=1)
    chef = await session(client, "chef")
    figures = await get(client, "/api/wallboard", chef)

    assert figures["available"] and figures["date"] == "2026-12-01" and figures["week_from"] == "2026-11-30"
    barn = figures["queues"]["barn-utbildning"]
    # answered within 60 s: a1 only, of 2 answered + 1 abandoned after 60 s
    assert barn["answered"] == 2 and barn["abandoned"] == 1 and barn["service_level"] == 0.3333
    vaxeln = figures["queues"]["vaxeln"]
    assert vaxeln["abandoned"] == 0 and vaxeln["answered"] == 0  # a 3 s abandon is not counted
    assert figures["queues"]["omsorg"] == {"calls": 0, "offered": 0, "answered": 0, "abandoned": 0,
                                           "service_level": None, "asa_s": None, "longest_wait_s": None}
    assert figures["total"]["calls"] == 4
    assert figures["fcr"]["today"]["fcr_coded"] == 0.5 and figures["fcr"]["today"]["handled"] == 2
    assert figures["fcr"]["week"]["fcr_coded"] == 0.6667 and figures["fcr"]["week"]["handled"] == 3
    assert figures["fcr"]["today"]["fcr_repeat"] is None  # the 7-day window has not closed
    hours = {h["hour"]: h for h in figures["hours"]}
    assert len(hours) == 24 and hours[9]["calls"] == 4 and hours[9]["answered"] == 2
    assert hours[10]["calls"] == 0 and hours[10]["service_level"] is None
    assert [(r["call_id"], r["agent_name"], r["resolution"], r["category"], r["queue"])
            for r in figures["recent"]] == [
        ("a2", "Fatima Hassan", "forwarded", "forskola", "barn-utbildning"),
        ("a1", "Anna Lindqvist", "resolved", "skola", "barn-utbildning")]  # today's only, latest first
    assert figures["recent"][0]["queue_display"]["sv"] == "Barn och utbildning"
    assert "4670" not in json.dumps(figures)


async def test_the_figures_are_cached_until_a_change_or_a_few_seconds(client, runtime, clock) -> None:
    chef = await session(client, "chef")
    figures = client.app[api_module.API].figures
    first = await asyncio.gather(*(get(client, "/api/wallboard", chef) for _ in range(3)))
    assert figures.computed == 1 and first[0] == first[2]
    hand_made_call(runtime.sink, "x", T0, "omsorg", wait_s=5, outcome="answered", agent="fatima",
                   resolution="resolved", category="aldreomsorg")
    assert (await get(client, "/api/wallboard", chef))["total"]["calls"] == 0  # cached
    clock.advance(seconds=5)
    assert (await get(client, "/api/wallboard", chef))["total"]["calls"] == 1
    assert figures.computed == 2

    clock.advance(minutes=10)
    anna = await session(client, "anna")  # a wrap-up at the desk makes them stale at once
    await post(client, "/api/agent/login", anna)
    call_in(runtime, "c1", "1")
    await post(client, "/api/agent/accept", anna)
    await post(client, "/api/agent/hangup", anna)
    await post(client, "/api/agent/wrapup", anna, {"category": "skola", "resolution": "resolved"})
    recent = (await get(client, "/api/wallboard", chef))["recent"]
    assert recent[0]["call_id"] == "c1" and recent[0]["agent"] == "anna"
    await get(client, "/api/wallboard", anna, status=403)


async def test_todays_report_is_served_to_supervisors(client, runtime) -> None:
    hand_made_call(runtime.sink, "a1", T0, "barn-utbildning", wait_s=30, outcome="answered",
                   agent="anna", resolution="resolved", category="skola")
    chef = await session(client, "chef")
    resp = await client.get("/reports/today", headers=chef)
    html = await resp.text()
    assert resp.status == 200 and "2026-12-01 – 2026-12-01" in html and "barn-utbildning" in html
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert resp.headers["Cache-Control"] == "no-store"
    await page(client, "/reports/today", await session(client, "anna"), status=403)


async def test_the_wallboard_reads_the_log_off_the_event_loop(client, runtime, monkeypatch) -> None:
    loop_thread = []

    def spy(*args, **kwargs):
        loop_thread.append(threading.current_thread() is threading.main_thread())
        return original(*args, **kwargs)

    original = api_module.metrics.compute
    monkeypatch.setattr(api_module.metrics, "compute", spy)
    await get(client, "/api/wallboard", await session(client, "chef"))
    assert loop_thread == [False, False]  # today and the week (T0 is a Tuesday), in a worker thread
