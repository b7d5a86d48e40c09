"""Transfers on Asterisk: the machine's actions as AMI actions against the wire-level AMI peer
(``tests/ami_peer.py``, frames from the real Asterisk transcripts), and its events back."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from ivr import transfers as tr
from ivr.transports.ami import AmiClient
from ivr.transports.asterisk_transfer import AsteriskTransfers, plan

from .ami_peer import AmiPeer
from .asterisk_harness import until

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
ASA = tr.Target("directory", "asa-oberg", "PJSIP/1234", "Åsa Öberg", ("bygglov",))


class Rig:
    """A caller bridged with an agent in the peer, the machine, and the AMI side of transfers."""

    def __init__(self, peer: AmiPeer, ami: AmiClient):
        self.peer, self.ami = peer, ami
        self.machine = tr.Transfers()
        self.now = T0
        self.done: list[tr.Action] = []
        self.tasks: list[asyncio.Task] = []
        self.agent_name: str | None = None
        ids = itertools.count(1)
        self.caller = peer.call("call-1")
        self.agent = peer.call("agent-1", caller="1001")  # the agent's leg, as the transport has it
        self.xfers = AsteriskTransfers(ami, agent_context="ivr-agent", transfer_context="ivr-transfer",
                                       new_id=lambda: str(next(ids)), channels=self.channels,
                                       report=self.report)
        ami.on("AsyncAGIStart", lambda m: self.xfers.agi_start(str(m.Uniqueid), str(m.Channel)))
        ami.on("OriginateResponse", self.xfers.originate_response)
        ami.on("Hangup", lambda m: self.xfers.hangup(str(m.Uniqueid)))

    def channels(self, call_id: str) -> tuple[str | None, str | None]:
        return self.caller.name, self.agent_name or self.agent.name

    def run(self, actions: list[tr.Action]) -> None:
        self.done += actions
        self.tasks.append(asyncio.ensure_future(self.xfers.carry_out(actions, '"omsorg" <+46701234567>')))

    def report(self, method: str, call_id: str, *args: object) -> None:
        self.now += timedelta(seconds=5)
        self.run(getattr(self.machine, method)(self.now, call_id, *args))

    def logs(self) -> list[str]:
        return [a.kind for a in self.done if isinstance(a, tr.Log)]

    async def settle(self) -> None:
        while self.tasks:
            await self.tasks.pop(0)


@pytest.fixture
async def rig():
    peer = AmiPeer()
    port = await peer.start()
    ami = AmiClient("127.0.0.1", port, "ivr", "s3cret-ami", action_timeout_s=2, reconnect_max_s=0.05,
                    backoff_s=0.01, keepalive_s=None)
    runner = asyncio.ensure_future(ami.run())
    await asyncio.wait_for(ami.ready.wait(), 5)
    await ami.action({"Action": "Bridge", "Channel1": "call-1", "Channel2": "agent-1", "Tone": "no"})
    yield Rig(peer, ami)
    await ami.close()
    runner.cancel()
    await peer.stop()


async def test_attended_transfer_rings_consults_then_joins_the_caller_with_bridges(rig):
    rig.run(rig.machine.start(T0, "call-1", "anna", "attended", ASA, from_queue="omsorg"))
    originate = await rig.peer.wait_for("Originate", Channel="PJSIP/1234")
    assert originate["Context"] == "ivr-agent" and originate["ChannelId"] == "xfer-1"
    assert originate["Timeout"] == "35000"  # the machine's 25 s and a margin: the machine decides
    consult = await rig.peer.wait_for("Bridge", Channel2="PJSIP/1234")  # the peer answered the phone
    assert consult["Channel1"] == rig.agent.name  # the agent moves to the colleague
    await rig.settle()
    assert rig.machine.view("call-1").stage == "consulting"

    rig.run(rig.machine.complete(rig.now, "call-1", "anna"))
    join = await rig.peer.wait_for("Bridge", 2, Channel2="PJSIP/1234")
    assert join["Channel1"] == rig.caller.name  # the caller joins the colleague
    rig.peer.hangup("xfer-1")  # the colleague hangs up at the end
    await until(lambda: "leg_ended" in rig.logs(), what="leg_ended")
    assert rig.logs() == ["transfer_started", "leg_answered", "transfer_completed", "leg_ended"]


async def test_a_busy_colleague_leaves_the_caller_with_the_agent(rig):
    rig.peer.agents["PJSIP/1234"] = "busy"
    rig.run(rig.machine.start(T0, "call-1", "anna", "attended", ASA))
    await until(lambda: "transfer_failed" in rig.logs(), what="transfer_failed")
    await rig.settle()
    failed = next(a for a in rig.done if isinstance(a, tr.Log) and a.kind == "transfer_failed")
    assert (failed.data["reason"], failed.data["fallback"]) == ("busy", "agent")
    assert len(rig.peer.seen("Bridge")) == 1  # only the fixture's own: nothing moved


async def test_an_outside_number_is_dialled_through_the_transfer_context(rig):
    number = tr.Target("number", "+46313001122", "+46313001122", "+46 31-*** ** 22")
    rig.run(rig.machine.start(T0, "call-1", "anna", "blind", number))
    originate = await rig.peer.wait_for("Originate")
    assert originate["Channel"] == "Local/+46313001122@ivr-transfer"
    join = await rig.peer.wait_for("Bridge", 2)
    assert (join["Channel1"], join["Channel2"].startswith("Local/+46313001122")) == (rig.caller.name, True)
    await rig.settle()
    assert rig.logs() == ["transfer_started", "leg_answered", "transfer_completed"]


async def test_a_bridge_asterisk_refuses_keeps_the_call_with_the_agent(rig):
    rig.agent_name = "PJSIP/gone-00000000"  # the agent's channel is no longer there
    rig.run(rig.machine.start(T0, "call-1", "anna", "attended", ASA))
    await until(lambda: "transfer_failed" in rig.logs(), what="transfer_failed")
    await rig.settle()
    failed = next(a for a in rig.done if isinstance(a, tr.Log) and a.kind == "transfer_failed")
    assert failed.data["reason"] == "refused" and "Bridge" in failed.data["detail"]
    assert isinstance(rig.done[-1], tr.ReturnToAgent)
    assert rig.peer.seen("Hangup", Channel="PJSIP/1234")  # the colleague who answered is let go


def test_return_to_the_agent_is_done_before_the_colleague_is_hung_up():
    drop, back = tr.DropTarget(T0, "c", 1, "cancelled"), tr.ReturnToAgent(T0, "c", 1, "anna", "cancelled")
    log = tr.Log(T0, "c", 1, "transfer_cancelled", {})
    assert plan([drop, log, back]) == [back, drop, log]
