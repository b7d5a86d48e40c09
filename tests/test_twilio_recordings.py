"""Voice messages over Twilio are kept here, under ``[privacy] recording_days``, not at Twilio.

A recording Twilio reports completed is downloaded into the messages folder and deleted at
Twilio; agents hear the local copy; retention deletes it; one that never came down is
deleted at Twilio once its retention is up. Over real HTTP, with the fake Twilio of
``tests/twilio_driver.py``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from datetime import timedelta

import pytest
from aiohttp import web

from ivr.retention import forget, purge, remote_recordings_due
from ivr.transports.twilio_rest import AiohttpMedia, Recordings, Rest, write_atomically
from ivr.web import api as api_module
from ivr.web import messages as messages_module

from .test_api import basic
from .twilio_driver import ACCOUNT_SID, AUTH_TOKEN, T0, FakeRest, SyncFakeRest, rig, sid

WEB = (functools.partial(api_module.setup, demo=True), functools.partial(messages_module.setup, demo=True))
KEY = b"twilio-test-key-0123456789"  # the rig's hash key


@pytest.fixture
async def r(aiohttp_client, tmp_path):
    return await rig(aiohttp_client, tmp_path, setups=WEB)


async def leave_message(r, caller: str = "+46701234567") -> str:
    """A caller at night: the on-call line does not answer, so a message. Its RecordingSid."""
    r.clock.value = T0.replace(hour=19)  # 20:00 in Stockholm: closed
    call = r.twilio.call(caller)
    await call.start()
    await call.press("2")
    await call.dial_ends("no-answer")
    assert call.state == "record"
    sent = await call.record(seconds=8)
    await r.settle()  # the download and the deletion at Twilio run in a task
    return sent.params["RecordingSid"]


def media(r) -> list[dict]:
    return [q for q in r.rest.requests if q["method"] == "GET"]


async def message_id_of(r, client_headers) -> int:
    await asyncio.get_running_loop().run_in_executor(None, r.log.flush)
    resp = await r.twilio.client.get("/api/messages", headers=client_headers)
    listed = await resp.json()
    voice = [m for m in listed["messages"] if m["source"] == "voicemail"]
    assert len(voice) == 1, listed
    return voice[0]["id"]


async def test_a_voice_message_is_downloaded_served_to_agents_and_deleted_at_twilio(r, tmp_path) -> None:
    recording = await leave_message(r)
    path = tmp_path / "messages" / f"twilio-{recording}.wav"
    assert path.read_bytes() == FakeRest.audio(recording)
    assert [q["url"] for q in media(r)] == [
        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording}.wav"]
    assert r.rest.deleted_recordings() == [recording]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    message_id = await message_id_of(r, basic("anna"))
    resp = await r.twilio.client.get(f"/api/messages/{message_id}/audio", headers=basic("anna"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav"
    assert await resp.read() == FakeRest.audio(recording)


async def test_twilio_failing_twice_then_serving_is_stored_after_backing_off(r, tmp_path) -> None:
    r.rest.script = [503, 503]  # the next two REST answers: the first two fetches of the media
    recording = await leave_message(r)
    assert [q["outcome"] for q in media(r)] == [503, 503, 200]
    assert r.sleeps == [0.5, 1.0]  # the rig's sleep: backoff without waiting
    assert (tmp_path / "messages" / f"twilio-{recording}.wav").read_bytes() == FakeRest.audio(recording)
    assert r.rest.deleted_recordings() == [recording]


async def test_a_download_that_keeps_failing_leaves_the_recording_at_twilio(r, tmp_path, caplog) -> None:
    r.rest.script = [404]  # final: not retried
    recording = await leave_message(r)
    assert not (tmp_path / "messages" / f"twilio-{recording}.wav").exists()
    assert r.rest.deleted_recordings() == [] and r.sleeps == []
    assert any("recording left at Twilio" in rec.getMessage() and recording in rec.getMessage()
               for rec in caplog.records if rec.levelname == "ERROR")
    message_id = await message_id_of(r, basic("anna"))
    resp = await r.twilio.client.get(f"/api/messages/{message_id}/audio", headers=basic("anna"))
    assert resp.status == 404


async def test_twilio_retrying_the_callback_does_not_download_again(r, tmp_path) -> None:
    recording = await leave_message(r)
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording}"
    again = await r.twilio.post(r.twilio.url("/twilio/recording-status"), {
        "AccountSid": ACCOUNT_SID, "CallSid": sid(), "RecordingSid": recording, "RecordingUrl": url,
        "RecordingStatus": "completed", "RecordingDuration": "8"})
    await r.settle()
    assert again.status == 200 and len(media(r)) == 1
    assert r.rest.deleted_recordings() == [recording, recording]  # the second: 204, or 404 at Twilio


def status_params(recording: str, url: str | None = None) -> dict[str, str]:
    url = url or f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording}"
    return {"AccountSid": ACCOUNT_SID, "CallSid": sid(), "RecordingSid": recording, "RecordingUrl": url,
            "RecordingStatus": "completed", "RecordingDuration": "8"}


async def test_a_forged_recording_status_is_refused_and_nothing_downloaded(r, tmp_path) -> None:
    params = status_params(sid("RE"))
    forged = await r.twilio.post(r.twilio.url("/twilio/recording-status"), params,
                                 signature="bm90IHR3aWxpbw==")
    unsigned = await r.twilio.post(r.twilio.url("/twilio/recording-status"), params, signature=None)
    await r.settle()
    assert (forged.status, unsigned.status) == (403, 403)
    assert r.rest.requests == [] and not (tmp_path / "messages").exists()


@pytest.mark.parametrize(("params", "named"), [
    (status_params("RE../../ivr.db"), "RecordingSid"),
    (status_params("RE" + "A" * 32), "RecordingSid"),
    (status_params(sid("RE"), "https://evil.example/2010-04-01/Accounts/AC" + "5" * 32 + "/Recordings/RE"
                   + "1" * 32), "RecordingUrl"),  # our credentials go to Twilio only
    (status_params("RE" + "1" * 32, f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}"
                                    f"/Recordings/RE{'2' * 32}"), "RecordingUrl"),
])
async def test_a_bad_recording_sid_or_url_is_400_naming_it(r, tmp_path, params, named) -> None:
    sent = await r.twilio.post(r.twilio.url("/twilio/recording-status"), params)
    await r.settle()
    assert sent.status == 400 and f"parameter {named}:" in sent.text
    assert r.rest.requests == [] and not (tmp_path / "messages").exists()


async def test_purge_and_forget_delete_the_local_copy(r, tmp_path) -> None:
    first = await leave_message(r, "+46701234567")
    second = await leave_message(r, "+46709876543")
    await asyncio.get_running_loop().run_in_executor(None, r.log.flush)
    db, folder = tmp_path / "ivr.db", tmp_path / "messages"
    done = forget(db, "+46709876543", key=KEY, now=T0 + timedelta(days=1), messages_dir=folder)
    assert {d.kind: d.count for d in done}["recordings"] == 1
    assert sorted(p.name for p in folder.iterdir()) == [f"twilio-{first}.wav"]
    kept = purge(db, now=T0 + timedelta(days=89), raw_number_days=30, note_days=90, recording_days=90,
                 messages_dir=folder)
    assert {d.kind: d.count for d in kept}["recordings"] == 0 and (folder / f"twilio-{first}.wav").exists()
    done = purge(db, now=T0 + timedelta(days=91), raw_number_days=30, note_days=90, recording_days=90,
                 messages_dir=folder)
    assert {d.kind: d.count for d in done}["recordings"] == 1 and list(folder.iterdir()) == []
    assert second != first


async def test_a_recording_still_at_twilio_is_deleted_there_when_its_retention_is_up(r, tmp_path) -> None:
    r.rest.script = [404]  # the download fails: it stays at Twilio
    recording = await leave_message(r)
    await asyncio.get_running_loop().run_in_executor(None, r.log.flush)
    db, day = tmp_path / "ivr.db", T0 + timedelta(days=89)
    assert remote_recordings_due(db, now=day, recording_days=90)[0] == []
    assert (await r.transport.purge_recordings(db, now=day, recording_days=90)).count == 0
    day += timedelta(days=2)
    assert [d.sid for d in remote_recordings_due(db, now=day, recording_days=90)[0]] == [recording]
    r.rest.script = [500] * 5  # Twilio down through every retry: tried again at the next purge
    assert (await r.transport.purge_recordings(db, now=day, recording_days=90)).count == 0
    assert r.rest.deleted_recordings() == []
    day += timedelta(days=1)
    done = await r.transport.purge_recordings(db, now=day, recording_days=90)
    assert (done.kind, done.count) == ("twilio_recordings", 1)
    assert r.rest.deleted_recordings() == [recording]
    day += timedelta(days=1)
    assert remote_recordings_due(db, now=day, recording_days=90)[0] == []  # once deleted, never again
    assert (await r.transport.purge_recordings(db, now=day, recording_days=90)).count == 0
    assert r.rest.deleted_recordings() == [recording]


async def test_the_media_client_fetches_with_basic_auth_over_http(aiohttp_server) -> None:
    seen: list[str | None] = []

    async def recording(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=b"RIFF-audio", content_type="audio/x-wav")

    async def busy(_request: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/Recordings/RE1.wav", recording)
    app.router.add_get("/Recordings/busy.wav", busy)
    server = await aiohttp_server(app)
    client = AiohttpMedia()
    try:
        assert await client.fetch_media(str(server.make_url("/Recordings/RE1.wav")),
                                        (ACCOUNT_SID, AUTH_TOKEN), 5) == (200, b"RIFF-audio")
        assert await client.fetch_media(str(server.make_url("/Recordings/busy.wav")),
                                        (ACCOUNT_SID, AUTH_TOKEN), 5) == (503, b"")
    finally:
        await client.close()
    assert seen == ["Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()]


def test_a_file_is_written_whole_or_not_at_all(tmp_path, monkeypatch) -> None:
    target = tmp_path / "messages" / "twilio-RE1.wav"
    write_atomically(target, b"first")
    monkeypatch.setattr("os.replace", lambda *_a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_atomically(target, b"second")
    assert target.read_bytes() == b"first" and [p.name for p in target.parent.iterdir()] == [target.name]


async def test_a_recording_already_gone_at_twilio_counts_as_deleted_with_a_blocking_client() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fake = SyncFakeRest([500, 404, 403])  # busy, then gone; then refused (final)
    rest = Rest(ACCOUNT_SID, AUTH_TOKEN, retries=2, http_client=fake, sleep=sleep, media=fake)
    assert await rest.delete_recording("RE" + "1" * 32) is True
    assert await rest.delete_recording("RE" + "2" * 32) is False
    assert slept == [0.5] and [q["method"] for q in fake.requests] == ["DELETE"] * 3
    assert fake.requests[0]["url"].endswith(f"/Accounts/{ACCOUNT_SID}/Recordings/RE{'1' * 32}.json")


async def test_keep_fetches_only_twilio_s_url_of_that_recording(tmp_path) -> None:
    """The webhook checks the URL; ``keep`` refuses on its own too (the account's credentials
    go with the request)."""
    fake = FakeRest()
    rest = Rest(ACCOUNT_SID, AUTH_TOKEN, retries=0, http_client=fake, media=fake)
    rec = "RE" + "5" * 32
    keeper = Recordings(rest, tmp_path / "messages")
    with pytest.raises(ValueError, match="is not Twilio's URL"):
        await keeper.keep(rec, "https://evil.example.com/2010-04-01/Accounts/x/Recordings/" + rec)
    other = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE" + "6" * 32
    with pytest.raises(ValueError):
        await keeper.keep(rec, other)
    assert fake.requests == [] and not (tmp_path / "messages").exists()


async def test_a_deletion_twilio_refuses_is_not_tried_every_day_and_404_is_not_counted(r, tmp_path) -> None:
    r.rest.script = [404]  # the download fails: it stays at Twilio
    refused = await leave_message(r)
    r.rest.script = [404]
    gone = await leave_message(r)  # deleted at Twilio by hand, say
    await asyncio.get_running_loop().run_in_executor(None, r.log.flush)
    db, day = tmp_path / "ivr.db", T0 + timedelta(days=91)
    due = [d.sid for d in remote_recordings_due(db, now=day, recording_days=90)[0]]
    assert sorted(due) == sorted([refused, gone])
    r.rest.script = [403, 404] if due[0] == refused else [404, 403]  # forbidden; already gone
    done = await r.transport.purge_recordings(db, now=day, recording_days=90)
    assert done.count == 0  # neither was deleted now
    assert remote_recordings_due(db, now=day + timedelta(days=1), recording_days=90)[0] == []
    sent = len(r.rest.requests)
    await r.transport.purge_recordings(db, now=day + timedelta(days=1), recording_days=90)
    assert len(r.rest.requests) == sent  # the refused one is not asked about again
