"""Whole calls through the controller on the Asterisk transport, against a fake Asterisk
that speaks AMI over a real TCP socket (``tests/ami_peer.py``)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from ivr.server import Runtime
from ivr.store import EventLog
from ivr.vocabulary import Digits
from queues import CancelOffer, Offer

from .asterisk_harness import (  # noqa: F401 (fixtures)
    KEY,
    T0,
    Harness,
    ManualClock,
    agi,
    harness_fixture,
    peer_fixture,
    recordings_fixture,
    sound,
    until,
)

CALLER = "+46701234567"
COMPARED = ("path", "end", "queue", "queue_outcome", "abandon_stage", "agent", "wait_s", "talk_s",
            "wrapup_s", "resolution", "coded", "category", "survey", "language", "inputs", "timeouts",
            "invalid_inputs", "offers", "status", "caller_hash")


class Recorder:
    """The line as the simulator sees it: whatever the controller asks, noted."""

    def __init__(self) -> None:
        self.sent: list = []

    def send(self, call_id, commands):
        self.sent.append(commands)

    def offer(self, offer: Offer):
        self.sent.append(offer)

    def cancel_offer(self, cancel: CancelOffer):
        self.sent.append(cancel)

    def connect(self, agent, call_id):
        self.sent.append(("connect", agent))


def simulated_call(settings, tmp_path, steps) -> dict:
    """The same call fed straight to the controller, as the simulator and Twilio feed it."""
    clock = ManualClock(T0)
    log = EventLog.open(tmp_path / "sim.db", hash_key=KEY)
    runtime = Runtime(settings, sink=log, clock=clock, timers=False)
    runtime.router.add("sim", Recorder())
    runtime.router.claim("sim-1", "sim")
    center = runtime.center
    for at, step in steps:
        clock.value = at
        step(center, clock.value)
    log.flush()
    row = log.call("sim-1")
    log.close()
    return row


# --------------------------------------------------------------------------- whole calls


async def test_menu_queue_agent_survey_and_wrapup_log_the_call_as_a_simulated_call_would(h, peer, tmp_path):
    uid = "1764577800.101"
    h.center.agent(T0, "anna", "login")
    peer.agents["PJSIP/1001"] = "manual"
    peer.call(uid, caller=CALLER, keys="1")  # "1": barn och utbildning
    originate = await peer.wait_for("Originate", Channel="PJSIP/1001")
    assert originate["Async"] == "true" and originate["Context"] == "ivr-agent"
    await peer.wait_for("AGI", Command="SET MUSIC ON default")  # the caller waits with music
    leg = originate["ChannelId"]

    answered = h.clock.advance(15)  # within the ring timeout (20 s)
    peer.answer(leg)
    bridge = await peer.wait_for("Bridge")
    assert bridge["Channel1"] == peer.channels[uid].name and bridge["Channel2"].startswith("PJSIP/1001")
    assert "SET MUSIC OFF" in agi(peer, uid)  # music off before the agent hears the caller
    assert h.center.talking == {uid: "anna"}

    left = h.clock.advance(180)
    peer.press(uid, "1")  # the survey: yes
    peer.hangup(leg)  # the agent hangs up; the caller comes back to AGI for the survey
    await until(lambda: uid not in peer.channels, what="the caller hung up after the survey")
    coded = h.clock.advance(20)
    h.center.agent(coded, "anna", "wrapup", category="skola", resolution="resolved")
    row = h.row(uid)

    def start(c, now):
        c.agent(now, "anna", "login")
        c.start_call(now, "sim-1", CALLER, "+46330000000", "sim")
        c.call_event("sim-1", Digits(now, "1"))

    sim = simulated_call(h.settings, tmp_path, [
        (T0, start), (answered, lambda c, now: c.agent(now, "anna", "accept")),
        (left, lambda c, now: c.agent_left(now, "anna")),
        (left, lambda c, now: c.call_event("sim-1", Digits(now, "1"))),
        (coded, lambda c, now: c.agent(now, "anna", "wrapup", category="skola", resolution="resolved"))])
    assert {k: row[k] for k in COMPARED} == {k: sim[k] for k in COMPARED}
    assert row["transport"] == "asterisk" and row["called"] == "+46330000000"
    assert row["path"] == ["greeting", "disturbance", "opening", "main_menu", "barn", "survey"]
    assert (row["queue_outcome"], row["survey"], row["talk_s"], row["wait_s"]) == ("answered", "yes", 180, 15)
    assert agi(peer, uid, "HANGUP") == ["HANGUP"]


async def test_a_timeout_prompts_again_and_a_key_interrupts_the_prompt(h, peer):
    uid = "1764577800.102"
    peer.call(uid, keys="")
    await peer.wait_for("AGI", Command="WAIT FOR DIGIT 6000")  # the menu played; nothing pressed
    peer.press(uid, "5")  # heard during the re-prompt: felanmälan
    await until(lambda: h.events(uid, "queue_joined"), what="the queue")
    timeout_prompt = sound("sv", "Jag uppfattade inget val.")
    menu = [c for c in agi(peer, uid) if c.startswith("STREAM FILE") and c.endswith('"0123456789*#"')]
    assert menu[1] == f'STREAM FILE {timeout_prompt} "0123456789*#"'  # interrupted by the key
    assert len(agi(peer, uid, "WAIT FOR DIGIT 6000")) == 1
    assert [e["data"]["digits"] for e in h.events(uid, "input")] == ["5"]
    assert len(h.events(uid, "timeout")) == 1


async def test_a_key_pressed_between_two_agi_commands_still_answers_the_menu(h, peer):
    uid = "1764577800.103"
    menu = sound("sv", h.runtime.flow.nodes["main_menu"].prompt["sv"].text)

    def played_then_key(command: str) -> str:  # the prompt ends; "0" comes before the next command
        asyncio.get_running_loop().call_soon(peer.press_now, uid, "0")
        return "200 result=0 endpos=88000"

    peer.on_agi(f"STREAM FILE {menu} ", played_then_key)
    peer.call(uid)
    await until(lambda: h.events(uid, "queue_joined"), what="the switchboard queue")
    assert not [r for u, _c, r in peer.results if u == uid and "result=48" in r]  # AGI never heard it
    assert [e["data"]["digits"] for e in h.events(uid, "input")] == ["0"]
    assert h.events(uid, "queue_joined")[0]["data"]["queue"] == "vaxeln"


async def test_an_input_node_collects_the_case_number_with_get_data(h, peer):
    uid = "1764577800.104"
    peer.call(uid, keys="24" + "4711#")  # bygga, "ongoing case", then the case number
    await until(lambda: h.events(uid, "queue_joined"), what="the queue")
    prompt = sound("sv", h.runtime.flow.nodes["bygga_case"].prompt["sv"].text)
    assert f"GET DATA {prompt} 8000 8" in agi(peer, uid)
    case = h.events(uid, "input")[-1]["data"]
    assert case == {"digits": "4711", "var": "case_number", "valid": True}
    assert h.events(uid, "queue_joined")[0]["data"]["queue"] == "bygga-bo-miljo"


async def test_caller_hanging_up_mid_menu_ends_the_call_at_that_node(h, peer):
    uid = "1764577800.105"
    peer.on_agi("WAIT FOR DIGIT", None)
    peer.call(uid)
    await peer.wait_for("AGI", Command="WAIT FOR DIGIT")
    peer.hangup(uid)  # during the command: result=-1, AsyncAGIEnd, Hangup (as recorded)
    await until(lambda: uid not in h.center.sessions, what="the session to end")
    row = h.row(uid)
    assert row["status"] == "ended" and row["end"] == "caller-hangup" and row["path"][-1] == "main_menu"
    assert uid not in h.transport.lines and uid not in h.runtime.router.owner


async def test_a_message_is_recorded_after_hours(h, peer):
    h.clock.value = datetime(2026, 12, 1, 20, 0, tzinfo=T0.tzinfo)  # 21:00 in Stockholm: closed
    uid = "1764577800.106"
    peer.call(uid, keys="1#")  # "leave a message", then "#" ends the recording
    await until(lambda: h.events(uid, "call_ended") and uid not in h.transport.lines, what="the end")
    messages = h.transport.config.messages
    assert [a["Command"] for a in peer.seen("AGI", Command="RECORD FILE")] == [
        f'RECORD FILE {messages}/{uid} wav "#" 120000 BEEP s=5']
    row = h.row(uid)
    assert row["end"] == "message" and row["message_ref"] == f"{uid}.wav"
    assert row["path"][-2:] == ["message", "message_thanks"]


async def test_a_transfer_nobody_answers_goes_on_to_the_message(h, peer):
    h.clock.value = datetime(2026, 12, 1, 20, 0, tzinfo=T0.tzinfo)
    uid = "1764577800.107"
    peer.dial_status = "NOANSWER"
    peer.call(uid, keys="2#")  # urgent fault: the on-call service, which does not answer
    await until(lambda: h.events(uid, "call_ended") and uid not in peer.channels, what="the end")
    dials = [a["Command"] for a in peer.seen("AGI", Command="EXEC Dial")]
    assert dials == ['EXEC Dial "Local/+4633000000@ivr-transfer,60"']
    assert "transfer_result" in h.kinds(uid) and h.row(uid)["end"] == "message"


# --------------------------------------------------------------------------- agents


async def test_a_busy_agent_is_declined_and_the_next_agent_rings(h, peer):
    uid = "1764577800.111"
    h.center.agent(T0, "anna", "login")
    h.center.agent(T0, "johan", "login")
    peer.agents["PJSIP/1001"] = peer.agents["PJSIP/1006"] = "busy"
    peer.call(uid, keys="1")
    first = await peer.wait_for("Originate")
    other = "PJSIP/1006" if first["Channel"] == "PJSIP/1001" else "PJSIP/1001"
    peer.agents[other] = "answer"
    await peer.wait_for("Originate", Channel=other)
    await peer.wait_for("Bridge")
    peer.hangup(uid)
    await until(lambda: uid not in h.center.sessions, what="the end of the call")
    row = h.row(uid)
    assert row["offers"] == 2 and row["agent"] == {"PJSIP/1001": "anna", "PJSIP/1006": "johan"}[other]
    assert row["queue_outcome"] == "answered"


async def test_caller_hanging_up_while_the_agent_rings_is_an_abandon_and_the_ringing_stops(h, peer):
    uid = "1764577800.112"
    h.center.agent(T0, "anna", "login")
    peer.agents["PJSIP/1001"] = "manual"
    peer.call(uid, keys="1")
    leg = (await peer.wait_for("Originate"))["ChannelId"]
    h.clock.advance(12)
    peer.hangup(uid)
    await peer.wait_for("Hangup", Channel=leg)  # the agent's phone stops ringing
    row = h.row(uid)
    assert (row["queue_outcome"], row["abandon_stage"], row["wait_s"]) == ("abandoned", "ringing", 12)
    assert h.runtime.queues.agent_state("anna") == "available"


# --------------------------------------------------------------------------- the link


async def test_a_dropped_link_resyncs_ended_calls_are_closed_live_ones_carry_on(h, peer):
    a, b = "1764577800.121", "1764577800.122"
    peer.call(a, keys="1")
    peer.call(b, keys="1")
    await until(lambda: agi(peer, a, "WAIT FOR DIGIT 20") and agi(peer, b, "WAIT FOR DIGIT 20"),
                what="both callers on hold")
    peer.drop()  # the link breaks...
    peer.hangup(b)  # ...and meanwhile one caller hangs up and another calls; nobody hears it
    c = "1764577800.123"
    peer.call(c, keys="0")
    await until(lambda: peer.logins == 2 and h.transport.ami.ready.is_set(), what="the new login")
    await until(lambda: b not in h.center.sessions, what="the resync to close b")
    assert len(peer.seen("CoreShowChannels")) == 2
    await until(lambda: h.events(c, "queue_joined"), what="the new call, adopted, in the menu")
    row_b = h.row(b)
    assert row_b["status"] == "ended" and row_b["queue_outcome"] == "abandoned"
    h.center.agent(h.clock.now(), "anna", "login")  # a still waits: an agent takes it
    h.runtime.poke()
    await peer.wait_for("Bridge")
    assert h.center.talking == {a: "anna"}


async def test_a_refused_login_is_retried_a_bounded_number_of_times_and_the_secret_is_never_logged(
        peer, tmp_path, recordings, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "wrong-secret-Zq9!"
    harness = Harness(peer, tmp_path, recordings, secret=secret, login_attempts=3)
    await asyncio.wait_for(harness.transport.run(), 5)  # gives up and returns
    assert (peer.connections, peer.refused, peer.logins) == (3, 3, 0)
    assert harness.transport.ami.gave_up and "IVR_AMI_SECRET" in harness.transport.ami.gave_up
    refused = [r for r in caplog.records if r.getMessage().startswith("AMI: login refused")]
    assert len(refused) == 3 and all(r.levelno == logging.ERROR for r in refused)
    assert "giving up" in caplog.text
    assert secret not in caplog.text and secret not in repr(harness.transport.ami.__dict__.get("handlers"))
    await harness.stop()


async def test_garbled_and_unexpected_frames_are_logged_and_skipped(h, peer, caplog):
    caplog.set_level(logging.WARNING)
    peer.send_raw(b"this is not AMI\r\nat all\r\n\r\n\x00\x01\xff\xfe\r\n\r\n"
                  b"Event: AsyncAGIExec\r\nCommandId: nobody-waits\r\nResult: %ZZ%%\r\n\r\n"
                  b"Event: AsyncAGIStart\r\nPrivilege: agi,all\r\n\r\n"
                  b"Event: Hangup\r\nUniqueid: 42\r\n\r\n")
    uid = "1764577800.141"
    peer.call(uid, keys="0")
    await until(lambda: "queue_joined" in h.kinds(uid), what="the call after the garbage")
    assert "does not parse" in caplog.text and "without Uniqueid" in caplog.text
    assert h.transport.ami.connected and peer.logins == 1


async def test_an_agi_command_asterisk_never_takes_ends_the_call_cleanly(peer, tmp_path, recordings, caplog):
    harness = await Harness(peer, tmp_path, recordings, action_timeout_s=0.1).start()
    uid = "1764577800.151"
    peer.unqueued.add("WAIT FOR DIGIT")  # no "Added AGI command to queue", ever
    peer.call(uid)
    await until(lambda: uid not in harness.center.sessions, what="the call to be ended")
    await peer.wait_for("Hangup", Channel=peer.names[uid])  # the channel is not left in silence
    assert uid not in harness.transport.lines and uid not in peer.channels
    assert harness.row(uid)["status"] == "ended" and "not queued in time" in caplog.text
    await harness.stop()


async def test_a_bridge_asterisk_never_answers_ends_that_call_cleanly(peer, tmp_path, recordings):
    harness = await Harness(peer, tmp_path, recordings, action_timeout_s=0.2).start()
    peer.mute("Bridge")
    harness.center.agent(T0, "anna", "login")
    uid = "1764577800.152"
    peer.call(uid, keys="1")
    await peer.wait_for("Bridge")
    await until(lambda: uid not in harness.center.sessions, what="the call to end")
    await until(lambda: uid not in peer.channels, what="the caller's channel to be hung up")
    assert harness.runtime.queues.agent_state("anna") == "wrapup"  # the talk ended with the call
    row = harness.row(uid)
    assert row["status"] == "ended" and row["queue_outcome"] == "answered"
    await harness.stop()


async def test_two_calls_at_once_one_breaking_leaves_the_other_alone(h, peer):
    good, bad = "1764577800.161", "1764577800.162"
    peer.call(bad)
    await peer.wait_for("AGI", Channel=peer.channels[bad].name)
    del peer.channels[bad]  # its channel vanishes: every command for it is refused
    peer.call(good, keys="4" + "1")  # omsorg, äldreomsorg
    await until(lambda: bad not in h.center.sessions, what="the broken call to end")
    await until(lambda: h.events(good, "queue_joined"), what="the good call in the queue")
    assert h.row(bad)["status"] == "ended" and h.row(bad)["end"] == "caller-hangup"
    assert h.events(good, "queue_joined")[0]["data"]["category"] == "aldreomsorg"
    assert good in h.transport.lines and h.center.errors == 0


async def test_a_waiting_caller_hears_the_position_then_the_music_again(h, peer):
    uid = "1764577800.171"
    peer.call(uid, keys="1")  # nobody logged in: the caller waits
    await peer.wait_for("AGI", Command="WAIT FOR DIGIT 20")
    commands = agi(peer, uid)
    position = commands.index(f'STREAM FILE {sound("sv", "Du är nummer 1 i kön.")} ""')
    assert commands.index("SET MUSIC ON default") > position
    assert not any(c.startswith("SET MUSIC OFF") for c in commands)


async def test_when_asterisk_refuses_the_login_after_a_drop_no_call_stays_in_progress(h, peer, caplog):
    uid = "1764577800.181"
    peer.call(uid, keys="1")
    await peer.wait_for("AGI", Command="WAIT FOR DIGIT 20")
    peer.secret = "rotated-by-someone"
    peer.drop()
    await until(lambda: h.transport.ami.gave_up, what="the client to give up")
    assert peer.refused == 5 and uid not in h.center.sessions
    assert h.row(uid)["status"] == "ended" and "giving up" in caplog.text


async def test_when_asterisk_stays_unreachable_the_calls_are_ended_after_a_while(peer, tmp_path, recordings):
    harness = await Harness(peer, tmp_path, recordings, orphan_after_s=0.2).start()
    uid = "1764577800.182"
    peer.call(uid, keys="1")
    await peer.wait_for("AGI", Command="WAIT FOR DIGIT 20")
    peer.server.close()  # nothing listens any more
    peer.drop()
    await until(lambda: uid not in harness.center.sessions, what="the orphaned call to be ended")
    assert harness.row(uid)["status"] == "ended" and not harness.transport.ami.gave_up
    await harness.stop()


async def test_a_callback_rings_the_agent_then_dials_the_citizen_and_joins_them(h, peer):
    uid = "1764577800.191"
    peer.call(uid, caller=CALLER, keys="1")
    await peer.wait_for("AGI", Command="WAIT FOR DIGIT 20")  # waiting, no agent yet
    assert h.center.request_callback(h.clock.now(), uid)  # "ring me back" (the desk or the API)
    await until(lambda: uid not in peer.channels, what="the caller to be let go")
    h.center.agent(h.clock.now(), "anna", "login")
    agent_leg = (await peer.wait_for("Originate", Channel="PJSIP/1001"))["ChannelId"]
    await peer.wait_for("Originate", Channel=f"Local/{CALLER}@ivr-transfer")
    await peer.wait_for("Bridge")
    h.clock.advance(60)
    peer.hangup(agent_leg)
    await until(lambda: h.runtime.queues.agent_state("anna") == "wrapup", what="the wrap-up")
    attempts = h.events(uid, "callback_attempt")
    assert [e["data"]["result"] for e in attempts] == ["answered"]
    assert h.events(uid, "talk_ended")[0]["data"]["talk_s"] == 60
