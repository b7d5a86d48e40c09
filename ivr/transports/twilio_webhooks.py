"""The Twilio webhooks: checked at the door, translated into controller calls, answered in TwiML.

Every request is first checked: its ``X-Twilio-Signature`` against the public URL
(403, nothing recorded), then its parameters (400 naming the parameter). A request
Twilio retries (same path, query and parameters) gets the answer it got the first time
and changes nothing. A request for a call we do not know is answered politely and
logged. The handlers are synchronous once the body is read, so the controller (which is
too) sees one webhook at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from aiohttp import web
from twilio.request_validator import RequestValidator, add_port, remove_port

from ivr.controller import CALLBACK_CONFIRM
from ivr.retention import RECORDING_SID, twilio_recording_sid
from ivr.server import timed
from ivr.transports import twiml
from ivr.vocabulary import (
    CallerHungUp,
    Digits,
    Event,
    Hangup,
    InputTimeout,
    Prompt,
    RecordingDone,
    TransferResult,
)
from queues import QueueError

if TYPE_CHECKING:
    from ivr.transports.twilio import Line, TwilioTransport

log = logging.getLogger("ivr.transports.twilio")

CALL_SID = re.compile(r"CA[0-9a-f]{32}")
DTMF = re.compile(r"[0-9*#]*")
ENDED = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
DIAL_STATUSES = frozenset({"completed", "answered", "busy", "no-answer", "failed", "canceled"})
XML = "text/xml"
FORM = "application/x-www-form-urlencoded"
HANG_UP = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup /></Response>'


# Twilio's stand-ins for a withheld number (anonymous, restricted, blocked, unknown)
WITHHELD = frozenset({"+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253"})


def callable_back(number: str | None) -> bool:
    """A number an agent could call back: E.164, not withheld."""
    return number is not None and re.fullmatch(r"\+[1-9][0-9]{6,14}", number) is not None \
        and number not in WITHHELD


class Reject(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True, slots=True)
class Hook:
    """One checked webhook request."""

    sid: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    base: str            # where Twilio reaches us: for the URLs in the answer
    fingerprint: str     # the same for a retry of this request


def signed(validator: RequestValidator, url: str, form: Mapping[str, object], signature: str) -> bool:
    """Twilio's signature check, as ``RequestValidator.validate`` does it for a form post:
    the library's ``compute_signature`` over the URL and the parameters, the URL taken with
    and without its port (Twilio signs either). The URL as requested is tried first, so the
    common case costs one HMAC instead of two."""
    given = signature.encode("utf-8", "surrogateescape")

    def matches(candidate: str) -> bool:
        return hmac.compare_digest(validator.compute_signature(candidate, form).encode(), given)

    if matches(url):
        return True
    parsed = urlparse(url)
    return any(matches(u) for u in dict.fromkeys((remove_port(parsed), add_port(parsed))) if u != url)


def _reply(doc: str, status: int = 200) -> web.Response:
    return web.Response(text=doc, content_type=XML, charset="utf-8", status=status)


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _guarded(fn: Callable[[Webhooks, web.Request], Awaitable[web.StreamResponse]]) -> Callable[
        [Webhooks, web.Request], Awaitable[web.StreamResponse]]:
    async def run(self: Webhooks, request: web.Request) -> web.StreamResponse:
        try:
            return await fn(self, request)
        except Reject as e:
            if e.status == 403:
                log.warning("twilio: %s %s from %s refused: %s", request.method, request.path,
                            request.remote, e.message)
            else:
                log.warning("twilio: %s %s: %s", request.method, request.path, e.message)
            return web.Response(status=e.status, text=e.message + "\n")
    run.__name__ = fn.__name__
    return run


class Webhooks:
    def __init__(self, transport: TwilioTransport):
        self.t = transport
        self.runtime = transport.runtime
        self.center = transport.runtime.center

    def routes(self, app: web.Application) -> None:
        r = app.router
        for path, handler in (
            ("voice", self.voice), ("gather", self.gather), ("record", self.record),
            ("wait", self.wait), ("wait-key", self.wait_key), ("queue-exit", self.queue_exit),
            ("resume", self.resume), ("dial-result", self.dial_result),
            ("agent-answer", self.agent_answer), ("transfer-result", self.transfer_result),
            ("status", self.status), ("recording-status", self.recording_status),
            *self.more_routes(),
        ):
            r.add_post(f"/twilio/{path}", timed(handler))

    def more_routes(self) -> list[tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        """Routes a subclass adds (the transfers: ``twilio_transfer_hooks``)."""
        return []

    def dial_ended_in_transfer(self, line: Line, hook: Hook) -> str | None:
        """The agent's ``<Dial>`` ended because a transfer moved the call: the answer, else None."""
        return None

    # ------------------------------------------------------------------ the door

    async def _enter(self, request: web.Request, sid_param: str = "CallSid") -> Hook:
        form = await request.post()
        if request.content_type == FORM:  # every value is text: the parsed form as it is
            params: Mapping[str, str] = form  # type: ignore[assignment]
        else:  # anything else Twilio never sends (a multipart upload): its text fields only
            params = {k: v for k, v in form.items() if isinstance(v, str)}
        raw = request.raw_path  # path and query exactly as Twilio requested them
        base = self.t.public_url or f"{request.scheme}://{request.host}"
        if self.t.validator is not None:
            signature = request.headers.get("X-Twilio-Signature")
            if not signature:
                raise Reject(403, "forbidden: no X-Twilio-Signature")
            if not signed(self.t.validator, base + raw, form, signature):
                raise Reject(403, "forbidden: X-Twilio-Signature does not match this request")
            # The signature is Twilio's HMAC of exactly the URL and the parameters: the same
            # for a retry of this request and for no other, so it is the retry's fingerprint.
            fingerprint = signature
        elif not _loopback(request.remote):
            raise Reject(403, "forbidden: unsigned webhooks are only accepted from loopback (demo)")
        else:
            digest = hashlib.sha1(raw.encode())
            for k, v in sorted(params.items()):
                digest.update(b"\0" + k.encode() + b"=" + v.encode())
            fingerprint = digest.hexdigest()
        if self.t.public_url is None:
            self.t.base = base
        query = request.query
        source = query if sid_param in query else params
        sid = source.get(sid_param)
        if not sid:
            raise Reject(400, f"bad request: parameter {sid_param} is missing")
        if not CALL_SID.fullmatch(sid):
            raise Reject(400, f"bad request: parameter {sid_param}: expected CA followed by 32 "
                              f"lowercase hex digits, got {sid[:40]!r}")
        return Hook(sid, params, query, base, fingerprint)

    @staticmethod
    def _digits(hook: Hook, *, allow: tuple[str, ...] = ()) -> str:
        digits = hook.params.get("Digits", "")
        if digits not in allow and not DTMF.fullmatch(digits):
            raise Reject(400, f"bad request: parameter Digits: expected DTMF keys (0-9, *, #), "
                              f"got {digits[:40]!r}")
        return digits

    @staticmethod
    def _step(hook: Hook) -> int:
        value = hook.query.get("step", "")
        if not value.isdigit():
            raise Reject(400, f"bad request: query parameter step: expected a number, got {value[:20]!r}")
        return int(value)

    def _line(self, hook: Hook) -> Line | None:
        line = self.t.lines.get(hook.sid)
        if line is None:
            log.warning("twilio: webhook for unknown call %s (not started here, or long over)", hook.sid)
        return line

    def _known(self, hook: Hook) -> Line | web.Response:
        """The hook's line, or the answer when there is nothing to act on: an apology for a
        call we do not know, the first answer again for Twilio's retry of a webhook."""
        line = self._line(hook)
        if line is None:
            return _reply(twiml.sorry(self.t.style))
        seen = self._replayed(line, hook)
        return line if seen is None else seen

    @staticmethod
    def _replayed(line: Line, hook: Hook) -> web.Response | None:
        """Twilio's retry of a webhook already answered: the same answer, nothing recorded."""
        seen = line.replies.get(hook.fingerprint)
        return None if seen is None else _reply(seen)

    def _done(self, line: Line, hook: Hook, doc: str) -> web.Response:
        self.t.settle(line)
        line.remember(hook.fingerprint, doc)
        return _reply(doc)

    def _hang_up(self, line: Line) -> None:
        """The caller is gone: hung up, or the call failed."""
        if not line.closed:
            with self.t.handling(line.sid):
                self.center.call_event(line.sid, CallerHungUp(self.runtime.now()))
        line.mode, line.agent, line.plays, line.flow_new = "ended", None, [], False
        line.flow_cmd = Hangup()
        line.physical = line.target()

    # ------------------------------------------------------------------ the flow

    @_guarded
    async def voice(self, request: web.Request) -> web.StreamResponse:
        """A call comes in (the number's voice URL)."""
        hook = await self._enter(request)
        line = self.t.lines.get(hook.sid)
        if line is not None:  # Twilio asking again
            return _reply(line.replies.get(hook.fingerprint) or line.last or twiml.sorry(self.t.style))
        caller = hook.params.get("From") or None
        line = self.t.open(hook.sid, caller)
        line.called = hook.params.get("To") or None
        with self.t.handling(hook.sid):
            self.center.start_call(self.runtime.now(), hook.sid, caller, hook.params.get("To") or None,
                                   "twilio")
        if not line.dirty():
            log.error("twilio: call %s: the controller gave no first step", hook.sid)
            return self._done(line, hook, twiml.sorry(self.t.style))
        return self._done(line, hook, self.t.render(line, hook.base))

    def _flow_answer(self, hook: Hook, event: Event) -> web.Response:
        """The result of the flow's blocking verb, fed to the call's session once."""
        step = self._step(hook)
        line = self._known(hook)
        if isinstance(line, web.Response):
            return line
        if step != line.step or line.closed or line.mode != "flow":
            log.info("twilio: call %s: stale answer for step %d (now %d); nothing recorded",
                     hook.sid, step, line.step)
            return _reply(self.t.current_doc(line, hook.base))
        with self.t.handling(hook.sid):
            self.center.call_event(hook.sid, event)
        return self._done(line, hook, self.t.current_doc(line, hook.base))

    @_guarded
    async def gather(self, request: web.Request) -> web.StreamResponse:
        """``<Gather action>``: keys pressed; ``timeout=1`` from the fallback ``<Redirect>``."""
        hook = await self._enter(request)
        digits = self._digits(hook)
        now = self.runtime.now()
        timed_out = bool(hook.query.get("timeout")) or not digits
        return self._flow_answer(hook, InputTimeout(now) if timed_out else Digits(now, digits))

    @_guarded
    async def record(self, request: web.Request) -> web.StreamResponse:
        """``<Record action>``: the message; ``empty=1`` when nothing was recorded."""
        hook = await self._enter(request)
        self._digits(hook, allow=("hangup",))
        now = self.runtime.now()
        if hook.query.get("empty"):
            return self._flow_answer(hook, RecordingDone(now, None, 0.0))
        try:
            duration = float(hook.params.get("RecordingDuration") or 0)
        except ValueError:
            raise Reject(400, "bad request: parameter RecordingDuration: expected seconds") from None
        return self._flow_answer(hook, RecordingDone(now, hook.params.get("RecordingUrl") or None, duration))

    @_guarded
    async def transfer_result(self, request: web.Request) -> web.StreamResponse:
        """``<Dial action>`` of a flow's transfer."""
        hook = await self._enter(request)
        status = self._dial_status(hook)
        if hook.params.get("CallStatus") in ENDED or status in ("completed", "answered"):
            line = self._line(hook)  # connected and over, or the caller left: the call ends here
            if line is None:
                return _reply(twiml.empty())
            self._hang_up(line)
            return self._done(line, hook, HANG_UP)
        outcome = {"busy": "busy", "no-answer": "no-answer"}.get(status, "failed")
        return self._flow_answer(hook, TransferResult(self.runtime.now(), outcome))

    # ------------------------------------------------------------------ the queue

    @_guarded
    async def wait(self, request: web.Request) -> web.StreamResponse:
        """``<Enqueue waitUrl>``: one round of waiting, or ``<Leave/>`` when the line moved on."""
        hook = await self._enter(request)
        line = self._line(hook)
        if line is None or line.closed:
            return _reply(twiml.leave())
        if line.dirty():
            return _reply(twiml.leave())  # the <Enqueue action> collects the change
        announce, line.announce = line.announce, []
        offer_callback = line.language if callable_back(line.caller) else None
        return _reply(twiml.wait(announce, base=hook.base, step=line.step, style=self.t.style,
                                 callback_language=offer_callback))

    @_guarded
    async def wait_key(self, request: web.Request) -> web.StreamResponse:
        """A key pressed while waiting: 1 asks to be called back."""
        hook = await self._enter(request)
        digits = self._digits(hook)
        line = self._line(hook)
        if line is None:
            return _reply(twiml.leave())
        if (seen := self._replayed(line, hook)) is not None:
            return seen
        if digits != "1" or line.mode != "waiting" or line.closed:
            return _reply(twiml.empty())  # the round ends; Twilio asks waitUrl again
        with self.t.handling(hook.sid):
            ok = self.center.request_callback(self.runtime.now(), hook.sid)
        if ok:
            text = CALLBACK_CONFIRM.get(line.language, CALLBACK_CONFIRM["sv"])
            line.plays.insert(0, Prompt(line.language, text))
        return self._done(line, hook, twiml.leave() if line.dirty() else twiml.empty())

    @_guarded
    async def queue_exit(self, request: web.Request) -> web.StreamResponse:
        """``<Enqueue action>``: the caller left Twilio's queue."""
        hook = await self._enter(request)
        result = hook.params.get("QueueResult", "")
        line = self._known(hook)
        if isinstance(line, web.Response):
            return line
        if result == "hangup":  # hung up while waiting: abandoned
            self._hang_up(line)
            return self._done(line, hook, twiml.empty())
        if result in ("leave", "redirected", "redirected-from-bridged", "bridged", "bridging-in-process"):
            return self._done(line, hook, self.t.current_doc(line, hook.base))
        log.error("twilio: call %s left Twilio's queue with QueueResult=%r; queued again",
                  hook.sid, result)
        if line.dirty():
            return self._done(line, hook, self.t.render(line, hook.base))
        return self._done(line, hook, twiml.retry_later(base=hook.base))

    @_guarded
    async def resume(self, request: web.Request) -> web.StreamResponse:
        """Where a REST redirect points the call: the line's current document."""
        hook = await self._enter(request)
        line = self._known(hook)
        if isinstance(line, web.Response):
            return line
        if line.closed and not line.dirty():
            return self._done(line, hook, HANG_UP)
        return self._done(line, hook, self.t.current_doc(line, hook.base))

    # ------------------------------------------------------------------ the agent

    @staticmethod
    def _dial_status(hook: Hook) -> str:
        status = hook.params.get("DialCallStatus")
        if status not in DIAL_STATUSES:
            raise Reject(400, "bad request: parameter DialCallStatus: expected one of "
                              f"{', '.join(sorted(DIAL_STATUSES))}, got {str(status)[:30]!r}")
        return status

    @_guarded
    async def agent_answer(self, request: web.Request) -> web.StreamResponse:
        """The ``url`` of the agent's ``<Client>``/``<Number>``: the agent picked up."""
        hook = await self._enter(request, sid_param="call")
        agent = hook.query.get("agent", "")
        line = self._line(hook)
        if line is None or line.closed or line.agent != agent or line.mode not in ("ringing", "talking"):
            log.info("twilio: agent %s answered call %s, which is no longer theirs", agent, hook.sid)
            return _reply(twiml.refuse_agent(self.t.style))
        if (seen := self._replayed(line, hook)) is not None:
            return seen
        line.agent_sid = hook.params.get("CallSid") or line.agent_sid  # the agent's leg: for transfers
        if line.mode == "ringing":
            with self.t.handling(hook.sid):
                try:
                    self.center.agent(self.runtime.now(), agent, "accept")
                except QueueError as e:
                    log.warning("twilio: agent %s answered call %s: %s", agent, hook.sid, e)
            if line.mode != "talking":
                return self._done(line, hook, twiml.refuse_agent(self.t.style))
        queue = self.t.settings.queues.get(line.queue or "")
        whisper = queue.display.get("sv") if queue is not None else None
        return self._done(line, hook, twiml.agent_whisper(whisper, self.t.style))

    @_guarded
    async def dial_result(self, request: web.Request) -> web.StreamResponse:
        """``<Dial action>`` of the agent's leg: talk over, or not answered."""
        hook = await self._enter(request)
        step, status = self._step(hook), self._dial_status(hook)
        agent = hook.query.get("agent", "")
        line = self._known(hook)
        if isinstance(line, web.Response):
            return line
        if hook.params.get("CallStatus") in ENDED:  # the caller hung up
            self._hang_up(line)
            return self._done(line, hook, twiml.empty())
        if (doc := self.dial_ended_in_transfer(line, hook)) is not None:
            return self._done(line, hook, doc)
        if line.closed or line.agent != agent or line.mode not in ("ringing", "talking") or step != line.step:
            log.info("twilio: call %s: stale dial result %s for agent %s; nothing recorded",
                     hook.sid, status, agent)
            return self._done(line, hook, self.t.current_doc(line, hook.base))
        now = self.runtime.now()
        with self.t.handling(hook.sid):
            if line.mode == "talking":  # the agent hung up: on to the survey
                self.center.agent_left(now, agent)
            elif status in ("busy", "no-answer"):
                try:
                    self.center.agent(now, agent, "decline")
                except QueueError as e:
                    log.info("twilio: call %s: decline by %s: %s", hook.sid, agent, e)
            else:  # failed or canceled: the engine's ring timeout decides (and pauses a missed agent)
                log.warning("twilio: call %s: dialling agent %s ended %s", hook.sid, agent, status)
            if line.agent == agent and line.mode == "ringing":
                line.mode, line.agent = "waiting", None  # back to waiting while the engine decides
        return self._done(line, hook, self.t.current_doc(line, hook.base))

    # ------------------------------------------------------------------ callbacks

    @_guarded
    async def status(self, request: web.Request) -> web.StreamResponse:
        """The call's status callback: an ended call closes the record."""
        hook = await self._enter(request)
        call_status = hook.params.get("CallStatus", "")
        line = self.t.lines.get(hook.sid)
        if line is None:
            log.info("twilio: status %s for unknown call %s", call_status, hook.sid)
            return _reply(twiml.empty())
        if call_status in ENDED:
            self._hang_up(line)
            self.t.settle(line)
        return _reply(twiml.empty())

    @_guarded
    async def recording_status(self, request: web.Request) -> web.StreamResponse:
        """``recordingStatusCallback``: a completed recording is fetched here and deleted at Twilio
        (in a task: Twilio is answered at once)."""
        hook = await self._enter(request)
        status = hook.params.get("RecordingStatus", "")
        recording_sid = hook.params.get("RecordingSid", "")
        log.info("twilio: call %s: recording %s %s (%s s)", hook.sid, recording_sid[:40], status[:20],
                 hook.params.get("RecordingDuration"))
        if status != "completed":
            return _reply(twiml.empty())  # in-progress, absent (nothing recorded), failed
        if not RECORDING_SID.fullmatch(recording_sid):
            raise Reject(400, f"bad request: parameter RecordingSid: expected RE followed by 32 lowercase "
                              f"hex digits, got {recording_sid[:40]!r}")
        url = hook.params.get("RecordingUrl", "")
        if twilio_recording_sid(url) != recording_sid:
            raise Reject(400, "bad request: parameter RecordingUrl: expected https://api.twilio.com/"
                              f"2010-04-01/Accounts/AC.../Recordings/{recording_sid}, got {url[:120]!r}")
        if self.t.recordings is None:
            log.warning("twilio: recording %s of call %s: no REST credentials or no event log folder: "
                        "recording left at Twilio", recording_sid, hook.sid)
        else:
            self.t.spawn(self.t.recordings.keep(recording_sid, url, call_sid=hook.sid))
        return _reply(twiml.empty())
