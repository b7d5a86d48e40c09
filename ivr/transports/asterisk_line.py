"""One caller's channel in AsyncAGI: the engine's turns played as AGI commands, in order.

A :class:`Line` runs one task while its channel is in AsyncAGI. The controller's turns
(``send``) queue up; the task plays each in order and feeds the result of its blocking
command back as the next event:

* ``Play`` -> ``STREAM FILE`` without escape digits, written at once (pipelined with the
  next command: Asterisk runs queued commands in one pass);
* a menu ``Gather`` -> ``STREAM FILE`` per prompt with every key as escape digit, then
  ``WAIT FOR DIGIT``; DTMF that arrives while *no* AGI command runs (Asterisk loses it to
  AGI) is taken from the ``DTMFEnd`` events instead;
* an input ``Gather`` -> ``GET DATA`` (up to N digits, ``#`` ends);
* ``Record`` -> ``RECORD FILE`` into the messages directory, then ``RecordingDone``;
* ``Enqueue`` -> ``SET MUSIC ON`` and ``WAIT FOR DIGIT`` steps while our queue engine
  decides; position prompts play in between; an agent's answer turns off the music and
  joins the two channels with the AMI ``Bridge`` action. A caller whose number can be
  dialled back hears after each position prompt that 1 asks for a callback (as on
  Twilio); a 1 while waiting -- heard by the hold step's ``WAIT FOR DIGIT`` or seen as a
  ``DTMFEnd`` between commands or during a prompt -- asks for it, once;
* ``Transfer`` -> ``EXEC Dial`` and ``DIALSTATUS``; ``Hangup`` -> ``HANGUP``.

A lost AMI link makes the waiting command wait for the next login and resynchronisation,
then sends it again; a channel that is gone ends the line; a command Asterisk does not
answer in time ends the call cleanly (``LineFailed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from ivr.controller import CALLBACK_CONFIRM, CALLBACK_HINT
from ivr.transports import agi
from ivr.transports.agi import MENU_KEYS, AgiResult
from ivr.transports.ami import ActionTimeout, ChannelGone, NotConnected
from ivr.vocabulary import (
    Command,
    Digits,
    Enqueue,
    Event,
    Gather,
    Hangup,
    InputTimeout,
    Play,
    Prompt,
    Record,
    RecordingDone,
    Transfer,
    TransferResult,
)

log = logging.getLogger(__name__)

CALLBACK_KEY = "1"  # pressed while waiting: call me back (Twilio's wait rounds listen for the same)


class LineGone(Exception):
    """The channel hung up or left AGI: stop playing to it."""


class LineFailed(Exception):
    """Asterisk did not answer in time: end the call."""


@dataclass(frozen=True, slots=True)
class LineConfig:
    moh_class: str = "default"
    hold_step_s: float = 1.0          # WAIT FOR DIGIT steps while queued: the agent waits up to this
    messages: str = "/var/spool/ivr/messages"  # where RECORD FILE writes, as Asterisk sees it
    transfer_context: str = "ivr-transfer"
    transfer_ring_s: int = 60
    record_silence_s: int = 5
    hangup_grace_s: float = 1.0       # after result=-1: time for the Hangup event to arrive


class Owner(Protocol):
    """What a line needs from the transport."""

    ami: Any
    config: LineConfig

    def now(self) -> Any: ...
    def feed(self, line: Line, event: Event) -> None: ...
    async def sounds(self, prompt: Prompt) -> list[str]: ...
    def seconds(self, sound: str) -> float: ...
    async def wait_ready(self, line: Line) -> None: ...
    async def bridge(self, line: Line, leg: Any) -> bool: ...
    def line_done(self, line: Line, reason: str, *, failed: bool = False) -> None: ...
    def callback_key(self, line: Line) -> None: ...


class _Step:
    """One AGI command on its way: kept so it can be sent again after a reconnect."""

    __slots__ = ("command", "runs_s", "future")

    def __init__(self, command: str, runs_s: float | None, future: asyncio.Future[AgiResult]):
        self.command, self.runs_s, self.future = command, runs_s, future


class Line:
    def __init__(self, owner: Owner, call_id: str, uniqueid: str, channel: str):
        self.owner = owner
        self.call_id = call_id
        self.uniqueid = uniqueid
        self.channel = channel
        self.caller: str | None = None
        self.turns: deque[list[Command]] = deque()
        self.wake = asyncio.Event()
        self.gone = asyncio.Event()
        self.closed = False
        self.in_agi = False
        self.answered = True
        self.executing = False         # an AGI command runs now (AGIExecStart .. AGIExecEnd)
        self.keys: list[str] | None = None  # while gathering: keys AGI did not hear
        self.holding: Enqueue | None = None
        self.music = False             # SET MUSIC ON sent: OFF is due before anything else
        self.music_live = False        # ...and no file has played over it since
        self.bridge_to: Any = None     # the agent leg to join, once answered
        self.bridged = False
        self.transfer_hold = False      # the agent consults a colleague: music until the caller is joined
        self.callback_asked = False     # a waiting caller pressed 1: asked once, never again
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ from the transport

    def send(self, commands: list[Command]) -> None:
        self.turns.append(list(commands))
        self.wake.set()

    def enter_agi(self, channel: str, *, answered: bool = True) -> None:
        self.channel, self.in_agi, self.answered = channel, True, answered
        self.bridged = False
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
            self.task.set_name(f"asterisk-call-{self.call_id}")

    def left_agi(self) -> None:
        """AsyncAGIEnd: nothing more will run here until the channel comes back to AGI."""
        self.in_agi = False
        self.owner.ami.fail_channel(self.channel, ChannelGone("the channel left AGI"))

    def request_bridge(self, leg: Any) -> None:
        """Join ``leg`` (its ``target`` channel) once the running command is done. A leg with a
        ``joined`` future (a transfer's join) learns the outcome there, and a refused join
        leaves the caller on hold instead of ending the call."""
        self.bridge_to = leg
        self.wake.set()

    def hold_for_transfer(self) -> None:
        """Back in AGI while the agent talks to a transfer's target: music until joined again."""
        self.transfer_hold = True
        self.wake.set()

    def dtmf(self, key: str) -> None:
        if self.keys is not None:
            if not self.executing and key in MENU_KEYS:
                self.keys.append(key)
        elif key == CALLBACK_KEY and self.offers_callback:
            self.owner.callback_key(self)

    @property
    def offers_callback(self) -> bool:
        """Waiting in a queue (no agent joining yet), with a number an agent can dial back."""
        return (self.holding is not None and self.bridge_to is None and not self.callback_asked
                and not self.closed and agi.callable_back(self.caller))

    def callback_taken(self) -> None:
        """The controller took the callback: thank the caller before what the flow does next
        (goodbye); position prompts not yet played no longer apply."""
        language = self.holding.language if self.holding is not None else "sv"
        self.holding = None
        self.turns = deque(t for t in self.turns if not all(isinstance(c, Play) for c in t))
        thanks = CALLBACK_CONFIRM.get(language, CALLBACK_CONFIRM["sv"])
        self.turns.appendleft([Play(Prompt(language, thanks))])
        self.wake.set()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.gone.set()
        joined = getattr(self.bridge_to, "joined", None)
        if joined is not None and not joined.done():
            joined.set_result(False)
        if self.task is not None and not self.task.done() and self.task is not asyncio.current_task():
            self.task.cancel()

    # ------------------------------------------------------------------ the task

    async def _run(self) -> None:
        try:
            if not self.answered:
                await self._result(self._send(agi.answer(), 0))
                self.answered = True
            while not self.closed:
                if self.bridge_to is not None:
                    if await self._bridge():
                        return
                elif self.turns:
                    if await self._turn(self.turns.popleft()):
                        return
                elif self.holding is not None or self.transfer_hold:
                    await self._hold_step()
                else:
                    self.wake.clear()
                    if not (self.turns or self.bridge_to):
                        await self.wake.wait()
        except LineGone:
            self.owner.line_done(self, "gone")
        except LineFailed as exc:
            self.owner.line_done(self, str(exc), failed=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: the Asterisk line failed", self.call_id)
            self.owner.line_done(self, "internal error", failed=True)

    async def _turn(self, turn: list[Command]) -> bool:
        """Play one turn; True when the call is over (HANGUP sent)."""
        pending: list[_Step] = []
        self.transfer_hold = False  # the flow goes on (a message for the target, say): hold no longer
        if self.holding is not None and turn and all(isinstance(c, Play) for c in turn) \
                and self.offers_callback:  # a position prompt: then how to ask for a callback
            language = self.holding.language
            turn = [*turn, Play(Prompt(language, CALLBACK_HINT.get(language, CALLBACK_HINT["sv"])))]
        for cmd in turn:
            if self.holding is not None and not isinstance(cmd, Enqueue | Play):
                self.holding = None
            if self.holding is None and self.music:  # the wait is over: music off first
                pending.append(self._send(agi.music(False), 0))
                self.music = self.music_live = False
            if isinstance(cmd, Play):
                sounds = await self.owner.sounds(cmd.prompt)
                pending += [self._send(agi.stream_file(s), self.owner.seconds(s)) for s in sounds]
                self.music_live = self.music_live and not sounds  # a file played over the music
                continue
            match cmd:
                case Gather():
                    event = await self._gather(cmd, pending)
                    self.owner.feed(self, event)
                case Record():
                    await self._record(cmd, pending)
                case Enqueue():
                    await self._drain(pending)
                    self.holding = cmd
                case Transfer():
                    if await self._transfer(cmd, pending):
                        return True
                case Hangup():
                    pending.append(self._send(agi.hangup(), 0))
                    await self._drain(pending)
                    await self._await_gone()
                    return True
            pending = []
        await self._drain(pending)
        return False

    # ------------------------------------------------------------------ verbs

    async def _gather(self, cmd: Gather, pending: list[_Step]) -> Event:
        self.keys = []
        try:
            sounds = [s for p in cmd.prompts for s in await self.owner.sounds(p)]
            if cmd.max_digits > 1 or cmd.finish_on_key:
                return await self._input(cmd, sounds, pending)
            for sound in sounds:
                step = self._send(agi.stream_file(sound, MENU_KEYS), self.owner.seconds(sound))
                await self._drain(pending)
                pending = []
                key = (await self._result(step)).key or self._heard()
                if key:
                    return Digits(self.owner.now(), key)
            step = self._send(agi.wait_for_digit(cmd.timeout_s), cmd.timeout_s)
            await self._drain(pending)
            key = (await self._result(step)).key or self._heard()
            return Digits(self.owner.now(), key) if key else InputTimeout(self.owner.now())
        finally:
            self.keys = None

    async def _input(self, cmd: Gather, sounds: list[str], pending: list[_Step]) -> Event:
        finish, now = cmd.finish_on_key, self.owner.now
        get_data = finish in (None, "#")  # GET DATA ends on "#" only
        first = ""
        for sound in sounds[:-1] if get_data else sounds:  # a key during a prompt starts the entry
            step = self._send(agi.stream_file(sound, MENU_KEYS), self.owner.seconds(sound))
            await self._drain(pending)
            pending = []
            first = (await self._result(step)).key or self._heard() or ""
            if first:
                break
        if finish and first == finish:
            return Digits(now(), "")
        if len(first) >= cmd.max_digits:
            return Digits(now(), first)
        if get_data:
            last = "" if first or not sounds else sounds[-1]
            wanted = cmd.max_digits - len(first)
            runs = (self.owner.seconds(last) if last else 0) + cmd.timeout_s * (wanted + 1)
            step = self._send(agi.get_data(last, cmd.timeout_s, wanted), runs)
            await self._drain(pending)
            result = await self._result(step)
            digits = first + (result.result if result.result.isdigit() else "")
            if digits or not result.timed_out:
                return Digits(now(), digits)
            key = self._heard()
            return Digits(now(), key) if key else InputTimeout(now())
        digits = first
        while len(digits) < cmd.max_digits:  # another finish key: key by key
            step = self._send(agi.wait_for_digit(cmd.timeout_s), cmd.timeout_s)
            await self._drain(pending)
            pending = []
            key = (await self._result(step)).key or self._heard()
            if not key or key == finish:
                break
            digits += key
        return Digits(now(), digits) if digits else InputTimeout(now())

    def _heard(self) -> str | None:
        """A key the caller pressed between two AGI commands (AGI never saw it)."""
        return self.keys.pop(0) if self.keys else None

    async def _record(self, cmd: Record, pending: list[_Step]) -> None:
        for prompt in cmd.prompts:
            pending += [self._send(agi.stream_file(s), self.owner.seconds(s))
                        for s in await self.owner.sounds(prompt)]
        config = self.owner.config
        name = agi.safe_name(self.call_id)
        step = self._send(agi.record_file(f"{config.messages.rstrip('/')}/{name}", cmd.max_length_s,
                                          cmd.finish_on_key, silence_s=config.record_silence_s),
                          cmd.max_length_s + 5)
        await self._drain(pending)
        result = await self._result(step, hangup_ok=True)
        seconds = round((result.endpos or 0) / 8000, 1)
        if seconds > 0 or not result.hung_up:
            self.owner.feed(self, RecordingDone(self.owner.now(), f"{name}.wav", seconds))
        if result.hung_up:
            raise LineGone

    async def _transfer(self, cmd: Transfer, pending: list[_Step]) -> bool:
        config = self.owner.config
        target = agi.dial_string(cmd.target, config.transfer_context)
        step = self._send(agi.exec_app("Dial", f"{target},{config.transfer_ring_s}"), None)
        await self._drain(pending)
        await self._result(step)
        status = await self._result(self._send(agi.get_variable("DIALSTATUS"), 0))
        outcome = agi.transfer_outcome(status.data)
        if outcome is None:  # answered and over: the caller's part ends here
            await self._result(self._send(agi.hangup(), 0))
            await self._await_gone()
            return True
        self.owner.feed(self, TransferResult(self.owner.now(), outcome))
        return False

    async def _hold_step(self) -> None:
        if not self.music_live:
            await self._result(self._send(agi.music(True, self.owner.config.moh_class), 0))
            self.music = self.music_live = True
        step = self.owner.config.hold_step_s
        result = await self._result(self._send(agi.wait_for_digit(step), step))
        if result.key == CALLBACK_KEY and self.offers_callback:
            self.owner.callback_key(self)

    async def _bridge(self) -> bool:
        """Music off, then join the agent; True when the channel has left AGI for the bridge."""
        leg, self.holding = self.bridge_to, None
        self.turns = deque(t for t in self.turns if not all(isinstance(c, Play) for c in t))
        if self.music:  # off before the bridge, or the agent hears it too
            await self._result(self._send(agi.music(False), 0))
            self.music = self.music_live = False
        self.bridged = True
        try:
            ok = await self.owner.bridge(self, leg)
        finally:
            self.bridge_to = None
        joined = getattr(leg, "joined", None)
        if joined is not None and not joined.done():
            joined.set_result(ok)
        if not ok:
            self.bridged = False
            if joined is not None:  # a transfer's join: the transfer is refused, the caller holds on
                return False
            raise LineFailed("the agent could not be joined")
        self.in_agi = self.transfer_hold = False
        return True

    # ------------------------------------------------------------------ AGI plumbing

    def _send(self, command: str, runs_s: float | None) -> _Step:
        future = self.owner.ami.send_agi(self.channel, command, timeout_s=runs_s)
        return _Step(command, runs_s, future)

    async def _drain(self, pending: list[_Step]) -> None:
        for step in pending:
            await self._result(step)

    async def _result(self, step: _Step, *, hangup_ok: bool = False) -> AgiResult:
        while True:
            try:
                result = await step.future
            except NotConnected:
                await self.owner.wait_ready(self)  # raises LineGone when the call did not survive
                step.future = self.owner.ami.send_agi(self.channel, step.command, timeout_s=step.runs_s)
                continue
            except ChannelGone as exc:
                raise LineGone from exc
            except ActionTimeout as exc:
                raise LineFailed(str(exc)) from exc
            if result.hung_up and not hangup_ok:
                await self._confirm_alive(step, result)
            return result

    async def _confirm_alive(self, step: _Step, result: AgiResult) -> None:
        """result=-1 is a hang-up, or a sound Asterisk could not open: tell them apart."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gone.wait(), self.owner.config.hangup_grace_s)
        if self.closed or not self.in_agi:
            raise LineGone
        log.warning("call %s: %r answered %r but the channel is still there (a missing sound?)",
                    self.call_id, step.command[:60], result.raw)

    async def _await_gone(self) -> None:
        """After HANGUP: the Hangup event closes the line; if it never comes, close it here."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gone.wait(), max(1.0, self.owner.config.hangup_grace_s * 5))
        if not self.closed:
            self.owner.line_done(self, "hung up")
