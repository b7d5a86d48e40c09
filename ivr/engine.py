"""``CallSession``: one call through a flow, as a sans-I/O state machine.

Fed events (:mod:`ivr.vocabulary`), it returns commands; it never awaits, sleeps, reads
a clock or touches a socket. Time comes in on every event. Facts for the event log
collect in a trace that the owner drains with :meth:`CallSession.take_trace`.

Contract: ``handle`` never raises. An event that does not fit the current state is
recorded as ``unexpected_event`` and ignored; after the call has ended every event is
ignored. Whatever arrives, the session reaches one of the ends ``queue:NAME``,
``transfer:TARGET``, ``message``, ``hangup`` or ``caller-hangup``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from ivr import flow as f
from ivr.vocabulary import (
    CallerHungUp,
    CallStarted,
    Command,
    Digits,
    Enqueue,
    Event,
    Gather,
    Hangup,
    InputTimeout,
    Play,
    Prompt,
    QueueResult,
    Record,
    RecordingDone,
    Trace,
    Transfer,
    TransferResult,
)

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MAX_STEPS = 100  # nodes entered in one turn before the session gives up (flowcheck prevents it)


class ScheduleLike(Protocol):
    def status(self, at: datetime) -> str: ...


class AnnouncementsLike(Protocol):
    def active(self, slot: str, at: datetime) -> Mapping[str, Prompt] | None: ...


class CallSession:
    def __init__(
        self,
        flow: f.Flow,
        *,
        schedules: Mapping[str, ScheduleLike] | None = None,
        announcements: AnnouncementsLike | None = None,
    ):
        self.flow = flow
        self.schedules = schedules or {}
        self.announcements = announcements
        self.call_id: str | None = None
        self.caller: str | None = None
        self.language = flow.default_language
        self.category: str | None = None
        self.priority = 0
        self.attributes: dict[str, str] = {}
        self.path: list[str] = []
        self.end: str | None = None  # the disposition reached so far
        self.ended = False
        self.node: f.Node | None = None  # the node waiting for the caller
        self._attempts = 0
        self._trace: list[Trace] = []

    # ------------------------------------------------------------------ public

    def handle(self, event: Event) -> list[Command]:
        """Feed one event; return the commands of the next turn. Never raises."""
        if self.ended:
            return []
        at = _aware(getattr(event, "at", None))
        try:
            return self._dispatch(event, at)
        except Exception as exc:  # the contract: one bad call never escapes the session
            log.exception("call %s: engine error on %r", self.call_id, event)
            self._emit(at, "unexpected_event", data={"error": repr(exc)[:200]})
            return self._finish(at, "hangup", reason="engine-error", commands=[Hangup("error")])

    def close(self, at: datetime, reason: str = "closed") -> None:
        """End the session from outside (shutdown, simulation end, lost channel)."""
        if not self.ended:
            at = _aware(at)
            self._finish(at, self.end or "caller-hangup", reason=reason)

    def take_trace(self) -> list[Trace]:
        out, self._trace = self._trace, []
        return out

    @property
    def waiting_for(self) -> str | None:
        return None if self.ended or self.node is None else self.node.kind

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, event: Event, at: datetime) -> list[Command]:
        if isinstance(event, CallStarted):
            if self.call_id is not None:
                return self._unexpected(event, at)
            self.call_id, self.caller = event.call_id, event.caller
            self._emit(at, "call_started", data={
                "caller": event.caller, "called": event.called, "transport": event.transport,
                "flow": self.flow.name, "language": self.language})
            return self._run(self.flow.start, at)
        if self.call_id is None:
            return self._unexpected(event, at)
        if isinstance(event, CallerHungUp):
            self._finish(at, self.end or "caller-hangup", reason="caller-hangup")
            return []
        node = self.node
        if isinstance(node, f.Menu) and isinstance(event, Digits | InputTimeout):
            return self._menu_answer(node, event, at)
        if isinstance(node, f.Input) and isinstance(event, Digits | InputTimeout):
            return self._input_answer(node, event, at)
        if isinstance(node, f.Survey) and isinstance(event, Digits | InputTimeout):
            return self._survey_answer(node, event, at)
        if isinstance(node, f.Message) and isinstance(event, RecordingDone):
            self._emit(at, "recording", node.id, {"ref": event.ref, "duration_s": event.duration_s})
            self._disposition(at, "message", node.id)
            return self._continue(node.next, at)
        if isinstance(node, f.Queue) and isinstance(event, QueueResult):
            return self._queue_result(node, event, at)
        if isinstance(node, f.TransferNode) and isinstance(event, TransferResult):
            self._emit(at, "transfer_result", node.id, {"outcome": event.outcome})
            return self._continue(node.on_fail, at)
        return self._unexpected(event, at)

    def _unexpected(self, event: Event, at: datetime) -> list[Command]:
        self._emit(at, "unexpected_event", self.node.id if self.node else None,
                   {"event": type(event).__name__})
        return []

    # ------------------------------------------------------------------ running nodes

    def _run(self, node_id: str, at: datetime, commands: list[Command] | None = None) -> list[Command]:
        """Enter nodes until one waits for the caller; return the turn's commands."""
        out = commands if commands is not None else []
        current: str | None = node_id
        for _ in range(MAX_STEPS):
            if current is None:
                return self._finish(at, self.end or "hangup", reason="flow-end",
                                    commands=[*out, Hangup()])
            node = self.flow.nodes[current]
            self.path.append(node.id)
            self._emit(at, "node_entered", node.id)
            self._attempts = 0
            current = self._enter(node, at, out)
            if self.ended or self.node is not None:
                return out
        log.error("call %s: more than %d nodes in one turn", self.call_id, MAX_STEPS)
        self._emit(at, "unexpected_event", data={"error": "step limit"})
        return self._finish(at, "hangup", reason="loop", commands=[*out, Hangup("error")])

    def _enter(self, node: f.Node, at: datetime, out: list[Command]) -> str | None:
        """Run one node; return the next node id, or set ``self.node`` to wait."""
        self.node = None
        match node:
            case f.Say():
                out.append(Play(self._prompt(node.prompt)))
                return node.next
            case f.Menu() | f.Input() | f.Survey():
                out.append(self._gather(node, [node.prompt]))
                self.node = node
            case f.Hours():
                status = self.schedules[node.schedule].status(at)
                self._emit(at, "hours", node.id, {"status": status})
                if status == "open":
                    return node.open
                return node.holiday if status == "holiday" and node.holiday else node.closed
            case f.Language():
                self.language = node.language
                self._emit(at, "language", node.id, {"language": node.language})
                return node.next
            case f.Announcement():
                prompts = self.announcements.active(node.slot, at) if self.announcements else None
                if prompts:
                    out.append(Play(self._prompt(node.prompt or prompts)))
                self._emit(at, "announcement", node.id, {"slot": node.slot, "played": bool(prompts)})
                return node.next
            case f.SetNode():
                self.category = node.category or self.category
                self.priority = node.priority if node.priority is not None else self.priority
                self.attributes.update(node.attributes)
                self._emit(at, "set", node.id, {"category": self.category, "priority": self.priority,
                                                "attributes": dict(node.attributes)})
                return node.next
            case f.Queue():
                if node.prompt:
                    out.append(Play(self._prompt(node.prompt)))
                category = node.category or self.category
                priority = node.priority or self.priority
                cmd = Enqueue(node.queue, category, priority, self.language,
                              tuple(sorted(self.attributes.items())))
                out.append(cmd)
                self._command(at, node.id, cmd)
                self._disposition(at, f"queue:{node.queue}", node.id, queue=node.queue,
                                  category=category, priority=priority)
                self.node = node
            case f.TransferNode():
                if node.prompt:
                    out.append(Play(self._prompt(node.prompt)))
                cmd = Transfer(node.target)
                out.append(cmd)
                self._command(at, node.id, cmd)
                self._disposition(at, f"transfer:{node.target}", node.id)
                self.node = node
            case f.Message():
                cmd = Record((self._prompt(node.prompt),), node.max_length_s)
                out.append(cmd)
                self._command(at, node.id, cmd)
                self.node = node
            case f.HangupNode():
                if node.prompt:
                    out.append(Play(self._prompt(node.prompt)))
                self._finish(at, "hangup" if self.end is None else self.end, reason="flow-hangup",
                             commands=out)
                out.append(Hangup())
        return None

    def _continue(self, node_id: str | None, at: datetime, out: list[Command] | None = None) -> list[Command]:
        self.node = None
        return self._run(node_id, at, out) if node_id else self._finish(
            at, self.end or "hangup", reason="flow-end", commands=[*(out or []), Hangup()])

    # ------------------------------------------------------------------ answers

    def _menu_answer(self, node: f.Menu, event: Digits | InputTimeout, at: datetime) -> list[Command]:
        if isinstance(event, Digits) and event.digits:
            key = event.digits[0]
            self._emit(at, "input", node.id, {"digits": key})
            if key == node.repeat_key:
                return [self._gather(node, [node.prompt])]
            if key in node.options:
                return self._continue(node.options[key], at)
            return self._retry(node, at, "invalid_input", node.invalid_prompt, f.DEFAULT_INVALID)
        self._emit(at, "timeout", node.id)
        return self._retry(node, at, "timeout", node.timeout_prompt, f.DEFAULT_TIMEOUT)

    def _input_answer(self, node: f.Input, event: Digits | InputTimeout, at: datetime) -> list[Command]:
        if isinstance(event, InputTimeout):
            self._emit(at, "timeout", node.id)
            return self._retry(node, at, "timeout", node.timeout_prompt, f.DEFAULT_TIMEOUT)
        digits = event.digits.split(node.finish_on_key, 1)[0] if node.finish_on_key else event.digits
        shown = "*" * len(digits) if node.sensitive else digits
        valid = (node.min_digits <= len(digits) <= node.max_digits
                 and (digits.isdigit() or not digits)
                 and (node.pattern is None or re.fullmatch(node.pattern, digits) is not None))
        if not valid:
            self._emit(at, "input", node.id, {"digits": shown, "var": node.var, "valid": False})
            return self._retry(node, at, "invalid_input", node.invalid_prompt, f.DEFAULT_INVALID)
        self._emit(at, "input", node.id, {"digits": shown, "var": node.var, "valid": True})
        self.attributes[node.var] = digits  # for the agent; the log gets `shown` only
        return self._continue(node.next, at)

    def _survey_answer(self, node: f.Survey, event: Digits | InputTimeout, at: datetime) -> list[Command]:
        key = event.digits[:1] if isinstance(event, Digits) else ""
        answer = {node.yes: "yes", node.no: "no"}.get(key, "no-answer")
        self._emit(at, "survey", node.id, {"answer": answer})
        out: list[Command] = [Play(self._prompt(node.thanks))] if node.thanks and key else []
        return self._continue(node.next, at, out)

    def _retry(self, node: f.Menu | f.Input, at: datetime, kind: str, prompts: f.Prompts,
               builtin: Mapping[str, str]) -> list[Command]:
        if kind == "invalid_input":
            self._emit(at, "invalid_input", node.id)
        self._attempts += 1
        if self._attempts > node.retries:
            return self._continue(node.on_fail, at)
        lead = prompts.get(self.language) or Prompt(self.language, builtin.get(self.language, ""))
        return [self._gather(node, [{self.language: lead}, node.prompt])]

    def _queue_result(self, node: f.Queue, event: QueueResult, at: datetime) -> list[Command]:
        self._emit(at, "queue_result", node.id, {"outcome": event.outcome, "agent": event.agent})
        if event.outcome == "answered":
            return self._continue(node.after, at)
        if event.outcome in ("overflow", "closed") and node.overflow:
            return self._continue(node.overflow, at)
        return self._continue(None, at)

    # ------------------------------------------------------------------ helpers

    def _gather(self, node: f.Menu | f.Input | f.Survey, prompt_sets: list[Mapping[str, Prompt]]) -> Gather:
        prompts = tuple(self._prompt(p) for p in prompt_sets if p)
        if isinstance(node, f.Input):
            return Gather(prompts, node.max_digits, node.timeout_s, node.finish_on_key)
        return Gather(prompts, 1, node.timeout_s, None)

    def _prompt(self, prompts: Mapping[str, Prompt]) -> Prompt:
        prompt = prompts.get(self.language) or prompts.get(self.flow.default_language)
        if prompt is None:  # flowcheck guarantees every language; be safe anyway
            prompt = next(iter(prompts.values()), Prompt(self.language, ""))
        return prompt

    def _command(self, at: datetime, node: str, cmd: Command) -> None:
        data: dict[str, Any] = {"command": type(cmd).__name__}
        if isinstance(cmd, Enqueue):
            data.update(queue=cmd.queue, category=cmd.category, priority=cmd.priority)
        elif isinstance(cmd, Transfer):
            data.update(target=cmd.target)
        self._emit(at, "command", node, data)

    def _disposition(self, at: datetime, end: str, node: str | None = None, **data: Any) -> None:
        self.end = end
        self._emit(at, "disposition", node,
                   {"end": end, **{k: v for k, v in data.items() if v is not None}})

    def _finish(self, at: datetime, end: str, *, reason: str,
                commands: list[Command] | None = None) -> list[Command]:
        if self.end != end:
            self._disposition(at, end, category=self.category)
        self.ended = True
        self.node = None
        self._emit(at, "call_ended", data={"reason": reason, "end": end})
        return commands if commands is not None else []

    def _emit(self, at: datetime, kind: str, node: str | None = None,
              data: dict[str, Any] | None = None) -> None:
        self._trace.append(Trace(at, kind, node, data or {}))


def _aware(at: Any) -> datetime:
    if not isinstance(at, datetime):
        return EPOCH  # an event without a time: never read the clock, mark it plainly
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
