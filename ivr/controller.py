"""The running contact center: live call sessions, the queue engine and the event log.

This is the one place where events from a transport meet the core. It stays
synchronous and clock-free: every method takes ``now`` from its caller (a transport's
clock, or the load simulator's virtual one) and hands work for the line back through
the :class:`Transport` protocol, which a transport implements with real I/O and the
simulator with a scheduler. Nothing here awaits, so one slow socket never stalls the
engine, and one bad call never affects another: every entry point catches, logs and
carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from ivr.announcements import AnnouncementBoard
from ivr.engine import CallSession
from ivr.flow import Flow
from ivr.vocabulary import (
    CallerHungUp,
    CallStarted,
    Command,
    Enqueue,
    Event,
    Play,
    Prompt,
    QueueResult,
    Trace,
)
from queues import (
    AgentLog,
    CallLog,
    CancelOffer,
    LeaveQueue,
    Note,
    Offer,
    Position,
    QueueEngine,
)

log = logging.getLogger(__name__)


class Transport(Protocol):
    """What the controller asks of the line. Implementations must not block."""

    def send(self, call_id: str, commands: list[Command]) -> None: ...
    def offer(self, offer: Offer) -> None: ...
    def cancel_offer(self, cancel: CancelOffer) -> None: ...
    def connect(self, agent: str, call_id: str) -> None: ...


class LogSink(Protocol):
    """The event log as the controller uses it (``ivr.store.EventLog`` fits)."""

    def append_many(self, call_id: str, traces: Iterable[Trace]) -> None: ...
    def append_agent(self, agent: str, at: datetime, state: str, reason: str | None = None,
                     call_id: str | None = None) -> None: ...
    def add_note(self, call_id: str, agent: str, at: datetime, text: str) -> None: ...
    def keep_raw_number(self, call_id: str, number: str, purpose: str, at: datetime) -> None: ...


def position_prompt(language: str, position: int, wait_s: float | None) -> Prompt:
    """What a waiting caller hears, in their language (Swedish or English)."""
    minutes = None if wait_s is None else max(1, round(wait_s / 60))
    if language == "sv":
        text = f"Du är nummer {position} i kön."
        if minutes is not None:
            wait = "cirka en minut" if minutes == 1 else f"cirka {minutes} minuter"
            text += f" Beräknad väntetid är {wait}."
    else:
        text = f"You are number {position} in the queue."
        if minutes is not None:
            wait = "about one minute" if minutes == 1 else f"about {minutes} minutes"
            text += f" The estimated waiting time is {wait}."
    return Prompt(language, text)


class ContactCenter:
    def __init__(
        self,
        flow: Flow,
        queues: QueueEngine,
        *,
        schedules: Mapping[str, Any],
        board: AnnouncementBoard,
        sink: LogSink,
        transport: Transport,
        flows: Mapping[str, Flow] | None = None,
    ):
        self.flow = flow
        self.flows = dict(flows or {})
        self.queues = queues
        self.schedules = schedules
        self.board = board
        self.sink = sink
        self.transport = transport
        self.sessions: dict[str, CallSession] = {}
        self.talking: dict[str, str] = {}  # call_id -> agent, while connected
        self.errors = 0

    # ------------------------------------------------------------------ calls

    def start_call(self, now: datetime, call_id: str, caller: str | None, called: str | None,
                   transport: str, flow: str | None = None) -> None:
        if call_id in self.sessions:
            log.warning("call %s started twice; ignored", call_id)
            return
        chosen = self.flows.get(flow, self.flow) if flow else self.flow
        session = CallSession(chosen, schedules=self.schedules, announcements=self.board)
        self.sessions[call_id] = session
        self._feed(call_id, session, CallStarted(now, call_id, caller, called, transport))

    def call_event(self, call_id: str, event: Event) -> bool:
        """An event from the line for one call; False when the call is unknown."""
        session = self.sessions.get(call_id)
        if session is None:
            return False
        if isinstance(event, CallerHungUp):
            self._guard(lambda: self._apply(self.queues.hangup(event.at, call_id)))
            agent = self.talking.pop(call_id, None)
            if agent is not None:
                self._guard(lambda: self._apply(self.queues.end_talk(event.at, agent, call_id)))
        self._feed(call_id, session, event)
        return True

    def request_callback(self, now: datetime, call_id: str) -> bool:
        session = self.sessions.get(call_id)
        if session is None or not session.caller:
            return False
        self.sink.keep_raw_number(call_id, session.caller, "callback", now)
        self._guard(lambda: self._apply(self.queues.request_callback(now, call_id, session.caller)))
        self._feed(call_id, session, QueueResult(now, "callback"))
        return True

    # ------------------------------------------------------------------ agents

    def agent(self, now: datetime, agent: str, action: str, **kwargs: Any) -> None:
        """login, logout, pause(reason), resume, accept, decline, wrapup(category, resolution,
        note), callback_result(result), transfer(call_id, to_queue)."""
        if action == "transfer":
            call_id = kwargs["call_id"]
            actions = self.queues.transfer(now, call_id, kwargs["to_queue"], by_agent=agent)
            self.talking.pop(call_id, None)  # only once the engine has taken the transfer
            session = self.sessions.get(call_id)
            if session is not None:  # the caller waits again: the line puts them on hold
                wait = Enqueue(kwargs["to_queue"], session.category, session.priority, session.language,
                               tuple(sorted(session.attributes.items())))
                self._guard(lambda: self.transport.send(call_id, [wait]))
            self._apply(actions)
            return
        method: Callable[..., list[Any]] = getattr(self.queues, action)
        self._apply(method(now, agent, **kwargs))

    def call_of(self, agent: str) -> str | None:
        """The call the agent is connected to (talking), or None."""
        return next((c for c, a in self.talking.items() if a == agent), None)

    def agent_left(self, now: datetime, agent: str) -> None:
        """The agent hung up: the caller goes on in the flow (the survey, or goodbye)."""
        call_id = self.call_of(agent)
        self._guard(lambda: self._apply(self.queues.end_talk(now, agent, call_id)))
        if call_id is not None:
            del self.talking[call_id]
            session = self.sessions.get(call_id)
            if session is not None:
                self._feed(call_id, session, QueueResult(now, "answered", agent))

    def tick(self, now: datetime) -> None:
        self._guard(lambda: self._apply(self.queues.tick(now)))

    def next_deadline(self) -> datetime | None:
        return self.queues.next_deadline()

    def shutdown(self, now: datetime) -> None:
        for call_id, session in list(self.sessions.items()):
            session.close(now, reason="shutdown")
            self._drain(call_id, session)
        self.sessions.clear()

    # ------------------------------------------------------------------ plumbing

    def _feed(self, call_id: str, session: CallSession, event: Event) -> None:
        commands = session.handle(event)
        self._drain(call_id, session)
        if commands:
            self._guard(lambda: self.transport.send(call_id, commands))
        for cmd in commands:
            if isinstance(cmd, Enqueue):
                self._guard(lambda c=cmd: self._apply(self.queues.join(
                    event.at, call_id, c.queue, priority=c.priority, category=c.category,
                    language=c.language, attributes=c.attributes)))
        if session.ended:
            self.sessions.pop(call_id, None)

    def _drain(self, call_id: str, session: CallSession) -> None:
        trace = session.take_trace()
        if trace:
            self.sink.append_many(call_id, trace)

    def _apply(self, actions: list[Any]) -> None:
        for action in actions:
            self._guard(lambda a=action: self._one(a))

    def _one(self, action: Any) -> None:
        notify = getattr(self.transport, "notify", None)
        if notify is not None and isinstance(action, CallLog | AgentLog):
            notify("call_log" if isinstance(action, CallLog) else "agent_log", action)
        match action:
            case CallLog():
                trace = Trace(action.at, action.kind, None, dict(action.data))
                self.sink.append_many(action.call_id, [trace])
                if action.kind == "queue_answered":
                    agent = action.data["agent"]
                    self.talking[action.call_id] = agent
                    self.transport.connect(agent, action.call_id)
            case AgentLog():
                self.sink.append_agent(action.agent, action.at, action.state, action.reason, action.call_id)
            case Note():
                self.sink.add_note(action.call_id, action.agent, action.at, action.text)
            case Offer():
                self.transport.offer(action)
            case CancelOffer():
                self.transport.cancel_offer(action)
            case Position():
                session = self.sessions.get(action.call_id)
                if session is not None:
                    prompt = position_prompt(session.language, action.position, action.estimated_wait_s)
                    self.transport.send(action.call_id, [Play(prompt)])
            case LeaveQueue():
                session = self.sessions.get(action.call_id)
                if session is not None:
                    self._feed(action.call_id, session, QueueResult(action.at, action.outcome))
            case _:
                log.warning("controller: unknown queue action %r", action)

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            self.errors += 1
            log.exception("controller: one call's step failed; the others go on")
