"""The Twilio voice transport: webhooks in, TwiML out, the REST API for what cannot wait.

``setup(app, runtime, demo=...)`` adds the webhooks under ``/twilio/`` (see
``docs/twilio.md``) and registers :class:`TwilioTransport` with ``runtime.router``.

Each live call has a :class:`Line`: what the controller wants the caller to hear next
(its *target*: a flow step, waiting in a queue, ringing an agent, talking) and what
Twilio is executing now (its *physical* document). The controller is synchronous and
often answers *during* a webhook: then its commands are buffered on the line and
rendered as that webhook's TwiML. When it speaks outside any webhook of the call (an
offer, a cancelled offer, an overflow moving the caller on), the line is *dirty* and a
task redirects the call (``calls(sid).update(url=/twilio/resume)``), whose handler
renders the line; if the REST API fails, the caller stays queued in our engine and the
next waitUrl round of ``<Enqueue>`` answers ``<Leave/>`` to collect the change.
Position announcements wait for the next waitUrl round.

Agent transfers (:mod:`ivr.transports.twilio_transfer`): a blind transfer to a person or
a number puts the line in mode ``xfer``, whose document is ``<Dial>`` of the target (the
REST redirect that delivers it ends the caller's ``<Dial>`` to the agent);
``ReturnToAgent`` dials the agent again; a queue transfer is an ``Enqueue``. An attended
transfer moves the call into a conference of its own (mode ``conf``:
:class:`ivr.transports.twilio_transfer.ConferenceTransfers`): the agent's leg is
redirected into it, the caller follows from its ``<Dial action>``, and the
Participants API holds the caller, rings the colleague, and hands over. The transfer
webhooks are in :mod:`ivr.transports.twilio_transfer_hooks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from twilio.request_validator import RequestValidator

from ivr import transfers as tr
from ivr.retention import Deleted, RemoteRecording, record_remote_deleted, remote_recordings_due
from ivr.server import Runtime, is_loopback
from ivr.transports import twiml
from ivr.transports.twilio_rest import Media, Recordings, Rest, Sleep
from ivr.transports.twilio_transfer import ConferenceTransfers, dial_target, join_conference
from ivr.vocabulary import Command, Enqueue, Gather, Hangup, Play, Prompt, Record, Transfer
from queues import CancelOffer, Offer

log = logging.getLogger(__name__)

TWILIO: web.AppKey[TwilioTransport] = web.AppKey("twilio_transport")
RING_MARGIN_S = 5      # Twilio rings a little longer than the engine: the engine decides
REPLIES_KEPT = 8       # per call: answers replayed when Twilio retries a webhook
ENDED_LINES_KEPT = 1000  # ended calls remembered, for Twilio's late retries


class TwilioSetupError(ValueError):
    """The Twilio part cannot start with this configuration."""


@dataclass(eq=False)
class Line:
    """One Twilio call as the transport sees it."""

    sid: str
    caller: str | None = None
    language: str = "sv"
    mode: str = "flow"                  # flow | waiting | ringing | talking | xfer | conf | ended
    plays: list[Prompt] = field(default_factory=list)   # before the next blocking verb
    flow_cmd: Command | None = None     # Gather | Record | Transfer | Hangup, in mode flow/ended
    flow_new: bool = False              # flow_cmd not rendered yet
    queue: str | None = None
    ring_s: float = 20.0
    agent: str | None = None            # offered (ringing) or talking
    xfer: tuple[str, int, float] | None = None  # mode xfer: the target's endpoint, transfer n, ring s
    agent_sid: str | None = None        # the agent's leg (its CallSid), once answered
    called: str | None = None           # our number the caller dialled
    conf: Any = None                    # mode conf: the attended transfer's conference (twilio_transfer.Conf)
    announce: list[Prompt] = field(default_factory=list)  # for the next waitUrl round
    step: int = 0                       # documents rendered; action URLs carry it
    physical: tuple[str, Any] = ("none", None)
    last: str = ""                      # the last document rendered
    replies: OrderedDict[str, str] = field(default_factory=OrderedDict)
    closed: bool = False                # the controller's session is over
    task: asyncio.Task[None] | None = None
    renudge: bool = False
    nudges: int = 0

    def target(self) -> tuple[str, Any]:
        if self.mode in ("ringing", "talking"):
            return ("dial", self.agent)
        if self.mode == "waiting":
            return ("queue", self.queue)
        if self.mode == "xfer" and self.xfer is not None:
            return ("xfer", self.xfer[1])
        if self.mode == "conf" and self.conf is not None:
            return ("conf", self.conf.transfer)
        return (self.mode, None)

    def dirty(self) -> bool:
        """Twilio should be given a new document."""
        if self.flow_new or self.plays:
            return True
        return self.mode in ("waiting", "ringing", "talking", "xfer") and self.target() != self.physical

    def remember(self, fingerprint: str, reply: str) -> None:
        self.replies[fingerprint] = reply
        while len(self.replies) > REPLIES_KEPT:
            self.replies.popitem(last=False)


class TwilioTransport:
    """What the controller calls (``send``, ``offer``, ``cancel_offer``, ``connect``)
    and the call state the webhooks read and render."""

    def __init__(self, runtime: Runtime, *, rest: Rest | None, validator: RequestValidator | None,
                 demo: bool):
        self.runtime = runtime
        self.settings = runtime.settings
        t = runtime.settings.twilio
        self.style = twiml.Style(t.voice_sv, t.voice_en, t.hold_music, t.caller_id)
        self.public_url = t.public_url.rstrip("/") if t.public_url else None
        self.base = self.public_url or f"http://{runtime.settings.server.host}:{runtime.settings.server.port}"
        self.rest = rest
        self.validator = validator
        self.demo = demo
        self.lines: dict[str, Line] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._ended: deque[str] = deque()
        self._current: str | None = None  # the call whose webhook is being handled
        self.conferences = ConferenceTransfers(self, retries=rest.retries if rest else 0,
                                               sleep=rest.sleep if rest else asyncio.sleep)
        # voice messages: fetched from Twilio into the messages folder, beside the event log
        db_path = getattr(runtime.sink, "db_path", None)
        self.recordings = (Recordings(rest, Path(db_path).parent / "messages")
                           if rest is not None and db_path is not None else None)

    # ------------------------------------------------------------------ the controller's side

    def send(self, call_id: str, commands: list[Command]) -> None:
        line = self.lines.get(call_id)
        if line is None:
            log.warning("twilio: commands for unknown call %s dropped", call_id)
            return
        if commands and all(isinstance(c, Play) for c in commands) and line.mode in ("waiting", "ringing",
                                                                                       "talking"):
            # a position announcement: played on the next waitUrl round
            line.announce = [c.prompt for c in commands if isinstance(c, Play)]
            if line.mode == "talking":  # only after a transfer back into a queue
                line.mode, line.agent = "waiting", None
                self._changed(line)
            return
        for cmd in commands:
            match cmd:
                case Play():
                    line.plays.append(cmd.prompt)
                case Enqueue():
                    line.queue, line.language = cmd.queue, cmd.language
                    line.mode, line.agent = "waiting", None
                case Gather() | Record() | Transfer():
                    line.flow_cmd, line.flow_new, line.mode, line.agent = cmd, True, "flow", None
                case Hangup():
                    line.flow_cmd, line.flow_new, line.mode, line.agent = cmd, True, "ended", None
                case _:
                    log.warning("twilio: call %s: no TwiML for %r; skipped", call_id, cmd)
        self._changed(line)

    def offer(self, offer: Offer) -> None:
        if offer.kind != "call":
            return  # a callback: the agent dials the citizen from the desk
        line = self.lines.get(offer.call_id)
        if line is None or line.closed:
            return
        if self.endpoint(offer.agent) is None:
            log.warning('twilio: agent "%s" has no endpoints.twilio; the offer for %s rings on the '
                        "desk only", offer.agent, offer.call_id)
            return
        queue = self.settings.queues.get(offer.queue)
        line.ring_s = queue.ring_timeout_s if queue is not None else 20.0
        line.queue = offer.queue  # where the caller waits if this agent does not answer
        line.mode, line.agent = "ringing", offer.agent
        self._changed(line)

    def cancel_offer(self, cancel: CancelOffer) -> None:
        line = self.lines.get(cancel.call_id)
        if line is None or line.closed or line.mode != "ringing" or line.agent != cancel.agent:
            return
        line.mode, line.agent = "waiting", None
        self._changed(line)

    def connect(self, agent: str, call_id: str) -> None:
        line = self.lines.get(call_id)
        if line is None or line.closed:
            return
        if line.mode == "ringing" and line.agent == agent:
            line.mode = "talking"  # Twilio bridges the two when the agent's leg is answered
        elif line.mode == "waiting" and self.endpoint(agent) is not None:
            line.mode, line.agent = "talking", agent  # accepted on the desk before the phone rang
            self._changed(line)

    def can_transfer(self, call_id: str) -> bool:
        line = self.lines.get(call_id)
        return line is not None and not line.closed

    def transfer(self, action: tr.Action) -> None:
        """The transfer machine's actions on the caller's line (see the module's doc)."""
        line = self.lines.get(action.call_id)
        if line is None or line.closed:
            return
        match action:
            case tr.RingTarget(kind="blind"):
                if self.rest is None and line.sid != self._current:
                    raise RuntimeError("no REST credentials: the call cannot be moved to the target")
                line.xfer = (action.target.endpoint or "", action.transfer, action.timeout_s)
                line.mode, line.agent = "xfer", None
                self._changed(line)
            case tr.RingTarget():
                if self.rest is None:
                    raise RuntimeError("no REST credentials: the agent's leg cannot be moved to a conference")
                self.conferences.start(line, action)
            case _ if self.conferences.act(line, action):
                pass
            case tr.ReturnToAgent() if line.mode == "xfer":  # blind, not answered: the agent again
                line.mode, line.agent, line.xfer = "talking", action.agent, None
                self._changed(line)
            case _:
                # JoinTarget: the caller's own <Dial> connected them. DropTarget: the next
                # action (back to the agent, the message) or the caller's hang-up moves the
                # line. ToMessage: the flow's next step comes through send().
                pass

    # ------------------------------------------------------------------ for the conference transfers

    def rest_client(self) -> Any:
        assert self.rest is not None
        return self.rest.client()

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def report(self, call_sid: str, method: str, *args: Any) -> None:
        """What Twilio said about a transfer's leg, to the machine (outside any webhook: what
        changes for the caller goes out by REST)."""
        self.runtime.center.transfer_event(self.runtime.now(), call_sid, method, *args)
        self.runtime.poke()

    def from_number(self, line: Line) -> str:
        """Whom the colleague's phone shows: the configured caller id, else our number."""
        return self.style.caller_id or line.called or "ivr"

    # ------------------------------------------------------------------ lines

    def endpoint(self, agent: str) -> str | None:
        a = self.settings.agents.get(agent)
        return None if a is None else a.endpoints.get("twilio")

    def open(self, sid: str, caller: str | None) -> Line:
        line = self.lines[sid] = Line(sid, caller)
        self.runtime.router.claim(sid, "twilio")
        return line

    def settle(self, line: Line) -> None:
        """After a webhook: a call whose session ended is released."""
        if not line.closed and line.sid not in self.runtime.center.sessions:
            line.closed = True
            self.runtime.router.release(line.sid)
            while len(line.replies) > 2:
                line.replies.popitem(last=False)
            self._ended.append(line.sid)  # kept a while, to answer Twilio's retries
            while len(self._ended) > ENDED_LINES_KEPT:
                self.lines.pop(self._ended.popleft(), None)

    @contextlib.contextmanager
    def handling(self, sid: str) -> Iterator[None]:
        """While a webhook of ``sid`` runs, what the controller says is rendered in its answer."""
        outer, self._current = self._current, sid
        try:
            yield
        finally:
            self._current = outer
            self.runtime.poke()

    def render(self, line: Line, base: str) -> str:
        """The document for the line's target, consuming the buffered prompts."""
        if line.mode in ("flow", "ended") and not line.flow_new and not line.plays and line.last:
            return line.last  # nothing new: the flow step stands
        line.step += 1
        plays, line.plays = line.plays, []
        if line.mode in ("ringing", "talking") and line.agent is not None:
            endpoint = self.endpoint(line.agent) or ""
            doc = twiml.dial_agent(plays, agent=line.agent, endpoint=endpoint, call_sid=line.sid,
                                   ring_s=line.ring_s + RING_MARGIN_S, base=base, step=line.step,
                                   style=self.style)
        elif line.mode == "waiting" and line.queue is not None:
            doc = twiml.enqueue(plays, line.queue, base=base, step=line.step, style=self.style)
        elif line.mode == "xfer" and line.xfer is not None:
            endpoint, n, ring_s = line.xfer
            doc = dial_target(endpoint, call_sid=line.sid, transfer=n, ring_s=ring_s, base=base,
                              style=self.style)
        elif line.mode == "conf" and line.conf is not None:
            doc = join_conference(line.sid, "caller", base=base, style=self.style)
        else:  # the flow's step again (after new prompts, it is asked anew)
            cmd = line.flow_cmd or (Hangup() if line.mode == "ended" else None)
            doc = twiml.flow(plays, cmd, base=base, step=line.step, style=self.style)
        line.flow_new = False
        line.physical = line.target()
        line.last = doc
        return doc

    def current_doc(self, line: Line, base: str) -> str:
        """What the call should be executing: a new document when the line changed, else the last."""
        if line.dirty() or not line.last:
            return self.render(line, base)
        return line.last

    # ------------------------------------------------------------------ REST

    def _changed(self, line: Line) -> None:
        if line.sid == self._current or not line.dirty():
            return  # rendered in the answer of the webhook being handled
        if self.rest is None:
            log.info("twilio: call %s changed; no REST credentials, so it hears of it on its next "
                     "webhook", line.sid)
            return
        if line.task is not None and not line.task.done():
            line.renudge = True
            return
        line.task = asyncio.get_running_loop().create_task(self._deliver(line))
        self.tasks.add(line.task)
        line.task.add_done_callback(self.tasks.discard)

    async def _deliver(self, line: Line) -> None:
        assert self.rest is not None
        while True:
            line.renudge = False
            line.nudges += 1
            url = twiml.url(self.base, "resume", n=line.nudges)
            await self.rest.redirect(line.sid, url, still_needed=lambda: line.dirty() and not line.closed)
            if not (line.renudge and line.dirty() and not line.closed):
                return

    async def delete_recordings(self, due: list[RemoteRecording]) -> tuple[list[RemoteRecording], int]:
        """Recordings past their retention still at Twilio, deleted there (the daily purge):
        (those to try again at the next purge: all of them without REST credentials, how
        many were deleted)."""
        if self.recordings is None:
            return list(due), 0
        return await self.recordings.delete(due)

    async def purge_recordings(self, db_path: Path, *, now: datetime, recording_days: int) -> Deleted:
        """The daily purge's part at Twilio: recordings past ``recording_days`` that never
        came down are deleted there; the SQLite reads and the note run in a worker thread."""
        due, cutoff = await asyncio.to_thread(remote_recordings_due, db_path, now=now,
                                              recording_days=recording_days)
        again, deleted = await self.delete_recordings(due)
        for r in again:
            log.error("twilio: recording %s (recorded %s) is past its retention and could not be "
                      "deleted at Twilio: recording left at Twilio; tried again at the next purge",
                      r.sid, r.at)
        return await asyncio.to_thread(record_remote_deleted, db_path, now=now, cutoff=cutoff,
                                       deleted=deleted, failed=again)

    async def drain(self) -> None:
        """Wait for every REST redirect under way (tests, shutdown)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)
        if self.rest is not None:
            await self.rest.close()


# ---------------------------------------------------------------------------- prompt audio

AUDIO_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".aiff": "audio/aiff", ".aif": "audio/aiff",
               ".gsm": "audio/x-gsm", ".ulaw": "audio/basic"}


def recordings_route(directory: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``GET /recordings/{name}``: prompt audio for ``<Play>``, audio files under ``directory``
    only (no listing, nothing outside it, symbolic links out of it refused)."""
    root = directory.resolve()

    async def recording(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = AUDIO_TYPES.get(Path(name).suffix.lower())
        if kind is None or "\\" in name or "\0" in name:
            raise web.HTTPNotFound()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": kind})

    return recording


# ---------------------------------------------------------------------------- setup


def setup(app: web.Application, runtime: Runtime, *, demo: bool) -> None:
    """Add the Twilio webhooks to ``app`` and the transport to ``runtime.router``."""
    install(app, runtime, demo=demo)


def install(app: web.Application, runtime: Runtime, *, demo: bool, http_client: Any = None,
            sleep: Sleep = asyncio.sleep, media: Media | None = None) -> TwilioTransport:
    """``setup`` with the REST side injectable: ``http_client`` (a ``twilio.http.HttpClient``),
    the ``sleep`` between retries and ``media``, what fetches recordings' audio."""
    from ivr.transports.twilio_transfer_hooks import TransferWebhooks

    settings = runtime.settings
    t = settings.twilio
    if demo and not is_loopback(settings.server.host):
        raise TwilioSetupError(f"twilio: --demo (unsigned webhooks) is only allowed on loopback "
                               f"(127.0.0.1, ::1), not on server.host = {settings.server.host}")
    validate = bool(t.auth_token) and (t.validate or not demo)
    if not t.auth_token and not demo:
        raise TwilioSetupError("twilio: TWILIO_AUTH_TOKEN is not set, so webhook signatures cannot be "
                               "checked; set it (and TWILIO_ACCOUNT_SID), set [twilio] enabled = false, "
                               "or run with --demo on loopback")
    if not t.validate and not demo:
        raise TwilioSetupError("twilio: validate = false is only accepted with --demo on loopback")
    if t.auth_token and not t.account_sid and not demo:
        raise TwilioSetupError("twilio: TWILIO_ACCOUNT_SID is not set; the REST API (offers to "
                               "agents while the caller waits) needs it with TWILIO_AUTH_TOKEN")
    rest = None
    if t.account_sid and t.auth_token:
        rest = Rest(t.account_sid, t.auth_token, retries=t.rest_retries, http_client=http_client,
                    sleep=sleep, media=media)
    validator = RequestValidator(t.auth_token) if validate and t.auth_token else None
    if validator is None:
        log.warning("twilio: demo mode: webhook signatures are NOT checked (loopback only)")
    transport = TwilioTransport(runtime, rest=rest, validator=validator, demo=demo)
    app[TWILIO] = transport
    TransferWebhooks(transport).routes(app)
    app.router.add_get("/recordings/{name:.+}", recordings_route(settings.recordings_dir))
    runtime.router.add("twilio", transport)
    runtime.on_close(transport.close)
    return transport
