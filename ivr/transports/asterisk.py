"""The Asterisk transport: AMI events -> call events, engine commands -> AGI and AMI actions.

A call reaches ``AGI(agi:async)`` in the dialplan (``docs/asterisk.md``); its
``AsyncAGIStart`` starts a session in the controller and a :class:`Line` that plays the
engine's turns as AGI commands. Our queue engine (not app_queue) picks the agent: an
offer originates the agent's phone into ``[asterisk] agent_context``, where it waits in
AsyncAGI; when it answers the offer is accepted and the two channels are joined with
the AMI ``Bridge`` action. When the agent hangs up the caller's channel comes back to
AGI at the next priority, and the flow goes on there (the survey).

Agent transfers (``transfer(action)``, the actions of :mod:`ivr.transfers`) are carried
out by :class:`ivr.transports.asterisk_transfer.AsteriskTransfers`: the target's leg is
rung with ``Originate`` and joined with ``Bridge``; what its channel does comes back to
the controller as ``center.transfer_event``. A caller left alone while the agent consults
a colleague is held (music) in AGI until it is joined again.

Every AMI event the transport reacts to is bound in :meth:`AsteriskTransport.subscribe`.
The controller is synchronous: this module calls it with ``runtime.now()`` and answers it
(``send``, ``offer``, ``cancel_offer``, ``connect``) by queueing AMI work, never blocking.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from panoramisk.message import Message

from ivr.prompts import find_espeak
from ivr.transfers import Action as TransferAction
from ivr.transfers import RingTarget
from ivr.transports import agi
from ivr.transports.ami import AmiClient, AmiError
from ivr.transports.asterisk_agents import AgentLeg, AgentSide
from ivr.transports.asterisk_line import Line, LineConfig, LineGone
from ivr.transports.asterisk_sounds import Sounds
from ivr.transports.asterisk_transfer import AsteriskTransfers
from ivr.vocabulary import CallerHungUp, Command, Event, Prompt

log = logging.getLogger(__name__)


@dataclass
class _Join:
    """A transfer's join of a caller held in AGI (``Line.request_bridge``): ``target`` is the
    channel to join, ``joined`` learns whether it worked."""

    target: str
    joined: asyncio.Future[bool]
    uniqueid: str = ""


class AsteriskTransport(AgentSide):
    def __init__(self, runtime: Any, *, ami: AmiClient | None = None, config: LineConfig | None = None,
                 espeak: str | None = "espeak-ng", orphan_after_s: float = 120.0,
                 max_prompt_s: float = 120.0, backoff_s: float = 1.0, keepalive_s: float | None = 20.0):
        self.runtime = runtime
        self.center = runtime.center
        settings = runtime.settings
        s = settings.asterisk
        self.settings = settings
        self.agent_context = s.agent_context
        self.config = config or LineConfig(
            moh_class=s.moh_class, messages=str((Path(settings.store.path).parent / "messages").absolute()))
        self.ami = ami or AmiClient(s.host, s.port, s.username, s.secret, action_timeout_s=s.action_timeout_s,
                                    reconnect_max_s=s.reconnect_max_s, login_attempts=s.login_attempts,
                                    backoff_s=backoff_s, keepalive_s=keepalive_s, secret_env=s.secret_env)
        self.ami.on_ready, self.ami.on_lost, self.ami.on_gave_up = self.resync, self._lost, self._gave_up
        self.sound_files = Sounds(settings.recordings_dir, s.sounds, max_prompt_s=max_prompt_s,
                                  espeak=find_espeak(espeak) if espeak else None)
        self.orphan_after_s = orphan_after_s
        self.lines: dict[str, Line] = {}       # uniqueid (= call id) -> the caller's line
        self.legs: dict[str, AgentLeg] = {}    # uniqueid -> an agent's (or citizen's) leg
        self.by_agent: dict[str, AgentLeg] = {}
        self._ids = itertools.count(1)
        self._tag = secrets.token_hex(3)
        self._orphans: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.xfers = AsteriskTransfers(self.ami, agent_context=self.agent_context,
                                       transfer_context=self.config.transfer_context, new_id=self._new_id,
                                       channels=self._call_channels, report=self._transfer_report,
                                       join_caller=self._join_caller)
        self.subscribe()

    def subscribe(self) -> None:
        """Every AMI event this transport reacts to, in one place."""
        on = self.ami.on
        on("AsyncAGIStart", self._agi_start)      # a call arrives or comes back from an agent; a leg answers
        on("AsyncAGIExec", self.ami.agi_result)   # the result of one of our AGI commands
        on("AsyncAGIEnd", self._agi_end)          # a channel left AGI (hang-up, redirect)
        on("AGIExecStart", self._exec_start)      # an AGI command runs: keys go to AGI...
        on("AGIExecEnd", self._exec_end)          # ...and no longer
        on("DTMFEnd", self._dtmf)                 # a key, also one AGI did not hear; 1 in a queue: callback
        on("Hangup", self._hangup)                # a caller or a leg is gone
        on("OriginateResponse", self._originate_response)  # a leg could not be rung

    def now(self) -> datetime:
        return self.runtime.now()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        await self.ami.run()

    async def close(self) -> None:
        self._closing = True  # the controller's shutdown closes the sessions ("shutdown")
        if self._orphans is not None:
            self._orphans.cancel()
        live = [line for line in self.lines.values() if line.in_agi]
        if live and self.ami.connected:  # nobody drives them any more: do not leave them in silence
            log.info("asterisk: hanging up %d call(s) still in the IVR", len(live))
            await asyncio.gather(*(self._hangup_channel(line.channel) for line in live))
        self.xfers.cancel()
        await self.ami.close()
        for line in list(self.lines.values()):
            line.close()
        for task in list(self._tasks):
            task.cancel()

    def _new_id(self) -> str:
        return f"ivr-{self._tag}-{next(self._ids)}"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ the controller's side

    def send(self, call_id: str, commands: list[Command]) -> None:
        line = self.lines.get(call_id)
        if line is None:
            log.warning("asterisk: commands for call %s, which has no line", call_id)
            return
        line.send(commands)

    def transfer(self, action: TransferAction) -> None:
        """An agent transfer's step (``ivr.transfers``); what follows comes back as
        ``center.transfer_event``. A call without a line cannot start one."""
        line = self.lines.get(action.call_id)
        if line is None and isinstance(action, RingTarget):
            raise RuntimeError(f"call {action.call_id} has no Asterisk line")
        caller_id = None
        if isinstance(action, RingTarget) and action.target.kind != "number" and line and line.caller:
            queue = self.center.answered_in.get(action.call_id) or "ivr"  # what a colleague's phone shows
            caller_id = f'"{queue}" <{line.caller}>'
        self.xfers.submit(action, caller_id)

    def _call_channels(self, call_id: str) -> tuple[str | None, str | None]:
        """The caller's channel and the channel of the agent who answered the call (if still up)."""
        line = self.lines.get(call_id)
        agent = next((g for g in self.legs.values()
                      if g.call_id == call_id and g.kind == "call" and g.state == "talking"), None)
        return (line.channel if line else None), (agent.channel if agent else None)

    def _transfer_report(self, method: str, call_id: str, *args: Any) -> None:
        self.center.transfer_event(self.now(), call_id, method, *args)
        self.runtime.poke()

    async def _join_caller(self, call_id: str, channel: str) -> bool | None:
        """Join a caller held in AGI to ``channel`` through its line (music off first); None
        when the caller is not in AGI (bridged: a plain ``Bridge`` moves it)."""
        line = self.lines.get(call_id)
        if line is None or line.closed or not line.in_agi or line.bridged:
            return None
        join = _Join(channel, asyncio.get_running_loop().create_future())
        line.request_bridge(join)
        return await join.joined

    # ------------------------------------------------------------------ AMI events

    def _agi_start(self, m: Message) -> None:
        uid, channel = str(m.Uniqueid), str(m.Channel)
        if not uid or not channel:
            log.warning("asterisk: skipped an AsyncAGIStart without Uniqueid or Channel")
        elif self.xfers.agi_start(uid, channel):
            self.runtime.poke()
        elif (leg := self.legs.get(uid)) is not None:
            self._leg_answered(leg, channel)
        elif (line := self.lines.get(uid)) is not None:
            self._back_from_agent(line)
            line.enter_agi(channel)
        elif m.Context == self.agent_context:
            log.warning("asterisk: %s is in %s but rings for no offer; hanging up", channel, m.Context)
            self._spawn(self._hangup_channel(channel))
        else:
            env = agi.parse_env(str(m.Env))
            self._new_call(uid, channel, env, answered=str(m.ChannelState) == "6")

    def _agi_end(self, m: Message) -> None:
        line = self.lines.get(str(m.Uniqueid))
        if line is not None and not line.bridged:
            line.left_agi()

    def _exec_start(self, m: Message) -> None:
        if (line := self.lines.get(str(m.Uniqueid))) is not None:
            line.executing = True

    def _exec_end(self, m: Message) -> None:
        if (line := self.lines.get(str(m.Uniqueid))) is not None:
            line.executing = False

    def _dtmf(self, m: Message) -> None:
        line = self.lines.get(str(m.Uniqueid))
        if line is not None and str(m.Direction) == "Received":
            line.dtmf(str(m.Digit))

    def _hangup(self, m: Message) -> None:
        uid = str(m.Uniqueid)
        if self.xfers.hangup(uid):
            self.runtime.poke()
        elif (leg := self.legs.get(uid)) is not None:
            self._leg_gone(leg, f"hung up ({m.get('Cause-txt', '')})")
        elif (line := self.lines.get(uid)) is not None:
            self._end_line(line, "caller hung up")

    # ------------------------------------------------------------------ callers

    def _new_call(self, uid: str, channel: str, env: dict[str, str], *, answered: bool) -> None:
        caller, called = agi.caller_and_called(env)
        line = Line(self, uid, uid, channel)
        line.caller = caller
        self.lines[uid] = line
        self.runtime.router.claim(uid, "asterisk")
        line.enter_agi(channel, answered=answered)
        self.center.start_call(self.now(), uid, caller, called, "asterisk")
        self.runtime.poke()

    def _back_from_agent(self, line: Line) -> None:
        """The bridge is over and the caller is back in AGI: the agent has left, or has moved
        on to consult a transfer's target (or left while it rings): then the caller holds."""
        view = self.center.transfers.view(line.call_id)
        if view is not None and view.stage in ("ringing", "consulting"):
            line.hold_for_transfer()
            return
        agent = self.center.talking.get(line.call_id)
        if agent is not None:
            self.center.agent_left(self.now(), agent)
            self.runtime.poke()

    def feed(self, line: Line, event: Event) -> None:
        self.center.call_event(line.call_id, event)
        self.runtime.poke()

    def line_done(self, line: Line, reason: str, *, failed: bool = False) -> None:
        if failed:
            log.error("asterisk: call %s on %s: %s; ending the call", line.call_id, line.channel, reason)
            self._spawn(self._hangup_channel(line.channel))
        self._end_line(line, reason)

    def _end_line(self, line: Line, reason: str) -> None:
        if self.lines.get(line.uniqueid) is not line:
            return
        del self.lines[line.uniqueid]
        line.close()
        for leg in [g for g in self.legs.values() if g.call_id == line.call_id and g.kind == "call"]:
            if leg.state in ("answered", "talking"):  # answered, perhaps never joined: let the agent go
                self._spawn(self._hangup_channel(leg.target))
        self.ami.fail_channel(line.channel, AmiError(reason))
        log.info("asterisk: call %s ended (%s)", line.call_id, reason)
        if not self._closing:
            self.center.call_event(line.call_id, CallerHungUp(self.now()))
        self.runtime.router.release(line.call_id)
        self.runtime.poke()

    def callback_key(self, line: Line) -> None:
        """A waiting caller pressed 1: call me back instead (as Twilio's wait rounds offer)."""
        line.callback_asked = True
        if self.center.request_callback(self.now(), line.call_id):
            line.callback_taken()
            log.info("asterisk: call %s asked to be called back", line.call_id)
        self.runtime.poke()

    async def wait_ready(self, line: Line) -> None:
        await self.ami.ready.wait()
        if line.closed:
            raise LineGone

    async def sounds(self, prompt: Prompt) -> list[str]:
        return await self.sound_files.resolve(prompt)

    def seconds(self, sound: str) -> float:
        return self.sound_files.seconds(sound)

    # ------------------------------------------------------------------ reconnecting

    def _lost(self) -> None:
        if self._orphans is None:
            self._orphans = asyncio.get_running_loop().call_later(self.orphan_after_s, self._orphaned)

    def _orphaned(self) -> None:
        self._orphans = None
        log.error("asterisk: no AMI link for %.0f s; ending %d call(s)", self.orphan_after_s, len(self.lines))
        self._end_all("AMI link down")

    def _gave_up(self, why: str) -> None:
        self._end_all(f"AMI gave up: {why}")

    def _end_all(self, reason: str) -> None:
        for line in list(self.lines.values()):
            self._end_line(line, reason)
        for leg in list(self.legs.values()):
            self._leg_gone(leg, reason)

    async def resync(self) -> None:
        """After a login: what happened to our calls while the link was down."""
        if self._orphans is not None:
            self._orphans.cancel()
            self._orphans = None
        live = {str(m.Uniqueid): m for m in await self.ami.event_list({"Action": "CoreShowChannels"})}
        for line in list(self.lines.values()):
            m = live.get(line.uniqueid)
            if m is None:
                self._end_line(line, "gone while the AMI link was down")
                continue
            line.channel = str(m.Channel)
            if str(m.Application) == "AGI" and not line.in_agi:  # back from the agent meanwhile
                self._back_from_agent(line)
                line.enter_agi(line.channel)
        for leg in list(self.legs.values()):
            m = live.get(leg.uniqueid)
            if m is None:
                self._leg_gone(leg, "gone while the AMI link was down")
            elif leg.state == "ringing" and str(m.Application) == "AGI":
                self._leg_answered(leg, str(m.Channel))
        for uid in [u for u in self.xfers.legs if u not in live]:
            self.xfers.hangup(uid)  # a transfer's target gone meanwhile
        for uid, m in live.items():
            if uid in self.lines or uid in self.legs or uid in self.xfers.legs or str(m.Application) != "AGI":
                continue
            if m.Context == self.agent_context:
                self._spawn(self._hangup_channel(str(m.Channel)))
            else:  # arrived while the link was down: adopt it
                env = {"agi_callerid": str(m.CallerIDNum), "agi_extension": str(m.Exten)}
                self._new_call(uid, str(m.Channel), env, answered=str(m.ChannelState) == "6")
        log.info("asterisk: resynchronised: %d call(s), %d leg(s) live", len(self.lines), len(self.legs))


# --------------------------------------------------------------------------- setup


def attach(runtime: Any, **options: Any) -> AsteriskTransport:
    """The transport, registered with the router and the runtime's shutdown (not started)."""
    transport = AsteriskTransport(runtime, **options)
    runtime.router.add("asterisk", transport)
    runtime.on_close(transport.close)
    if not runtime.settings.asterisk.secret:
        log.error("asterisk: %s is not set; the AMI login will be refused",
                  runtime.settings.asterisk.secret_env)
    return transport


def setup(app: Any, runtime: Any, *, demo: bool) -> None:
    """``ivr serve`` with ``[asterisk] enabled = true``: connect to the AMI when the app starts."""
    transport = attach(runtime)

    async def start(_app: Any) -> None:
        runtime.spawn(transport.run(), "asterisk-ami")

    app.on_startup.append(start)
