"""`ivr forget` and Twilio: a caller's recordings still at Twilio are deleted there too."""

from __future__ import annotations

from .conftest import ROOT
from .twilio_driver import ACCOUNT_SID, AUTH_TOKEN, T0, FakeRest


def _caller_with_twilio_recording(path, recording_sid: str) -> None:
    from ivr.store import EventLog
    from ivr.vocabulary import Trace

    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid}"
    log = EventLog.open(path, hash_key=FORGET_KEY)
    for call_id, caller in (("c-karin", "+46701112233"), ("c-other", "+46709998877")):
        log.append(call_id, Trace(T0, "call_started", None, {"caller": caller, "flow": "t"}))
        log.append(call_id, Trace(T0, "recording", "message", {"ref": url if caller.endswith("2233")
                                                               else "local.wav", "duration_s": 5.0}))
        log.append(call_id, Trace(T0, "call_ended", None, {"reason": "caller-hangup", "end": "message"}))
    log.close()


FORGET_KEY = b"forget-at-twilio-key-012345"


def test_forget_deletes_the_caller_s_recordings_still_at_twilio(tmp_path) -> None:
    import sqlite3

    from ivr.cli import forget_at_twilio
    from ivr.config import load_settings

    db, rec = tmp_path / "ivr.db", "RE" + "7" * 32
    _caller_with_twilio_recording(db, rec)
    env = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    settings = load_settings(ROOT / "config.toml", env=env)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    fake = FakeRest([503])  # Twilio busy once: retried
    lines = forget_at_twilio(settings, db, "070-111 22 33", key=FORGET_KEY, now=T0,
                             http_client=fake, sleep=sleep)
    assert fake.deleted_recordings() == [rec] and sleeps == [0.5]
    assert lines == ["twilio_recordings: 1 deleted"]
    con = sqlite3.connect(db)
    noted = con.execute("select deleted from purges where kind = 'forget:twilio_recordings'").fetchall()
    assert noted == [(1,)]
    con.close()
    # another caller: nothing of theirs at Twilio, nothing asked of Twilio
    other = FakeRest()
    assert forget_at_twilio(settings, db, "+46709998877", key=FORGET_KEY, now=T0, http_client=other) == []
    assert other.requests == []
    # no credentials: said, not silently skipped
    plain = load_settings(ROOT / "config.toml", env={})
    said = forget_at_twilio(plain, db, "+46701112233", key=FORGET_KEY, now=T0)
    assert len(said) == 1 and "1 not deleted at Twilio" in said[0] and "TWILIO_AUTH_TOKEN" in said[0]
    # Twilio failing through every retry: named, for the operator to run again
    failing = FakeRest([500] * 10)
    said = forget_at_twilio(settings, db, "+46701112233", key=FORGET_KEY, now=T0, http_client=failing,
                            sleep=sleep)
    assert said[0] == "twilio_recordings: 0 deleted" and rec in said[1] and "again later" in said[1]
