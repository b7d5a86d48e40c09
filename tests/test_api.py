"""The agents' and supervisors' JSON API over real HTTP, on a manual clock.

The server is ``make_app`` with ``ivr.web.api.setup`` on a Runtime whose timers are off
and whose clock only moves when a test moves it. Calls come in through the controller
(``start_call`` and DTMF events) with the default flow and config. Nothing sleeps: the
event-stream tests read with timeouts that only a failing test would reach.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import ssl
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from ivr.server import Runtime, make_app
from ivr.vocabulary import Digits, Play
from ivr.web import api as api_module
from ivr.web.auth import (
    SESSION_COOKIE,
    hash_password,
    session_key,
    set_session_cookie,
    verify_password,
)
from ivr.web.live import _Client

from .conftest import HASH_KEY, ROOT, T0, ManualClock  # noqa: F401 (others import them from here)

SESSION_KEY = "api-test-session-key-0123456789"
NUMBER = "+46701234567"
READ_S = 5.0  # stream reads: reached only when a test fails


class Line:
    """A transport that keeps what the controller sends to each call."""

    def __init__(self) -> None:
        self.sent: dict[str, list] = {}

    def send(self, call_id, commands):
        self.sent.setdefault(call_id, []).extend(commands)

    def offer(self, offer):
        pass

    def cancel_offer(self, cancel):
        pass

    def connect(self, agent, call_id):
        pass


@pytest.fixture
def make_client(aiohttp_client, runtime, monkeypatch):
    monkeypatch.setenv("IVR_SESSION_KEY", SESSION_KEY)

    async def make(demo: bool = True):
        app = make_app(runtime, setups=[functools.partial(api_module.setup, demo=demo)])
        return await aiohttp_client(app)
    return make


@pytest.fixture
async def client(make_client):
    return await make_client()


def basic(user: str, password: str = "demo") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def session(client, user: str, password: str = "demo") -> dict[str, str]:
    """Log in with the form endpoint; the cookie as explicit headers (the jar is cleared)."""
    resp = await client.post("/api/login", json={"user": user, "password": password})
    assert resp.status == 200, await resp.text()
    value = resp.cookies[SESSION_COOKIE].value
    client.session.cookie_jar.clear()
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


def call_in(runtime: Runtime, call_id: str, *keys: str, caller: str = NUMBER) -> None:
    """A call through the default flow, pressing ``keys`` at the menus."""
    now = runtime.now()
    runtime.center.start_call(now, call_id, caller, "+46330000000", "sim")
    for key in keys:
        runtime.center.call_event(call_id, Digits(now, key))


async def post(client, path: str, headers: dict[str, str], body: dict | None = None,
               status: int = 200) -> dict:
    resp = await client.post(path, json=body if body is not None else {}, headers=headers)
    data = await resp.json()
    assert resp.status == status, data
    return data


async def get(client, path: str, headers: dict[str, str], status: int = 200) -> dict:
    resp = await client.get(path, headers=headers)
    data = await resp.json()
    assert resp.status == status, data
    return data


# --------------------------------------------------------------------------- auth


async def test_basic_auth_and_the_session_cookie_both_work(client) -> None:
    me = await get(client, "/api/session", basic("anna"))
    assert me == {"user": "anna", "role": "agent", "agent": "anna", "display": "Anna Lindqvist"}

    resp = await client.post("/api/login", json={"user": "chef", "password": "demo"})
    assert resp.status == 200
    cookie = resp.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
    assert int(cookie["max-age"]) == 12 * 3600
    assert (await resp.json())["expires"] == (T0 + timedelta(hours=12)).isoformat()
    # the jar sends the cookie from now on
    assert (await get(client, "/api/session", {}))["user"] == "chef"

    await post(client, "/api/logout", {})
    resp = await client.get("/api/session", headers={"Cookie": f"{SESSION_COOKIE}={cookie.value}"})
    assert resp.status == 401  # a logged-out cookie stays dead, even replayed


async def test_wrong_password_and_missing_credentials_are_401(client, caplog) -> None:
    caplog.set_level(logging.INFO)
    resp = await client.get("/api/session", headers=basic("anna", "secret-guess-1"))
    assert resp.status == 401 and (await resp.json()) == {"error": "wrong user or password"}
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    assert "secret-guess-1" not in caplog.text and "login failed: user 'anna'" in caplog.text

    resp = await client.get("/api/agent/state")
    assert resp.status == 401 and "WWW-Authenticate" in resp.headers
    assert "error" in await resp.json()

    resp = await client.post("/api/login", json={"user": "nobody", "password": "demo"})
    assert resp.status == 401 and "WWW-Authenticate" not in resp.headers


async def test_forged_and_expired_cookies_are_401(client, clock) -> None:
    headers = await session(client, "anna")
    value = headers["Cookie"].split("=", 1)[1]
    name, expiry, signature = value.split(".")
    chef = base64.urlsafe_b64encode(b"chef").decode().rstrip("=")
    forged = {
        "another user, same signature": f"{chef}.{expiry}.{signature}",
        "a later expiry": f"{name}.{int(expiry) + 3600}.{signature}",
        "a changed signature": f"{name}.{expiry}.{'0' * len(signature)}",
        "garbage": "not-a-cookie",
    }
    for why, cookie in forged.items():
        resp = await client.get("/api/session", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        assert resp.status == 401, why
        assert "WWW-Authenticate" not in resp.headers  # no browser password dialog

    clock.advance(hours=11, minutes=59)
    assert (await get(client, "/api/session", headers))["user"] == "anna"
    clock.advance(minutes=1)
    await get(client, "/api/session", headers, status=401)


async def test_demo_users_exist_only_in_demo_mode(make_client) -> None:
    client = await make_client(demo=False)
    resp = await client.post("/api/login", json={"user": "anna", "password": "demo"})
    assert resp.status == 401
    resp = await client.get("/api/queues", headers=basic("chef"))
    assert resp.status == 401


async def test_an_agent_on_a_supervisor_endpoint_is_403(client) -> None:
    headers = await session(client, "anna")
    for path in ("/api/queues", "/api/agents", "/api/announcements"):
        assert (await get(client, path, headers, status=403))["error"]
    await post(client, "/api/announcements/driftstorning", headers, {"enabled": True}, status=403)
    # nor may an agent act for another agent
    await post(client, "/api/agent/login?agent=erik", headers, status=403)


async def test_repeated_failures_lock_the_user_out_for_30_s(client, clock, caplog) -> None:
    for _ in range(5):
        resp = await client.post("/api/login", json={"user": "anna", "password": "guess"})
        assert resp.status == 401
    resp = await client.post("/api/login", json={"user": "anna", "password": "demo"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) == 30
    assert "too many failed logins" in (await resp.json())["error"]
    resp = await client.get("/api/session", headers=basic("anna"))  # Basic is locked too
    assert resp.status == 429
    await session(client, "erik")  # another user is not affected
    clock.advance(seconds=29)
    assert (await client.post("/api/login", json={"user": "anna", "password": "demo"})).status == 429
    clock.advance(seconds=1)
    await session(client, "anna")
    assert "guess" not in caplog.text


def test_the_cookie_is_secure_over_https() -> None:
    response = web.Response()
    request = make_mocked_request("POST", "/api/login", sslcontext=ssl.create_default_context())
    set_session_cookie(request, response, "v")
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"


def test_the_session_key_comes_from_the_environment(caplog) -> None:
    assert session_key({"IVR_SESSION_KEY": SESSION_KEY}) == SESSION_KEY.encode()
    with pytest.raises(ValueError, match="IVR_SESSION_KEY: expected at least 16 bytes"):
        session_key({"IVR_SESSION_KEY": "short"})
    first, second = session_key({}), session_key({})
    assert len(first) == 32 and first != second
    assert "IVR_SESSION_KEY is not set" in caplog.text and "do not survive a restart" in caplog.text


def test_hash_password_makes_an_argon2_hash_that_verifies() -> None:
    hashed = hash_password("korrekt häst")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "korrekt häst") and not verify_password(hashed, "fel")


# --------------------------------------------------------------------------- agents


async def test_the_whole_agent_cycle_over_http(client, runtime, clock) -> None:
    anna = await session(client, "anna")
    state = await post(client, "/api/agent/login", anna)
    assert state["state"] == "available" and "barn-utbildning" in state["queues"]

    call_in(runtime, "c1", "1")  # "1": barn och utbildning; anna is free and skilled
    view = await get(client, "/api/agent/state", anna)
    assert view["state"] == "offered"
    call = view["call"]
    assert call["call_id"] == "c1" and call["kind"] == "call"
    assert call["queue"] == "barn-utbildning"
    assert call["queue_display"]["sv"] == "Barn och utbildning"
    assert call["path"] == ["greeting", "disturbance", "opening", "main_menu", "barn"]
    assert call["category"] is None and call["case_number"] is None
    assert call["repeat_caller"] is False and call["callback_number"] is None
    assert "skola" in call["categories"]
    assert "701234567" not in json.dumps(view)  # never the number of a normal call

    clock.advance(seconds=5)
    assert (await post(client, "/api/agent/accept", anna))["state"] == "talking"
    clock.advance(seconds=120)
    assert (await post(client, "/api/agent/hangup", anna))["state"] == "wrapup"
    assert (await get(client, "/api/agent/state", anna))["call"]["call_id"] == "c1"

    bad = await post(client, "/api/agent/wrapup", anna,
                     {"category": "bygglov", "resolution": "resolved"}, status=400)
    assert 'category: expected one of the categories of queue "barn-utbildning"' in bad["error"]
    await post(client, "/api/agent/wrapup", anna, {"category": "skola", "resolution": "done"},
               status=400)
    clock.advance(seconds=10)
    done = await post(client, "/api/agent/wrapup", anna,
                      {"category": "skola", "resolution": "resolved", "note": "Fråga om skolval"})
    assert done["state"] == "available" and done["call_id"] is None
    await post(client, "/api/agent/hangup", anna, status=400)  # not talking any more

    runtime.center.call_event("c1", Digits(clock.now(), "1"))  # the survey: yes; the call ends
    runtime.sink.flush()
    row = runtime.sink.call("c1")
    assert row["status"] == "ended" and row["agent"] == "anna"
    assert row["coded"] == 1 and row["resolution"] == "resolved" and row["category"] == "skola"
    assert row["survey"] is not None


async def test_repeat_caller_case_number_and_category(client, runtime, clock) -> None:
    erik = await session(client, "erik")
    chef = await session(client, "chef")
    clock.value = T0 - timedelta(days=8)
    call_in(runtime, "too-old", caller="+46708888888")  # outside the 7-day window
    clock.value = T0 - timedelta(days=2)
    call_in(runtime, "before", caller=NUMBER)  # the same number 2 days ago, hung up in the menu
    clock.value = T0
    await post(client, "/api/agent/login", erik)

    call_in(runtime, "again", "2", "4", "4711#")  # bygga, ongoing case, case number
    call = (await get(client, "/api/agent/state", erik))["call"]
    assert call["call_id"] == "again" and call["queue"] == "bygga-bo-miljo"
    assert call["repeat_caller"] is True and call["case_number"] == "4711"
    assert call["path"][-2:] == ["bygga_case", "bygga"]

    call_in(runtime, "new", "2", "1", caller="+46708888888")  # bygglov; erik is ringing: waits
    snapshot = await get(client, "/api/queues", chef)
    callers = snapshot["queues"]["bygga-bo-miljo"]["callers"]
    assert [(c["call_id"], c["stage"], c["category"]) for c in callers] == [
        ("again", "ringing", None), ("new", "waiting", "bygglov")]
    await post(client, "/api/agent/accept", erik)
    await post(client, "/api/agent/hangup", erik)
    await post(client, "/api/agent/wrapup", erik, {"category": "bostad", "resolution": "forwarded"})
    call = (await get(client, "/api/agent/state", erik))["call"]
    assert call["call_id"] == "new" and call["category"] == "bygglov"
    assert call["repeat_caller"] is False  # its earlier call was 8 days ago


async def test_pause_with_a_reason_and_resume(client, runtime) -> None:
    anna = await session(client, "anna")
    await post(client, "/api/agent/login", anna)
    bad = await post(client, "/api/agent/pause", anna, {"reason": "fika"}, status=400)
    assert bad["error"].startswith('reason: expected one of "lunch", "admin"')
    await post(client, "/api/agent/pause", anna, {}, status=400)
    paused = await post(client, "/api/agent/pause", anna, {"reason": "lunch"})
    assert paused["state"] == "paused" and paused["reason"] == "lunch"
    assert paused["since"] == T0.isoformat()
    call_in(runtime, "c1", "1")  # a caller waits: anna is on lunch
    assert (await get(client, "/api/agent/state", anna))["call"] is None
    assert (await post(client, "/api/agent/resume", anna))["state"] == "offered"


async def test_bad_requests_name_the_problem(client) -> None:
    anna = await session(client, "anna")
    resp = await client.post("/api/agent/pause", data=b"{not json", headers=anna)
    assert resp.status == 400 and (await resp.json())["error"].startswith("body: expected JSON")
    bad = await post(client, "/api/agent/pause", anna, {"reason": "lunch", "reson": "x"}, status=400)
    assert bad["error"].startswith('unknown field "reson"')
    bad = await post(client, "/api/agent/login", anna, {"force": True}, status=400)
    assert 'unknown field "force"' in bad["error"]
    bad = await post(client, "/api/agent/accept", anna, status=400)  # a QueueError
    assert bad == {"error": 'agent "anna" has no offer to accept (offline)'}
    assert (await get(client, "/api/nothing-here", anna, status=404)) == {"error": "not found"}
    resp = await client.post("/api/agent/login", headers={**anna, "Origin": "https://evil.example"})
    assert resp.status == 403


async def test_a_supervisor_acts_for_an_agent(client) -> None:
    chef = await session(client, "chef")
    bad = await post(client, "/api/agent/login", chef, status=400)
    assert "?agent=ID" in bad["error"]
    await post(client, "/api/agent/login?agent=nobody", chef, status=400)
    assert (await post(client, "/api/agent/login?agent=fatima", chef))["state"] == "available"
    agents = {a["agent"]: a for a in (await get(client, "/api/agents", chef))["agents"]}
    assert agents["fatima"]["state"] == "available" and agents["anna"]["state"] == "offline"
    assert agents["fatima"]["name"] == "Fatima Hassan"


async def test_transfer_and_a_refused_transfer(client, runtime) -> None:
    anna = await session(client, "anna")
    await post(client, "/api/agent/login", anna)
    call_in(runtime, "c1", "1")
    await post(client, "/api/agent/accept", anna)
    bad = await post(client, "/api/agent/transfer", anna, {"to_queue": "vaxel"}, status=400)
    assert 'did you mean "vaxeln"' in bad["error"]
    assert runtime.queues.agent_state("anna") == "talking"
    done = await post(client, "/api/agent/transfer", anna, {"to_queue": "omsorg"})
    assert done["state"] == "wrapup"
    assert runtime.queues.position("c1") == 1  # waiting in omsorg (fatima, johan are out)


async def test_a_callback_shows_its_number_and_needs_a_result(client, runtime) -> None:
    anna = await session(client, "anna")
    call_in(runtime, "c1", "1")  # nobody logged in: the caller waits ...
    assert runtime.center.request_callback(T0, "c1")  # ... and asks to be called back
    await post(client, "/api/agent/login", anna)
    call = (await get(client, "/api/agent/state", anna))["call"]
    assert call["kind"] == "callback" and call["callback_number"] == NUMBER
    await post(client, "/api/agent/accept", anna)  # dialling
    bad = await post(client, "/api/agent/hangup", anna, status=400)
    assert "callback-result" in bad["error"]
    await post(client, "/api/agent/callback-result", anna, {"result": "nobody"}, status=400)
    await post(client, "/api/agent/callback-result", anna, {"result": "answered"})
    assert (await post(client, "/api/agent/hangup", anna))["state"] == "wrapup"


# --------------------------------------------------------------------------- supervisors


async def read_event(resp) -> dict:
    """The next ``event: state`` of a stream (comments and retry lines skipped)."""
    while True:
        block = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), READ_S)
        lines = block.decode().splitlines()
        if "event: state" in lines:
            return json.loads(next(line[6:] for line in lines if line.startswith("data: ")))


async def test_queue_snapshot_and_the_stream_show_a_caller_joining(client, runtime) -> None:
    chef = await session(client, "chef")
    snapshot = await get(client, "/api/queues", chef)
    barn = snapshot["queues"]["barn-utbildning"]
    assert barn["display"]["sv"] == "Barn och utbildning"
    assert barn["waiting"] == 0 and barn["callers"] == [] and barn["agents"] == {
        "offline": [{"agent": "anna", "name": "Anna Lindqvist", "since": None, "reason": None},
                    {"agent": "fatima", "name": "Fatima Hassan", "since": None, "reason": None},
                    {"agent": "johan", "name": "Johan Berg", "since": None, "reason": None}]}

    resp = await client.get("/api/queues/stream", headers=chef)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    first = await read_event(resp)
    assert first["cause"] == "connect" and first["queues"]["barn-utbildning"]["waiting"] == 0

    await post(client, "/api/agent/login?agent=anna", chef)
    assert (await read_event(resp))["cause"] == "agent"
    call_in(runtime, "c1", "1")  # offered to anna at once: the Router tells the listeners
    event = await read_event(resp)
    assert event["cause"] == "offer"
    barn = event["queues"]["barn-utbildning"]
    assert barn["waiting"] == 1 and barn["callers"][0]["call_id"] == "c1"
    assert barn["callers"][0]["stage"] == "ringing" and barn["callers"][0]["agent"] == "anna"
    assert barn["agents"]["offered"][0]["agent"] == "anna"
    resp.close()


async def test_the_stream_sees_a_caller_join_when_no_agent_is_free(client, runtime) -> None:
    chef = await session(client, "chef")
    client.app[api_module.API].hub.poll_s = 0.01  # the check for unannounced changes
    resp = await client.get("/api/queues/stream", headers=chef)
    await read_event(resp)
    call_in(runtime, "c1", "4", "1")  # omsorg; nobody logged in: no offer, but the join is logged
    event = await read_event(resp)
    assert event["cause"] == "call_log"
    assert event["queues"]["omsorg"]["callers"][0]["category"] == "aldreomsorg"
    resp.close()


async def test_the_stream_sends_heartbeats_and_ends_on_shutdown(client) -> None:
    chef = await session(client, "chef")
    hub = client.app[api_module.API].hub
    hub.poll_s, hub.heartbeat_s = 0, 0.01
    resp = await client.get("/api/queues/stream", headers=chef)
    await read_event(resp)
    block = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), READ_S)
    assert block == b": keepalive\n\n"
    await hub.close()  # what the app's on_shutdown does
    await asyncio.wait_for(resp.content.read(), READ_S)  # the stream ends
    assert resp.content.at_eof() and not hub.clients
    assert (await client.get("/api/queues/stream", headers=chef)).status == 503


def test_a_slow_clients_queue_stays_bounded() -> None:
    client = _Client(3)
    for i in range(10):
        client.put(i)  # never waits, never grows
    assert client.queue.qsize() == 3 and client.dropped == 7
    assert [client.queue.get_nowait() for _ in range(3)] == [7, 8, 9]  # the latest kept


async def test_announcements_on_with_until_then_off(client, runtime, clock) -> None:
    chef = await session(client, "chef")
    line = Line()
    runtime.router.add("test", line)

    def first_texts(call_id: str) -> list[str]:
        runtime.router.claim(call_id, "test")
        call_in(runtime, call_id)
        return [c.prompt.text for c in line.sent[call_id] if isinstance(c, Play)]

    slots = (await get(client, "/api/announcements", chef))["announcements"]
    assert [(s["slot"], s["enabled"], s["active"]) for s in slots] == [("driftstorning", False, False)]
    assert not any("avbrott" in t for t in first_texts("before"))

    await post(client, "/api/announcements/nope", chef, {"enabled": True}, status=404)
    for until in ("i morgon", "2026-12-01T09:00", 5):  # nonsense, the past (09:00 local), a number
        bad = await post(client, "/api/announcements/driftstorning", chef,
                         {"enabled": True, "until": until}, status=400)
        assert bad["error"].startswith("until: ")
    await post(client, "/api/announcements/driftstorning", chef,
               {"enabled": True, "text": {"de": "Hallo"}}, status=400)

    text = "Vattnet är avstängt på Storgatan."
    state = await post(client, "/api/announcements/driftstorning", chef,
                       {"enabled": True, "until": "2026-12-01T18:00", "text": {"sv": text}})
    assert state["active"] is True and state["until"] == "2026-12-01T18:00:00+01:00"
    assert state["text"]["sv"] == text and state["text"]["en"].startswith("There is currently")
    assert first_texts("during")[:2] == ["Välkommen till Bollebygds kommun.", text]

    clock.value = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)  # 18:00 local: until has passed
    assert text not in first_texts("after")
    assert (await get(client, "/api/announcements", chef))["announcements"][0]["active"] is False

    clock.value = T0
    await post(client, "/api/announcements/driftstorning", chef, {"enabled": True})
    assert text in first_texts("again")
    await post(client, "/api/announcements/driftstorning", chef, {"enabled": False})
    assert text not in first_texts("off")


# --------------------------------------------------------------------------- agent transfers


class TransferLine(Line):
    """A line that carries out transfer actions by recording them."""

    def __init__(self) -> None:
        super().__init__()
        self.transfers: list = []

    def transfer(self, action) -> None:
        self.transfers.append(action)


@pytest.fixture
async def xfer(aiohttp_client, runtime, monkeypatch):
    """The API and the directory, a call from "twilio" answered by anna; the Router passes
    transfer actions to the call's transport."""
    from ivr.web import directory as directory_module

    monkeypatch.setenv("IVR_SESSION_KEY", SESSION_KEY)
    app = make_app(runtime, setups=[functools.partial(api_module.setup, demo=True),
                                    functools.partial(directory_module.setup, demo=True)])
    client = await aiohttp_client(app)
    router = runtime.router
    line = TransferLine()
    router.add("twilio", line)
    chef, anna = await session(client, "chef"), await session(client, "anna")
    entry = {"kind": "person", "name": "Åsa Öberg", "phone": "031-300 11 22", "topics": ["bygglov"],
             "endpoints": {"twilio": "client:asa", "asterisk": "PJSIP/1234"}}
    resp = await client.put("/api/directory/asa-oberg", json=entry, headers=chef)
    assert resp.status == 201, await resp.text()
    await post(client, "/api/agent/login", anna)
    router.claim("c1", "twilio")
    call_in(runtime, "c1", "1")
    await post(client, "/api/agent/accept", anna)
    return client, anna, line


async def test_attended_transfer_over_the_api_consult_then_complete(xfer, runtime, clock) -> None:
    client, anna, line = xfer
    clock.advance(seconds=30)
    state = await post(client, "/api/agent/transfer", anna,
                       {"kind": "attended", "target": {"directory": "asa-oberg"}})
    assert state["state"] == "talking"
    ring = line.transfers[-1]
    assert type(ring).__name__ == "RingTarget" and ring.target.endpoint == "client:asa"  # twilio's endpoint
    desk = await get(client, "/api/agent/state", anna)
    assert desk["transfer"] == {"kind": "attended", "target_kind": "directory", "target_label": "Åsa Öberg",
                                "state": "ringing", "active": True, "reason": None,
                                "since": clock.now().isoformat()}
    bad = await post(client, "/api/agent/transfer/complete", anna, status=409)
    assert bad["error"] == 'call "c1": Åsa Öberg has not answered yet; wait, or cancel the transfer'
    again = await post(client, "/api/agent/transfer", anna, {"target": {"queue": "vaxeln"}}, status=409)
    assert "under way" in again["error"]

    clock.advance(seconds=5)
    runtime.center.transfer_event(clock.now(), "c1", "answered")
    assert (await get(client, "/api/agent/state", anna))["transfer"]["state"] == "consulting"
    clock.advance(seconds=20)
    done = await post(client, "/api/agent/transfer/complete", anna)
    assert done["state"] == "wrapup"
    assert [type(a).__name__ for a in line.transfers] == ["RingTarget", "Consult", "JoinTarget"]
    assert (await get(client, "/api/agent/state", anna))["transfer"]["state"] == "completed"


async def test_blind_transfer_to_a_busy_number_comes_back_and_cannot_be_cancelled(xfer, runtime, clock
                                                                                  ) -> None:
    client, anna, line = xfer
    await post(client, "/api/agent/transfer", anna, {"target": {"number": "031-300 11 99"}})  # blind
    assert line.transfers[-1].target.endpoint == "+46313001199"
    runtime.center.transfer_event(clock.now(), "c1", "leg_failed", "busy", None)
    desk = await get(client, "/api/agent/state", anna)
    assert desk["state"] == "talking" and desk["transfer"]["state"] == "failed"
    assert desk["transfer"]["active"] is False  # over: the desk may start another
    assert desk["transfer"]["reason"] == "busy" and desk["transfer"]["target_label"] == "+46 31-*** ** 99"
    bad = await post(client, "/api/agent/transfer/cancel", anna, status=409)
    assert "no transfer under way" in bad["error"]


async def test_transfer_targets_are_checked_at_the_door(xfer) -> None:
    client, anna, _line = xfer
    cases = [
        ({"target": {"directory": "asa-obreg"}}, 404, 'no directory entry "asa-obreg"'),
        ({"target": {"queue": "omsorj"}}, 404, 'did you mean "omsorg"'),
        ({"target": {"number": "0900-123 45 67"}}, 400, "blocked"),
        ({"target": {"number": "+4930123456"}}, 400, "allowed prefixes"),
        ({"target": {"number": "hej"}}, 400, "target.number"),
        ({"target": {"queue": "omsorg", "number": "+46313001122"}}, 400, "exactly one of"),
        ({"kind": "warm", "target": {"queue": "omsorg"}}, 400, 'kind: expected one of "blind", "attended"'),
        ({"kind": "attended", "target": {"queue": "omsorg"}}, 400, "blind transfer"),
        ({"target": {"queue": "omsorg"}, "to_queue": "omsorg"}, 400, "not both"),
        ({}, 400, "target: missing"),
        ({"target": {"queue": "barn-utbildning"}}, 409, "already in queue"),
    ]
    for body, status, words in cases:
        bad = await post(client, "/api/agent/transfer", anna, body, status=status)
        assert words in bad["error"], (body, bad)


async def test_transfer_when_not_talking_is_409(client, runtime) -> None:
    anna = await session(client, "anna")
    await post(client, "/api/agent/login", anna)
    bad = await post(client, "/api/agent/transfer", anna, {"target": {"queue": "omsorg"}}, status=409)
    assert bad["error"] == 'agent "anna" is not talking to a caller (available)'
    await post(client, "/api/agent/transfer/complete", anna, status=409)
    assert (await get(client, "/api/agent/state", anna))["transfer"] is None


async def test_a_line_that_cannot_transfer_refuses_a_person_with_409(client, runtime) -> None:
    anna = await session(client, "anna")
    await post(client, "/api/agent/login", anna)
    call_in(runtime, "c1", "1")
    await post(client, "/api/agent/accept", anna)
    bad = await post(client, "/api/agent/transfer", anna, {"target": {"number": "+46313001122"}}, status=409)
    assert "cannot transfer" in bad["error"]
    done = await post(client, "/api/agent/transfer", anna, {"kind": "blind", "target": {"queue": "omsorg"}})
    assert done["state"] == "wrapup"


def test_a_desk_stream_sends_a_new_picture_when_only_the_transfer_changes() -> None:
    body = {"state": "talking", "reason": None, "since": "t", "call": {"call_id": "c1"}, "dialling": False,
            "deadline": None, "callbacks": [], "transfer": None}
    ringing = {**body, "transfer": {"state": "ringing", "since": "t1"}}
    consulting = {**body, "transfer": {"state": "consulting", "since": "t2"}}
    prints = {api_module.desk_fingerprint(b) for b in (body, ringing, consulting)}
    assert len(prints) == 3
