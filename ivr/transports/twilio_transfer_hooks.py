"""The Twilio webhooks of agent transfers (``ivr.transports.twilio_transfer``).

Blind: ``xfer-answer`` (the target's leg answered) and ``xfer-result`` (the ``<Dial
action>`` of the caller's dial to the target). Attended, in the call's conference:
``xfer-join`` (the agent's leg, redirected, joins), ``xfer-conference-status`` (the
conference's ``statusCallback``: the caller's ``participant-join`` carries the
``ConferenceSid``; the caller is then held and the colleague added),
``xfer-participant`` (the colleague's call progress: ``in-progress`` answered;
``busy``/``no-answer``/``failed``/``canceled``; ``completed`` after an answer) and
``xfer-conference-exit`` (the ``<Dial action>`` of a conference leg: the agent's leg
hangs up; the caller's goes on in the flow).

The caller reaches the conference through the ``<Dial action>`` of its dial to the
agent, which ends when the agent's leg is redirected (``dial_ended_in_transfer``).
Participants are told apart by ``CallSid`` (the caller's is the call's own, the agent's
is known from ``agent-answer``), never by a label in the callback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ivr.transports import twiml
from ivr.transports.twilio_transfer import join_conference
from ivr.transports.twilio_webhooks import ENDED, HANG_UP, Hook, Reject, Webhooks, _guarded, _reply

if TYPE_CHECKING:
    from ivr.transports.twilio import Line

log = logging.getLogger("ivr.transports.twilio")

FAILED = {"busy": "busy", "no-answer": "no-answer", "canceled": "no-answer"}


class TransferWebhooks(Webhooks):
    def more_routes(self) -> list[tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        return [("xfer-answer", self.xfer_answer), ("xfer-result", self.xfer_result),
                ("xfer-join", self.xfer_join), ("xfer-conference-status", self.xfer_conference_status),
                ("xfer-participant", self.xfer_participant),
                ("xfer-conference-exit", self.xfer_conference_exit)]

    # ------------------------------------------------------------------ blind

    @staticmethod
    def _transfer_n(hook: Hook) -> int:
        value = hook.query.get("n", "")
        if not value.isdigit():
            raise Reject(400, f"bad request: query parameter n: expected a number, got {value[:20]!r}")
        return int(value)

    @staticmethod
    def _ringing(line: Line | None, n: int) -> bool:
        return line is not None and not line.closed and line.mode == "xfer" and line.xfer is not None \
            and line.xfer[1] == n

    @_guarded
    async def xfer_answer(self, request: web.Request) -> web.StreamResponse:
        """The ``url`` of a blind transfer's ``<Number>``/``<Client>``: the target picked up
        (this runs on the target's leg; its answer connects them to the caller)."""
        hook = await self._enter(request, sid_param="call")
        n = self._transfer_n(hook)
        line = self._line(hook)
        if line is None or not self._ringing(line, n):
            log.info("twilio: call %s: transfer %d answered too late; the target is let go", hook.sid, n)
            return _reply(HANG_UP)
        if (seen := self._replayed(line, hook)) is not None:
            return seen
        # not inside handling(): whatever changes the caller's line goes out by REST
        self.center.transfer_event(self.runtime.now(), hook.sid, "answered")
        self.runtime.poke()
        line.remember(hook.fingerprint, twiml.empty())
        return _reply(twiml.empty())

    @_guarded
    async def xfer_result(self, request: web.Request) -> web.StreamResponse:
        """``<Dial action>`` of a blind transfer: the target's leg is over, or never answered."""
        hook = await self._enter(request)
        n, status = self._transfer_n(hook), self._dial_status(hook)
        line = self._known(hook)
        if isinstance(line, web.Response):
            return line
        if hook.params.get("CallStatus") in ENDED:  # the caller hung up
            self._hang_up(line)
            return self._done(line, hook, twiml.empty())
        if not self._ringing(line, n):
            log.info("twilio: call %s: stale result %s of transfer %d", hook.sid, status, n)
            return self._done(line, hook, self.t.current_doc(line, hook.base))
        now = self.runtime.now()
        with self.t.handling(hook.sid):
            if status in ("completed", "answered"):  # talked, then the target hung up: the flow goes on
                self.center.transfer_event(now, hook.sid, "leg_ended", "hangup")
            else:
                reason = {"busy": "busy", "no-answer": "no-answer"}.get(status, "failed")
                self.center.transfer_event(now, hook.sid, "leg_failed", reason, f"DialCallStatus {status}")
        if self._ringing(line, n):  # the controller moved nothing: the call cannot stay in a dead <Dial>
            log.error("twilio: call %s: transfer %d ended %s with nothing next; hanging up", hook.sid, n,
                      status)
            self._hang_up(line)
        return self._done(line, hook, self.t.current_doc(line, hook.base))

    # ------------------------------------------------------------------ attended (a conference)

    def dial_ended_in_transfer(self, line: Line, hook: Hook) -> str | None:
        """The caller's ``<Dial>`` to the agent ended because the agent's leg moved into the
        conference: the caller joins it too."""
        if line.mode == "conf" and line.conf is not None and not line.closed:
            return self.t.render(line, hook.base)
        return None

    @_guarded
    async def xfer_join(self, request: web.Request) -> web.StreamResponse:
        """Where the agent's leg is redirected: into the call's conference."""
        hook = await self._enter(request, sid_param="call")
        if hook.query.get("role") != "agent":
            raise Reject(400, "bad request: query parameter role: expected agent")
        line = self._line(hook)
        if line is None or line.closed or line.conf is None:
            log.info("twilio: call %s: no conference transfer for the agent to join", hook.sid)
            return _reply(HANG_UP)
        return _reply(join_conference(hook.sid, "agent", base=hook.base, style=self.t.style))

    @_guarded
    async def xfer_conference_status(self, request: web.Request) -> web.StreamResponse:
        """The conference's ``statusCallback``; only the caller's ``participant-join`` matters."""
        hook = await self._enter(request, sid_param="call")
        event = hook.params.get("StatusCallbackEvent", "")
        conference = hook.params.get("ConferenceSid", "")
        line = self._line(hook)
        if event == "participant-join" and line is not None and hook.params.get("CallSid") == hook.sid:
            if not conference.startswith("CF"):
                raise Reject(400, "bad request: parameter ConferenceSid: expected CF followed by 32 hex "
                                  f"digits, got {conference[:40]!r}")
            self.t.conferences.caller_joined(line, conference)
        return _reply(twiml.empty())

    @_guarded
    async def xfer_participant(self, request: web.Request) -> web.StreamResponse:
        """The colleague's call progress (the participant's ``statusCallback``)."""
        hook = await self._enter(request, sid_param="call")
        n = self._transfer_n(hook)
        status = hook.params.get("CallStatus", "")
        line = self._line(hook)
        conf = line.conf if line is not None else None
        if line is None or conf is None or conf.transfer != n or conf.colleague in ("none", "gone"):
            return _reply(twiml.empty())  # over already (cancelled, rung out): nothing to say
        if (seen := self._replayed(line, hook)) is not None:
            return seen
        line.remember(hook.fingerprint, twiml.empty())
        if status == "in-progress" and conf.colleague == "ringing":
            conf.colleague = "answered"
            self.t.report(hook.sid, "answered")
        elif status in FAILED or status == "failed":
            if conf.colleague == "ringing":
                conf.colleague = "gone"
                self.t.report(hook.sid, "leg_failed", FAILED.get(status, "failed"), f"CallStatus {status}")
        elif status == "completed" and conf.colleague == "answered":
            conf.colleague = "gone"
            self.t.report(hook.sid, "leg_ended", "hangup")
        return _reply(twiml.empty())

    @_guarded
    async def xfer_conference_exit(self, request: web.Request) -> web.StreamResponse:
        """The ``<Dial action>`` of a conference leg. The agent's: removed (or hung up):
        its leg ends. The caller's: hung up, or the conference ended (the colleague or the
        agent left with ``endConferenceOnExit``): the flow goes on (the survey)."""
        hook = await self._enter(request, sid_param="call")
        role = hook.query.get("role")
        if role not in ("caller", "agent"):
            raise Reject(400, f"bad request: query parameter role: expected caller or agent, got {role!r}")
        line = self._line(hook)
        if line is None:
            return _reply(HANG_UP if role == "agent" else twiml.sorry(self.t.style))
        if (seen := self._replayed(line, hook)) is not None:
            return seen
        now, center = self.runtime.now(), self.center
        if role == "agent":
            agent = line.agent
            if agent is not None and center.talking.get(hook.sid) == agent:  # hung up while in the call
                with self.t.handling(hook.sid):
                    center.agent_left(now, agent)
            line.remember(hook.fingerprint, HANG_UP)
            return _reply(HANG_UP)
        if hook.params.get("CallStatus") in ENDED:
            self._hang_up(line)
            return self._done(line, hook, twiml.empty())
        with self.t.handling(hook.sid):
            view = center.transfers.view(hook.sid)
            if view is not None and view.stage == "connected":  # the colleague hung up on the caller
                center.transfer_event(now, hook.sid, "leg_ended", "hangup")
            elif line.agent is not None and center.talking.get(hook.sid) == line.agent:  # the agent did
                center.agent_left(now, line.agent)
        if line.mode == "conf":  # the controller moved nothing: the conference is over, so is the call
            log.info("twilio: call %s: the conference ended with nothing next; hanging up", hook.sid)
            self._hang_up(line)
        line.conf = None
        return self._done(line, hook, self.t.current_doc(line, hook.base))
