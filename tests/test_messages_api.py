"""``/api/messages`` over real HTTP: agents write and see open messages, supervisors all."""

from __future__ import annotations

import functools
from datetime import timedelta
from types import SimpleNamespace

import pytest

from ivr.config import load_settings
from ivr.directory import Directory, Entry
from ivr.server import Runtime, make_app
from ivr.store import EventLog
from ivr.vocabulary import Trace
from ivr.web import api as api_module
from ivr.web import messages as messages_module

from .conftest import ROOT
from .test_api import HASH_KEY, SESSION_KEY, T0, ManualClock, basic, get, post

FORM = {"target": "asa", "caller_name": "Karin Svensson", "callback_number": "0701234567",
        "consent": True, "category": "arende", "question": "Var är mitt bygglov?",
        "case_number": "BN 2026/117"}


@pytest.fixture
async def client(tmp_path, aiohttp_client, monkeypatch):
    monkeypatch.setenv("IVR_SESSION_KEY", SESSION_KEY)
    db = tmp_path / "ivr.db"
    with Directory(db) as directory:
        directory.upsert(Entry(id="asa", kind="person", name="Åsa Öberg", unit="Bygglovsenheten",
                               email="asa.oberg@bollebygd.se"))
    settings = load_settings(ROOT / "config.toml", env={})
    runtime = Runtime(settings, sink=EventLog.open(db, hash_key=HASH_KEY), clock=ManualClock(T0),
                      timers=False)
    app = make_app(runtime, setups=[functools.partial(api_module.setup, demo=True),
                                    functools.partial(messages_module.setup, demo=True)])
    return await aiohttp_client(app)


async def test_an_agent_writes_a_message_and_sees_it_open(client) -> None:
    created = await post(client, "/api/messages", basic("anna"), FORM, status=201)
    assert (created["state"], created["delivery"], created["email"]) == ("open", "pending", "not-configured")
    assert (created["created_by"], created["target_unit"], created["callback_number"]) == (
        "anna", "Bygglovsenheten", "+46701234567")
    listed = await get(client, "/api/messages?state=open", basic("anna"))
    assert [m["id"] for m in listed["messages"]] == [created["id"]]
    assert listed["messages"][0]["callback_number"] is None  # masked in lists
    assert listed["messages"][0]["callback_masked"] == "+46 70-*** ** 67"
    assert listed["email"] == "not-configured" and "arende" in listed["categories"]
    one = await get(client, f"/api/messages/{created['id']}", basic("anna"))
    assert one["callback_number"] == "+46701234567" and [h["kind"] for h in one["history"]] == ["created"]


async def test_bad_fields_are_400_with_every_error(client) -> None:
    body = await post(client, "/api/messages", basic("anna"),
                      {**FORM, "target": "nobody", "consent": False, "question": ""}, status=400)
    assert body["errors"] == {
        "target": 'no directory entry "nobody"', "question": "missing",
        "callback_number": "kept only with the caller's consent: set consent to true when the caller "
                           "agrees (samtycke)"}  # fmt: skip
    assert body["error"].startswith("target: no directory entry")
    resp = await client.post("/api/messages", data="[1]", headers=basic("anna"))
    assert resp.status == 400 and (await resp.json())["error"] == "body: expected a JSON object, got list"


async def test_closing_is_once_and_closed_messages_are_for_supervisors(client) -> None:
    created = await post(client, "/api/messages", basic("anna"), FORM, status=201)
    path = f"/api/messages/{created['id']}"
    closed = await post(client, f"{path}/close", basic("anna"), {"outcome": "reached", "note": "Klart"})
    assert (closed["state"], closed["closed_by"], closed["outcome"]) == ("closed", "anna", "reached")
    again = await post(client, f"{path}/close", basic("anna"), {"outcome": "reached"}, status=409)
    assert again["errors"]["state"].startswith("already closed at")
    await post(client, f"{path}/close", basic("anna"), {"outcome": "klar"}, status=400)
    await post(client, "/api/messages/999/close", basic("anna"), {"outcome": "reached"}, status=404)
    assert (await get(client, "/api/messages", basic("anna")))["messages"] == []
    await get(client, path, basic("anna"), status=403)
    await get(client, "/api/messages?state=all", basic("anna"), status=403)
    everything = await get(client, "/api/messages?state=all", basic("chef"))
    assert [m["state"] for m in everything["messages"]] == ["closed"]
    assert (await get(client, path, basic("chef")))["callback_number"] is None  # called back: masked
    await get(client, "/api/messages?state=old", basic("chef"), status=400)
    resp = await client.get("/api/messages")
    assert resp.status == 401


async def test_a_voice_message_serves_its_audio_from_the_messages_folder(client) -> None:
    runtime = client.app[messages_module.MESSAGES].runtime
    book = client.app[messages_module.MESSAGES].book
    folder = runtime.sink.db_path.parent / "messages"
    folder.mkdir()
    (folder / "CA9.wav").write_bytes(b"RIFF....WAVE")
    future = book.from_recording("CA9", Trace(T0, "recording", "message",
                                              {"ref": "CA9.wav", "duration_s": 4}))
    gone = book.from_recording("CA8", Trace(T0, "recording", "message", {"ref": "../../etc/passwd"}))
    message_id, gone_id = future.result(timeout=5), gone.result(timeout=5)
    resp = await client.get(f"/api/messages/{message_id}/audio", headers=basic("anna"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav"
    assert await resp.read() == b"RIFF....WAVE"
    outside = await get(client, f"/api/messages/{gone_id}/audio", basic("anna"), status=404)
    assert "not on this server" in outside["error"]
    written = await post(client, "/api/messages", basic("anna"), FORM, status=201)
    await get(client, f"/api/messages/{written['id']}/audio", basic("anna"), status=404)
    listed = await get(client, "/api/messages", basic("anna"))
    voice = [m for m in listed["messages"] if m["id"] == message_id][0]
    assert (voice["source"], voice["has_audio"], voice["promised_by"]) == (
        "voicemail", True, (T0 + timedelta(hours=24)).isoformat())


async def test_the_controller_hook_for_recordings_is_wired_to_the_book(client) -> None:
    """What ContactCenter._drain calls for a `recording` trace (docs/messages.md)."""
    runtime = client.app[messages_module.MESSAGES].runtime
    session = SimpleNamespace(caller="+46701234567", category="bygglov")
    trace = Trace(T0, "recording", "message", {"ref": "CA5.wav"})
    future = runtime.center.on_recording("CA5", session, trace)
    message = client.app[messages_module.MESSAGES].book.get(future.result(timeout=5))
    assert message is not None
    assert (message.source, message.call_id, message.category, message.callback_number) == (
        "voicemail", "CA5", "bygglov", "+46701234567")


async def test_a_voice_message_left_in_the_flow_joins_the_open_messages(client) -> None:
    """The controller's hook end to end: a closed-hours call records, the message is listed."""
    from datetime import datetime

    from ivr.hours import STOCKHOLM
    from ivr.vocabulary import Digits, RecordingDone

    runtime = client.app[messages_module.MESSAGES].runtime
    sunday = datetime(2026, 11, 29, 10, 0, tzinfo=STOCKHOLM)  # the switchboard is closed
    runtime.center.start_call(sunday, "CAvoice", "+46701234567", "+46330000000", "test")
    runtime.center.call_event("CAvoice", Digits(sunday + timedelta(seconds=20), "1"))
    assert runtime.center.sessions["CAvoice"].node.id == "message"
    runtime.center.call_event("CAvoice", RecordingDone(sunday + timedelta(seconds=40),
                                                       ref="CAvoice.wav", duration_s=14))
    runtime.sink.flush()
    listed = await get(client, "/api/messages?state=open", basic("anna"))
    voice = [m for m in listed["messages"] if m["call_id"] == "CAvoice"]
    assert len(voice) == 1 and voice[0]["source"] == "voicemail"
    assert voice[0]["callback_masked"] == "+46 70-*** ** 67"


async def test_a_message_hands_off_only_a_call_the_agent_has_taken(client) -> None:
    """It marks its call as never resolved at first contact: not for anyone's call."""
    body = await post(client, "/api/messages", basic("anna"), {**FORM, "call_id": "CAsomeoneelse"},
                      status=400)
    assert body["errors"] == {"call_id": "not a call you have taken"}
    listed = await get(client, "/api/messages?state=all", basic("chef"))
    assert listed["messages"] == []  # nothing stored, nothing marked
