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
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import VoiceResponse

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
