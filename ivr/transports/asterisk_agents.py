"""The agents' side of the Asterisk transport: offers ring phones, answers join calls.

An offer from the queue engine originates the agent's endpoint (``[agents.ID] endpoints
= { asterisk = "PJSIP/1001" }``) into ``[asterisk] agent_context``, where the answered
phone waits in AsyncAGI; its ``ChannelId`` is ours, so its ``AsyncAGIStart`` and
``Hangup`` are recognised. Answered: the offer is accepted, and the controller's
``connect`` asks the caller's line to join it (the AMI ``Bridge`` action). Refused,
unreachable or hung up while ringing: declined, so the next agent rings. Hung up after
answering: the agent has left the call. Back in AGI after its bridge dissolved
(``agent_context``'s ``s,2``: the caller hung up, or a transfer moved the caller on): hung
up, unless the colleague the agent was consulting left (the caller is joined to it again).
A callback rings the agent first, then dials the citizen (through the transfer context)
and joins the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from panoramisk.message import Message

from ivr.transports import agi
from ivr.transports.ami import AmiError, NotConnected
from queues import CancelOffer, Offer, QueueError

log = logging.getLogger(__name__)

RING_MARGIN_S = 10  # the Originate outlives the queue's ring timeout: the queue engine decides
FAILURES = {"5": "busy", "3": "no-answer", "1": "no-answer"}  # OriginateResponse Reason -> result


@dataclass
class AgentLeg:
    """An agent's phone (or, for a callback, the citizen's) being rung for one call."""

    agent: str
    call_id: str
    uniqueid: str  # the ChannelId we gave the Originate
    kind: str = "call"  # "call" | "callback" | "citizen"
    state: str = "ringing"  # "ringing" | "answered" | "talking" | "gone"
    channel: str | None = None
    cancelled: bool = False
    number: str | None = None  # a callback: the citizen to dial

    @property
    def target(self) -> str:
        return self.channel or self.uniqueid  # Asterisk finds a channel by name or uniqueid


class AgentSide:
    """Mixed into :class:`ivr.transports.asterisk.AsteriskTransport` (its attributes)."""

    ami: Any
    center: Any
    runtime: Any
    settings: Any
    config: Any
    lines: dict[str, Any]
    legs: dict[str, AgentLeg]
    by_agent: dict[str, AgentLeg]
    xfers: Any  # ivr.transports.asterisk_transfer.AsteriskTransfers
    agent_context: str
    # and now(), _spawn(coro), _new_id(), as the transport defines them

    # ------------------------------------------------------------------ the controller's side

    def offer(self, offer: Offer) -> None:
        endpoint = self._endpoint(offer.agent)
        uid = self._new_id()
        leg = AgentLeg(offer.agent, offer.call_id, uid, "callback" if offer.kind == "callback" else "call",
                       number=offer.number)
        self.legs[uid], self.by_agent[offer.agent] = leg, leg
        if endpoint is None:
            log.error('asterisk: agent "%s" has no asterisk endpoint; declining the offer', offer.agent)
            asyncio.get_running_loop().call_soon(self._leg_failed, leg, "no endpoint")
            return
        queue = self.settings.queues.get(offer.queue)
        ring_s = (queue.ring_timeout_s if queue else 20) + RING_MARGIN_S
        line = self.lines.get(offer.call_id)
        number = offer.number or (line.caller if line is not None else None) or ""
        self._spawn(self._originate(leg, endpoint, ring_s, f'"{offer.queue}" <{number}>'))

    def cancel_offer(self, cancel: CancelOffer) -> None:
        leg = self.by_agent.get(cancel.agent)
        if leg is not None and leg.call_id == cancel.call_id and leg.state == "ringing":
            leg.cancelled = True
            self._spawn(self._hangup_channel(leg.target))

    def connect(self, agent: str, call_id: str) -> None:
        leg, line = self.by_agent.get(agent), self.lines.get(call_id)
        if leg is None or line is None or leg.call_id != call_id:
            log.warning("asterisk: cannot join agent %s to call %s (no leg or no line)", agent, call_id)
            return
        leg.state = "talking"
        line.request_bridge(leg)

    # ------------------------------------------------------------------ AMI events and actions

    def _originate_response(self, m: Message) -> None:
        if self.xfers.originate_response(m):  # a transfer's target could not be rung
            self.runtime.poke()
            return
        leg = self.legs.get(str(m.ActionID).removeprefix("orig-"))
        if leg is not None and str(m.Response) != "Success":
            self._leg_failed(leg, FAILURES.get(str(m.Reason), "failed"))

    async def bridge(self, line: Any, leg: AgentLeg) -> bool:
        """Join the caller's line and the agent's leg (a lost link: once more after the resync)."""
        for attempt in (1, 2):
            try:
                reply = await self.ami.action({"Action": "Bridge", "Channel1": line.channel,
                                               "Channel2": leg.target, "Tone": "no"})
                break
            except NotConnected:
                await self.ami.ready.wait()
                if attempt == 2 or line.closed or self.legs.get(leg.uniqueid) is not leg:
                    return False
            except AmiError as exc:
                log.error("asterisk: Bridge %s + %s: %s", line.channel, leg.target, exc)
                return False
        if not reply.success:
            log.error("asterisk: Bridge %s + %s refused: %s", line.channel, leg.target, reply.message)
        return bool(reply.success)

    # ------------------------------------------------------------------ legs

    def _endpoint(self, agent: str) -> str | None:
        a = self.settings.agents.get(agent)
        return a.endpoints.get("asterisk") if a is not None else None

    async def _originate(self, leg: AgentLeg, dial: str, ring_s: float, caller_id: str | None) -> None:
        """Ring ``dial`` into the agent context; while the AMI link is down, wait for it (the
        queue engine's ring timeout cancels the offer if it does not come back in time).
        ``Async`` always goes with it (panoramisk 1.4 fails on "queued" replies without it)."""
        fields = {"Action": "Originate", "ActionID": f"orig-{leg.uniqueid}", "Channel": dial,
                  "Context": self.agent_context, "Exten": "s", "Priority": "1",
                  "Async": "true", "ChannelId": leg.uniqueid, "Timeout": str(int(ring_s * 1000)),
                  "Variable": f"IVR_CALL={leg.call_id}"}
        if caller_id is not None:  # what the agent's phone shows; a citizen sees the trunk's own
            fields["CallerID"] = caller_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ring_s
        while not leg.cancelled and leg.state == "ringing":
            try:
                await asyncio.wait_for(self.ami.ready.wait(), max(0.0, deadline - loop.time()))
                reply = await self.ami.action(fields)
            except NotConnected:
                continue
            except (AmiError, TimeoutError) as exc:
                self._leg_failed(leg, str(exc) or "no AMI link")
                return
            if not reply.success:
                self._leg_failed(leg, str(reply.message))
            return

    def _leg_answered(self, leg: AgentLeg, channel: str) -> None:
        leg.channel = channel
        if leg.cancelled or leg.state != "ringing":
            # answered too late, or back in AGI (agent_context's s,2) after its bridge dissolved:
            # hung up, unless the colleague the agent consults left (the caller is joined to it)
            if not (leg.kind == "call" and leg.state == "talking" and leg.call_id in self.lines
                    and self.xfers.agent_back(leg.call_id)):
                self._spawn(self._hangup_channel(channel))
            return
        leg.state = "answered"
        if leg.kind == "citizen":  # a callback reached the citizen: join the agent
            agent_leg = self.by_agent.get(leg.agent)
            if self._agent_do(leg.agent, "callback_result", result="answered") and agent_leg is not None:
                agent_leg.state = leg.state = "talking"
                self._spawn(self._join(agent_leg, leg))
            else:
                self._spawn(self._hangup_channel(channel))
            return
        accepted = self._agent_do(leg.agent, "accept")  # for a call the controller calls connect()
        if accepted and leg.kind == "callback":
            citizen = AgentLeg(leg.agent, leg.call_id, self._new_id(), "citizen")
            self.legs[citizen.uniqueid] = citizen
            dial = agi.dial_string(leg.number or "", self.config.transfer_context)
            self._spawn(self._originate(citizen, dial, self.config.transfer_ring_s, None))
        elif not accepted:  # the offer was gone by then
            self._forget_leg(leg)
            self._spawn(self._hangup_channel(channel))

    async def _join(self, a: AgentLeg, b: AgentLeg) -> None:
        with contextlib.suppress(AmiError):
            await self.ami.action({"Action": "Bridge", "Channel1": a.target, "Channel2": b.target,
                                   "Tone": "no"})

    def _leg_failed(self, leg: AgentLeg, why: str) -> None:
        if leg.state != "ringing" or self.legs.get(leg.uniqueid) is not leg:
            return
        log.info("asterisk: %s leg for %s (call %s) failed: %s", leg.kind, leg.agent, leg.call_id, why)
        cancelled = leg.cancelled
        self._forget_leg(leg)
        if cancelled:
            return
        if leg.kind == "citizen":
            self._agent_do(leg.agent, "callback_result", result=why if why in FAILURES.values() else "failed")
            if (agent_leg := self.by_agent.get(leg.agent)) is not None:
                self._spawn(self._hangup_channel(agent_leg.target))
        else:
            self._agent_do(leg.agent, "decline")

    def _leg_gone(self, leg: AgentLeg, why: str) -> None:
        if self.legs.get(leg.uniqueid) is not leg:
            return
        if leg.state == "ringing":
            self._leg_failed(leg, why)
            return
        self._forget_leg(leg)
        if leg.kind == "call":
            self.xfers.agent_back(leg.call_id, in_agi=False)  # a return to the agent waits no more
        line = self.lines.get(leg.call_id)
        if line is not None and line.bridge_to is leg:
            line.bridge_to = None
        if leg.kind == "callback" and leg.state == "answered":  # gone while the citizen rang
            for citizen in [c for c in self.legs.values() if c.kind == "citizen" and c.agent == leg.agent]:
                citizen.cancelled = True
                self._spawn(self._hangup_channel(citizen.target))
            self._agent_do(leg.agent, "callback_result", result="failed")
        if leg.kind in ("call", "callback") and leg.state in ("answered", "talking"):
            talking = self.center.talking.get(leg.call_id)
            if leg.kind == "callback" or talking == leg.agent:
                self.center.agent_left(self.now(), leg.agent)
                self.runtime.poke()
        leg.state = "gone"

    def _forget_leg(self, leg: AgentLeg) -> None:
        self.legs.pop(leg.uniqueid, None)
        if self.by_agent.get(leg.agent) is leg:
            del self.by_agent[leg.agent]

    def _agent_do(self, agent: str, action: str, **kwargs: Any) -> bool:
        try:
            self.center.agent(self.now(), agent, action, **kwargs)
            return True
        except QueueError as exc:
            log.info("asterisk: %s for agent %s not taken: %s", action, agent, exc)
            return False
        finally:
            self.runtime.poke()

    async def _hangup_channel(self, channel: str) -> None:
        """Hang up a channel (a lost link: once more after the next login, if it comes soon)."""
        for attempt in (1, 2):
            try:
                await self.ami.action({"Action": "Hangup", "Channel": channel})
                return
            except NotConnected:
                if attempt == 2:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ami.ready.wait(), self.settings.asterisk.reconnect_max_s * 2)
            except AmiError as exc:
                log.info("asterisk: hanging up %s: %s", channel, exc)
                return
