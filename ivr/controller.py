"""The running contact center: live call sessions, the queue engine and the event log.

This is the one place where events from a transport meet the core. It stays
synchronous and clock-free: every method takes ``now`` from its caller (a transport's
clock, or the load simulator's virtual one) and hands work for the line back through
the :class:`Transport` protocol, which a transport implements with real I/O and the
simulator with a scheduler. Nothing here awaits, so one slow socket never stalls the
engine, and one bad call never affects another: every entry point catches, logs and
carries on.

Agent transfers (:mod:`ivr.transfers`) run beside the queue engine: the desk starts,
completes and cancels them here, the line reports their legs through
:meth:`ContactCenter.transfer_event`, and the machine's actions come back out as the
call's log, the queue engine's ``transfer`` and ``end_talk``, the flow's next step, and
``Transport.transfer(action)`` for the line (see ``docs/transfers.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from ivr import transfers as tr
from ivr.announcements import AnnouncementBoard
from ivr.engine import CallSession
from ivr.flow import Flow
from ivr.transfers import Target, TransferError, Transfers
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
    QueueError,
)

log = logging.getLogger(__name__)


class Transport(Protocol):
    """What the controller asks of the line. Implementations must not block."""

    def send(self, call_id: str, commands: list[Command]) -> None: ...
    def offer(self, offer: Offer) -> None: ...
    def cancel_offer(self, cancel: CancelOffer) -> None: ...
    def connect(self, agent: str, call_id: str) -> None: ...
    # Optional: ``transfer(action)`` carries out an ivr.transfers action on the line
    # (RingTarget, Consult, JoinTarget, DropTarget, ReturnToAgent, ToMessage), and
    # ``can_transfer(call_id)`` says whether the call's line can (a router of several
    # lines). A line without them cannot transfer to a person or a number (409).


class LogSink(Protocol):
    """The event log as the controller uses it (``ivr.store.EventLog`` fits)."""

    def append_many(self, call_id: str, traces: Iterable[Trace]) -> None: ...
    def append_agent(self, agent: str, at: datetime, state: str, reason: str | None = None,
                     call_id: str | None = None) -> None: ...
    def add_note(self, call_id: str, agent: str, at: datetime, text: str) -> None: ...
    def keep_raw_number(self, call_id: str, number: str, purpose: str, at: datetime) -> None: ...


# Said to a waiting caller whose number can be called back, on every transport.
CALLBACK_HINT = {
    "sv": "Om du vill bli uppringd i stället för att vänta, tryck 1.",
    "en": "If you would like us to call you back instead of waiting, press 1.",
}
CALLBACK_CONFIRM = {
    "sv": "Tack. Vi ringer upp dig så snart en handläggare är ledig. Hej då.",
    "en": "Thank you. We will call you back as soon as someone is free. Goodbye.",
}


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
        transfers: Transfers | None = None,
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
        self.transfers = transfers or Transfers()
        self.answered_in: dict[str, str] = {}  # call_id -> the queue its agent answered it in
        self.transfer_outcome: dict[str, dict[str, Any]] = {}  # call_id -> the last transfer, for desks
        # Called with (call_id, session, trace) for each recorded voice message (ivr.web.messages sets it).
        self.on_recording: Callable[[str, CallSession, Trace], Any] | None = None
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
            self._guard(lambda: self._transfer_apply(self.transfers.caller_hung_up(event.at, call_id)))
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
        note), callback_result(result), transfer(call_id, kind, target) or the older
        transfer(call_id, to_queue), transfer_complete(), transfer_cancel()."""
        if action == "transfer":
            target = kwargs.get("target")
            if target is None:  # the older form: a blind transfer to a queue
                queue = kwargs["to_queue"]
                self.queues.queue_config(queue)  # an unknown queue: QueueError, naming the closest
                target = Target("queue", queue, None, queue, (queue,))
            self.transfer(now, agent, kwargs["call_id"], kwargs.get("kind", "blind"), target)
            return
        if action in ("transfer_complete", "transfer_cancel"):
            call_id = self.call_of(agent)
            if call_id is None:
                raise TransferError(f'agent "{agent}" is not talking to a caller', 409)
            machine = self.transfers.complete if action == "transfer_complete" else self.transfers.cancel
            self._transfer_apply(machine(now, call_id, agent))
            return
        method: Callable[..., list[Any]] = getattr(self.queues, action)
        self._apply(method(now, agent, **kwargs))

    def transfer(self, now: datetime, agent: str, call_id: str, kind: str, target: Target) -> None:
        """The agent talking to ``call_id`` transfers it (the target resolved by
        :func:`ivr.transfers.resolve_target`). TransferError (with its HTTP status) when it
        cannot be done; nothing has changed then."""
        if self.talking.get(call_id) != agent:
            raise TransferError(f'agent "{agent}" is not talking to caller "{call_id}"', 409)
        if target.kind != "queue" and not self._can_transfer(call_id):
            raise TransferError("this line cannot transfer to a person or a number", 409)
        from_queue = self.answered_in.get(call_id)
        topics: tuple[str, ...] = ()
        if from_queue is not None:
            topics = tuple(self.queues.queue_config(from_queue).categories)
        actions = self.transfers.start(now, call_id, agent, kind, target, from_queue=from_queue,
                                       queue_topics=topics)
        self.transfer_outcome[call_id] = {"kind": kind, "target_kind": target.kind,
                                          "target_label": target.name or target.shown,
                                          "state": "ringing", "reason": None, "since": now}
        self._transfer_apply(actions)

    def transfer_event(self, now: datetime, call_id: str, method: str, *args: Any) -> None:
        """What the line says about a transfer's leg: ``answered``, ``leg_failed(reason,
        detail)``, ``refused(detail)`` or ``leg_ended(reason)``. Never raises."""
        if method not in ("answered", "leg_failed", "refused", "leg_ended"):
            raise ValueError(f"transfer_event: unknown method {method!r}")
        before = self.transfers.view(call_id)
        self._guard(lambda: self._transfer_apply(getattr(self.transfers, method)(now, call_id, *args)))
        session = self.sessions.get(call_id)
        if method == "leg_ended" and before is not None and before.stage == "connected" \
                and session is not None:  # the target hung up on the caller: the flow goes on
            self._feed(call_id, session, QueueResult(now, "answered"))

    def transfer_state(self, call_id: str) -> dict[str, Any] | None:
        """What a desk shows of the call's transfer: under way (``ringing``, ``consulting``;
        ``active`` true) or how the last one ended (``completed``, ``failed`` with ``reason``,
        ``cancelled``; ``active`` false, a new transfer may start); None without one."""
        view = self.transfers.view(call_id)
        last = self.transfer_outcome.get(call_id)
        if view is not None and view.stage != "connected":
            return {"kind": view.kind, "target_kind": view.target_kind,
                    "target_label": view.name or view.target, "state": view.stage, "active": True,
                    "reason": None, "since": view.since}
        return None if last is None else {**last, "active": False}

    def call_of(self, agent: str) -> str | None:
        """The call the agent is connected to (talking), or None."""
        return next((c for c, a in self.talking.items() if a == agent), None)

    def agent_left(self, now: datetime, agent: str) -> None:
        """The agent hung up: the caller goes on in the flow (the survey, or goodbye). During
        a transfer: a consultation completes (the caller is joined to the colleague); while
        the target rings the caller waits for it (the message is then the fallback)."""
        call_id = self.call_of(agent)
        if call_id is not None and self.transfers.view(call_id) is not None:
            self._guard(lambda: self._transfer_apply(self.transfers.agent_left(now, call_id)))
            if self.talking.get(call_id) == agent:  # still ringing: no survey yet
                self._agent_done(now, agent, call_id)
            return
        self._guard(lambda: self._apply(self.queues.end_talk(now, agent, call_id)))
        if call_id is not None:
            del self.talking[call_id]
            session = self.sessions.get(call_id)
            if session is not None:
                self._feed(call_id, session, QueueResult(now, "answered", agent))

    def tick(self, now: datetime) -> None:
        self._guard(lambda: self._apply(self.queues.tick(now)))
        self._guard(lambda: self._transfer_apply(self.transfers.tick(now)))

    def next_deadline(self) -> datetime | None:
        due = [d for d in (self.queues.next_deadline(), self.transfers.next_deadline()) if d is not None]
        return min(due, default=None)

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
            self.answered_in.pop(call_id, None)
            self.transfer_outcome.pop(call_id, None)

    def _drain(self, call_id: str, session: CallSession) -> None:
        trace = session.take_trace()
        if trace:
            self.sink.append_many(call_id, trace)
            if self.on_recording is not None:
                for t in trace:
                    if t.kind == "recording":  # a voice message joins the open messages
                        self._guard(lambda t=t: self.on_recording(call_id, session, t))

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
                    self.answered_in[action.call_id] = action.data["queue"]
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

    # ------------------------------------------------------------------ transfers

    def _transfer_apply(self, actions: list[tr.Action]) -> None:
        """Carry out the transfer machine's actions in order. A step the line refuses
        (an exception from ``transport.transfer``) is fed back as ``refused``."""
        for action in actions:
            match action:
                case tr.QueueTransfer():
                    try:
                        self._queue_transfer(action)
                    except QueueError as e:  # the queue refused: the call stays with the agent
                        failed = tr.Log(action.at, action.call_id, action.transfer, "transfer_failed",
                                        {"transfer": action.transfer, "reason": "refused",
                                         "fallback": "agent", "detail": str(e)})
                        self._transfer_apply([failed])
                        raise TransferError(f'queue "{action.queue}" refused the caller: {e}', 409) from e
                case tr.Log():
                    self.sink.append_many(action.call_id, [Trace(action.at, action.kind, None,
                                                                 dict(action.data))])
                    self._note_outcome(action)
                    notify = getattr(self.transport, "notify", None)
                    if notify is not None:
                        notify("transfer", {"call_id": action.call_id, "kind": action.kind})
                case tr.AgentDone():
                    self._agent_done(action.at, action.agent, action.call_id)
                case _:
                    self._to_line(action)

    def _can_transfer(self, call_id: str) -> bool:
        can = getattr(self.transport, "can_transfer", None)
        if can is not None:
            return bool(can(call_id))
        return getattr(self.transport, "transfer", None) is not None

    def _to_line(self, action: tr.Action) -> None:
        try:
            self.transport.transfer(action)  # type: ignore[attr-defined]
        except Exception as exc:
            log.warning("transfer %d of call %s: the line refused %s: %s", action.transfer, action.call_id,
                        type(action).__name__, exc)
            if not isinstance(action, tr.DropTarget | tr.ReturnToAgent):
                self._transfer_apply(self.transfers.refused(action.at, action.call_id,
                                                            f"{type(action).__name__}: {exc}"))
            return
        if isinstance(action, tr.ToMessage):  # nobody answered: the flow's overflow (a message)
            session = self.sessions.get(action.call_id)
            if session is not None:
                self._feed(action.call_id, session, QueueResult(action.at, "overflow"))

    def _queue_transfer(self, action: tr.QueueTransfer) -> None:
        call_id, queue = action.call_id, action.queue
        actions = self.queues.transfer(action.at, call_id, queue, by_agent=action.agent)
        self.talking.pop(call_id, None)  # only once the engine has taken the transfer
        session = self.sessions.get(call_id)
        if session is not None:  # the caller waits again: the line puts them on hold
            wait = Enqueue(queue, session.category, session.priority, session.language,
                           tuple(sorted(session.attributes.items())))
            self._guard(lambda: self.transport.send(call_id, [wait]))
        self._apply(actions)

    def _agent_done(self, now: datetime, agent: str, call_id: str) -> None:
        """The agent's part of a transferred call is over: wrap-up, and no survey yet (the
        caller is with the target, or waiting for it)."""
        if self.talking.get(call_id) == agent:
            del self.talking[call_id]
        self._guard(lambda: self._apply(self.queues.end_talk(now, agent, call_id)))

    def _note_outcome(self, action: tr.Log) -> None:
        last = self.transfer_outcome.get(action.call_id)
        state = {"transfer_completed": "completed", "transfer_failed": "failed",
                 "transfer_cancelled": "cancelled"}.get(action.kind)
        if last is not None and state is not None:
            last.update(state=state, since=action.at, reason=action.data.get("reason"))

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:
            self.errors += 1
            log.exception("controller: one call's step failed; the others go on")
