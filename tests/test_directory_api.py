"""The directory over the JSON API: who may do what, search, edits, status, CSV import errors."""

from __future__ import annotations

import base64
import dataclasses
import functools
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from argon2 import PasswordHasher

from ivr.config import load_settings
from ivr.server import Runtime, make_app
from ivr.store import EventLog
from ivr.web import api as api_module
from ivr.web import directory as directory_module

from .conftest import FIXTURES, ROOT, ManualClock
from .test_directory import EXPECTED_PROBLEMS

FILES = FIXTURES / "directory"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Stockholm


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:demo".encode()).decode()}


AGENT, SUPERVISOR = basic("anna"), basic("chef")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def client(aiohttp_client, tmp_path, clock, monkeypatch):
    monkeypatch.setenv("IVR_SESSION_KEY", "directory-test-session-key-0123")
    settings = load_settings(ROOT / "config.toml", env={})
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash("demo")  # the checks, not argon2
    settings = dataclasses.replace(settings, users=MappingProxyType(
        {n: dataclasses.replace(u, password_hash=cheap) for n, u in settings.users.items()}))
    log = EventLog.open(tmp_path / "ivr.db", hash_key=b"directory-api-test-key")
    runtime = Runtime(settings, sink=log, clock=clock, timers=False)
    app = make_app(runtime, setups=[functools.partial(api_module.setup, demo=True),
                                    functools.partial(directory_module.setup, demo=True)])
    return await aiohttp_client(app)


async def call(client, method: str, path: str, headers: dict[str, str], status: int = 200, **kw) -> dict:
    resp = await client.request(method, path, headers=headers, **kw)
    body = await resp.json()
    assert resp.status == status, body
    return body


async def import_good(client) -> dict:
    return await call(client, "POST", "/api/directory/import", SUPERVISOR,
                      data=(FILES / "good_sv_semicolon.csv").read_bytes())


async def test_supervisor_imports_and_the_reply_says_what_was_detected(client) -> None:
    dry = await call(client, "POST", "/api/directory/import?dry_run=1", SUPERVISOR,
                     data=(FILES / "good_sv_semicolon.csv").read_bytes())
    assert (dry["added"], dry["dry_run"]) == (10, True)
    assert (await call(client, "GET", "/api/directory", AGENT))["results"] == []
    result = await import_good(client)
    assert (result["encoding"], result["delimiter"], result["added"]) == ("UTF-8 with BOM", ";", 10)
    listed = (await call(client, "GET", "/api/directory", AGENT))["results"]
    assert len(listed) == 10 and listed[0]["kind"] == "unit"


async def test_import_errors_are_400_with_every_problem_and_nothing_imported(client) -> None:
    body = await call(client, "POST", "/api/directory/import", SUPERVISOR, status=400,
                      data=(FILES / "bad_rows.csv").read_bytes())
    assert body["error"] == "10 problems; nothing imported"
    assert (body["encoding"], body["delimiter"]) == ("UTF-8", ";")
    assert [(p["line"], p["column"]) for p in body["problems"]] == [(a, b) for a, b, _ in EXPECTED_PROBLEMS]
    assert (await call(client, "GET", "/api/directory", AGENT))["results"] == []
    empty = await call(client, "POST", "/api/directory/import", SUPERVISOR, status=400, data=b"")
    assert "expected a CSV file" in empty["error"]


async def test_agents_search_and_read_but_only_supervisors_edit(client) -> None:
    await import_good(client)
    found = await call(client, "GET", "/api/directory", AGENT, params={"q": "Osa Öbärg", "limit": "2"})
    assert [r["id"] for r in found["results"]] == ["1001", "1002"]
    first = found["results"][0]
    assert (first["name"], first["field"], first["matched"], first["status_now"]) == (
        "Åsa Öberg", "name", "Åsa Öberg", "available")
    asa = await call(client, "GET", "/api/directory/1001", AGENT)
    assert asa["endpoints"] == {"twilio": "client:asa", "asterisk": "PJSIP/3123"}
    await call(client, "GET", "/api/directory/nobody", AGENT, status=404)

    for method, path, kw in [("PUT", "/api/directory/1001", {"json": {"name": "X"}}),
                             ("POST", "/api/directory/1001/status", {"json": {"status": "busy"}}),
                             ("DELETE", "/api/directory/1001", {}),
                             ("POST", "/api/directory/import", {"data": b"namn\nX\n"})]:
        body = await call(client, method, path, AGENT, status=403, **kw)
        assert body == {"error": "this needs the supervisor role"}
    await call(client, "GET", "/api/directory", {}, status=401)
    bad = await call(client, "GET", "/api/directory", AGENT, status=400, params={"q": "x", "limit": "0"})
    assert bad["error"].startswith("limit: expected a whole number from 1 to 50")


async def test_supervisor_edits_an_entry_with_the_imports_checks(client) -> None:
    await import_good(client)
    entry = {"kind": "unit", "name": "Växeln", "phone": "033-430 00 00", "languages": ["sv", "en"],
             "topics": ["allmänna frågor"], "endpoints": {"asterisk": "PJSIP/3000"}}
    created = await call(client, "PUT", "/api/directory/vaxeln", SUPERVISOR, status=201, json=entry)
    assert (created["phone"], created["unit"], created["endpoints"]) == (
        "+46334300000", "Växeln", {"asterisk": "PJSIP/3000"})
    await call(client, "PUT", "/api/directory/vaxeln", SUPERVISOR, json={**entry, "title": "Växel"})
    assert (await call(client, "GET", "/api/directory/vaxeln", AGENT))["title"] == "Växel"
    hits = await call(client, "GET", "/api/directory", AGENT, params={"q": "vaxel"})
    assert hits["results"][0]["id"] == "vaxeln"  # the search sees the edit at once

    bad = await call(client, "PUT", "/api/directory/vaxeln", SUPERVISOR, status=400,
                     json={**entry, "phone": "12345", "languages": ["sv", "klingon"],
                           "endpoints": {"twilio": "PJSIP/1"}})
    assert [p["field"] for p in bad["problems"]] == ["phone", "endpoints.twilio", "languages"]
    assert '"klingon" is not a language code' in bad["error"]
    unknown = await call(client, "PUT", "/api/directory/vaxeln", SUPERVISOR, status=400,
                         json={**entry, "telefon": "x"})
    assert unknown["error"].startswith('unknown field "telefon"')
    cross = await client.put("/api/directory/vaxeln", json=entry,
                             headers={**SUPERVISOR, "Origin": "https://evil.example"})
    assert cross.status == 403
    assert (await call(client, "DELETE", "/api/directory/vaxeln", SUPERVISOR)) == {"deleted": "vaxeln"}
    await call(client, "GET", "/api/directory/vaxeln", AGENT, status=404)


async def test_status_with_an_end_time_is_over_when_the_clock_passes_it(client, clock) -> None:
    await import_good(client)
    set_ = await call(client, "POST", "/api/directory/1004/status", SUPERVISOR,
                      json={"status": "meeting", "note": "I möte till 14", "until": "2026-03-02T14:00"})
    assert (set_["status"], set_["status_note"], set_["status_now"]) == (
        "meeting", "I möte till 14", "meeting")
    assert set_["status_until"] == "2026-03-02T14:00:00+01:00"
    clock.value = T0 + timedelta(hours=5)  # 14:00 in Stockholm
    assert (await call(client, "GET", "/api/directory/1004", AGENT))["status_now"] == "available"
    past = await call(client, "POST", "/api/directory/1004/status", SUPERVISOR, status=400,
                      json={"status": "away", "until": "2026-03-01"})
    assert "is not in the future" in past["error"]
    bad = await call(client, "POST", "/api/directory/1004/status", SUPERVISOR, status=400,
                     json={"status": "lunch"})
    assert bad["error"].startswith('status: expected one of "available"')
    await call(client, "POST", "/api/directory/nobody/status", SUPERVISOR, status=404,
               json={"status": "busy"})
