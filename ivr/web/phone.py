"""The browser test phone: a supervisor calls a flow from the browser (``/phone``).

A third transport beside Twilio and Asterisk, registered on ``runtime.router`` as
``"phone"``: the call runs through the same :class:`ivr.controller.ContactCenter`,
engine, queues and event log as any call, so it can queue, be offered to an agent
logged in at the desk, be accepted there, and shows in the reports. No audio travels
between the browser tabs: the phone shows "Kopplad till anna / Connected to anna" (see
``docs/phone.md``).

The browser's side (``static/phone.js``):

* ``POST /phone/calls`` ``{"flow": KEY, "caller": "+4670..."}`` starts a call; the
  answer holds its ``call_id``.
* ``GET /phone/calls/{id}/events``: server-sent events, JSON in ``data``: ``turn``
  (prompts to play, then what the line waits for: keys, a recording, the queue, a
  transfer, the end), ``path`` (the nodes entered so far) and ``status``. The stream
  replays the call from its start (or from ``Last-Event-ID``) and ends with the call.
* ``POST /phone/calls/{id}/digits`` ``{"digits": "1"}``: keys, buffered on the server
  until the line's ``Gather`` is complete (one key for a menu; up to ``max_digits`` or
  the finish key for an input). ``#`` ends a recording.
* ``POST /phone/calls/{id}/timeout`` ``{"turn": N}``: the browser runs the ``Gather``
  timer (after the prompts, ``timeout_s``, restarted by each key) and the recording
  limit (``max_length_s``); a timeout for a turn that is over is refused (409), so a
  late timer never answers a newer question.
* ``POST /phone/calls/{id}/hangup``.

Supervisors only: an agent gets 403, no credentials 401 (the page redirects to
``/login``). Errors are ``{"error": "..."}`` naming what was wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr.flow import Flow
from ivr.flowcheck import FlowContext, FlowError, load_flow
from ivr.server import Runtime
from ivr.vocabulary import (
    CallerHungUp,
    Command,
    Digits,
    Enqueue,
    Gather,
    Hangup,
    InputTimeout,
    Play,
    Prompt,
    Record,
    RecordingDone,
    Transfer,
)
from ivr.web.api import API, ApiError, dumps, same_origin
from ivr.web.auth import AuthError, User
from ivr.web.pages import PAGES
from queues import CancelOffer, Offer

log = logging.getLogger(__name__)

TRANSPORT = "phone"
DEFAULT_CALLER = "+46700000000"  # a test number (not a subscriber's)
CALLER = re.compile(r"\+?[0-9]{3,15}")
KEYS = re.compile(r"[0-9*#]{1,32}")
EVENTS_KEPT = 500        # per call, for the stream's replay
ENDED_KEPT = 50          # ended calls whose events can still be read
LIVE_CALLS_MAX = 20      # test calls at the same time
ORPHAN_HANGUP_S = 60.0   # a call whose last stream went away is hung up after this
VOICES = {"sv": "sv-SE", "en": "en-GB"}

STATUS = {
    "flow": ("Samtal pågår", "In call"),
    "gather": ("Väntar på knappval", "Waiting for keys"),
    "record": ("Spelar in meddelande, avsluta med #", "Recording a message, finish with #"),
    "queue": ("I kö", "In queue"),
    "ringing": ("Ringer hos {agent}", "Ringing {agent}"),
    "talking": ("Kopplad till {agent}", "Connected to {agent}"),
    "transferred": ("Vidarekopplad till {target}", "Transferred to {target}"),
    "ended": ("Avslutat", "Ended"),
}

PHONE: web.AppKey[PhoneTransport] = web.AppKey("phone_transport")


class PhoneError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(eq=False)
class PhoneCall:
    """One test call as the phone sees it."""

    call_id: str
    caller: str
    flow: str
    state: str = "flow"                 # flow | gather | record | queue | ringing | talking | ended
    turn: int = 0                       # blocking commands so far; a timeout names its turn
    gather: Gather | None = None
    keys: str = ""                      # pressed for the current Gather
    record: Record | None = None
    record_started: Any = None          # when the recording began (runtime clock)
    queue: str | None = None
    agent: str | None = None
    target: str | None = None
    path_sent: int = 0
    events: list[tuple[int, str]] = field(default_factory=list)  # (id, json)
    seq: int = 0
    wakers: set[asyncio.Event] = field(default_factory=set)
    orphan: asyncio.TimerHandle | None = None

    @property
    def ended(self) -> bool:
        return self.state == "ended"


def prompt_json(prompt: Prompt) -> dict[str, Any]:
    return {"language": prompt.language, "voice": VOICES.get(prompt.language, prompt.language),
            "text": prompt.text, "audio": f"/phone/recordings/{prompt.audio}" if prompt.audio else None}


class PhoneTransport:
    """What the controller calls (``send``, ``offer``, ``cancel_offer``, ``connect``), and
    the calls the browser's requests drive."""

    def __init__(self, runtime: Runtime, flows: dict[str, Flow]):
        self.runtime = runtime
        self.flows = flows
        self.calls: OrderedDict[str, PhoneCall] = OrderedDict()
        self._closing = False

    # ------------------------------------------------------------------ the controller's side

    def send(self, call_id: str, commands: list[Command]) -> None:
        call = self.calls.get(call_id)
        if call is None or call.ended:
            log.warning("phone: commands for unknown or ended call %s dropped", call_id)
            return
        self._path(call)
        plays = [c.prompt for c in commands if isinstance(c, Play)]
        blocking = next((c for c in commands if not isinstance(c, Play)), None)
        wait: dict[str, Any] | None = None
        state = call.state
        match blocking:
            case Gather():
                call.turn += 1
                call.gather, call.keys, call.record = blocking, "", None
                state = "gather"
                wait = {"kind": "gather", "prompts": [prompt_json(p) for p in blocking.prompts],
                        "max_digits": blocking.max_digits, "timeout_s": blocking.timeout_s,
                        "finish_on_key": blocking.finish_on_key}
            case Record():
                call.turn += 1
                call.gather, call.keys, call.record = None, "", blocking
                call.record_started = self.runtime.now()
                state = "record"
                wait = {"kind": "record", "prompts": [prompt_json(p) for p in blocking.prompts],
                        "max_length_s": blocking.max_length_s, "finish_on_key": blocking.finish_on_key}
            case Enqueue():
                call.gather = call.record = None
                call.queue, call.agent, state = blocking.queue, None, "queue"
                q = self.runtime.settings.queues.get(blocking.queue)
                wait = {"kind": "queue", "queue": blocking.queue,
                        "display": dict(q.display) if q is not None else None}
            case Transfer():
                # No PSTN here: the transfer counts as made and the call leaves the phone.
                call.gather = call.record = None
                call.target, state = blocking.target, "transferred"
                wait = {"kind": "transfer", "target": blocking.target}
                asyncio.get_running_loop().call_soon(self._transferred, call)
            case Hangup():
                call.gather = call.record = None
                wait = {"kind": "hangup"}
            case None:
                pass
            case _:
                log.warning("phone: call %s: nothing to do for %r; skipped", call_id, blocking)
        self._emit(call, {"type": "turn", "turn": call.turn, "plays": [prompt_json(p) for p in plays],
                          "wait": wait})
        if isinstance(blocking, Hangup):
            self._end(call)
        elif state != call.state:
            self._status(call, state)

    def offer(self, offer: Offer) -> None:
        call = self.calls.get(offer.call_id)
        if offer.kind != "call" or call is None or call.ended:
            return
        call.agent = offer.agent
        self._status(call, "ringing")

    def cancel_offer(self, cancel: CancelOffer) -> None:
        call = self.calls.get(cancel.call_id)
        if call is None or call.ended or call.state != "ringing" or call.agent != cancel.agent:
            return
        call.agent = None
        self._status(call, "queue")

    def connect(self, agent: str, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None or call.ended:
            return
        call.agent = agent
        self._status(call, "talking")

    # ------------------------------------------------------------------ the browser's side

    def start(self, flow_key: str, caller: str) -> PhoneCall:
        if flow_key not in self.flows:
            raise PhoneError(400, f'flow: unknown flow "{flow_key}": expected one of '
                             + ", ".join(f'"{k}"' for k in self.flows))
        live = sum(1 for c in self.calls.values() if not c.ended)
        if live >= LIVE_CALLS_MAX:
            raise PhoneError(429, f"at most {LIVE_CALLS_MAX} test calls at a time; hang one up")
        call_id = f"phone-{secrets.token_hex(8)}"
        call = PhoneCall(call_id, caller, flow_key)
        self.calls[call_id] = call
        self._forget_old()
        self.runtime.router.claim(call_id, TRANSPORT)
        default = next(iter(self.flows))
        self.runtime.center.start_call(self.runtime.now(), call_id, caller, None, TRANSPORT,
                                       flow=None if flow_key == default else flow_key)
        self._settle(call)
        self.runtime.poke()
        # Until the browser opens the call's event stream: a call nobody listens to (the tab
        # closed while loading, a script) must not wait in a real queue for ever.
        if not call.ended:
            with contextlib.suppress(RuntimeError):  # no running loop: nobody to hang it up later
                call.orphan = asyncio.get_running_loop().call_later(ORPHAN_HANGUP_S, self._orphaned, call)
        return call

    def call(self, call_id: str, *, live: bool = False) -> PhoneCall:
        call = self.calls.get(call_id)
        if call is None:
            raise PhoneError(404, f'unknown call "{call_id}"')
        if live and call.ended:
            raise PhoneError(409, f'call "{call_id}" has ended')
        return call

    def digits(self, call_id: str, keys: str) -> dict[str, Any]:
        call = self.call(call_id, live=True)
        now = self.runtime.now()
        center = self.runtime.center
        if call.record is not None:
            if call.record.finish_on_key in keys:
                self._recorded(call, now)
                return {"accepted": keys, "sent": "recording"}
            return {"accepted": "", "ignored": keys}
        gather = call.gather
        if gather is None:  # in the queue, talking: keys are not listened to
            return {"accepted": "", "ignored": keys}
        sent = None
        for key in keys:
            call.keys += key
            finish = gather.finish_on_key is not None and key == gather.finish_on_key
            if finish or len(call.keys) >= gather.max_digits:
                sent, call.keys, call.gather = call.keys, "", None
                center.call_event(call_id, Digits(now, sent))
                break
        self._settle(call)
        self.runtime.poke()
        return {"accepted": keys, "sent": sent}

    def timeout(self, call_id: str, turn: int) -> dict[str, Any]:
        call = self.call(call_id, live=True)
        if turn != call.turn or (call.gather is None and call.record is None):
            raise PhoneError(409, f"turn: {turn} is over (the call is at turn {call.turn}, "
                             f"{call.state}); the timeout was not applied")
        now = self.runtime.now()
        if call.record is not None:
            self._recorded(call, now, full=True)
            return {"sent": "recording"}
        kept, call.keys, call.gather = call.keys, "", None
        # as Twilio does: keys pressed before the timer ran out are submitted
        self.runtime.center.call_event(call_id, Digits(now, kept) if kept else InputTimeout(now))
        self._settle(call)
        self.runtime.poke()
        return {"sent": kept or "timeout"}

    def hangup(self, call_id: str) -> None:
        call = self.call(call_id)
        if call.ended:
            return
        self.runtime.center.call_event(call_id, CallerHungUp(self.runtime.now()))
        self._end(call)
        self.runtime.poke()

    # ------------------------------------------------------------------ plumbing

    def _recorded(self, call: PhoneCall, now: Any, *, full: bool = False) -> None:
        record = call.record
        assert record is not None
        call.record = None
        duration = float(record.max_length_s) if full else max(
            0.0, (now - call.record_started).total_seconds())
        # the browser records no audio: the message is logged without a file
        self.runtime.center.call_event(call.call_id, RecordingDone(now, None, round(duration, 1)))
        self._settle(call)
        self.runtime.poke()

    def _transferred(self, call: PhoneCall) -> None:
        if call.ended:
            return
        self.runtime.center.call_event(call.call_id, CallerHungUp(self.runtime.now()))
        self._end(call, final="transferred")
        self.runtime.poke()

    def _settle(self, call: PhoneCall) -> None:
        """After the controller ran: a session that is over ends the phone's call."""
        self._path(call)
        over = call.call_id not in self.runtime.center.sessions
        if over and not call.ended and call.state != "transferred":
            self._end(call)

    def _path(self, call: PhoneCall) -> None:
        session = self.runtime.center.sessions.get(call.call_id)
        if session is not None and len(session.path) > call.path_sent:
            call.path_sent = len(session.path)
            self._emit(call, {"type": "path", "nodes": list(session.path)})

    def _status(self, call: PhoneCall, state: str) -> None:
        call.state = state
        sv, en = STATUS[state]
        values = {"agent": call.agent or "", "target": call.target or ""}
        self._emit(call, {"type": "status", "state": state, "queue": call.queue, "agent": call.agent,
                          "sv": sv.format(**values), "en": en.format(**values)})

    def _end(self, call: PhoneCall, final: str = "ended") -> None:
        if call.ended:
            return
        call.gather = call.record = None
        if final != "ended" and call.state != final:
            self._status(call, final)
        self._status(call, "ended")
        self.runtime.router.release(call.call_id)
        if call.orphan is not None:
            call.orphan.cancel()
            call.orphan = None

    def _emit(self, call: PhoneCall, event: dict[str, Any]) -> None:
        call.seq += 1
        call.events.append((call.seq, dumps({"call_id": call.call_id, **event})))
        del call.events[:-EVENTS_KEPT]
        for waker in call.wakers:
            waker.set()

    def _forget_old(self) -> None:
        ended = [cid for cid, c in self.calls.items() if c.ended]
        for cid in ended[:max(0, len(ended) - ENDED_KEPT)]:
            del self.calls[cid]

    def _orphaned(self, call: PhoneCall) -> None:
        call.orphan = None
        if not call.ended and not call.wakers:
            log.info("phone: call %s has had no browser for %.0f s; hung up", call.call_id, ORPHAN_HANGUP_S)
            self.hangup(call.call_id)

    async def stream(self, request: web.Request, call: PhoneCall) -> web.StreamResponse:
        """The call's events as server-sent events, from ``Last-Event-ID`` on; ends with the call."""
        try:
            after = int(request.headers.get("Last-Event-ID", "0"))
        except ValueError:
            after = 0
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache, no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        waker = asyncio.Event()
        call.wakers.add(waker)
        if call.orphan is not None:
            call.orphan.cancel()
            call.orphan = None
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                waker.clear()
                for seq, data in [e for e in call.events if e[0] > after]:
                    await response.write(f"id: {seq}\nevent: phone\ndata: {data}\n\n".encode())
                    after = seq
                if call.ended or self._closing:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waker.wait(), 15.0)
                if not waker.is_set():
                    await response.write(b": keepalive\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass
        finally:
            call.wakers.discard(waker)
            if not call.wakers and not call.ended and not self._closing:
                call.orphan = asyncio.get_running_loop().call_later(ORPHAN_HANGUP_S, self._orphaned, call)
        return response

    async def close(self) -> None:
        self._closing = True
        for call in self.calls.values():
            if call.orphan is not None:
                call.orphan.cancel()
            for waker in call.wakers:
                waker.set()


# ---------------------------------------------------------------------------- flows


def load_flows(runtime: Runtime) -> dict[str, Flow]:
    """The flows a test call can take: the runtime's own first, then every other
    ``*.toml`` in the flows directory that loads (each also made known to the controller)."""
    own = runtime.flow
    own_path = own.path.resolve() if own.path is not None else None
    flows = {own.path.stem if own.path is not None else "default": own}
    directory = runtime.settings.flows_dir
    ctx = FlowContext.from_settings(runtime.settings)
    for path in sorted(Path(directory).glob("*.toml")) if Path(directory).is_dir() else []:
        if path.resolve() == own_path or path.stem in flows:
            continue
        try:
            flows[path.stem] = load_flow(path, ctx)
        except (FlowError, OSError) as e:
            log.warning("phone: flow %s is not offered: %s", path, e)
            continue
        runtime.center.flows.setdefault(path.stem, flows[path.stem])
    return flows


# ---------------------------------------------------------------------------- HTTP


Handler = Callable[[web.Request, User], Awaitable[web.StreamResponse]]



async def _body(request: web.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as e:
        raise PhoneError(400, f"body: expected JSON ({e})") from None
    if not isinstance(data, dict):
        raise PhoneError(400, f"body: expected a JSON object, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise PhoneError(400, f'unknown field "{key}": expected one of '
                             + ", ".join(f'"{k}"' for k in allowed))
    return data


class PhoneRoutes:
    def __init__(self, app: web.Application, runtime: Runtime, transport: PhoneTransport):
        self.app, self.runtime, self.t = app, runtime, transport

    def add(self, app: web.Application) -> None:
        from ivr.transports.twilio import recordings_route

        r = app.router
        r.add_get("/phone", app[PAGES].page("supervisor", self.page))
        r.add_post("/phone/calls", self.guarded(self.start))
        r.add_get("/phone/calls/{call_id}", self.guarded(self.show))
        r.add_get("/phone/calls/{call_id}/events", self.guarded(self.events))
        r.add_post("/phone/calls/{call_id}/digits", self.guarded(self.digits))
        r.add_post("/phone/calls/{call_id}/timeout", self.guarded(self.timeout))
        r.add_post("/phone/calls/{call_id}/hangup", self.guarded(self.hangup))
        audio = recordings_route(self.runtime.settings.recordings_dir)
        r.add_get("/phone/recordings/{name:.+}", self.guarded(lambda req, _user: audio(req)))

    async def user(self, request: web.Request) -> User:
        """The supervisor making the request (AuthError 401, PhoneError 403)."""
        if request.method == "POST":
            try:
                same_origin(request)
            except ApiError as e:
                raise PhoneError(e.status, e.message) from None
        user = await self.app[API].auth.authenticate(request)
        if user.role != "supervisor":
            raise PhoneError(403, "the test phone needs the supervisor role")
        return user

    def guarded(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request, await self.user(request))
            except PhoneError as e:
                return web.json_response({"error": e.message}, status=e.status, dumps=dumps)
            except AuthError as e:
                headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else None
                return web.json_response({"error": e.message}, status=e.status, headers=headers,
                                         dumps=dumps)
        return wrapped

    async def page(self, request: web.Request, user: User) -> web.StreamResponse:
        flows = [{"key": key, "name": flow.name} for key, flow in self.t.flows.items()]
        return self.app[PAGES].render(
            "phone.html", user=user, page="phone", flows=flows, default_caller=DEFAULT_CALLER,
            keys=["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"])

    async def start(self, request: web.Request, user: User) -> web.StreamResponse:
        body = await _body(request, ("flow", "caller"))
        flow = body.get("flow") or next(iter(self.t.flows))
        if not isinstance(flow, str):
            raise PhoneError(400, f"flow: expected a string, got {json.dumps(flow)}")
        caller = body.get("caller") or DEFAULT_CALLER
        if not isinstance(caller, str) or not CALLER.fullmatch(caller.replace(" ", "")):
            raise PhoneError(400, f"caller: expected a phone number such as \"{DEFAULT_CALLER}\", "
                             f"got {json.dumps(caller, ensure_ascii=False)}")
        call = self.t.start(flow, caller.replace(" ", ""))
        log.info("phone: %s started test call %s on flow %s", user.name, call.call_id, flow)
        return web.json_response(self._summary(call), status=201, dumps=dumps)

    def _summary(self, call: PhoneCall) -> dict[str, Any]:
        return {"call_id": call.call_id, "flow": call.flow, "state": call.state, "turn": call.turn,
                "queue": call.queue, "agent": call.agent,
                "events": f"/phone/calls/{call.call_id}/events"}

    async def show(self, request: web.Request, user: User) -> web.StreamResponse:
        return web.json_response(self._summary(self.t.call(request.match_info["call_id"])), dumps=dumps)

    async def events(self, request: web.Request, user: User) -> web.StreamResponse:
        return await self.t.stream(request, self.t.call(request.match_info["call_id"]))

    async def digits(self, request: web.Request, user: User) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        self.t.call(call_id)
        body = await _body(request, ("digits",))
        keys = body.get("digits")
        if not isinstance(keys, str) or not KEYS.fullmatch(keys):
            raise PhoneError(400, "digits: expected 1 to 32 keys of 0-9, * and #, got "
                             + json.dumps(keys, ensure_ascii=False))
        return web.json_response(self.t.digits(call_id, keys), dumps=dumps)

    async def timeout(self, request: web.Request, user: User) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        self.t.call(call_id)
        body = await _body(request, ("turn",))
        turn = body.get("turn")
        if not isinstance(turn, int) or isinstance(turn, bool):
            raise PhoneError(400, f"turn: expected the turn number of the wait, got {json.dumps(turn)}")
        return web.json_response(self.t.timeout(call_id, turn), dumps=dumps)

    async def hangup(self, request: web.Request, user: User) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        self.t.hangup(call_id)
        return web.json_response(self._summary(self.t.call(call_id)), dumps=dumps)


def setup(app: web.Application, runtime: Runtime, *, demo: bool) -> None:
    """Add the test phone's page and routes, and its transport to ``runtime.router``.

    Needs ``ivr.web.api`` (users and sessions) and ``ivr.web.pages`` (the page frame) first."""
    if API not in app or PAGES not in app:
        raise RuntimeError("ivr.web.phone needs ivr.web.api and ivr.web.pages set up before it")
    transport = PhoneTransport(runtime, load_flows(runtime))
    app[PHONE] = transport
    PhoneRoutes(app, runtime, transport).add(app)
    runtime.router.add(TRANSPORT, transport)
    runtime.on_close(transport.close)

    async def on_shutdown(_app: web.Application) -> None:
        await transport.close()  # end the event streams before the server waits for handlers

    app.on_shutdown.append(on_shutdown)
