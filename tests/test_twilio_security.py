"""The Twilio webhooks at the door: signatures, parameters, retries, unknown calls, demo mode."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from aiohttp import web

from ivr.config import load_settings
from ivr.server import Runtime
from ivr.store import EventLog
from ivr.transports.twilio import TwilioSetupError, install

from .conftest import ROOT
from .twilio_driver import ACCOUNT_SID, AUTH_TOKEN, T0, ManualClock, rig, sid, sign


@pytest.fixture
async def r(aiohttp_client, tmp_path):
    return await rig(aiohttp_client, tmp_path)


def params(call_sid: str, **extra: str) -> dict[str, str]:
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": call_sid,
            "CallStatus": "ringing", "Direction": "inbound", "From": "+46701234567",
            "To": "+46331234567", **extra}


async def nothing_recorded(r, call_sid: str) -> bool:
    return (await r.row(call_sid)) is None and not await r.events(call_sid) \
        and call_sid not in r.center.sessions


def test_the_driver_signs_as_twilio_documents_it() -> None:
    # the example in Twilio's security documentation
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    p = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
         "From": "+12349013030", "To": "+18005551212"}
    assert sign("12345", url, p) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


async def test_a_forged_signature_is_refused_and_nothing_is_recorded(r) -> None:
    call_sid = sid()
    url = r.twilio.url("/twilio/voice")
    forged_signature = sign("not-the-token", url, params(call_sid))
    forged = await r.twilio.post(url, params(call_sid), signature=forged_signature)
    assert forged.status == 403
    unsigned = await r.twilio.post(url, params(call_sid), signature=None)
    assert unsigned.status == 403
    tampered = await r.twilio.post(url, params(call_sid, From="+46700000000"),
                                   signature=sign(AUTH_TOKEN, url, params(call_sid)))
    assert tampered.status == 403
    assert await nothing_recorded(r, call_sid)
    ok = await r.twilio.post(url, params(call_sid))
    assert ok.status == 200 and call_sid in r.center.sessions


async def test_the_signature_is_checked_against_the_public_url(aiohttp_client, tmp_path) -> None:
    r = await rig(aiohttp_client, tmp_path, overrides={"twilio.public_url": "https://ivr.example.se/kc"},
                  public="https://ivr.example.se/kc")
    call_sid = sid()
    url = r.twilio.url("/twilio/voice")
    wrong = await r.twilio.post(url, params(call_sid), sign_as="https://other.example.se/kc/twilio/voice")
    assert wrong.status == 403
    local = await r.twilio.post(url, params(call_sid), sign_as=r.twilio.server + "/twilio/voice")
    assert local.status == 403  # the address the proxy forwards to is not what Twilio signed
    assert await nothing_recorded(r, call_sid)
    ok = await r.twilio.post(url, params(call_sid))
    assert ok.status == 200
    gather = ET.fromstring(ok.text).find("Gather")
    assert gather.attrib["action"].startswith("https://ivr.example.se/kc/twilio/gather?step=")


async def test_missing_or_malformed_parameters_are_refused_naming_them(r) -> None:
    url = r.twilio.url("/twilio/voice")
    no_sid = {k: v for k, v in params("x").items() if k != "CallSid"}
    missing = await r.twilio.post(url, no_sid)
    assert missing.status == 400 and "CallSid" in missing.text and "missing" in missing.text
    bad = await r.twilio.post(url, params("CA1234"))
    assert bad.status == 400 and "CallSid" in bad.text
    call = r.twilio.call()
    await call.start()
    action = call.verb.attrib["action"]
    letters = await r.twilio.post(action, call.params(Digits="1a"))
    assert letters.status == 400 and "Digits" in letters.text
    no_step = await r.twilio.post(r.twilio.url("/twilio/gather"), call.params(Digits="1"))
    assert no_step.status == 400 and "step" in no_step.text
    dial = await r.twilio.post(r.twilio.url("/twilio/dial-result?step=1&agent=anna"),
                               call.params(DialCallStatus="exploded"))
    assert dial.status == 400 and "DialCallStatus" in dial.text
    assert [e["kind"] for e in await r.events(call.sid)].count("input") == 0


async def test_a_retried_webhook_gets_the_same_answer_and_records_nothing_twice(r) -> None:
    call = r.twilio.call()
    first_voice = await call.start()
    again = await r.twilio.replay(first_voice)
    assert again.text == first_voice.text
    press = await call.press("4")
    retried = await r.twilio.replay(press)
    assert retried.status == 200 and retried.text == press.text
    second = await call.press("1")  # to the omsorg queue
    assert (await r.twilio.replay(second)).text == second.text
    events = await r.events(call.sid)
    kinds = [e["kind"] for e in events]
    assert kinds.count("call_started") == 1 and kinds.count("input") == 2
    assert [e["data"]["digits"] for e in events if e["kind"] == "input"] == ["4", "1"]


async def test_a_late_answer_to_an_old_step_records_nothing(r) -> None:
    call = r.twilio.call()
    await call.start()
    old_action = call.verb.attrib["action"]
    await call.press("4")  # now in the omsorg menu
    late = await r.twilio.post(old_action, call.params(Digits="9"))
    assert late.status == 200 and ET.fromstring(late.text).find("Gather") is not None
    kinds = [e["kind"] for e in await r.events(call.sid)]
    assert kinds.count("input") == 1 and "language" not in kinds


async def test_webhooks_for_an_unknown_call_are_answered_and_change_nothing(r) -> None:
    stranger = sid()
    gather = await r.twilio.post(r.twilio.url("/twilio/gather?step=1"), params(stranger, Digits="1"))
    doc = ET.fromstring(gather.text)
    assert gather.status == 200 and doc.find("Say") is not None and doc.find("Hangup") is not None
    status = await r.twilio.post(r.twilio.url("/twilio/status"), params(stranger, CallStatus="completed"))
    assert status.status == 200 and list(ET.fromstring(status.text)) == []
    assert await nothing_recorded(r, stranger)


async def test_a_status_callback_closes_the_call(r) -> None:
    call = r.twilio.call()
    await call.start()
    r.clock.advance(3)
    await r.twilio.post(r.twilio.url("/twilio/status"), call.params(CallStatus="no-answer"))
    row = await r.row(call.sid)
    assert (row["status"], row["end"]) == ("ended", "caller-hangup")
    assert call.sid not in r.center.sessions and call.sid not in r.runtime.router.owner


async def test_prompt_audio_is_served_safely(aiohttp_client, tmp_path) -> None:
    recordings = tmp_path / "rec"
    (recordings / "sv").mkdir(parents=True)
    (recordings / "sv" / "hej.wav").write_bytes(b"RIFF....WAVE")
    (recordings / "notes.txt").write_text("not audio")
    (tmp_path / "secret.wav").write_bytes(b"outside")
    r = await rig(aiohttp_client, tmp_path, overrides={"paths.recordings": str(recordings)})
    client = r.twilio.client
    ok = await client.get("/recordings/sv/hej.wav")
    assert ok.status == 200 and ok.headers["Content-Type"] == "audio/wav"
    assert await ok.read() == b"RIFF....WAVE"
    (recordings / "link.wav").symlink_to(tmp_path / "secret.wav")
    for path in ("/recordings/notes.txt", "/recordings/..%2Fsecret.wav",
                 "/recordings/sv/..%2F..%2Fsecret.wav", "/recordings/%2e%2e/secret.wav",
                 "/recordings/link.wav", "/recordings/missing.wav"):
        assert (await client.get(path)).status == 404, path


def _runtime(tmp_path, name: str, *, env: dict[str, str], host: str = "127.0.0.1") -> Runtime:
    settings = load_settings(ROOT / "config.toml", env=env, overrides={"server.host": host})
    log = EventLog.open(tmp_path / f"{name}.db", hash_key=b"twilio-test-key-0123456789")
    return Runtime(settings, sink=log, clock=ManualClock(T0), timers=False)


def test_demo_mode_is_refused_off_loopback_and_a_token_is_required_without_it(tmp_path) -> None:
    secrets = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    runtimes = [_runtime(tmp_path, str(i), env=env, host=host) for i, (env, host) in enumerate(
        [(secrets, "0.0.0.0"), ({}, "127.0.0.1"), ({}, "::1"), (secrets, "0.0.0.0")])]
    try:
        with pytest.raises(TwilioSetupError, match="only allowed on loopback"):
            install(web.Application(), runtimes[0], demo=True)
        with pytest.raises(TwilioSetupError, match="TWILIO_AUTH_TOKEN is not set"):
            install(web.Application(), runtimes[1], demo=False)
        demo = install(web.Application(), runtimes[2], demo=True)
        assert demo.validator is None and demo.rest is None
        real = install(web.Application(), runtimes[3], demo=False)
        assert real.validator is not None and real.rest is not None
    finally:
        for runtime in runtimes:
            runtime.sink.close()


async def test_demo_mode_takes_unsigned_webhooks_from_loopback_and_offers_on_the_next_round(
        aiohttp_client, tmp_path) -> None:
    r = await rig(aiohttp_client, tmp_path, env={}, demo=True)
    call = r.twilio.call()
    call.twilio.token = "whatever"  # signatures are not checked
    await call.start()
    await call.press("1")
    assert call.state == "enqueue"
    r.center.agent(r.clock.now(), "anna", "login")  # no REST credentials: nothing to redirect with
    await call.wait_round()  # the next round says <Leave/>, and the <Enqueue action> dials anna
    assert call.state == "dial" and call.dialled() == ("Client", "anna")


async def test_a_signature_over_the_url_with_or_without_its_port_is_accepted(aiohttp_client,
                                                                             tmp_path) -> None:
    # Twilio signs some requests with the default port in the URL and some without
    r = await rig(aiohttp_client, tmp_path, overrides={"twilio.public_url": "https://ivr.example.se/kc"},
                  public="https://ivr.example.se/kc")
    with_port = await r.twilio.post(r.twilio.url("/twilio/voice"), params(sid()),
                                    sign_as="https://ivr.example.se:443/kc/twilio/voice")
    assert with_port.status == 200
    wrong_port = await r.twilio.post(r.twilio.url("/twilio/voice"), params(sid()),
                                     sign_as="https://ivr.example.se:8443/kc/twilio/voice")
    assert wrong_port.status == 403


def test_the_signature_check_agrees_with_twilios_request_validator() -> None:
    from multidict import MultiDict
    from twilio.request_validator import RequestValidator

    from ivr.transports.twilio_webhooks import signed

    validator = RequestValidator(AUTH_TOKEN)
    form = MultiDict(params("CA" + "0" * 32, Digits="1"))
    urls = ["https://ivr.example.se/twilio/gather?step=2", "https://ivr.example.se:443/twilio/gather?step=2",
            "http://127.0.0.1:8080/twilio/voice", "http://127.0.0.1/twilio/voice"]
    for requested in urls:
        for signed_as in urls + ["https://ivr.example.se/twilio/gather?step=3"]:
            signature = sign(AUTH_TOKEN, signed_as, dict(form))
            assert signed(validator, requested, form, signature) \
                == validator.validate(requested, form, signature), (requested, signed_as)
    assert not signed(validator, urls[0], form, "ö-not-base64")


async def test_each_webhook_s_time_to_answer_is_in_the_metrics_by_route(r) -> None:
    call = r.twilio.call()
    await call.start()
    await call.press("4")
    text = await (await r.twilio.client.get("/metrics")).text()
    assert 'ivr_webhook_seconds_count{route="/twilio/voice"} 1.0' in text
    assert 'ivr_webhook_seconds_count{route="/twilio/gather"} 1.0' in text
    refused = await r.twilio.post(r.twilio.url("/twilio/voice"), params(sid()), signature=None)
    assert refused.status == 403  # refused requests are answered too, and counted
    text = await (await r.twilio.client.get("/metrics")).text()
    assert 'ivr_webhook_seconds_count{route="/twilio/voice"} 2.0' in text
