"""Transfer reports (ivr.transfers.transfer_report) against a hand-computed log, and the
transfer facts in the one record of a call in the real event log."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from ivr.store import EventLog, format_at
from ivr.transfer_report import NO_MENU, Leg, menu_choice, transfer_report
from ivr.transfers import Log, Target, TransferPolicy, Transfers
from ivr.vocabulary import Trace

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class Call:
    """One call's events as the log returns them, written by hand."""

    def __init__(self, call_id: str):
        self.call_id, self.events = call_id, []

    def __call__(self, seconds: float, event: str, node: str | None = None, /, **data: Any) -> Call:
        self.events.append({"call_id": self.call_id, "seq": len(self.events) + 1,
                            "at": format_at(T0 + timedelta(seconds=seconds)), "kind": event, "node": node,
                            "data": data})
        return self

    def menu(self, seconds: float, key: str) -> Call:
        return self(seconds, "input", "main_menu", digits=key)

    def joined(self, seconds: float, queue: str) -> Call:
        self(seconds, "command", "q", command="Enqueue", queue=queue)
        return self(seconds, "queue_joined", queue=queue, category=None, priority=0, position=1,
                    estimated_wait_s=None)

    def answered(self, seconds: float, queue: str, agent: str) -> Call:
        return self(seconds, "queue_answered", agent=agent, queue=queue, wait_s=0)

    def started(self, seconds: float, n: int, kind: str, target_kind: str, target: str, agent: str,
                queue: str, same: bool | None) -> Call:
        return self(seconds, "transfer_started", transfer=n, kind=kind, target_kind=target_kind,
                    target=target, agent=agent, from_queue=queue, same_topic=same, ring_timeout_s=25.0)


def hand_log() -> list[list[dict]]:
    a = (Call("c-a").menu(2, "2").joined(10, "barn-utbildning").answered(40, "barn-utbildning", "anna")
         .started(60, 1, "blind", "directory", "asa-oberg", "anna", "barn-utbildning", False)
         (66, "leg_answered", transfer=1, leg="target", by="asa-oberg", ring_s=6.0)
         (66, "transfer_completed", transfer=1, kind="blind", target_kind="directory", target="asa-oberg",
          agent="anna", consult_s=None)
         (66, "talk_ended", agent="anna", talk_s=26.0)
         (186, "leg_ended", transfer=1, leg="target", by="asa-oberg", talk_s=120.0, reason="hangup"))
    b = (Call("c-b").menu(1, "2")(3, "input", "case", digits="4711", var="case", valid=True)
         .joined(5, "barn-utbildning").answered(20, "barn-utbildning", "erik")
         (120, "queue_transferred", from_queue="barn-utbildning", to_queue="omsorg", agent="erik")
         (120, "talk_ended", agent="erik", talk_s=100.0)
         .answered(150, "omsorg", "anna")(210, "talk_ended", agent="anna", talk_s=60.0))
    c = (Call("c-c").menu(1, "1").joined(4, "omsorg").answered(30, "omsorg", "anna")
         .started(40, 1, "attended", "number", "+46 31-*** ** 22", "anna", "omsorg", None)
         (45, "leg_answered", transfer=1, leg="target", by="+46 31-*** ** 22", ring_s=5.0)
         (65, "transfer_completed", transfer=1, kind="attended", target_kind="number",
          target="+46 31-*** ** 22", agent="anna", consult_s=20.0)
         (65, "talk_ended", agent="anna", talk_s=35.0)
         (125, "leg_ended", transfer=1, leg="target", by="+46 31-*** ** 22", talk_s=80.0, reason="hangup"))
    d = (Call("c-d").menu(1, "1").joined(3, "omsorg").answered(12, "omsorg", "erik")
         (27, "queue_transferred", from_queue="omsorg", to_queue="vaxeln", agent="erik")
         (27, "talk_ended", agent="erik", talk_s=15.0)
         .answered(57, "vaxeln", "anna")
         .started(67, 1, "blind", "directory", "rektor", "anna", "vaxeln", True)
         (70, "leg_answered", transfer=1, leg="target", by="rektor", ring_s=3.0)
         (70, "transfer_completed", transfer=1, kind="blind", target_kind="directory", target="rektor",
          agent="anna", consult_s=None)
         (70, "talk_ended", agent="anna", talk_s=13.0))  # no leg_ended (yet): the leg is open
    e = (Call("c-e").joined(1, "vaxeln").answered(5, "vaxeln", "erik")
         .started(10, 1, "blind", "directory", "asa-oberg", "erik", "vaxeln", False)
         (35, "transfer_failed", transfer=1, reason="no-answer", fallback="agent", detail=None)
         (105, "talk_ended", agent="erik", talk_s=100.0))
    f = Call("c-f").menu(1, "2").joined(4, "barn-utbildning")(50, "queue_abandoned", queue="barn-utbildning",
                                                               stage="waiting", wait_s=46)
    return [x.events for x in (a, b, c, d, e, f)]


def counts(answered=0, transfers=0, to_queue=0, to_directory=0, to_number=0, attended=0, failed=0,
           misroutes=0) -> dict[str, int]:
    return {"answered": answered, "transfers": transfers, "to_queue": to_queue, "to_directory": to_directory,
            "to_number": to_number, "attended": attended, "failed": failed, "misroutes": misroutes}


def test_transfers_and_misroutes_per_queue_and_menu_choice_match_the_hand_computed_figures():
    report = transfer_report(hand_log(), misroute_window_s=60)
    # c-a: barn answered, to a person of another topic 20 s in: a misroute.
    # c-b: barn answered, to omsorg 100 s in (not a misroute), answered again in omsorg.
    # c-c: omsorg, attended to an outside number (never a misroute).
    # c-d: omsorg to vaxeln 15 s in (a misroute); vaxeln to a person of the same topic.
    # c-e: vaxeln, a transfer nobody answered. c-f: abandoned, counts nowhere.
    assert report["by_queue"] == {
        "barn-utbildning": counts(answered=2, transfers=2, to_queue=1, to_directory=1, misroutes=1),
        "omsorg": counts(answered=3, transfers=2, to_queue=1, to_number=1, attended=1, misroutes=1),
        "vaxeln": counts(answered=2, transfers=1, to_directory=1, failed=1),
    }
    assert report["by_menu_choice"] == {
        NO_MENU: counts(answered=1, failed=1),
        "main_menu:1": counts(answered=3, transfers=3, to_queue=1, to_directory=1, to_number=1, attended=1,
                              misroutes=1),
        "main_menu:2": counts(answered=3, transfers=2, to_queue=1, to_directory=1, misroutes=1),
    }
    assert report["totals"] == counts(answered=7, transfers=5, to_queue=2, to_directory=2, to_number=1,
                                      attended=1, failed=1, misroutes=2)


def test_the_misroute_window_is_inclusive_and_configurable():
    assert transfer_report(hand_log(), misroute_window_s=20)["totals"]["misroutes"] == 2  # 20 s and 15 s
    assert transfer_report(hand_log(), misroute_window_s=15)["totals"]["misroutes"] == 1  # only c-d
    assert transfer_report(hand_log(), misroute_window_s=14)["totals"]["misroutes"] == 0


def test_every_leg_has_who_answered_and_its_talk_time():
    def at(s: float) -> str:
        return format_at(T0 + timedelta(seconds=s))

    legs = transfer_report(hand_log())["legs"]
    assert legs == [
        Leg("c-a", "agent", "anna", at(40), at(66), 26.0),
        Leg("c-a", "target", "asa-oberg", at(66), at(186), 120.0),
        Leg("c-b", "agent", "erik", at(20), at(120), 100.0),
        Leg("c-b", "agent", "anna", at(150), at(210), 60.0),
        Leg("c-c", "agent", "anna", at(30), at(65), 35.0),
        Leg("c-c", "target", "+46 31-*** ** 22", at(45), at(125), 80.0),
        Leg("c-d", "agent", "erik", at(12), at(27), 15.0), Leg("c-d", "agent", "anna", at(57), at(70), 13.0),
        Leg("c-d", "target", "rektor", at(70), None, None),
        Leg("c-e", "agent", "erik", at(5), at(105), 100.0),
    ]


def test_the_menu_choice_is_the_last_menu_key_before_the_queue():
    a, b = hand_log()[:2]
    assert menu_choice(a) == "main_menu:2"
    assert menu_choice(b) == "main_menu:2"  # the case number typed after the menu does not count
    late = Call("x").menu(1, "1").joined(3, "omsorg").menu(90, "2").events  # a survey-like key later
    assert menu_choice(late) == "main_menu:1"


def test_a_transfer_lands_in_the_calls_one_record_with_outside_numbers_masked(tmp_path):
    log = EventLog.open(tmp_path / "ivr.db", hash_key=b"transfer-test-key-0123456")
    try:
        m = Transfers(TransferPolicy())
        number = Target("number", "+46313001122", "+46313001122", "+46 31-*** ** 22")
        t = T0
        actions = m.start(t, "c1", "anna", "attended", number, from_queue="omsorg")
        actions += m.answered(t + timedelta(seconds=4), "c1")
        actions += m.complete(t + timedelta(seconds=30), "c1", "anna")
        actions += m.leg_ended(t + timedelta(seconds=90), "c1")
        log.append("c1", Trace(t - timedelta(seconds=60), "call_started", None, {"caller": "+46701234567"}))
        log.append_many("c1", [Trace(a.at, a.kind, None, dict(a.data))
                               for a in actions if isinstance(a, Log)])
        log.flush()
        events = log.events("c1")
        assert [e["kind"] for e in events] == ["call_started", "transfer_started", "leg_answered",
                                               "transfer_completed", "leg_ended"]
        assert events[-1]["data"] == {"transfer": 1, "leg": "target", "by": "+46 31-*** ** 22",
                                      "talk_s": 86.0, "reason": "hangup"}
    finally:
        log.close()
    conn = sqlite3.connect(tmp_path / "ivr.db")
    try:  # neither the caller's nor the outside raw number is anywhere in the file
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert "3001122" not in dump and "701234567" not in dump


# --------------------------------------------------------------------------- in `ivr report`


def logged_hand_log(tmp_path):
    """The hand-computed calls written to a real event log (the calls rows derived from them)."""
    path = tmp_path / "ivr.db"
    log = EventLog.open(path, hash_key=b"transfer-test-key-0123456")
    try:
        for events in hand_log():
            call_id = events[0]["call_id"]
            log.append(call_id, Trace(T0 - timedelta(seconds=1), "call_started", None,
                                      {"caller": None, "called": None, "transport": "test"}))
            log.append_many(call_id, [Trace(datetime.fromisoformat(e["at"]), e["kind"], e["node"], e["data"])
                                      for e in events])
        log.flush()
        rows = {c["call_id"]: c for c in log.calls()}
    finally:
        log.close()
    return path, rows


def without_answers(figures: dict[str, dict]) -> dict[str, dict]:
    return {k: {n: v for n, v in c.items() if n != "answered"} for k, c in figures.items()}


def test_ivr_report_has_the_hand_computed_transfers_per_queue_and_menu_choice(tmp_path):
    from ivr.metrics import compute

    path, rows = logged_hand_log(tmp_path)
    # the calls rows: a transfer to a queue (queue_transferred) or to a person or number
    # (transfer_completed) counts; a failed one does not
    assert {c: r["transfers"] for c, r in rows.items()} == {
        "c-a": 1, "c-b": 1, "c-c": 1, "c-d": 2, "c-e": 0, "c-f": 0}
    result = compute(path, "2026-12-01", "2026-12-01", as_of=T0 + timedelta(hours=2), misroute_window_s=60)
    assert result["transfers"] == 5  # the KPI: every completed transfer
    expected = transfer_report(hand_log(), misroute_window_s=60)
    figures = result["agent_transfers"]
    assert figures["by_queue"] == without_answers(expected["by_queue"])
    assert figures["by_menu_choice"] == without_answers(expected["by_menu_choice"])
    assert figures["totals"] == {"transfers": 5, "to_queue": 2, "to_directory": 2, "to_number": 1,
                                 "attended": 1, "failed": 1, "misroutes": 2}
    assert result["parameters"]["misroute_window_s"] == 60
    narrow = compute(path, "2026-12-01", "2026-12-01", as_of=T0 + timedelta(hours=2), misroute_window_s=15)
    assert narrow["agent_transfers"]["totals"]["misroutes"] == 1  # only c-d's 15 s
    other_day = compute(path, "2026-12-02", "2026-12-02", as_of=T0 + timedelta(days=2))
    assert other_day["agent_transfers"]["by_queue"] == {}


def test_the_transfer_figures_in_table_csv_json_and_html(tmp_path):
    import csv
    import io
    import json

    from ivr.metrics import compute
    from ivr.report import render

    path, _ = logged_hand_log(tmp_path)
    result = compute(path, "2026-12-01", "2026-12-01", as_of=T0 + timedelta(hours=2))
    table = render(result, "table")
    section = table[table.index("Vidarekopplingar per kö"):]
    barn = next(line for line in section.splitlines() if line.startswith("barn-utbildning"))
    assert barn.split() == ["barn-utbildning", "2", "1", "1", "0", "0", "0", "1"]
    menu = table[table.index("Vidarekopplingar per menyval"):]
    assert next(line for line in menu.splitlines() if line.startswith("main_menu:1")).split()[-1] == "1"
    assert "Felkopplad" in table and "60 s" in table

    rows = list(csv.DictReader(io.StringIO(render(result, "csv"))))
    omsorg = next(r for r in rows if (r["scope"], r["key"]) == ("transfers_by_queue", "omsorg"))
    assert (omsorg["xfer_transfers"], omsorg["xfer_to_number"], omsorg["xfer_misroutes"]) == ("2", "1", "1")
    assert omsorg["calls"] == ""  # the call KPIs are on the by_queue rows
    total = next(r for r in rows if r["scope"] == "total")
    assert (total["transfers"], total["xfer_transfers"], total["xfer_failed"]) == ("5", "5", "1")
    assert [r["key"] for r in rows if r["scope"] == "transfers_by_menu_choice"] == [
        NO_MENU, "main_menu:1", "main_menu:2"]

    data = json.loads(render(result, "json"))
    assert data["agent_transfers"]["by_queue"]["vaxeln"]["failed"] == 1

    html = render(result, "html")
    assert "Transfers by the queue the call was answered in" in html and "Transfers by menu choice" in html
    assert "<td>main_menu:2</td>" not in html and '<th scope="row">main_menu:2</th>' in html
