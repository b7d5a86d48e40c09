"""Whole Asterisk calls as the reports and the waiting caller see them: a call over the fake
Asterisk (``tests/ami_peer.py``) reported by ``ivr report`` exactly as the same call made
over Twilio (``tests/twilio_driver.py``), and a waiting caller asking for a callback with 1."""

from __future__ import annotations

import json

import pytest

from ivr.cli import main
from ivr.controller import CALLBACK_CONFIRM, CALLBACK_HINT

from .ami_peer import AmiPeer
from .asterisk_harness import (  # noqa: F401 (fixtures)
    ROOT,
    T0,
    Harness,
    agi,
    harness_fixture,
    peer_fixture,
    recordings_fixture,
    sound,
    until,
)
from .twilio_driver import rig

CALLER = "+46701234567"
HOLD = "WAIT FOR DIGIT 20"  # the harness's hold step (20 ms)


def report(capsys, db, fmt: str = "json") -> str:
    """``ivr report`` for the day of T0, in-process, over the log at ``db``."""
    code = main(["report", "--config", str(ROOT / "config.toml"), "--db", str(db), "--from", "2026-12-01",
                 "--to", "2026-12-01", "--format", fmt])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


async def asterisk_call(h: Harness, peer: AmiPeer) -> str:
    """Menu 1 (barn och utbildning) -> anna answers after 15 s -> 180 s of talk -> the agent
    hangs up -> survey "yes" -> coded "resolved" 20 s later."""
    uid = "1764577800.201"
    h.center.agent(T0, "anna", "login")
    peer.agents["PJSIP/1001"] = "manual"
    peer.call(uid, caller=CALLER, keys="1")
    leg = (await peer.wait_for("Originate", Channel="PJSIP/1001"))["ChannelId"]
    h.clock.advance(15)
    peer.answer(leg)
    await peer.wait_for("Bridge")
    h.clock.advance(180)
    peer.press(uid, "1")  # the survey, once the caller is back from the agent
    peer.hangup(leg)
    await until(lambda: uid not in peer.channels, what="the caller's hang-up after the survey")
    h.center.agent(h.clock.advance(20), "anna", "wrapup", category="skola", resolution="resolved")
    h.log.flush()
    return uid


async def twilio_call(aiohttp_client, tmp_path) -> tuple[object, str]:
    """The same call over Twilio's webhooks, on the same clock."""
    r = await rig(aiohttp_client, tmp_path)
    r.center.agent(T0, "anna", "login")
    call = r.twilio.call(CALLER)
    await call.start()
    await call.press("1")
    assert call.state == "dial"
    r.clock.advance(15)
    await call.agent_answers()
    r.clock.advance(180)
    await call.agent_hangs_up()
    await call.press("1")
    assert call.state == "ended"
    r.center.agent(r.clock.advance(20), "anna", "wrapup", category="skola", resolution="resolved")
    await r.row(call.sid)  # flushed
    return r, call.sid


async def test_ivr_report_shows_an_asterisk_call_exactly_as_the_same_call_over_twilio(
        peer, tmp_path, recordings, aiohttp_client, capsys) -> None:
    (tmp_path / "asterisk").mkdir()
    h = await Harness(peer, tmp_path / "asterisk", recordings).start()
    try:
        uid = await asterisk_call(h, peer)
        row = h.row(uid)
    finally:
        await h.stop()
    (tmp_path / "twilio").mkdir()
    r, sid = await twilio_call(aiohttp_client, tmp_path / "twilio")
    twilio_row = await r.row(sid)
    await r.runtime.stop()

    assert (row["transport"], twilio_row["transport"]) == ("asterisk", "twilio")
    same = ("path", "end", "queue", "queue_outcome", "agent", "wait_s", "talk_s", "wrapup_s", "resolution",
            "category", "survey", "offers")
    assert {k: row[k] for k in same} == {k: twilio_row[k] for k in same}

    ours = json.loads(report(capsys, tmp_path / "asterisk" / "ivr.db"))
    theirs = json.loads(report(capsys, tmp_path / "twilio" / "ivr.db"))
    ours.pop("parameters", None), theirs.pop("parameters", None)
    assert ours == theirs  # every KPI, per queue, category, hour and day
    barn = ours["by_queue"]["barn-utbildning"]
    assert (barn["offered"], barn["answered"], barn["abandoned"]) == (1, 1, 0)
    assert (barn["fcr_coded"], barn["fcr_survey"], barn["asa_s"]) == (1.0, 1.0, 15)
    assert ours["by_category"]["skola"]["fcr_coded"] == 1.0

    def table(db) -> str:  # but the line saying when it was made ("as of" now)
        return "\n".join(line for line in report(capsys, db, "table").splitlines() if "as of" not in line)

    ours_table = table(tmp_path / "asterisk" / "ivr.db")
    assert ours_table == table(tmp_path / "twilio" / "ivr.db")
    assert "barn-utbildning" in ours_table and "skola" in ours_table


# --------------------------------------------------------------------------- a callback by DTMF


async def waiting(h: Harness, peer: AmiPeer, uid: str, caller: str) -> None:
    """A caller who chose barn och utbildning (1) and now waits: nobody is logged in."""
    peer.call(uid, caller=caller, keys="1")
    await peer.wait_for("AGI", Channel=peer.channels[uid].name, Command=HOLD)


async def test_a_waiting_caller_hears_how_to_ask_for_a_callback_and_a_1_between_commands_asks(h, peer):
    uid = "1764577800.211"
    await waiting(h, peer, uid, CALLER)
    commands = agi(peer, uid)
    position = commands.index(f'STREAM FILE {sound("sv", "Du är nummer 1 i kön.")} ""')
    assert commands[position + 1] == f'STREAM FILE {sound("sv", CALLBACK_HINT["sv"])} ""'
    assert not h.events(uid, "callback_requested")  # the menu's own 1 asked for nothing

    peer.press_now(uid, "1")  # DTMFEnd only: AGI does not hear it
    await until(lambda: uid not in peer.channels, what="the caller to be thanked and let go")
    commands = agi(peer, uid)
    thanks = commands.index(f'STREAM FILE {sound("sv", CALLBACK_CONFIRM["sv"])} ""')
    assert commands[thanks - 1] == "SET MUSIC OFF" and commands[thanks + 1:] == ["HANGUP"]
    assert [e["data"]["queue"] for e in h.events(uid, "callback_requested")] == ["barn-utbildning"]
    assert h.row(uid)["status"] == "ended"

    h.center.agent(h.clock.now(), "anna", "login")  # the callback keeps its place: anna rings first
    h.runtime.poke()
    await peer.wait_for("Originate", Channel="PJSIP/1001")
    await peer.wait_for("Originate", Channel=f"Local/{CALLER}@ivr-transfer")


@pytest.mark.parametrize("dtmf_events", [True, False], ids=["with DTMF events", "AGI only"])
async def test_a_1_heard_by_the_hold_step_asks_for_the_callback_once(h, peer, dtmf_events):
    peer.dtmf_events = dtmf_events  # without the dtmf read class only WAIT FOR DIGIT hears the key
    uid = "1764577800.212"
    await waiting(h, peer, uid, CALLER)
    peer.press(uid, "1")
    await until(lambda: uid not in peer.channels, what="the caller to be let go")
    assert len(h.events(uid, "callback_requested")) == 1
    assert agi(peer, uid)[-2:] == [f'STREAM FILE {sound("sv", CALLBACK_CONFIRM["sv"])} ""', "HANGUP"]


async def test_a_withheld_number_is_not_offered_a_callback_and_1_keeps_it_waiting(h, peer):
    uid = "1764577800.213"
    await waiting(h, peer, uid, "anonymous")
    peer.press_now(uid, "1")
    peer.press(uid, "1")
    await until(lambda: not peer.channels[uid].keys, what="the hold step to hear the key")
    await peer.wait_for("AGI", 3, Channel=peer.channels[uid].name, Command=HOLD)
    assert sound("sv", CALLBACK_HINT["sv"]) not in " ".join(agi(peer, uid))
    assert not h.events(uid, "callback_requested") and uid in h.center.sessions
