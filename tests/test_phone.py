"""The browser test phone's transport over real HTTP (aiohttp test client), on a manual clock.

The app is ``make_app`` with the JSON API and the phone on a Runtime whose timers are off;
a test call goes through the same controller, queues and event log as a Twilio call, and
an agent works it through the API. Nothing sleeps: the event stream of a call that has
ended is read whole (it replays the call and closes); reads of a live stream have a
timeout only a failing test reaches.
"""

from __future__ import annotations

import asyncio
import functools
import json
from datetime import UTC, datetime

import pytest

from ivr.config import load_settings
from ivr.server import Runtime, make_app
from ivr.store import EventLog
from ivr.vocabulary import Prompt
from ivr.web import api as api_module
from ivr.web import pages as pages_module
from ivr.web import phone as phone_module
from ivr.web.auth import SESSION_COOKIE
from queues import CancelOffer, Offer

from .conftest import ROOT
from .test_api import ManualClock

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)     # Tuesday 09:30 in Stockholm: open
NIGHT = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # 21:00: closed
HASH_KEY = b"phone-test-hash-key-0123456"
READ_S = 5.0  # live stream reads: reached only when a test fails


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def runtime(tmp_path, clock) -> Runtime:
    settings = load_settings(ROOT / "config.toml", env={})
    log = EventLog.open(tmp_path / "ivr.db", hash_key=HASH_KEY)
    return Runtime(settings, sink=log, clock=clock, timers=False)


@pytest.fixture
async def client(aiohttp_client, runtime, monkeypatch):
    monkeypatch.setenv("IVR_SESSION_KEY", "phone-test-session-key-0123456789")
    app = make_app(runtime, setups=[functools.partial(module.setup, demo=True)
                                    for module in (api_module, pages_module, phone_module)])
    return await aiohttp_client(app)


async def login(client, user: str) -> dict[str, str]:
    """A session cookie as ``POST /api/login`` issues it (without paying argon2 each test)."""
    auth = client.server.app[api_module.API].auth
    value, _ = auth.issue(auth.user(user))
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


async def post(client, path: str, headers: dict[str, str], body: dict | None = None,
               status: int = 200) -> dict:
    resp = await client.post(path, json=body if body is not None else {}, headers=headers)
    data = await resp.json()
    assert resp.status == status, data
    return data


async def state(client, call_id: str, headers: dict[str, str]) -> dict:
    resp = await client.get(f"/phone/calls/{call_id}", headers=headers)
    assert resp.status == 200
    return await resp.json()


def parse_events(text: str) -> list[dict]:
    """The ``data`` of every event in a server-sent event stream."""
    out = []
    for block in text.split("\n\n"):
        lines = block.split("\n")
        if "event: phone" in lines:
            out.extend(json.loads(line[6:]) for line in lines if line.startswith("data: "))
    return out


async def history(client, call_id: str, headers: dict[str, str]) -> list[dict]:
    """The whole stream of a call that has ended (it closes by itself)."""
    resp = await client.get(f"/phone/calls/{call_id}/events", headers=headers)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    return parse_events(await asyncio.wait_for(resp.text(), READ_S))


def statuses(events: list[dict]) -> list[str]:
    return [e["state"] for e in events if e["type"] == "status"]


def path(events: list[dict]) -> list[str]:
    return [e for e in events if e["type"] == "path"][-1]["nodes"]


# --------------------------------------------------------------------------- a whole call


async def test_a_test_call_goes_through_the_menu_to_an_agent_and_is_logged(client, runtime, clock) -> None:
    chef, anna = await login(client, "chef"), await login(client, "anna")
    await post(client, "/api/agent/login", anna)

    call = await post(client, "/phone/calls", chef, {"caller": "+46701112233"}, status=201)
    call_id = call["call_id"]
    assert call["state"] == "gather" and call["turn"] == 1 and call_id.startswith("phone-")
    assert runtime.router.owner[call_id] == "phone"

    # a live stream gets the first turn: greeting, then the menu waiting for a key
    resp = await client.get(f"/phone/calls/{call_id}/events", headers=chef)
    first = b""
    while b"main_menu" not in first or b'"gather"' not in first:
        first += await asyncio.wait_for(resp.content.readany(), READ_S)
    resp.close()

    answer = await post(client, f"/phone/calls/{call_id}/digits", chef, {"digits": "1"})
    assert answer["sent"] == "1"
    now = await state(client, call_id, chef)
    assert now["state"] == "ringing" and now["agent"] == "anna" and now["queue"] == "barn-utbildning"

    desk = await client.get("/api/agent/state", headers=anna)
    offered = (await desk.json())["call"]
    assert offered["call_id"] == call_id and offered["queue"] == "barn-utbildning"
    assert offered["path"] == ["greeting", "disturbance", "opening", "main_menu", "barn"]

    clock.advance(seconds=4)
    await post(client, "/api/agent/accept", anna)
    assert (await state(client, call_id, chef))["state"] == "talking"

    clock.advance(seconds=90)
    await post(client, f"/phone/calls/{call_id}/hangup", chef)
    assert (await state(client, call_id, chef))["state"] == "ended"
    assert call_id not in runtime.router.owner
    await post(client, "/api/agent/wrapup", anna, {"resolution": "resolved", "category": "skola"})

    events = await history(client, call_id, chef)
    assert statuses(events) == ["gather", "queue", "ringing", "talking", "ended"]
    talking = [e for e in events if e["type"] == "status" and e["state"] == "talking"][0]
    assert (talking["sv"], talking["en"]) == ("Kopplad till anna", "Connected to anna")
    assert path(events) == ["greeting", "disturbance", "opening", "main_menu", "barn"]
    greeting = [e for e in events if e["type"] == "turn"][0]
    assert greeting["plays"][0] == {"language": "sv", "voice": "sv-SE", "audio": None,
                                    "text": "Välkommen till Bollebygds kommun."}
    assert greeting["wait"]["kind"] == "gather" and greeting["wait"]["timeout_s"] == 6

    runtime.sink.flush()
    logged = runtime.sink.events(call_id)
    kinds = [e["kind"] for e in logged]
    assert "queue_answered" in kinds and "call_ended" in kinds
    started = next(e for e in logged if e["kind"] == "call_started")
    assert started["data"]["transport"] == "phone"
    assert "+46701112233" not in json.dumps(logged)  # the number is hashed, as for any call
    summary = runtime.sink.call(call_id)
    assert summary is not None


async def test_an_input_node_collects_keys_until_the_finish_key(client, runtime) -> None:
    chef = await login(client, "chef")
    call_id = (await post(client, "/phone/calls", chef, {}, status=201))["call_id"]
    await post(client, f"/phone/calls/{call_id}/digits", chef, {"digits": "2"})
    await post(client, f"/phone/calls/{call_id}/digits", chef, {"digits": "4"})
    assert (await post(client, f"/phone/calls/{call_id}/digits", chef, {"digits": "47"}))["sent"] is None
    assert (await post(client, f"/phone/calls/{call_id}/digits", chef, {"digits": "11#"}))["sent"] == "4711#"
    now = await state(client, call_id, chef)
    assert now["state"] == "queue" and now["queue"] == "bygga-bo-miljo"  # nobody logged in: it waits
    assert runtime.center.sessions[call_id].attributes == {"case_number": "4711"}
    await post(client, f"/phone/calls/{call_id}/hangup", chef)


async def test_a_timeout_answers_only_its_own_turn(client, runtime) -> None:
    chef = await login(client, "chef")
    call_id = (await post(client, "/phone/calls", chef, {}, status=201))["call_id"]
    answer = await post(client, f"/phone/calls/{call_id}/timeout", chef, {"turn": 1})
    assert answer == {"sent": "timeout"}
    assert (await state(client, call_id, chef))["turn"] == 2  # the menu asks again
    late = await post(client, f"/phone/calls/{call_id}/timeout", chef, {"turn": 1}, status=409)
    assert "turn: 1 is over" in late["error"]
    assert (await state(client, call_id, chef))["turn"] == 2
    await post(client, f"/phone/calls/{call_id}/timeout", chef, {"turn": 2})
    await post(client, f"/phone/calls/{call_id}/timeout", chef, {"turn": 3})  # retries used up
    assert runtime.center.sessions[call_id].path[-1] == "vaxeln"  # on_fail: the switchboard
    await post(client, f"/phone/calls/{call_id}/hangup", chef)


async def test_out_of_hours_a_message_is_recorded_and_the_flow_hangs_up(client, runtime, clock) -> None:
    clock.value = NIGHT
    chef = await login(client, "chef")
    call_id = (await post(client, "/phone/calls", chef, {}, status=201))["call_id"]
    await post(client, f"/phone/calls/{call_id}/digits", chef, {"digits": "1"})
    assert (await state(client, call_id, chef))["state"] == "record"
    clock.advance(seconds=12)
    answer = await post(client, f"/phone/calls/{call_id}/digits", chef, {"digits": "#"})
    assert answer["sent"] == "recording"
    events = await history(client, call_id, chef)
    assert path(events)[-2:] == ["message", "message_thanks"]
    assert statuses(events)[-1] == "ended"
    runtime.sink.flush()
    recording = next(e for e in runtime.sink.events(call_id) if e["kind"] == "recording")
    assert recording["data"]["duration_s"] == 12.0


async def test_a_transfer_leaves_the_phone(client, runtime, clock) -> None:
    clock.value = NIGHT
    chef = await login(client, "chef")
    call_id = (await post(client, "/phone/calls", chef, {}, status=201))["call_id"]
    await post(client, f"/phone/calls/{call_id}/digits", chef, {"digits": "2"})
    events = await history(client, call_id, chef)
    assert statuses(events)[-2:] == ["transferred", "ended"]
    assert call_id not in runtime.center.sessions
    runtime.sink.flush()
    ended = next(e for e in runtime.sink.events(call_id) if e["kind"] == "call_ended")
    assert ended["data"]["end"] == "transfer:+4633000000"


# --------------------------------------------------------------------------- refusals


async def test_bad_keys_and_bad_bodies_are_400(client) -> None:
    chef = await login(client, "chef")
    call_id = (await post(client, "/phone/calls", chef, {}, status=201))["call_id"]
    for body in ({"digits": "1a"}, {"digits": ""}, {"digits": 1}, {"digits": "1" * 33}):
        error = (await post(client, f"/phone/calls/{call_id}/digits", chef, body, status=400))["error"]
        assert error.startswith("digits: expected 1 to 32 keys of 0-9, * and #")
    error = (await post(client, f"/phone/calls/{call_id}/digits", chef, {"keys": "1"}, status=400))["error"]
    assert error == 'unknown field "keys": expected one of "digits"'
    error = (await post(client, "/phone/calls", chef, {"flow": "nope"}, status=400))["error"]
    assert error == 'flow: unknown flow "nope": expected one of "switchboard"'
    error = (await post(client, "/phone/calls", chef, {"caller": "anna"}, status=400))["error"]
    assert error.startswith("caller: expected a phone number")
    assert (await post(client, f"/phone/calls/{call_id}/timeout", chef, {"turn": "1"}, status=400))
    await post(client, f"/phone/calls/{call_id}/hangup", chef)
    error = (await post(client, f"/phone/calls/{call_id}/digits", chef, {"digits": "1"}, status=409))["error"]
    assert error == f'call "{call_id}" has ended'


async def test_an_unknown_call_is_404(client) -> None:
    chef = await login(client, "chef")
    for action, body in (("digits", {"digits": "1"}), ("timeout", {"turn": 1}), ("hangup", {})):
        error = (await post(client, f"/phone/calls/phone-nope/{action}", chef, body, status=404))["error"]
        assert error == 'unknown call "phone-nope"'
    assert (await client.get("/phone/calls/phone-nope/events", headers=chef)).status == 404


async def test_an_agent_gets_403_and_a_stranger_401(client) -> None:
    chef, anna = await login(client, "chef"), await login(client, "anna")
    call_id = (await post(client, "/phone/calls", chef, {}, status=201))["call_id"]
    error = (await post(client, "/phone/calls", anna, {}, status=403))["error"]
    assert error == "the test phone needs the supervisor role"
    await post(client, f"/phone/calls/{call_id}/digits", anna, {"digits": "1"}, status=403)
    assert (await client.get(f"/phone/calls/{call_id}/events", headers=anna)).status == 403
    page = await client.get("/phone", headers=anna)
    assert page.status == 403
    await post(client, "/phone/calls", {}, {}, status=401)
    page = await client.get("/phone", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == "/login?next=/phone"
    cross = await client.post("/phone/calls", json={}, headers={**chef, "Origin": "http://evil.example"})
    assert cross.status == 403


async def test_the_page_has_the_contract_hooks(client) -> None:
    chef = await login(client, "chef")
    resp = await client.get("/phone", headers=chef)
    assert resp.status == 200
    html = await resp.text()
    for hook in ('id="phone-flow"', 'id="phone-call"', 'id="phone-hangup"', 'id="phone-path"',
                 'id="phone-prompt"', 'id="phone-status"', 'data-digit="#"', 'data-digit="*"',
                 'data-digit="0"', '<option value="switchboard">Bollebygds kommun, växeln</option>',
                 'src="/static/phone.js"'):
        assert hook in html, hook
    js = await client.get("/static/phone.js")
    assert js.status == 200 and "EventSource" in await js.text()


async def test_prompt_recordings_are_served_to_supervisors_only(client) -> None:
    chef, anna = await login(client, "chef"), await login(client, "anna")
    resp = await client.get("/phone/recordings/../config.toml", headers=chef)
    assert resp.status == 404
    assert (await client.get("/phone/recordings/sv/none.wav", headers=chef)).status == 404
    assert (await client.get("/phone/recordings/sv/none.wav", headers=anna)).status == 403


def test_a_recorded_prompt_is_played_from_the_phone_s_recordings_route() -> None:
    played = phone_module.prompt_json(Prompt("en", "Welcome.", "en/welcome.wav"))
    assert played == {"language": "en", "voice": "en-GB", "text": "Welcome.",
                      "audio": "/phone/recordings/en/welcome.wav"}


async def test_a_callback_rings_on_the_transport_of_the_agent_s_endpoint(aiohttp_client, runtime) -> None:
    """A callback has no line owning it: the Router picks the agent's endpoint's transport,
    not whichever transport was set up first (the phone, which takes no callbacks)."""
    from .test_api import Line

    class Pbx(Line):
        def __init__(self) -> None:
            super().__init__()
            self.offers: list = []
            self.cancels: list = []

        def offer(self, offer):
            self.offers.append(offer)

        def cancel_offer(self, cancel):
            self.cancels.append(cancel)

    twilio, asterisk = Pbx(), Pbx()

    def pbx(app, rt):  # PBX transports set up after the phone, as setups_for does
        rt.router.add("asterisk", asterisk)
        rt.router.add("twilio", twilio)

    app = make_app(runtime, setups=[*(functools.partial(m.setup, demo=True)
                                      for m in (api_module, pages_module, phone_module)), pbx])
    await aiohttp_client(app)
    assert next(iter(runtime.router.transports)) == "phone"  # first, and yet not the fallback
    offer = Offer(T0, "anna", "cb-1", "vaxeln", "callback", "+46701112233", None, (), 60.0)
    runtime.router.offer(offer)  # anna: endpoints twilio, then asterisk (config.toml order)
    assert twilio.offers == [offer] and asterisk.offers == []
    runtime.router.cancel_offer(CancelOffer(T0, "anna", "cb-1", "declined"))
    assert len(twilio.cancels) == 1 and asterisk.cancels == []
    del runtime.router.transports["twilio"]  # a site on Asterisk only
    runtime.router.offer(offer)
    assert asterisk.offers == [offer]


async def test_a_call_whose_page_never_listens_is_hung_up_after_the_orphan_time(client) -> None:
    """A tab closed while loading must not leave a caller waiting in a real queue."""
    chef = await login(client, "chef")
    made = await post(client, "/phone/calls", chef, {"caller": "+46701112233"}, status=201)
    phone = client.server.app[phone_module.PHONE]
    call = phone.calls[made["call_id"]]
    handle = call.orphan
    assert handle is not None and not call.ended
    loop = asyncio.get_running_loop()
    assert handle.when() - loop.time() == pytest.approx(phone_module.ORPHAN_HANGUP_S, abs=1.0)
    handle.cancel()
    phone._orphaned(call)  # what the timer does when it fires
    assert call.ended and (await state(client, made["call_id"], chef))["state"] == "ended"
