"""Agent transfers on Twilio: TwiML for the legs, the REST calls (Calls, Conference Participants).

* **Blind** (a person or a number): the caller's call is redirected (REST
  ``calls(sid).update(url=...)``) to :func:`dial_target`: ``<Dial timeout action>`` of the
  target, whose ``url`` runs on the target's leg when it answers (-> ``answered``); the
  redirect ends the caller's ``<Dial>`` to the agent, so the agent's leg is released. The
  ``action`` reports the end: ``completed`` after an answer -> ``leg_ended``;
  ``busy``/``no-answer``/``failed`` -> ``leg_failed``, and the machine's fallback: the agent
  is dialled again (``ReturnToAgent``), or the flow's message (``ToMessage``).
* **Attended**: the call moves into a conference of its own, ``xfer-<caller CallSid>``, only
  when the transfer starts (ordinary calls keep the plain ``<Dial>``): the agent's leg is
  redirected to :func:`join_conference` (role ``agent``, starts the conference, does not
  end it on leaving); the caller's ``<Dial>`` to the agent then ends and its action is
  answered with the caller's :func:`join_conference` (role ``caller``: ends it on leaving,
  hold music while alone). Once the conference reports its SID (``statusCallback``), the
  caller is put on hold (Participants API ``hold=true, holdUrl``) and the colleague is
  added as a participant (``participants.create(label="colleague", timeout,
  statusCallback)``; its ``answered``/``completed`` events drive the machine).
  ``JoinTarget``: the colleague's ``endConferenceOnExit`` set, the agent removed
  (``participants("agent").delete()``), the caller taken off hold. ``ReturnToAgent``: the
  colleague removed, the caller off hold, the agent's ``endConferenceOnExit`` set (so the
  agent hanging up ends the conference and the caller's flow goes on: the survey).
  Participants are addressed by label (``participantLabel`` in TwiML), so no participant's
  CallSid needs remembering.
* A REST refusal (4xx) is final and comes back as a detail string for ``refused``: the call
  stays with the agent. Network errors, 429 and 5xx are retried as for redirects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import VoiceResponse

from ivr import transfers as tr
from ivr.transports.twilio_rest import retryable
from ivr.transports.twiml import Style, recording_url, url

log = logging.getLogger(__name__)

RING_MARGIN_S = 5  # Twilio rings a little longer than the machine: the machine decides
ROLES = ("caller", "agent", "colleague")


def conference_name(call_sid: str) -> str:
    return f"xfer-{call_sid}"


def dial_target(endpoint: str, *, call_sid: str, transfer: int, ring_s: float, base: str,
                style: Style) -> str:
    """Blind: the caller dials the target; ``xfer-answer`` runs on the target's leg when it
    answers, ``xfer-result`` when the dial ends."""
    r = VoiceResponse()
    attrs = {"caller_id": style.caller_id} if style.caller_id else {}
    dial = r.dial(action=url(base, "xfer-result", call=call_sid, n=transfer), method="POST",
                  timeout=max(5, round(ring_s + RING_MARGIN_S)), **attrs)
    answer = url(base, "xfer-answer", call=call_sid, n=transfer)
    if endpoint.startswith("client:"):
        dial.client(endpoint[len("client:"):], url=answer, method="POST")
    elif endpoint.startswith("sip:"):
        dial.sip(endpoint, url=answer, method="POST")
    else:
        dial.number(endpoint, url=answer, method="POST")
    return str(r)


def join_conference(call_sid: str, role: str, *, base: str, style: Style) -> str:
    """Attended: the caller's or the agent's leg into the call's conference."""
    if role not in ("caller", "agent"):
        raise ValueError(f"role: expected caller or agent, got {role!r}")
    r = VoiceResponse()
    caller = role == "caller"
    dial = r.dial(action=url(base, "xfer-conference-exit", call=call_sid, role=role), method="POST")
    hold = recording_url(base, style.hold_music) if style.hold_music else None
    dial.conference(conference_name(call_sid), participant_label=role, beep=False,
                    start_conference_on_enter=True, end_conference_on_exit=caller,
                    wait_url=hold if caller else None, wait_method="GET" if hold and caller else None,
                    status_callback=url(base, "xfer-conference-status", call=call_sid),
                    status_callback_event="start end join leave", status_callback_method="POST")
    return str(r)


Sleep = Callable[[float], Awaitable[Any]]


class TransferRest:
    """The REST calls transfers need, each returning None when done or the refusal's text."""

    def __init__(self, client: Any, *, retries: int = 4, sleep: Sleep = asyncio.sleep,
                 first_delay_s: float = 0.5, max_delay_s: float = 8.0):
        self.client = client  # a twilio.rest.Client (its http_client injectable)
        self.retries, self.sleep = retries, sleep
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s

    async def redirect(self, call_sid: str, to: str) -> str | None:
        return await self._call(f"redirect {call_sid}", lambda: self.client.calls(call_sid), "update",
                                url=to, method="POST")

    async def add_colleague(self, conference_sid: str, *, to: str, from_: str, ring_s: float,
                            status_callback: str) -> str | None:
        return await self._call(f"add {to} to {conference_sid}",
                                lambda: self.client.conferences(conference_sid).participants, "create",
                                from_=from_, to=to, label="colleague", timeout=max(5, round(ring_s)),
                                status_callback=status_callback, status_callback_method="POST",
                                status_callback_event=["ringing", "answered", "completed"],
                                end_conference_on_exit=False, beep=False, early_media=False)

    async def update(self, conference_sid: str, role: str, **fields: Any) -> str | None:
        """``hold=True, hold_url=...``, ``hold=False`` or ``end_conference_on_exit=True``."""
        return await self._call(f"update {role} in {conference_sid}",
                                lambda: self.client.conferences(conference_sid).participants(role), "update",
                                **fields)

    async def remove(self, conference_sid: str, role: str) -> str | None:
        """The participant leaves (a colleague still ringing: the call is cancelled)."""
        return await self._call(f"remove {role} from {conference_sid}",
                                lambda: self.client.conferences(conference_sid).participants(role), "delete")

    async def _call(self, what: str, resource: Callable[[], Any], verb: str, **fields: Any) -> str | None:
        for attempt in range(self.retries + 1):
            if attempt:
                await self.sleep(min(self.max_delay_s, self.first_delay_s * 2 ** (attempt - 1)))
            try:
                target = resource()
                http = getattr(self.client, "http_client", None)
                if http is not None and getattr(http, "is_async", False):
                    await getattr(target, verb + "_async")(**fields)
                else:
                    await asyncio.to_thread(getattr(target, verb), **fields)
                return None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                detail = (f"HTTP {exc.status} (code {exc.code}): {exc.msg}"
                          if isinstance(exc, TwilioRestException) else f"{type(exc).__name__}: {exc}")
                if retryable(exc) and attempt < self.retries:
                    log.warning("twilio REST: %s failed (attempt %d): %s; retrying", what, attempt + 1,
                                detail)
                    continue
                log.error("twilio REST: %s refused: %s", what, detail)
                return f"{what}: {detail}"
        return f"{what}: gave up"


# --------------------------------------------------------------------------- attended, on the line


@dataclass
class Conf:
    """An attended transfer's conference, as the caller's line knows it."""

    transfer: int
    endpoint: str                 # the colleague: +46..., client:name, sip:...
    ring_s: float
    sid: str | None = None        # ConferenceSid, from the caller's participant-join
    caller_in: bool = False       # the caller has joined
    colleague: str = "none"       # none | ringing | answered | gone
    dropped: bool = False         # DropTarget before the colleague was added
    later: list[tuple[Any, ...]] = field(default_factory=list)  # steps waiting for the conference SID
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ConferenceTransfers:
    """Attended transfers on the Twilio line: the machine's actions as REST calls on the
    call's conference, and what the conference reports back (see the module's doc).

    ``owner`` is the transport: ``rest_client()`` (a ``twilio.rest.Client``), ``base``,
    ``style``, ``spawn(coro)``, ``report(call_sid, method, *args)`` (the machine, through
    the controller) and ``from_number(line)`` (whom the colleague's phone shows)."""

    def __init__(self, owner: Any, *, retries: int = 4, sleep: Sleep = asyncio.sleep):
        self.owner = owner
        self.retries, self.sleep = retries, sleep
        self._rest: TransferRest | None = None

    @property
    def rest(self) -> TransferRest:
        if self._rest is None:
            self._rest = TransferRest(self.owner.rest_client(), retries=self.retries, sleep=self.sleep)
        return self._rest

    # ------------------------------------------------------------------ machine -> Twilio

    def start(self, line: Any, action: tr.RingTarget) -> None:
        """The agent's leg moves into the conference; the caller follows from its ``<Dial action>``."""
        if line.agent_sid is None or line.mode != "talking":
            raise RuntimeError("the agent's leg is not known (not answered through /twilio/agent-answer)")
        line.conf = Conf(action.transfer, action.target.endpoint or "", action.timeout_s)
        line.mode = "conf"  # reached through the caller's <Dial action>, never by a redirect of the caller
        to = url(self.owner.base, "xfer-join", call=line.sid, role="agent")
        self.owner.spawn(self._first(line, line.conf, to))

    async def _first(self, line: Any, conf: Conf, to: str) -> None:
        refused = await self.rest.redirect(line.agent_sid, to)
        if refused is not None and line.conf is conf:
            line.conf, line.mode = None, "talking"  # nothing moved: the call stays with the agent
            self.owner.report(line.sid, "refused", refused)

    def act(self, line: Any, action: tr.Action) -> bool:
        """An action for a line in a conference transfer; False when it is not one."""
        conf = line.conf
        if conf is None:
            return False
        match action:
            case tr.Consult():
                pass  # the agent and the colleague already hear each other; the caller is on hold
            case tr.JoinTarget():
                # The caller off hold first: whatever else fails, the caller must not be left
                # on hold music. Removing the agent is not a refusal when the agent has already
                # left (an agent hanging up mid-consultation completes the transfer: Twilio
                # answers 404 for a participant that is gone).
                self._steps(line, conf, ("update", "caller", {"hold": False}),
                            ("update", "colleague", {"end_conference_on_exit": True}))
                self._steps(line, conf, ("remove", "agent"), report=False)
            case tr.DropTarget():
                if conf.colleague in ("ringing", "answered"):
                    conf.colleague = "gone"
                    self._steps(line, conf, ("remove", "colleague"), report=False)
                else:
                    conf.dropped = True
            case tr.ReturnToAgent():
                steps: list[tuple[Any, ...]] = [("update", "agent", {"end_conference_on_exit": True})]
                if conf.caller_in:
                    steps.insert(0, ("update", "caller", {"hold": False}))
                self._steps(line, conf, *steps, report=False)
                conf.dropped = True
            case _:
                return False
        return True

    def _steps(self, line: Any, conf: Conf, *steps: tuple[Any, ...], report: bool = True) -> None:
        if conf.sid is None:  # the caller has not joined yet: done once it has
            conf.later += [(*step, report) for step in steps]
            return
        self.owner.spawn(self._run(line, conf, [(*step, report) for step in steps]))

    async def _run(self, line: Any, conf: Conf, steps: list[tuple[Any, ...]]) -> None:
        async with conf.lock:
            assert conf.sid is not None
            for verb, role, *rest in steps:
                fields, report = (rest[0], rest[1]) if len(rest) == 2 else ({}, rest[0])
                if verb == "update":
                    refused = await self.rest.update(conf.sid, role, **fields)
                elif verb == "remove":
                    refused = await self.rest.remove(conf.sid, role)
                else:
                    refused = await self.rest.add_colleague(
                        conf.sid, to=conf.endpoint, from_=self.owner.from_number(line), ring_s=conf.ring_s,
                        status_callback=url(self.owner.base, "xfer-participant", call=line.sid,
                                            n=conf.transfer))
                if refused is not None and report:
                    self.owner.report(line.sid, "refused", refused)
                    return

    # ------------------------------------------------------------------ Twilio -> machine

    def caller_joined(self, line: Any, conference_sid: str) -> None:
        """The caller's participant-join: hold it and ring the colleague (unless it is all over)."""
        conf = line.conf
        if conf is None or conf.caller_in:
            return
        conf.sid, conf.caller_in = conference_sid, True
        steps: list[tuple[Any, ...]] = []
        if not conf.dropped:
            hold = recording_url(self.owner.base, self.owner.style.hold_music) \
                if self.owner.style.hold_music else None
            steps += [("update", "caller", {"hold": True, **({"hold_url": hold} if hold else {})}, True),
                      ("add", "colleague", {}, True)]
            conf.colleague = "ringing"
        steps += conf.later
        conf.later = []
        self.owner.spawn(self._run(line, conf, steps))
