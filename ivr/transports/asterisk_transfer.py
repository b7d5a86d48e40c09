"""Agent transfers on Asterisk: the transfer machine's actions as AMI actions, AMI events back.

Built on what the transport already drives (AsyncAGI, ``Originate``, ``Bridge``), not on
``Atxfer``/``BlindTransfer``, whose progress and outcome the controller could not follow:

* ``RingTarget`` (blind and attended alike): ``Originate`` the target (a directory entry's
  endpoint such as ``PJSIP/1234``, or ``Local/<number>@<transfer_context>`` for a
  number) into ``agent_context`` with our own ``ChannelId``; meanwhile the caller and
  the agent still talk (the agent says "ett ögonblick"). Busy, unreachable, not
  answered: the ``OriginateResponse`` failure reason -> ``leg_failed``.
* the target answers: its channel enters AsyncAGI in ``agent_context`` (``AsyncAGIStart``
  with our uniqueid) -> ``answered``. Then ``JoinTarget`` (blind; attended once complete)
  is ``Bridge caller + target``, and ``Consult`` (attended) is ``Bridge agent + target``.
  The AMI ``Bridge`` *moves* a channel that is already bridged (``ast_bridge_add_channel``
  takes it out of its bridge) and the two-party bridge it leaves dissolves: the one left
  behind goes on at its next dialplan priority. So the agent who is moved to the
  colleague leaves the caller in ``[ivr]``'s next ``AGI(agi:async)``, where the line puts
  them on hold (music). Phones (the agents' and the targets') wait in ``agent_context``'s
  ``s``, whose second priority is ``AGI(agi:async)`` again: a phone whose bridge dissolves
  comes back under our control, and is joined to the caller or hung up. So the agent left
  behind by a completed transfer is back in AGI, and the transport hangs it up.
* When the agent hangs up while consulting (which completes the transfer: ``JoinTarget``),
  the dissolving bridge sends the colleague back to AGI (``s,2``), and the join waits for
  that ``AsyncAGIStart`` before its ``Bridge``. A colleague back in AGI after its caller has
  gone is hung up here.
* ``ReturnToAgent`` after a consultation is ``Bridge caller + agent`` (the colleague, left
  alone, goes on to ``s,2``; the ``DropTarget`` hangs it up); it is carried out *before*
  the ``DropTarget`` of the same turn. When the *colleague* hung up (the machine's
  ``leg_ended`` while consulting), the dissolving bridge sends the agent's phone on to
  ``s,2``: the transport reports that ``AsyncAGIStart`` here
  (:meth:`AsteriskTransfers.agent_back`), and the return waits for it (at most
  ``BACK_IN_AGI_S``) before joining the caller. An agent's phone back in AGI that no
  transfer waits for (the end of an ordinary call) is hung up by the transport. While the
  target still rings, nothing has moved: a no-op.
* ``DropTarget`` is ``Hangup`` of the target's channel (found by our ``ChannelId`` while it
  rings). ``ToMessage`` with the agent still on the line hangs up the agent's channel so
  the caller comes back to AGI, where the flow records the message.
* Any action answered ``Response: Error`` -> ``refused`` with Asterisk's message: the call
  stays with the agent.

Pure parts (:func:`originate`, :func:`plan`) build the actions; :class:`AsteriskTransfers`
sends them and turns AMI events into calls of the machine through ``report``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ivr import transfers as tr
from ivr.transports.agi import dial_string
from ivr.transports.ami import AmiError

log = logging.getLogger(__name__)

RING_MARGIN_S = 10  # the Originate outlives the machine's ring timeout: the machine decides
BACK_IN_AGI_S = 5.0  # how long a join waits for a phone to come back to AGI (Asterisk: milliseconds)
FAILURES = {"5": "busy", "3": "no-answer", "1": "no-answer", "8": "failed"}  # OriginateResponse Reason


@dataclass
class TargetLeg:
    """The target's channel for one transfer."""

    call_id: str
    transfer: int
    uniqueid: str          # the ChannelId we gave the Originate
    kind: str              # blind | attended
    channel: str | None = None
    state: str = "ringing"  # ringing | answered | gone
    joined: bool = False    # bridged with the caller (it then leaves AGI only to hang up)
    in_agi: asyncio.Event = field(default_factory=asyncio.Event)  # in AGI now, not in a bridge

    @property
    def handle(self) -> str:
        return self.channel or self.uniqueid

    target = handle  # as an agent's leg names it (the transport's ``bridge``)


def originate(leg: TargetLeg, action: tr.RingTarget, *, agent_context: str, transfer_context: str,
              caller_id: str | None) -> dict[str, str]:
    """The ``Originate`` that rings the target into ``agent_context`` (AsyncAGI)."""
    endpoint = action.target.endpoint or ""
    fields = {"Action": "Originate", "ActionID": f"xfer-{leg.uniqueid}",
              "Channel": dial_string(endpoint, transfer_context), "Context": agent_context, "Exten": "s",
              "Priority": "1", "Async": "true", "ChannelId": leg.uniqueid,
              "Timeout": str(int((action.timeout_s + RING_MARGIN_S) * 1000)),
              "Variable": f"IVR_TRANSFER={leg.call_id}"}
    if caller_id:
        fields["CallerID"] = caller_id
    return fields


def plan(actions: Sequence[tr.Action]) -> list[tr.Action]:
    """The order Asterisk needs: a ``ReturnToAgent`` before the ``DropTarget`` of its turn."""
    returns = [a for a in actions if isinstance(a, tr.ReturnToAgent)]
    rest = [a for a in actions if not isinstance(a, tr.ReturnToAgent)]
    first_drop = next((i for i, a in enumerate(rest) if isinstance(a, tr.DropTarget)), len(rest))
    return rest[:first_drop] + returns + rest[first_drop:]


Report = Callable[..., None]  # report(method, call_id, *args): a Transfers method by name
JoinCaller = Callable[[str, str], Awaitable["bool | None"]]


class AsteriskTransfers:
    """Carries out the machine's actions over the AMI and reports what Asterisk says back.

    ``channels(call_id)`` gives the caller's and the agent's current channel names (either
    may be None); ``report(method, call_id, *args)`` calls the transfer machine (through the
    controller) with ``answered``, ``leg_failed`` or ``refused``. ``join_caller(call_id,
    channel)``, when given, joins a caller who waits in AGI (on hold) to ``channel`` through
    the caller's line, so the music stops first: True/False (joined or not), or None when
    the caller is not in AGI (then a plain ``Bridge`` moves it).

    ``submit(action, caller_id)`` takes the machine's actions one by one, as the controller
    hands them out: the actions of one turn (one run of the event loop) are carried out
    together (``plan`` orders them), and turns one after another.
    """

    def __init__(self, ami: Any, *, agent_context: str, transfer_context: str, new_id: Callable[[], str],
                 channels: Callable[[str], tuple[str | None, str | None]], report: Report,
                 join_caller: JoinCaller | None = None):
        self.ami = ami
        self.join_caller = join_caller
        self._turn: list[tuple[tr.Action, str | None]] = []
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.agent_context = agent_context
        self.transfer_context = transfer_context
        self.new_id = new_id
        self.channels = channels
        self.report = report
        self.legs: dict[str, TargetLeg] = {}       # uniqueid -> leg
        self.by_call: dict[str, TargetLeg] = {}    # call id -> the live leg
        # call id -> set once the agent's phone is back in AGI (or gone); present while the agent
        # consults, whose bridge brings it back to AGI (s,2) only if the colleague leaves it
        self.consulting: dict[str, asyncio.Event] = {}

    # ------------------------------------------------------------------ machine -> AMI

    def submit(self, action: tr.Action, caller_id: str | None = None) -> None:
        """One action of the controller's turn; the turn is carried out once the controller is done."""
        if not self._turn:
            asyncio.get_running_loop().call_soon(self._flush)
        self._turn.append((action, caller_id))

    def _flush(self) -> None:
        turn, self._turn = self._turn, []
        caller_id = next((c for _a, c in turn if c), None)
        task = asyncio.ensure_future(self._serial([a for a, _c in turn], caller_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serial(self, actions: list[tr.Action], caller_id: str | None) -> None:
        async with self._lock:
            try:
                await self.carry_out(actions, caller_id)
            except Exception:  # one call's transfer must not take the transport down
                log.exception("asterisk: carrying out transfer actions %s failed", actions)

    def cancel(self) -> None:
        """Shutdown: what is still being carried out stops."""
        self._turn.clear()
        for task in list(self._tasks):
            task.cancel()

    async def drain(self) -> None:
        """Wait for the actions handed over so far (tests, shutdown)."""
        while self._turn or self._tasks:
            if self._turn:
                self._flush()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def carry_out(self, actions: Sequence[tr.Action], caller_id: str | None = None) -> None:
        for action in plan(actions):
            match action:
                case tr.RingTarget():
                    leg = TargetLeg(action.call_id, action.transfer, f"xfer-{self.new_id()}", action.kind)
                    self.legs[leg.uniqueid] = self.by_call[action.call_id] = leg
                    await self._do(action, originate(leg, action, agent_context=self.agent_context,
                                                     transfer_context=self.transfer_context,
                                                     caller_id=caller_id))
                case tr.Consult():
                    self.consulting[action.call_id] = asyncio.Event()
                    if not await self._bridge(action, self.channels(action.call_id)[1]):
                        self.consulting.pop(action.call_id, None)
                case tr.JoinTarget():
                    self.consulting.pop(action.call_id, None)  # the agent, left alone, is hung up
                    leg = self.by_call.get(action.call_id)
                    if leg is None or leg.channel is None:
                        self.report("refused", action.call_id, "JoinTarget: no channel to join")
                        continue
                    if self.channels(action.call_id)[1] is None:  # the agent hung up (on the colleague?)
                        await self._back_in_agi(leg)
                        if leg.state == "gone":  # the colleague hung up meanwhile: reported as leg_ended
                            continue
                    if await self._join(action, leg.channel):
                        leg.joined = True
                        leg.in_agi.clear()
                case tr.ReturnToAgent():
                    leg = self.by_call.get(action.call_id)
                    back = self.consulting.pop(action.call_id, None)
                    if (leg is None or leg.state == "gone") and back is not None:
                        # the colleague hung up: the agent's phone comes back to AGI (s,2) first
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(back.wait(), BACK_IN_AGI_S)
                    elif leg is None or leg.state != "answered":
                        continue  # still ringing: nothing has moved
                    if agent := self.channels(action.call_id)[1]:
                        await self._join(action, agent)
                case tr.DropTarget():
                    self.consulting.pop(action.call_id, None)
                    leg = self.by_call.pop(action.call_id, None)
                    if leg is not None and leg.state != "gone":
                        leg.state = "gone"
                        await self._do(action, {"Action": "Hangup", "Channel": leg.handle}, report=False)
                case tr.ToMessage():
                    agent = self.channels(action.call_id)[1]
                    if agent:
                        await self._do(action, {"Action": "Hangup", "Channel": agent}, report=False)

    async def _bridge(self, action: tr.Action, channel: str | None) -> bool:
        leg = self.by_call.get(action.call_id)
        if leg is None or leg.channel is None or not channel:
            self.report("refused", action.call_id, f"{type(action).__name__}: no channel to join")
            return False
        fields = {"Action": "Bridge", "Channel1": channel, "Channel2": leg.channel, "Tone": "no"}
        if not await self._do(action, fields):
            return False
        leg.in_agi.clear()  # consulting: when that bridge dissolves it comes back to AGI (s,2)
        return True

    async def _back_in_agi(self, leg: TargetLeg) -> None:
        """The consultation's bridge dissolved under the colleague (the agent hung up): wait
        until it has gone on to ``s``'s next ``AGI(agi:async)`` (its ``AsyncAGIStart``),
        or has hung up. A ``Bridge`` sent meanwhile could find it still leaving the dissolving
        bridge, which Asterisk refuses to move a channel out of."""
        if not leg.in_agi.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leg.in_agi.wait(), BACK_IN_AGI_S)

    async def _join(self, action: tr.Action, other: str) -> bool:
        """The caller joins ``other``: through its line when it waits in AGI, else a plain ``Bridge``."""
        if self.join_caller is not None:
            joined = await self.join_caller(action.call_id, other)
            if joined is not None:
                if not joined:
                    self.report("refused", action.call_id, f"{type(action).__name__}: the caller could not "
                                "be joined")
                return joined
        caller = self.channels(action.call_id)[0]
        if not caller:
            self.report("refused", action.call_id, f"{type(action).__name__}: the caller has no channel")
            return False
        fields = {"Action": "Bridge", "Channel1": caller, "Channel2": other, "Tone": "no"}
        return await self._do(action, fields)

    async def _do(self, action: tr.Action, fields: dict[str, str], *, report: bool = True) -> bool:
        """Send one action; a refusal or a lost link is reported as ``refused``."""
        try:
            reply = await self.ami.action(fields)
        except AmiError as exc:
            detail = f"{fields['Action']}: {exc}"
        else:
            if reply.success:
                return True
            detail = f"{fields['Action']}: {reply.get('Message') or 'refused'}"
        log.warning("asterisk: transfer %d of call %s: %s", action.transfer, action.call_id, detail)
        if report:
            self.report("refused", action.call_id, detail)
        return False

    # ------------------------------------------------------------------ AMI -> machine

    def agi_start(self, uniqueid: str, channel: str) -> bool:
        """An ``AsyncAGIStart``: True when it is a transfer target that answered."""
        leg = self.legs.get(uniqueid)
        if leg is None:
            return False
        leg.channel = channel
        leg.in_agi.set()
        if leg.state == "ringing" and self.by_call.get(leg.call_id) is leg:
            leg.state = "answered"
            self.report("answered", leg.call_id)
        elif leg.state == "answered" and (leg.joined or self.channels(leg.call_id)[0] is None):
            # s,2 after the caller left it (its Hangup came first): nothing will join it
            leg.state = "gone"
            self._spawn(self._hang_up(channel))
        return True

    def agent_back(self, call_id: str, *, in_agi: bool = True) -> bool:
        """The phone of the agent of ``call_id`` is back in AGI (``s,2``: its bridge dissolved)
        or, ``in_agi=False``, gone. True when a transfer keeps it (the agent consults: the
        colleague left, and ``ReturnToAgent`` joins the caller to it); False: nothing will."""
        back = self.consulting.get(call_id)
        if back is None:
            return False
        back.set()
        return in_agi

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hang_up(self, channel: str) -> None:
        try:
            await self.ami.action({"Action": "Hangup", "Channel": channel})
        except AmiError as exc:
            log.info("asterisk: hanging up transfer target %s: %s", channel, exc)

    def originate_response(self, message: Any) -> bool:
        """An ``OriginateResponse``: True when it is ours (a failure is reported)."""
        action_id = str(message.get("ActionID") or "")
        leg = self.legs.get(action_id.removeprefix("xfer-")) if action_id.startswith("xfer-xfer-") else None
        if leg is None:
            return False
        if str(message.get("Response")) != "Success" and leg.state == "ringing":
            leg.state = "gone"
            self.by_call.pop(leg.call_id, None)
            self.report("leg_failed", leg.call_id, FAILURES.get(str(message.get("Reason")), "failed"),
                        f"OriginateResponse Reason {message.get('Reason')}")
        return True

    def hangup(self, uniqueid: str) -> bool:
        """A ``Hangup``: True when it is a transfer target's channel (its leg ended)."""
        leg = self.legs.pop(uniqueid, None)
        if leg is None:
            return False
        leg.in_agi.set()  # a join waiting for it goes on (and finds it gone)
        if self.by_call.get(leg.call_id) is leg:
            del self.by_call[leg.call_id]
            if leg.state == "answered":
                self.report("leg_ended", leg.call_id)
            elif leg.state == "ringing":
                self.report("leg_failed", leg.call_id, "failed", "hung up while ringing")
        leg.state = "gone"
        return True
