"""The AMI link: one logged-in TCP connection to Asterisk at a time, kept alive and re-made.

Built on panoramisk's wire layer (``AMIProtocol``, ``Action``, ``Message``), with its
``Manager`` left out on purpose, because of what panoramisk 1.4 does against Asterisk 22
(``/work/shared/ami/README.md``):

* after a refused login ``Manager`` reconnects and retries every few seconds forever, and
  ``close()`` does not cancel the retry: :meth:`AmiClient.run` owns reconnecting instead,
  with a capped backoff and a bounded number of refused logins;
* ``Manager`` replays unanswered actions after a reconnect (an Originate twice, an AGI
  command to a channel that is gone): pending actions fail with :class:`NotConnected`;
* ``send_agi_command()`` never resolves and swallows ``AsyncAGIExec``: AGI commands go out
  as plain ``AGI`` actions with our own ``CommandID``; a waiter is registered under that id
  *before* the action is written and resolved by the ``AsyncAGIExec`` event;
* a response "...successfully queued" to an action without ``Async`` raises
  ``KeyError('async')`` in the protocol: callers always send ``Async`` on Originate.

Nothing here logs an action, so the login secret never reaches a log. A frame that does
not parse is logged and skipped; a handler that raises is logged and the others go on.

Speed (``benchmarks/ami.py``): events no handler wants are skipped before parsing (most
of what Asterisk sends); the rest are parsed by :func:`parse_frame`, which gives exactly
panoramisk's ``Message`` about three times faster; actions written in one pass of the
event loop go out in one ``send`` (under load, many calls' next commands share one).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from ivr.transports.agi import AgiResult, parse_result

log = logging.getLogger(__name__)

BANNER = "Asterisk Call Manager/"
EVENTS = "system,call,agi,dtmf"  # the event classes the transport reacts to (manager.conf `read`)


class AmiError(Exception):
    pass


class NotConnected(AmiError):
    """No logged-in link to Asterisk, or it was lost while waiting."""


class LoginRefused(AmiError):
    pass


class ActionTimeout(AmiError):
    pass


class ChannelGone(AmiError):
    """Asterisk refused a command for the channel, or the channel left AGI."""


_BODY = ("Response: Follows", "Response: Fail")  # frames with a free-text body: panoramisk parses them
_NONE = ("", "")


def parse_frame(frame: str) -> Message | None:
    """``Message.from_line(frame)``: the same message (headers, ``content``, ``Result``
    URL-decoded), built in one pass instead of a ``__setitem__`` per header. Frames with a
    body or a repeated header (neither among the events handled here) go to panoramisk."""
    if frame.startswith(_BODY):
        return Message.from_line(frame)
    store: dict[str, tuple[str, Any]] = {}
    for line in frame.split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            low = key.lower()
            if low in store:
                return Message.from_line(frame)
            store[low] = (key, value)
    if store.get("event", _NONE)[0] != "Event" and store.get("response", _NONE)[0] != "Response":
        return None
    if "result" in store:
        key, value = store["result"]
        store["result"] = (key, unquote(value).strip())
    store["content"] = ("content", "")
    message = Message.__new__(Message)
    message._store = store
    message.manager = None
    return message


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail a waiter; marked retrieved, so one nobody awaits any more is not reported."""
    if not future.done():
        future.set_exception(exc)
        future.exception()


class _Protocol(AMIProtocol):
    """panoramisk's protocol, framing kept, with logging that never shows an action."""

    max_buffer = 1 << 20

    def __init__(self, link: _Link):
        super().__init__()
        self._link = link
        self._buffer = ""
        self._out: list[bytes] = []  # written at the end of this pass of the event loop

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.factory = self._link
        self.encoding = "utf-8"
        self.log = log

    def send(self, data: Action, as_list: bool | None = False) -> asyncio.Future[Any]:
        data.as_list = as_list
        self.responses[data.id] = data
        if data.action_id:
            self.responses[data.action_id] = data
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(str(data).encode(self.encoding))
        return data.future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and not self.closed:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        *frames, self._buffer = (self._buffer + data.decode(self.encoding, "replace")).split("\r\n\r\n")
        if len(self._buffer) > self.max_buffer:
            log.warning("AMI: %d bytes without a frame end; dropped", len(self._buffer))
            self._buffer = ""
        for frame in frames:
            self._frame(frame)

    def _frame(self, frame: str) -> None:
        if frame.startswith(BANNER):
            self.version, _, frame = frame.partition("\r\n")
        frame = frame.strip()
        if not frame or self._unwanted(frame):
            return
        try:
            message = parse_frame(frame)
            if message is None:
                log.warning("AMI: skipped a frame that does not parse: %r", frame[:160])
                return
            self.handle_message(message)
        except Exception:
            log.exception("AMI: skipped a frame that could not be handled: %r", frame[:160])

    def handle_message(self, message: Message) -> None:
        """panoramisk's, with a short way for an event no action waits for (most of them)."""
        store = message._store
        event = store.get("event")
        if event is None or "commandid" in store or "actionid" in store:
            super().handle_message(message)
            return
        if event[1].lower() == "shutdown":
            self.connection_lost(message)  # type: ignore[arg-type]
        self.factory.dispatch(message)

    def _unwanted(self, frame: str) -> bool:
        """An event nobody handles and no action waits for: not worth parsing (most are)."""
        wanted = getattr(self._link.client, "handlers", None)
        if wanted is None or not frame.startswith("Event: "):
            return False
        end = frame.find("\r\n")
        name = (frame[7:end] if end > 0 else frame[7:]).lower()
        return name not in wanted and name != "shutdown" and "\r\nActionID: " not in frame

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()
        self._link.connection_lost(exc)

    def close(self) -> None:
        pending = {id(a): a for a in self.responses.values()}
        self.responses.clear()
        for action in pending.values():
            if not action.future.done():
                action.future.set_result(None)  # "no answer": action() raises NotConnected
        if not self.closed:
            self.closed = True
            self.transport.close()


class _Link:
    """One TCP connection: what panoramisk's protocol calls its ``factory``."""

    forgetable_actions = ("login",)

    def __init__(self, client: AmiClient):
        self.client = client
        self.protocol: _Protocol | None = None
        self.alive = True
        self.lost = asyncio.Event()
        self.awaiting_actions: list[Action] = []
        self.opened = time.monotonic()

    def dispatch(self, message: Message) -> None:
        self.client._dispatch(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.alive:
            self.alive = False
            self.lost.set()
            self.client._link_lost(self)

    def close(self) -> None:
        if self.protocol is not None:
            self.protocol.close()
        self.connection_lost(None)


Handler = Callable[[Message], Any]


class AmiClient:
    def __init__(self, host: str, port: int, username: str, secret: str | None, *,
                 action_timeout_s: float = 10.0, reconnect_max_s: float = 30.0,
                 login_attempts: int = 5, backoff_s: float = 1.0, keepalive_s: float | None = 20.0,
                 secret_env: str = "IVR_AMI_SECRET"):
        self.host, self.port, self.username = host, port, username
        self._secret = secret
        self.secret_env = secret_env
        self.action_timeout_s = action_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.login_attempts = login_attempts
        self.backoff_s = backoff_s
        self.keepalive_s = keepalive_s
        self.handlers: dict[str, list[Handler]] = {}
        self.on_ready: Callable[[], Awaitable[None]] | None = None  # after each login (resync)
        self.on_lost: Callable[[], None] | None = None
        self.on_gave_up: Callable[[str], None] | None = None
        self.ready = asyncio.Event()  # logged in and resynchronised
        self.gave_up: str | None = None
        self.logins = 0
        self._link: _Link | None = None
        self._closing = False
        self._agi: dict[str, tuple[asyncio.Future[AgiResult], str]] = {}  # command id -> waiter
        self._by_channel: dict[str, set[str]] = {}
        self._prefix = f"ivr-{secrets.token_hex(3)}"
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ events

    def on(self, event: str, handler: Handler) -> None:
        self.handlers.setdefault(event.lower(), []).append(handler)

    def _dispatch(self, message: Message) -> None:
        for handler in self.handlers.get(message._store.get("event", _NONE)[1].lower(), ()):
            try:
                handler(message)
            except Exception:
                log.exception("AMI: the %s handler failed; the other calls go on", message.event)

    # ------------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.alive

    async def run(self) -> None:
        """Connect, log in, resynchronise, and do it again whenever the link drops."""
        delay, refused = self.backoff_s, 0
        while not self._closing:
            try:
                link = await self._open()
            except LoginRefused as exc:
                refused += 1
                log.error("AMI: login refused for user %r at %s:%d (%s); attempt %d of %d",
                          self.username, self.host, self.port, exc, refused, self.login_attempts)
                if refused >= self.login_attempts:
                    self._give_up(f"login refused {refused} times; check [asterisk] username and "
                                  f"the secret in {self.secret_env}")
                    return
            except (OSError, AmiError) as exc:
                log.warning("AMI: cannot reach Asterisk at %s:%d (%s); next try in %.1f s",
                            self.host, self.port, exc or type(exc).__name__, delay)
            else:
                refused = 0
                await self._serve(link)
                if self._closing:
                    return
                log.warning("AMI: connection to %s:%d lost; reconnecting", self.host, self.port)
                if time.monotonic() - link.opened > self.reconnect_max_s:
                    delay = self.backoff_s
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    async def _open(self) -> _Link:
        if not self._secret:
            raise LoginRefused(f"no secret: {self.secret_env} is not set")
        loop = asyncio.get_running_loop()
        link = _Link(self)
        try:
            _transport, link.protocol = await asyncio.wait_for(loop.create_connection(
                lambda: _Protocol(link), self.host, self.port), self.action_timeout_s)
        except TimeoutError as exc:
            raise ActionTimeout(f"no connection within {self.action_timeout_s} s") from exc
        self._link = link
        try:
            reply = await self.action({"Action": "Login", "Username": self.username,
                                       "Secret": self._secret, "Events": EVENTS})
        except AmiError:
            link.close()
            raise
        if not reply.success:
            link.close()
            raise LoginRefused(str(reply.message or reply.response or "refused"))
        return link

    async def _serve(self, link: _Link) -> None:
        self.logins += 1
        log.info("AMI: logged in to %s:%d as %r", self.host, self.port, self.username)
        keepalive = asyncio.ensure_future(self._keepalive(link)) if self.keepalive_s else None
        try:
            if self.on_ready is not None:
                try:
                    await self.on_ready()
                except AmiError as exc:
                    log.warning("AMI: resynchronising failed (%s); reconnecting", exc)
                    link.close()
            if link.alive:
                self.ready.set()
            await link.lost.wait()
        finally:
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive

    async def _keepalive(self, link: _Link) -> None:
        assert self.keepalive_s is not None
        while link.alive:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self.action({"Action": "Ping"})
            except ActionTimeout:
                log.warning("AMI: no answer to Ping within %.1f s; dropping the link", self.action_timeout_s)
                link.close()
            except NotConnected:
                return

    def _link_lost(self, link: _Link) -> None:
        if link is not self._link:
            return
        self.ready.clear()
        lost = NotConnected("the connection to Asterisk was lost")
        for waiter, _channel in list(self._agi.values()):
            _fail(waiter, lost)
        if self.on_lost is not None:
            try:
                self.on_lost()
            except Exception:
                log.exception("AMI: on_lost failed")

    def _give_up(self, why: str) -> None:
        self.gave_up = why
        log.error("AMI: giving up: %s", why)
        if self.on_gave_up is not None:
            self.on_gave_up(why)

    async def close(self) -> None:
        self._closing = True
        link = self._link
        if link is not None and link.alive:
            with contextlib.suppress(AmiError):
                await self.action({"Action": "Logoff"}, timeout=min(1.0, self.action_timeout_s))
            link.close()

    # ------------------------------------------------------------------ actions

    async def action(self, fields: dict[str, str], *, timeout: float | None = None,
                     as_list: bool | None = False) -> Any:
        """Send one action; its response (``as_list=None``: the event list, when it is one)."""
        link = self._link
        if link is None or not link.alive or link.protocol is None:
            raise NotConnected("not connected to Asterisk")
        act = Action(dict(fields))
        future = link.protocol.send(act, as_list=as_list)
        wait = self.action_timeout_s if timeout is None else timeout
        try:
            reply = await asyncio.wait_for(asyncio.shield(future), wait)
        except TimeoutError:
            link.protocol.responses.pop(act.id, None)
            raise ActionTimeout(f"{fields.get('Action')}: no response within {wait} s") from None
        if reply is None:
            raise NotConnected("the connection to Asterisk was lost")
        return reply

    async def event_list(self, fields: dict[str, str]) -> list[Message]:
        """An action answered by an event list (``EventList: start`` ... ``*Complete``)."""
        reply = await self.action(fields, as_list=None)
        if isinstance(reply, Message):
            if not reply.success:
                raise AmiError(f"{fields.get('Action')}: {reply.message}")
            return []
        return [m for m in reply[1:] if m.event and not m.event.endswith("Complete")]

    # ------------------------------------------------------------------ AGI

    def send_agi(self, channel: str, command: str, *, timeout_s: float | None) -> asyncio.Future[AgiResult]:
        """Write one AGI command now; the future resolves with its result.

        ``timeout_s`` is how long the command may run (its audio, its timeout); the
        future fails with :class:`ActionTimeout` ``action_timeout_s`` after that, or when
        Asterisk does not even queue it within ``action_timeout_s``.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[AgiResult] = loop.create_future()
        link = self._link
        if link is None or not link.alive or link.protocol is None:
            _fail(waiter, NotConnected("not connected to Asterisk"))
            return waiter
        cmd_id = f"{self._prefix}-{next(self._ids)}"
        act = Action({"Action": "AGI", "Channel": channel, "Command": command, "CommandID": cmd_id})
        self._agi[cmd_id] = (waiter, channel)  # registered before the action is written
        self._by_channel.setdefault(channel, set()).add(cmd_id)
        timers = [loop.call_later(self.action_timeout_s, self._overdue, cmd_id, command, "queued", act.id)]
        if timeout_s is not None:
            timers.append(loop.call_later(timeout_s + self.action_timeout_s, self._overdue, cmd_id,
                                          command, "answered", None))
        waiter.add_done_callback(functools.partial(self._forget, cmd_id, channel, timers))
        reply = link.protocol.send(act, as_list=False)
        reply.add_done_callback(functools.partial(self._queued, cmd_id, timers[0]))
        return waiter

    def _queued(self, cmd_id: str, timer: asyncio.TimerHandle, reply: asyncio.Future[Any]) -> None:
        entry = self._agi.get(cmd_id)
        if entry is None or reply.cancelled():
            return
        message = reply.result()
        if message is None:
            return  # the link was lost; _link_lost fails the waiter
        timer.cancel()
        if not message.success:
            _fail(entry[0], ChannelGone(str(message.message or "AGI refused")))

    def _overdue(self, cmd_id: str, command: str, what: str, action_id: str | None) -> None:
        entry = self._agi.get(cmd_id)
        if action_id is not None and self._link is not None and self._link.protocol is not None:
            self._link.protocol.responses.pop(action_id, None)
        if entry is not None:
            verb = " ".join(itertools.takewhile(str.isupper, command.split(" ")))
            log.error("AMI: AGI %s on %s not %s in time", verb, entry[1], what)
            _fail(entry[0], ActionTimeout(f"AGI {verb} not {what} in time"))

    def _forget(self, cmd_id: str, channel: str, timers: list[asyncio.TimerHandle],
                _future: asyncio.Future[AgiResult]) -> None:
        for timer in timers:
            timer.cancel()
        self._agi.pop(cmd_id, None)
        ids = self._by_channel.get(channel)
        if ids is not None:
            ids.discard(cmd_id)
            if not ids:
                del self._by_channel[channel]

    def agi_result(self, message: Message) -> None:
        """``AsyncAGIExec``: resolve the waiter of its ``CommandId`` (any spelling)."""
        entry = self._agi.get(str(message.get("CommandID", "")))
        if entry is None:
            log.debug("AMI: a result for command %r, which nobody waits for", message.get("CommandID"))
            return
        result = parse_result(str(message.get("Result", "")))
        if not entry[0].done():
            entry[0].set_result(result)

    def fail_channel(self, channel: str, exc: AmiError) -> None:
        """Every command still waiting on ``channel`` fails (it left AGI or hung up)."""
        for cmd_id in list(self._by_channel.get(channel, ())):
            entry = self._agi.get(cmd_id)
            if entry is not None:
                _fail(entry[0], exc)

    def waiting(self) -> int:
        return len(self._agi)
