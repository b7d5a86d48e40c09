"""The transfer machine (ivr.transfers): blind and attended transfers, their legs and fallbacks,
targets checked at the door, on a virtual clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from ivr.transfers import (
    LOG_KINDS,
    AgentDone,
    Consult,
    DropTarget,
    JoinTarget,
    Log,
    QueueTransfer,
    ReturnToAgent,
    RingTarget,
    Target,
    ToMessage,
    TransferError,
    TransferPolicy,
    Transfers,
    resolve_target,
)
from ivr.vocabulary import TRACE_KINDS, TRANSFER_KINDS

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
QUEUES = ("barn-utbildning", "omsorg", "vaxeln")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    phone: str | None = None
    endpoints: dict[str, str] = field(default_factory=dict)
    topics: tuple[str, ...] = ()


class Directory:
    def __init__(self, *entries: Entry):
        self.entries = {e.id: e for e in entries}

    def get(self, entry_id: str) -> Entry | None:
        return self.entries.get(entry_id)


ASA = Entry("asa-oberg", "Åsa Öberg", "+46313001122", {"twilio": "client:asa", "asterisk": "PJSIP/1234"},
            ("bygglov", "strandskydd"))
RECTOR = Entry("rektor", "Rektor Sörgårdsskolan", "+46313001133", {}, ("skola", "barn-utbildning"))
NOBODY = Entry("arkivet", "Arkivet")
DIRECTORY = Directory(ASA, RECTOR, NOBODY)
POLICY = TransferPolicy()


def target(spec: dict, transport: str = "twilio", policy: TransferPolicy = POLICY) -> Target:
    return resolve_target(spec, transport=transport, queues=QUEUES, directory=DIRECTORY, policy=policy)


def logs(actions: list) -> list[tuple[str, dict]]:
    return [(a.kind, dict(a.data)) for a in actions if isinstance(a, Log)]


def kinds(actions: list) -> list[str]:
    return [a.kind if isinstance(a, Log) else type(a).__name__ for a in actions]


def check_shapes(actions: list) -> None:
    for a in actions:
        if isinstance(a, Log):
            assert tuple(a.data) == LOG_KINDS[a.kind], a


# --------------------------------------------------------------------------- blind


def test_blind_transfer_to_a_person_connects_the_caller_and_releases_the_agent_when_answered():
    m = Transfers()
    out = m.start(at(0), "c1", "anna", "blind", target({"directory": "asa-oberg"}), from_queue="omsorg",
                  queue_topics=("omsorg", "hemtjanst"))
    assert kinds(out) == ["transfer_started", "RingTarget"]
    ring = out[1]
    assert isinstance(ring, RingTarget) and ring.target.endpoint == "client:asa" and ring.timeout_s == 25
    assert logs(out)[0][1] == {"transfer": 1, "kind": "blind", "target_kind": "directory",
                               "target": "asa-oberg", "agent": "anna", "from_queue": "omsorg",
                               "same_topic": False, "ring_timeout_s": 25.0}
    assert m.view("c1").stage == "ringing"
    assert m.next_deadline() == at(25)

    out = m.answered(at(7), "c1")
    assert kinds(out) == ["leg_answered", "JoinTarget", "transfer_completed", "AgentDone"]
    assert logs(out)[0][1] == {"transfer": 1, "leg": "target", "by": "asa-oberg", "ring_s": 7.0}
    assert out[3] == AgentDone(at(7), "c1", 1, "anna")
    assert m.next_deadline() is None  # answered: no ring timeout any more

    out = m.leg_ended(at(127.5), "c1")
    assert logs(out) == [("leg_ended", {"transfer": 1, "leg": "target", "by": "asa-oberg", "talk_s": 120.5,
                                        "reason": "hangup"})]
    assert m.view("c1") is None
    check_shapes(out)


def test_blind_transfer_nobody_answers_comes_back_to_the_agent_at_the_ring_timeout():
    m = Transfers()
    m.start(at(0), "c1", "anna", "blind", target({"number": "031-300 11 22"}))
    assert m.tick(at(24.9)) == []
    out = m.tick(at(40))  # late tick: the timeout is logged at its own due time
    assert out == [DropTarget(at(25), "c1", 1, "no-answer"),
                   Log(at(25), "c1", 1, "transfer_failed",
                       {"transfer": 1, "reason": "no-answer", "fallback": "agent", "detail": None}),
                   ReturnToAgent(at(25), "c1", 1, "anna", "no-answer")]
    assert m.view("c1") is None and m.next_deadline() is None
    assert m.answered(at(41), "c1") == []  # a late answer changes nothing


def test_blind_transfer_nobody_answers_goes_to_a_message_when_the_policy_says_so():
    m = Transfers(TransferPolicy(no_answer="message", ring_timeout_s=10))
    asa = target({"directory": "asa-oberg"})
    m.start(at(0), "c1", "anna", "blind", asa)
    out = m.leg_failed(at(3), "c1", "busy", "486 Busy Here")
    assert out == [Log(at(3), "c1", 1, "transfer_failed",
                       {"transfer": 1, "reason": "busy", "fallback": "message", "detail": "486 Busy Here"}),
                   ToMessage(at(3), "c1", 1, asa), AgentDone(at(3), "c1", 1, "anna")]


def test_blind_transfer_to_a_queue_is_the_queue_engines_and_completes_at_once():
    m = Transfers()
    out = m.start(at(0), "c1", "anna", "blind", target({"queue": "vaxeln"}), from_queue="omsorg")
    assert out[1] == QueueTransfer(at(0), "c1", 1, "anna", "vaxeln")
    assert kinds(out) == ["transfer_started", "QueueTransfer", "transfer_completed"]
    assert logs(out)[0][1]["same_topic"] is False and logs(out)[0][1]["ring_timeout_s"] is None
    assert m.view("c1") is None  # nothing rings: the queue engine has the caller
    out = m.start(at(5), "c1", "erik", "blind", target({"queue": "barn-utbildning"}), from_queue="vaxeln")
    assert logs(out)[0][1]["transfer"] == 2  # numbered within the call
    check_shapes(out)


# --------------------------------------------------------------------------- attended


def test_attended_transfer_holds_the_caller_consults_then_joins_the_colleague():
    m = Transfers()
    out = m.start(at(0), "c1", "anna", "attended", target({"directory": "asa-oberg"}, "asterisk"))
    ring = out[1]
    assert isinstance(ring, RingTarget) and ring.kind == "attended" and ring.target.endpoint == "PJSIP/1234"
    out = m.answered(at(5), "c1")
    assert out[1:] == [Consult(at(5), "c1", 1, "anna")]  # the agent talks to the colleague
    assert m.view("c1").stage == "consulting"
    assert m.tick(at(60)) == []  # no ring timeout once answered

    out = m.complete(at(35), "c1", "anna")
    assert out == [JoinTarget(at(35), "c1", 1, "anna"),
                   Log(at(35), "c1", 1, "transfer_completed",
                       {"transfer": 1, "kind": "attended", "target_kind": "directory", "target": "asa-oberg",
                        "agent": "anna", "consult_s": 30.0}),
                   AgentDone(at(35), "c1", 1, "anna")]
    out = m.caller_hung_up(at(95), "c1")  # the colleague's leg ends with the call: consult and caller
    assert logs(out) == [("leg_ended", {"transfer": 1, "leg": "target", "by": "asa-oberg", "talk_s": 90.0,
                                        "reason": "caller-hangup"})]


def test_attended_transfer_cancelled_while_consulting_gives_the_caller_back_to_the_agent():
    m = Transfers()
    m.start(at(0), "c1", "anna", "attended", target({"directory": "rektor"}))
    m.answered(at(4), "c1")
    out = m.cancel(at(24), "c1", "anna")
    assert kinds(out) == ["DropTarget", "leg_ended", "transfer_cancelled", "ReturnToAgent"]
    assert logs(out)[1] == ("transfer_cancelled", {"transfer": 1, "agent": "anna", "consult_s": 20.0})
    assert out[-1] == ReturnToAgent(at(24), "c1", 1, "anna", "cancelled")
    check_shapes(out)
    with pytest.raises(TransferError) as e:
        m.complete(at(25), "c1")
    assert e.value.status == 409 and "no transfer under way" in str(e.value)


def test_attended_transfer_nobody_answers_comes_back_to_the_agent_even_with_a_message_policy():
    m = Transfers(TransferPolicy(no_answer="message", ring_timeout_s=15))
    m.start(at(0), "c1", "anna", "attended", target({"directory": "asa-oberg"}))
    out = m.tick(at(15))
    assert kinds(out) == ["DropTarget", "transfer_failed", "ReturnToAgent"]
    assert logs(out)[0][1]["fallback"] == "agent"


def test_the_colleague_hanging_up_during_the_consultation_returns_the_caller():
    m = Transfers()
    m.start(at(0), "c1", "anna", "attended", target({"number": "+46 31 300 11 22"}))
    m.answered(at(2), "c1")
    out = m.leg_ended(at(12), "c1")
    assert kinds(out) == ["leg_ended", "transfer_failed", "ReturnToAgent"]
    assert logs(out)[0][1]["by"] == "+46 31-*** ** 22"  # an outside number is logged masked
    assert logs(out)[1][1]["reason"] == "target-left"


def test_the_agent_hanging_up_while_consulting_completes_the_transfer():
    m = Transfers()
    m.start(at(0), "c1", "anna", "attended", target({"directory": "asa-oberg"}))
    m.answered(at(3), "c1")
    assert kinds(m.agent_left(at(10), "c1")) == ["JoinTarget", "transfer_completed", "AgentDone"]


def test_the_agent_hanging_up_while_the_colleague_rings_leaves_the_message_as_fallback():
    m = Transfers()
    m.start(at(0), "c1", "anna", "attended", target({"directory": "asa-oberg"}))
    assert m.agent_left(at(3), "c1") == []
    out = m.tick(at(25))
    assert kinds(out) == ["DropTarget", "transfer_failed", "ToMessage"]  # nobody to come back to
    m.start(at(30), "c2", "anna", "attended", target({"directory": "asa-oberg"}))
    m.agent_left(at(31), "c2")
    assert kinds(m.answered(at(32), "c2")) == ["leg_answered", "JoinTarget", "transfer_completed"]


def test_complete_before_the_colleague_answers_is_refused_with_409():
    m = Transfers()
    m.start(at(0), "c1", "anna", "attended", target({"directory": "asa-oberg"}))
    with pytest.raises(TransferError) as e:
        m.complete(at(2), "c1", "anna")
    assert e.value.status == 409 and "Åsa Öberg has not answered yet" in str(e.value)
    with pytest.raises(TransferError) as e:
        m.complete(at(2), "c1", "erik")
    assert e.value.status == 409 and "anna" in str(e.value)


# --------------------------------------------------------------------------- refusals and bad input


def test_a_transport_refusal_keeps_the_call_with_the_agent_and_is_logged():
    m = Transfers(TransferPolicy(no_answer="message"))
    m.start(at(0), "c1", "anna", "blind", target({"directory": "asa-oberg"}))
    out = m.refused(at(0.2), "c1", "HTTP 400 (code 21220): Invalid call state")
    assert out == [Log(at(0.2), "c1", 1, "transfer_failed",
                       {"transfer": 1, "reason": "refused", "fallback": "agent",
                        "detail": "HTTP 400 (code 21220): Invalid call state"}),
                   ReturnToAgent(at(0.2), "c1", 1, "anna", "refused")]
    m.start(at(1), "c2", "anna", "attended", target({"directory": "asa-oberg"}))
    m.answered(at(2), "c2")
    out = m.refused(at(3), "c2", "Response: Error: Channel2 does not exist")  # joining refused
    assert kinds(out) == ["DropTarget", "leg_ended", "transfer_failed", "ReturnToAgent"]


def test_one_transfer_at_a_time_and_no_attended_transfer_to_a_queue():
    m = Transfers()
    m.start(at(0), "c1", "anna", "blind", target({"directory": "asa-oberg"}))
    with pytest.raises(TransferError) as e:
        m.start(at(1), "c1", "anna", "attended", target({"directory": "rektor"}))
    assert e.value.status == 409 and "already has a blind transfer to asa-oberg" in str(e.value)
    with pytest.raises(TransferError, match="attended transfer needs a person or a number"):
        m.start(at(1), "c2", "anna", "attended", target({"queue": "vaxeln"}))
    with pytest.raises(TransferError, match='already in queue "omsorg"') as e:
        m.start(at(1), "c2", "anna", "blind", target({"queue": "omsorg"}), from_queue="omsorg")
    assert e.value.status == 409
    with pytest.raises(TransferError, match='kind: expected "blind" or "attended"'):
        m.start(at(1), "c2", "anna", "warm", target({"queue": "vaxeln"}))
    with pytest.raises(TransferError, match="a blind transfer cannot be taken back"):
        m.cancel(at(2), "c1")


def test_the_caller_hanging_up_while_it_rings_ends_the_transfer():
    m = Transfers()
    m.start(at(0), "c1", "anna", "attended", target({"directory": "asa-oberg"}))
    out = m.caller_hung_up(at(4), "c1")
    assert kinds(out) == ["DropTarget", "transfer_failed"]
    assert logs(out)[0][1] == {"transfer": 1, "reason": "caller-hangup", "fallback": None, "detail": None}
    assert m.next_deadline() is None and m.tick(at(30)) == []


@pytest.mark.parametrize("spec, status, message", [
    ({"queue": "vaxel"}, 404, 'unknown queue "vaxel" (did you mean "vaxeln"?)'),
    ({"directory": "asa"}, 404, 'no directory entry "asa"'),
    ({"directory": "arkivet"}, 409, '"Arkivet" (arkivet) has no twilio endpoint and no phone number'),
    ({"number": "+44 20 7946 0018"}, 400, "outside the allowed prefixes (+46"),
    ({"number": "0900-123 45 67"}, 400, "is a blocked number"),
    ({"number": "hej"}, 400, "is not a phone number"),
    ({"number": "112"}, 400, "is not a valid phone number"),
    ({"number": 46701234567}, 400, "expected a phone number"),
    ({"queue": "vaxeln", "number": "+46701234567"}, 400, "expected exactly one of"),
    ({"extension": "1234"}, 400, "expected exactly one of"),
    ({"queue": ""}, 400, "target.queue: expected a non-empty string"),
])
def test_bad_targets_are_refused_with_a_status_and_a_message_naming_them(spec, status, message):
    with pytest.raises(TransferError) as e:
        target(spec)
    assert e.value.status == status and message in str(e.value)


def test_targets_resolve_per_transport_and_numbers_are_read_as_e164():
    assert target({"directory": "asa-oberg"}, "asterisk").endpoint == "PJSIP/1234"
    assert target({"directory": "rektor"}, "asterisk").endpoint == "+46313001133"  # its phone
    number = target({"number": "031-300 11 22"})
    assert (number.id, number.endpoint, number.shown) == ("+46313001122", "+46313001122", "+46 31-*** ** 22")
    anywhere = TransferPolicy(allowed_prefixes=("+",))
    assert target({"number": "+44 20 7946 0018"}, policy=anywhere).id == "+442079460018"


def test_bad_policy_values_name_the_setting():
    with pytest.raises(TransferError, match="transfers.no_answer: expected"):
        TransferPolicy(no_answer="voicemail")
    with pytest.raises(TransferError, match="transfers.ring_timeout_s: expected a positive"):
        TransferPolicy(ring_timeout_s=0)
    with pytest.raises(TransferError, match="transfers.allowed_prefixes"):
        TransferPolicy(allowed_prefixes=("46",))


def test_every_transfer_kind_is_a_trace_kind_the_log_accepts():
    assert set(LOG_KINDS) == TRANSFER_KINDS and TRANSFER_KINDS <= TRACE_KINDS


def test_same_topic_compares_the_entry_topics_with_the_answering_queue():
    m = Transfers()
    out = m.start(at(0), "c1", "anna", "blind", target({"directory": "rektor"}), from_queue="barn-utbildning",
                  queue_topics=("skola", "forskola"))
    assert logs(out)[0][1]["same_topic"] is True
    out = m.start(at(0), "c2", "anna", "blind", target({"number": "+46313001122"}), from_queue="omsorg")
    assert logs(out)[0][1]["same_topic"] is None  # outside numbers: unknown, never a misroute
