"""Agent transfers over the Asterisk transport, whole calls against the fake Asterisk
(``tests/ami_peer.py``, its ``Bridge`` moving an already bridged channel as Asterisk does):
menu -> queue -> agent -> blind or attended transfer -> the target's leg -> the survey."""

from __future__ import annotations

import re
from pathlib import Path

from ivr import transfers as tr

from .ami_peer import AmiPeer
from .asterisk_harness import (  # noqa: F401 (fixtures)
    T0,
    Harness,
    agi,
    harness_fixture,
    peer_fixture,
    recordings_fixture,
    until,
)

CALLER = "+46701234567"
ASA = tr.Target("directory", "asa-oberg", "PJSIP/1234", "Åsa Öberg", ("bygglov",))
XFER = ["transfer_started", "leg_answered", "leg_ended", "transfer_completed", "transfer_failed",
        "transfer_cancelled"]


async def talking(h: Harness, peer: AmiPeer, uid: str) -> tuple[str, str]:
    """Menu 1 -> barn-utbildning -> anna answers after 10 s and is bridged with the caller.
    The target's phone (PJSIP/1234) rings until the test answers it. (agent uniqueid, agent channel)"""
    h.center.agent(T0, "anna", "login")
    peer.agents["PJSIP/1001"] = "manual"
    peer.agents["PJSIP/1234"] = "manual"
    peer.call(uid, caller=CALLER, keys="1")
    leg = (await peer.wait_for("Originate", Channel="PJSIP/1001"))["ChannelId"]
    h.clock.advance(10)
    peer.answer(leg)
    await peer.wait_for("Bridge", Channel2=peer.names[leg])
    assert h.center.talking == {uid: "anna"}
    return leg, peer.names[leg]


async def ring(h: Harness, peer: AmiPeer, uid: str, kind: str) -> str:
    """anna transfers 30 s into the talk; the target's phone rings: its uniqueid."""
    h.center.transfer(h.clock.advance(30), "anna", uid, kind, ASA)
    originate = await peer.wait_for("Originate", Channel="PJSIP/1234")
    assert (originate["Context"], originate["Exten"]) == ("ivr-agent", "s")
    assert originate["CallerID"] == f'"barn-utbildning" <{CALLER}>'
    return originate["ChannelId"]


def transfer_kinds(h: Harness, uid: str) -> list[str]:
    return [k for k in h.kinds(uid) if k in XFER]


async def survey_and_goodbye(h: Harness, peer: AmiPeer, uid: str) -> None:
    """The caller, back in AGI after the last bridge, answers the survey "yes" and is let go."""
    peer.press(uid, "1")
    await until(lambda: uid not in peer.channels, what="the caller's hang-up after the survey")
    assert h.row(uid)["survey"] is not None


async def test_blind_transfer_to_a_person_whole_call_over_the_ami(h, peer):
    uid = "1764577800.301"
    agent_uid, agent_chan = await talking(h, peer, uid)
    target = await ring(h, peer, uid, "blind")
    assert h.center.transfer_state(uid)["state"] == "ringing"
    assert h.center.talking == {uid: "anna"}  # the caller and anna still talk while it rings

    h.clock.advance(8)
    peer.answer(target)
    join = await peer.wait_for("Bridge", 2)
    assert (join["Channel1"], join["Channel2"]) == (peer.names[uid], peer.names[target])
    await until(lambda: agent_uid not in peer.channels, what="anna's leg, left alone, to hang up")
    assert h.center.queues.agent_state("anna") == "wrapup" and h.center.talking == {}
    assert h.center.transfer_state(uid)["state"] == "completed"

    h.clock.advance(120)
    peer.hangup(target)  # Åsa is done: the caller goes on in [ivr] (the survey)
    await survey_and_goodbye(h, peer, uid)
    assert transfer_kinds(h, uid) == ["transfer_started", "leg_answered", "transfer_completed", "leg_ended"]
    answered, ended = h.events(uid, "leg_answered")[0], h.events(uid, "leg_ended")[0]
    assert (answered["data"]["by"], answered["data"]["ring_s"]) == ("asa-oberg", 8)
    assert ended["data"]["talk_s"] == 120
    row = h.row(uid)
    assert (row["agent"], row["queue"], row["status"]) == ("anna", "barn-utbildning", "ended")
    # anna's phone, left alone by the dissolved bridge, went on at s,2 (AGI): the controller hung it up
    assert agent_chan in [a.get("Channel") for a in peer.seen("Hangup")]


async def test_attended_transfer_consults_with_the_caller_on_hold_then_completes(h, peer):
    uid = "1764577800.302"
    agent_uid, agent_chan = await talking(h, peer, uid)
    target = await ring(h, peer, uid, "attended")
    h.clock.advance(5)
    peer.answer(target)
    consult = await peer.wait_for("Bridge", 2)
    assert (consult["Channel1"], consult["Channel2"]) == (agent_chan, peer.names[target])
    # the caller, left alone, is back in AGI: music (not the agent_left path: no survey yet)
    await peer.wait_for("AGI", 2, Channel=peer.names[uid], Command="SET MUSIC ON")
    assert h.center.transfer_state(uid)["state"] == "consulting" and h.center.talking == {uid: "anna"}
    assert not h.events(uid, "survey")

    h.center.agent(h.clock.advance(40), "anna", "transfer_complete")
    join = await peer.wait_for("Bridge", 3)
    assert (join["Channel1"], join["Channel2"]) == (peer.names[uid], peer.names[target])
    commands = agi(peer, uid)
    assert commands[-1] == "SET MUSIC OFF"  # before the bridge: Åsa does not hear the hold music
    await until(lambda: agent_uid not in peer.channels, what="anna's leg, left alone, to hang up")
    assert h.center.queues.agent_state("anna") == "wrapup"

    h.clock.advance(60)
    peer.hangup(target)
    await survey_and_goodbye(h, peer, uid)
    assert transfer_kinds(h, uid) == ["transfer_started", "leg_answered", "transfer_completed", "leg_ended"]
    completed = h.events(uid, "transfer_completed")[0]["data"]
    assert (completed["kind"], completed["consult_s"]) == ("attended", 40)
    assert h.events(uid, "leg_ended")[0]["data"]["talk_s"] == 100  # consultation and talk with the caller


async def test_attended_transfer_cancelled_brings_the_caller_back_to_the_agent(h, peer):
    uid = "1764577800.303"
    agent_uid, agent_chan = await talking(h, peer, uid)
    target = await ring(h, peer, uid, "attended")
    peer.answer(target)
    await peer.wait_for("Bridge", 2)  # anna consults Åsa
    await peer.wait_for("AGI", 2, Channel=peer.names[uid], Command="SET MUSIC ON")  # the queue's, then this

    h.center.agent(h.clock.advance(20), "anna", "transfer_cancel")
    back = await peer.wait_for("Bridge", 3)
    assert (back["Channel1"], back["Channel2"]) == (peer.names[uid], agent_chan)
    await until(lambda: target not in peer.channels, what="Åsa's leg to end")
    assert h.center.talking == {uid: "anna"} and h.center.queues.agent_state("anna") == "talking"
    assert h.center.transfer_state(uid)["state"] == "cancelled"

    h.clock.advance(30)
    peer.hangup(agent_uid)  # anna finishes the call as usual: the survey follows
    await survey_and_goodbye(h, peer, uid)
    assert transfer_kinds(h, uid) == ["transfer_started", "leg_answered", "leg_ended", "transfer_cancelled"]
    assert h.events(uid, "leg_ended")[0]["data"]["reason"] == "cancelled"
    assert h.row(uid)["talk_s"] == 80  # anna's own talk: answer to hang-up, the consultation included


async def test_a_colleague_who_does_not_answer_leaves_the_caller_with_the_agent(h, peer):
    uid = "1764577800.304"
    agent_uid, _agent_chan = await talking(h, peer, uid)
    target = await ring(h, peer, uid, "attended")
    h.center.tick(h.clock.advance(24))
    assert h.center.transfer_state(uid)["state"] == "ringing"
    h.center.tick(h.clock.advance(1))  # the ring timeout (25 s): the machine decides
    await peer.wait_for("Hangup", Channel=target)
    await until(lambda: target not in peer.channels, what="the ringing phone to stop")
    failed = h.events(uid, "transfer_failed")[0]["data"]
    assert (failed["reason"], failed["fallback"]) == ("no-answer", "agent")
    assert len(peer.seen("Bridge")) == 1 and h.center.talking == {uid: "anna"}  # nothing moved

    peer.hangup(agent_uid)
    await survey_and_goodbye(h, peer, uid)
    assert transfer_kinds(h, uid) == ["transfer_started", "transfer_failed"]


async def test_a_busy_target_of_a_blind_transfer_refused_by_asterisk_keeps_the_call(h, peer):
    uid = "1764577800.305"
    await talking(h, peer, uid)
    peer.agents["PJSIP/1234"] = "busy"
    h.center.transfer(h.clock.advance(30), "anna", uid, "blind", ASA)
    await until(lambda: h.center.transfer_state(uid)["state"] == "failed", what="the busy target")
    failed = h.events(uid, "transfer_failed")[0]["data"]
    assert (failed["reason"], failed["fallback"]) == ("busy", "agent")
    assert h.center.talking == {uid: "anna"} and len(peer.seen("Bridge")) == 1


async def test_an_agent_who_hangs_up_while_consulting_leaves_the_caller_with_the_colleague(h, peer):
    """As on a PBX the transfer completes. The agent's hang-up dissolves the consultation's
    bridge and the colleague goes on at its next dialplan priority: it must still be there
    (back in AGI) to be joined to the caller, who is on hold."""
    uid = "1764577800.306"
    agent_uid, agent_chan = await talking(h, peer, uid)
    target = await ring(h, peer, uid, "attended")
    h.clock.advance(5)
    peer.answer(target)
    consult = await peer.wait_for("Bridge", 2)
    assert (consult["Channel1"], consult["Channel2"]) == (agent_chan, peer.names[target])
    await peer.wait_for("AGI", 2, Channel=peer.names[uid], Command="SET MUSIC ON")

    h.clock.advance(40)
    peer.hangup(agent_uid)  # anna hangs up on Åsa: that hands the caller over
    join = await peer.wait_for("Bridge", 3)
    assert (join["Channel1"], join["Channel2"]) == (peer.names[uid], peer.names[target])
    assert agi(peer, uid)[-1] == "SET MUSIC OFF"
    await until(lambda: peer.channels.get(target) is not None and peer.channels[target].peer is not None
                and peer.channels[target].peer.uniqueid == uid, what="the caller and Åsa in one bridge")
    assert h.center.transfer_state(uid)["state"] == "completed"
    assert h.center.queues.agent_state("anna") == "wrapup" and h.center.talking == {}

    h.clock.advance(60)
    peer.hangup(target)  # Åsa is done: the caller goes on in [ivr] (the survey)
    await survey_and_goodbye(h, peer, uid)
    assert transfer_kinds(h, uid) == ["transfer_started", "leg_answered", "transfer_completed", "leg_ended"]
    completed = h.events(uid, "transfer_completed")[0]["data"]
    assert (completed["kind"], completed["consult_s"]) == ("attended", 40)
    ended = h.events(uid, "leg_ended")[0]["data"]
    assert (ended["talk_s"], ended["reason"]) == (100, "hangup")
    assert (h.row(uid)["agent"], h.row(uid)["status"]) == ("anna", "ended")


async def test_a_caller_who_hangs_up_after_an_attended_transfer_does_not_leave_the_colleague_in_agi(h, peer):
    """The colleague, moved from the consultation to the caller, goes on at ``s,2``
    (AGI again) when the caller hangs up: the transport hangs it up."""
    uid = "1764577800.307"
    await talking(h, peer, uid)
    target = await ring(h, peer, uid, "attended")
    peer.answer(target)
    await peer.wait_for("Bridge", 2)
    await peer.wait_for("AGI", 2, Channel=peer.names[uid], Command="SET MUSIC ON")
    h.center.agent(h.clock.advance(30), "anna", "transfer_complete")
    await peer.wait_for("Bridge", 3)
    await until(lambda: peer.channels.get(target) is not None and peer.channels[target].peer is not None,
                what="the caller and Åsa in one bridge")

    h.clock.advance(45)
    peer.hangup(uid)
    await peer.wait_for("Hangup", Channel=peer.names[target])
    await until(lambda: target not in peer.channels, what="Åsa's leg to end")
    assert transfer_kinds(h, uid) == ["transfer_started", "leg_answered", "transfer_completed", "leg_ended"]
    ended = h.events(uid, "leg_ended")[0]["data"]
    assert (ended["talk_s"], ended["reason"]) == (75, "caller-hangup")


async def test_a_colleague_who_hangs_up_while_consulting_hands_the_caller_back_to_the_agent(h, peer):
    """The consultation's bridge dissolves under the agent, whose phone goes on at ``s,2``
    (AGI again, not ``Hangup()``): the controller joins the caller, on hold, to it again."""
    uid = "1764577800.308"
    agent_uid, agent_chan = await talking(h, peer, uid)
    target = await ring(h, peer, uid, "attended")
    h.clock.advance(5)
    peer.answer(target)
    await peer.wait_for("Bridge", 2)  # anna consults Åsa
    await peer.wait_for("AGI", 2, Channel=peer.names[uid], Command="SET MUSIC ON")

    h.clock.advance(40)
    peer.hangup(target)  # Åsa hangs up on anna
    back = await peer.wait_for("Bridge", 3)
    assert (back["Channel1"], back["Channel2"]) == (peer.names[uid], agent_chan)
    assert agi(peer, uid)[-1] == "SET MUSIC OFF"  # before the bridge: anna does not hear the hold music
    await until(lambda: peer.channels.get(agent_uid) is not None and peer.channels[agent_uid].peer is not None
                and peer.channels[agent_uid].peer.uniqueid == uid, what="the caller and anna in one bridge")
    failed = h.events(uid, "transfer_failed")[0]["data"]
    assert (failed["reason"], failed["fallback"]) == ("target-left", "agent")
    assert h.center.talking == {uid: "anna"} and h.center.queues.agent_state("anna") == "talking"
    assert not h.events(uid, "survey") and h.center.transfer_state(uid)["state"] == "failed"

    h.clock.advance(30)
    peer.hangup(agent_uid)  # anna finishes the call as usual: the survey, then wrap-up
    await survey_and_goodbye(h, peer, uid)
    assert h.center.queues.agent_state("anna") == "wrapup"
    assert transfer_kinds(h, uid) == ["transfer_started", "leg_answered", "leg_ended", "transfer_failed"]
    assert h.events(uid, "leg_ended")[0]["data"]["talk_s"] == 40
    row = h.row(uid)
    assert (row["agent"], row["status"], row["talk_s"]) == ("anna", "ended", 105)


async def test_an_agent_whose_caller_hangs_up_is_hung_up_not_left_waiting_in_agi(h, peer):
    """After its bridge the agent's phone goes on at ``s,2``, AGI again (where a colleague who
    leaves a consultation hands the caller back): at the end of an ordinary call the controller
    hangs it up."""
    uid = "1764577800.309"
    agent_uid, agent_chan = await talking(h, peer, uid)
    h.clock.advance(60)
    peer.hangup(uid)  # the caller hangs up first: anna's phone is left alone, back in AGI
    await peer.wait_for("Hangup", Channel=agent_chan)
    await until(lambda: agent_uid not in peer.channels, what="anna's phone to be hung up")
    assert h.center.queues.agent_state("anna") == "wrapup" and h.center.talking == {}
    row = h.row(uid)
    assert (row["agent"], row["status"], row["talk_s"]) == ("anna", "ended", 60)


def test_the_peer_runs_the_agent_context_as_docs_asterisk_md_writes_it():
    """The fake's next-step table is the documented dialplan (``[ivr-agent]``), app by priority."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "asterisk.md").read_text(encoding="utf-8")
    section = re.search(r"^\[ivr-agent\]\n(.*?)(?=^\[|^```)", text, re.M | re.S)
    assert section is not None, "docs/asterisk.md has no [ivr-agent] dialplan"
    documented: dict[tuple[str, str], list[str]] = {}
    exten = ""
    for line in section.group(1).splitlines():
        if m := re.match(r"\s*(exten|same) => (?:([^,]+),)?(?:\d+|n),(\w+)\(", line):
            exten = m.group(2) if m.group(1) == "exten" else exten
            documented.setdefault(("ivr-agent", exten), []).append(m.group(3))
    assert documented == {("ivr-agent", "s"): ["AGI", "AGI", "Hangup"]}
    assert AmiPeer().dialplan == documented
