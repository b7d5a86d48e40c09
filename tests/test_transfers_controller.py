"""Agent transfers through the controller: the desk starts them, a fake line carries out the
machine's actions and reports the legs; the call's one record lands in the event log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ivr import transfers as tr
from ivr.announcements import AnnouncementBoard
from ivr.controller import ContactCenter
from ivr.flowcheck import FlowContext, load_flow
from ivr.store import EventLog
from ivr.transfer_report import transfer_report
from ivr.transfers import Target, TransferError, TransferPolicy, Transfers, resolve_target
from ivr.vocabulary import CallerHungUp, Digits, Enqueue, Gather, Record
from queues import AgentConfig, QueueConfig, QueueEngine

from .conftest import FIXTURES
from .test_transfers import Entry  # the directory entry stand-in

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Open:
    def status(self, when: datetime) -> str:
        return "open"


class Directory:
    entries = {"asa-oberg": Entry("asa-oberg", "Åsa Öberg", "+46313001122", {"twilio": "client:asa"},
                                  ("bygglov", "strandskydd")),
               "vaxel-team": Entry("vaxel-team", "Växelteamet", "+46313001100", {}, ("personsokning",))}

    def get(self, entry_id: str) -> Entry | None:
        return self.entries.get(entry_id)


class Line:
    """A transport that records what the controller asks of it, transfers included;
    ``refuse`` names action types it raises on (as a line whose REST call failed at once)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list]] = []
        self.connected: list[tuple[str, str]] = []
        self.transfers: list[tr.Action] = []
        self.refuse: tuple[type, ...] = ()

    def send(self, call_id, commands):
        self.sent.append((call_id, list(commands)))

    def offer(self, offer):
        pass

    def cancel_offer(self, cancel):
        pass

    def connect(self, agent, call_id):
        self.connected.append((agent, call_id))

    def transfer(self, action: tr.Action) -> None:
        if isinstance(action, self.refuse):
            raise RuntimeError("HTTP 400 (code 21211): invalid 'To' number")
        self.transfers.append(action)

    def did(self) -> list[str]:
        return [type(a).__name__ for a in self.transfers]

    def last_commands(self, call_id: str) -> list:
        return next(cmds for cid, cmds in reversed(self.sent) if cid == call_id)


class NoTransfers:
    """A line that cannot transfer (no ``transfer`` method)."""

    def send(self, call_id, commands):
        pass

    def offer(self, offer):
        pass

    def cancel_offer(self, cancel):
        pass

    def connect(self, agent, call_id):
        pass


def make_center(ctx: FlowContext, tmp_path, line, policy: TransferPolicy | None = None):
    flow = load_flow(FIXTURES / "flows" / "good" / "every_kind.toml", ctx)
    queues = QueueEngine(
        {"vaxeln": QueueConfig("vaxeln", wrapup_s=30, ring_timeout_s=15,
                               categories=("ovrigt", "personsokning")),
         "bygg": QueueConfig("bygg", wrapup_s=30, ring_timeout_s=15, categories=("bygglov",))},
        {"anna": AgentConfig("anna", "Anna", {"vaxeln": 5}), "bo": AgentConfig("bo", "Bo", {"bygg": 3})})
    log = EventLog.open(tmp_path / "ivr.db", hash_key=b"transfer-test-key-0123")
    cc = ContactCenter(flow, queues, schedules={"office": Open()}, board=AnnouncementBoard(), sink=log,
                       transport=line, transfers=Transfers(policy))
    return cc, log


@pytest.fixture
def rig(ctx, tmp_path):
    line = Line()
    cc, log = make_center(ctx, tmp_path, line)
    yield cc, line, log
    log.close()


def answered_call(cc: ContactCenter, call_id: str = "c1") -> None:
    """A caller through the menu into "vaxeln", answered by anna at 10 s."""
    cc.agent(T0, "anna", "login")
    cc.start_call(T0, call_id, "+46701234567", "+4633000000", "twilio")
    cc.call_event(call_id, Digits(T0, "1"))
    cc.call_event(call_id, Digits(T0, "4711#"))
    cc.agent(at(10), "anna", "accept")
    assert cc.call_of("anna") == call_id


def target(spec: dict, transport: str = "twilio") -> Target:
    return resolve_target(spec, transport=transport, queues=("vaxeln", "bygg"), directory=Directory(),
                          policy=TransferPolicy())


def record(log: EventLog, call_id: str = "c1") -> list[tuple[str, dict]]:
    log.flush()
    return [(e["kind"], e["data"]) for e in log.events(call_id)]


def of_kind(events: list[tuple[str, dict]], *names: str) -> list[tuple[str, dict]]:
    return [(k, d) for k, d in events if k in names]


# --------------------------------------------------------------------------- blind


def test_blind_transfer_to_a_person_rings_joins_and_the_caller_reaches_the_survey_after(rig) -> None:
    cc, line, log = rig
    answered_call(cc)
    cc.transfer(at(40), "anna", "c1", "blind", target({"directory": "asa-oberg"}))
    ring = line.transfers[-1]
    assert isinstance(ring, tr.RingTarget) and ring.target.endpoint == "client:asa" and ring.agent == "anna"
    assert cc.queues.agent_state("anna") == "talking"  # until the target answers
    assert cc.transfer_state("c1")["state"] == "ringing"
    assert cc.transfer_state("c1")["target_label"] == "Åsa Öberg"
    assert cc.next_deadline() == at(65)  # the ring timeout

    cc.transfer_event(at(46), "c1", "answered")
    assert line.did() == ["RingTarget", "JoinTarget"]
    assert cc.queues.agent_state("anna") == "wrapup" and cc.call_of("anna") is None
    assert not isinstance(line.last_commands("c1")[-1], Gather)  # no survey while with the target
    assert cc.transfer_state("c1")["state"] == "completed"

    cc.transfer_event(at(166), "c1", "leg_ended", "hangup")  # the target hangs up: the flow goes on
    survey = line.last_commands("c1")[-1]
    assert isinstance(survey, Gather) and "Fick du hjälp" in survey.prompts[0].text

    events = record(log)
    started = of_kind(events, "transfer_started")[0][1]
    assert started == {"transfer": 1, "kind": "blind", "target_kind": "directory", "target": "asa-oberg",
                       "agent": "anna", "from_queue": "vaxeln", "same_topic": False, "ring_timeout_s": 25.0}
    assert of_kind(events, "leg_answered")[0][1]["ring_s"] == 6.0
    assert of_kind(events, "talk_ended")[0][1]["talk_s"] == pytest.approx(36.0)  # the agent's leg
    assert of_kind(events, "leg_ended")[0][1]["talk_s"] == 120.0  # the target's leg
    kinds = [k for k, _ in events]
    assert kinds.index("queue_answered") < kinds.index("transfer_started") < kinds.index("leg_answered") \
        < kinds.index("transfer_completed") < kinds.index("leg_ended") < kinds.index("queue_result")


def test_blind_transfer_to_a_queue_in_the_new_form_waits_there_and_logs_the_transfer(rig) -> None:
    cc, line, log = rig
    answered_call(cc)
    cc.agent(at(20), "anna", "transfer", call_id="c1", kind="blind", target=target({"queue": "bygg"}))
    waits = [c for cid, cmds in line.sent if cid == "c1" for c in cmds if isinstance(c, Enqueue)]
    assert [w.queue for w in waits] == ["vaxeln", "bygg"]  # the line puts the caller on hold again
    assert cc.queues.agent_state("anna") == "wrapup" and line.transfers == []
    assert cc.queues.callers(at(20))["bygg"][0]["call_id"] == "c1"
    assert cc.transfer_state("c1")["state"] == "completed"
    events = record(log)
    assert of_kind(events, "queue_transferred")[0][1]["to_queue"] == "bygg"
    assert of_kind(events, "transfer_started")[0][1]["same_topic"] is False
    report = transfer_report([log.events("c1")])
    assert report["by_queue"]["vaxeln"]["transfers"] == 1 and report["by_queue"]["vaxeln"]["misroutes"] == 1


def test_the_older_to_queue_form_still_works_and_names_an_unknown_queue(rig) -> None:
    cc, line, _log = rig
    answered_call(cc)
    with pytest.raises(ValueError, match='unknown queue "byg" .*did you mean "bygg"'):
        cc.agent(at(20), "anna", "transfer", call_id="c1", to_queue="byg")
    assert cc.queues.agent_state("anna") == "talking"
    cc.agent(at(21), "anna", "transfer", call_id="c1", to_queue="bygg")
    assert cc.queues.agent_state("anna") == "wrapup"


def test_a_blind_transfer_nobody_answers_goes_to_the_message_with_that_policy(ctx, tmp_path) -> None:
    line = Line()
    cc, log = make_center(ctx, tmp_path, line, TransferPolicy(no_answer="message", ring_timeout_s=20))
    answered_call(cc)
    cc.transfer(at(30), "anna", "c1", "blind", target({"directory": "asa-oberg"}))
    cc.tick(at(49))
    assert line.did() == ["RingTarget"]
    cc.tick(at(50))
    assert line.did() == ["RingTarget", "DropTarget", "ToMessage"]
    assert cc.queues.agent_state("anna") == "wrapup"
    assert isinstance(line.last_commands("c1")[-1], Record)  # the flow's overflow: its message node
    failed = of_kind(record(log), "transfer_failed")[0][1]
    assert failed == {"transfer": 1, "reason": "no-answer", "fallback": "message", "detail": None}
    assert cc.transfer_state("c1")["state"] == "failed"
    log.close()


def test_a_busy_target_gives_the_caller_back_to_the_agent(rig) -> None:
    cc, line, log = rig
    answered_call(cc)
    cc.transfer(at(30), "anna", "c1", "blind", target({"number": "031-300 11 22"}))
    cc.transfer_event(at(33), "c1", "leg_failed", "busy", "486 Busy Here")
    assert line.did() == ["RingTarget", "ReturnToAgent"]
    assert cc.queues.agent_state("anna") == "talking" and cc.call_of("anna") == "c1"
    state = cc.transfer_state("c1")
    assert (state["state"], state["reason"], state["target_label"]) == ("failed", "busy", "+46 31-*** ** 22")
    assert cc.next_deadline() is None  # no ring timeout left
    events = record(log)
    assert of_kind(events, "transfer_started")[0][1]["target"] == "+46 31-*** ** 22"  # masked in the log
    assert "3001122" not in str(events)


# --------------------------------------------------------------------------- attended


def test_attended_transfer_consults_then_completes_and_the_agent_goes_to_wrapup(rig) -> None:
    cc, line, log = rig
    answered_call(cc)
    cc.transfer(at(30), "anna", "c1", "attended", target({"directory": "vaxel-team"}))
    with pytest.raises(TransferError) as e:
        cc.agent(at(31), "anna", "transfer_complete")
    assert e.value.status == 409  # the colleague has not answered yet
    cc.transfer_event(at(35), "c1", "answered")
    assert line.did() == ["RingTarget", "Consult"]
    state = cc.transfer_state("c1")
    assert state["state"] == "consulting" and state["since"] == at(35)
    cc.agent(at(65), "anna", "transfer_complete")
    assert line.did() == ["RingTarget", "Consult", "JoinTarget"]
    assert cc.queues.agent_state("anna") == "wrapup"
    completed = of_kind(record(log), "transfer_completed")[0][1]
    assert completed["consult_s"] == 30.0 and completed["kind"] == "attended"
    assert of_kind(record(log), "transfer_started")[0][1]["same_topic"] is True  # personsokning


def test_attended_transfer_cancelled_gives_the_caller_back_and_the_agent_hangs_up_later(rig) -> None:
    cc, line, log = rig
    answered_call(cc)
    cc.transfer(at(30), "anna", "c1", "attended", target({"directory": "asa-oberg"}))
    cc.transfer_event(at(34), "c1", "answered")
    cc.agent(at(44), "anna", "transfer_cancel")
    assert line.did() == ["RingTarget", "Consult", "DropTarget", "ReturnToAgent"]
    assert cc.queues.agent_state("anna") == "talking"
    assert cc.transfer_state("c1")["state"] == "cancelled"
    cc.agent_left(at(90), "anna")  # now the ordinary end: the survey
    assert isinstance(line.last_commands("c1")[-1], Gather)
    events = record(log)
    assert of_kind(events, "transfer_cancelled")[0][1] == {"transfer": 1, "agent": "anna", "consult_s": 10.0}
    assert of_kind(events, "leg_ended")[0][1]["talk_s"] == 10.0


def test_the_agent_hanging_up_during_the_consultation_completes_the_transfer(rig) -> None:
    cc, line, log = rig
    answered_call(cc)
    cc.transfer(at(30), "anna", "c1", "attended", target({"directory": "asa-oberg"}))
    cc.transfer_event(at(32), "c1", "answered")
    cc.agent_left(at(50), "anna")
    assert line.did()[-1] == "JoinTarget" and cc.queues.agent_state("anna") == "wrapup"
    assert not isinstance(line.last_commands("c1")[-1], Gather)  # the caller is with the colleague
    assert of_kind(record(log), "transfer_completed")[0][1]["consult_s"] == 18.0


def test_the_agent_hanging_up_while_the_target_rings_leaves_the_caller_waiting_then_a_message(rig) -> None:
    cc, line, log = rig
    answered_call(cc)
    cc.transfer(at(30), "anna", "c1", "attended", target({"directory": "asa-oberg"}))
    cc.agent_left(at(33), "anna")
    assert cc.queues.agent_state("anna") == "wrapup"
    assert not any(isinstance(c, Gather) for c in line.last_commands("c1"))  # no survey yet
    cc.tick(at(55))  # nobody answers and nobody to come back to
    assert line.did() == ["RingTarget", "DropTarget", "ToMessage"]
    assert isinstance(line.last_commands("c1")[-1], Record)
    assert of_kind(record(log), "transfer_failed")[0][1]["fallback"] == "message"


def test_the_caller_hanging_up_while_the_target_rings_drops_the_target(rig) -> None:
    cc, line, log = rig
    answered_call(cc)
    cc.transfer(at(30), "anna", "c1", "attended", target({"directory": "asa-oberg"}))
    cc.call_event("c1", CallerHungUp(at(36)))
    assert line.did() == ["RingTarget", "DropTarget"]
    assert cc.queues.agent_state("anna") == "wrapup" and cc.next_deadline() is not None  # the wrap-up timer
    assert of_kind(record(log), "transfer_failed")[0][1]["reason"] == "caller-hangup"
    assert cc.transfer_state("c1") is None  # the call is over


# --------------------------------------------------------------------------- refusals and errors


def test_a_line_that_refuses_the_ring_keeps_the_call_with_the_agent(rig) -> None:
    cc, line, log = rig
    answered_call(cc)
    line.refuse = (tr.RingTarget,)
    cc.transfer(at(30), "anna", "c1", "blind", target({"number": "+46313001122"}))
    assert cc.queues.agent_state("anna") == "talking" and cc.call_of("anna") == "c1"
    assert cc.transfer_state("c1")["state"] == "failed" and cc.transfer_state("c1")["reason"] == "refused"
    failed = of_kind(record(log), "transfer_failed")[0][1]
    assert failed["fallback"] == "agent" and "invalid 'To' number" in failed["detail"]
    line.refuse = ()
    cc.transfer(at(40), "anna", "c1", "blind", target({"number": "+46313001122"}))  # a second try may go
    assert of_kind(record(log), "transfer_started")[-1][1]["transfer"] == 2


def test_a_refusal_reported_later_by_the_line_returns_the_caller_to_the_agent(rig) -> None:
    cc, line, log = rig
    answered_call(cc)
    cc.transfer(at(30), "anna", "c1", "attended", target({"directory": "asa-oberg"}))
    cc.transfer_event(at(31), "c1", "refused", "Originate: Extension does not exist")
    assert line.did() == ["RingTarget", "ReturnToAgent"]
    assert cc.queues.agent_state("anna") == "talking"
    assert of_kind(record(log), "transfer_failed")[0][1]["detail"] == "Originate: Extension does not exist"


def test_transfers_that_cannot_be_done_are_refused_with_a_status_and_change_nothing(rig) -> None:
    cc, line, log = rig
    with pytest.raises(TransferError) as e:
        cc.transfer(at(0), "anna", "c9", "blind", target({"queue": "bygg"}))
    assert e.value.status == 409 and "not talking" in str(e.value)
    answered_call(cc)
    with pytest.raises(TransferError) as e:
        cc.transfer(at(20), "anna", "c1", "attended", target({"queue": "bygg"}))
    assert e.value.status == 400
    with pytest.raises(TransferError) as e:
        cc.transfer(at(20), "anna", "c1", "blind", target({"queue": "vaxeln"}))
    assert e.value.status == 409 and "already in queue" in str(e.value)
    cc.transfer(at(21), "anna", "c1", "blind", target({"directory": "asa-oberg"}))
    with pytest.raises(TransferError) as e:
        cc.transfer(at(22), "anna", "c1", "blind", target({"queue": "bygg"}))
    assert e.value.status == 409 and "under way" in str(e.value)
    with pytest.raises(TransferError) as e:
        cc.agent(at(22), "bo", "transfer_cancel")
    assert e.value.status == 409
    assert [k for k, _ in record(log)].count("transfer_started") == 1


def test_a_line_without_transfers_refuses_persons_and_numbers_but_not_queues(ctx, tmp_path) -> None:
    cc, log = make_center(ctx, tmp_path, NoTransfers())
    answered_call(cc)
    with pytest.raises(TransferError) as e:
        cc.transfer(at(20), "anna", "c1", "blind", target({"directory": "asa-oberg"}))
    assert e.value.status == 409 and "cannot transfer" in str(e.value)
    assert of_kind(record(log), "transfer_started") == []
    cc.transfer(at(21), "anna", "c1", "blind", target({"queue": "bygg"}))
    assert cc.queues.agent_state("anna") == "wrapup"
    log.close()


def test_a_queue_that_refuses_the_transfer_leaves_the_call_with_the_agent_and_a_closed_record(
        rig, monkeypatch) -> None:
    from queues import QueueError

    cc, _line, log = rig
    answered_call(cc)

    def refuse(*args, **kwargs):
        raise QueueError("the queue engine says no")

    monkeypatch.setattr(cc.queues, "transfer", refuse)
    with pytest.raises(TransferError, match='queue "bygg" refused the caller') as caught:
        cc.agent(at(20), "anna", "transfer", call_id="c1", kind="blind", target=target({"queue": "bygg"}))
    assert caught.value.status == 409
    assert cc.call_of("anna") == "c1" and cc.queues.agent_state("anna") == "talking"
    assert cc.transfer_state("c1")["state"] == "failed"
    kinds = [k for k, _ in record(log)]
    assert kinds.count("transfer_started") == 1 and kinds.count("transfer_failed") == 1
    assert "transfer_completed" not in kinds
