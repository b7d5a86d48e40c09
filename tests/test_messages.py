"""Messages to case officers: creation, the outbox's backoff, closing, FCR and report figures.

Times are injected (no clock is read); the directory is the real one in the same file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr import metrics
from ivr.directory import Directory, Entry
from ivr.messages import MessageBook, MessageError, MessageNotFound, render_email, retry_delay
from ivr.store import EventLog
from ivr.vocabulary import Trace

from .test_metrics import answered, insert

STHLM = ZoneInfo("Europe/Stockholm")
KEY = b"messages-test-key-0123456789"
DAY = date(2026, 3, 2)  # a Monday in winter: Stockholm is UTC+1
NUMBER = "070-123 45 67"


def local(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=STHLM)


T0 = local(DAY, 9)
CATEGORIES = ("fraga", "arende", "bygglov", "ovrigt")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ivr.db"


@pytest.fixture
def directory(db: Path) -> Iterator[Directory]:
    with Directory(db) as d:
        d.upsert(Entry(id="bygglov", kind="unit", name="Bygglovsenheten", unit="Bygglovsenheten",
                       email="bygglov@bollebygd.se"))
        d.upsert(Entry(id="asa", kind="person", name="Åsa Öberg", title="Bygglovshandläggare",
                       unit="Bygglovsenheten", email="asa.oberg@bollebygd.se"))
        d.upsert(Entry(id="miljo", kind="unit", name="Miljöenheten", unit="Miljöenheten"))
        d.upsert(Entry(id="vaxeln", kind="unit", name="Växeln", unit="Kontaktcenter",
                       email="kontaktcenter@bollebygd.se"))
        yield d


@pytest.fixture
def event_log(db: Path, directory: Directory) -> Iterator[EventLog]:
    log = EventLog.open(db, hash_key=KEY)
    yield log
    log.close()


@pytest.fixture
def book(event_log: EventLog, directory: Directory) -> MessageBook:
    return MessageBook(event_log, entries=directory, categories=CATEGORIES, promise_hours=24,
                       retry_min_s=60, retry_max_s=600, voicemail_target="vaxeln")


def desk(**fields: object) -> dict:
    data = {"target": "asa", "caller_name": "Karin Svensson", "callback_number": NUMBER,
            "consent": True, "category": "bygglov", "question": "Hur långt har mitt bygglov kommit?",
            "case_number": "BN 2026/117"}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


# --------------------------------------------------------------------------- creating


def test_a_desk_message_keeps_the_target_as_it_was_and_the_number_as_e164(
        book: MessageBook, directory: Directory, event_log: EventLog) -> None:
    message = book.create(desk(call_id="CA1"), by="anna", now=T0)
    assert (message.source, message.created_by, message.call_id) == ("desk", "anna", "CA1")
    assert (message.target_id, message.target_name, message.target_unit, message.target_email) == (
        "asa", "Åsa Öberg", "Bygglovsenheten", "asa.oberg@bollebygd.se")
    assert (message.callback_number, message.callback_masked, message.consent) == (
        "+46701234567", "+46 70-*** ** 67", True)
    assert message.promised_by == T0 + timedelta(hours=24)  # the default promise
    assert (message.delivery, message.attempts, message.next_attempt_at) == ("pending", 0, T0)
    # the directory changes later: the message still says where it went
    directory.upsert(Entry(id="asa", kind="person", name="Åsa Öberg", unit="Miljöenheten",
                           email="asa@example.se"))
    again = book.get(message.id)
    assert again is not None and (again.target_unit, again.target_email) == (
        "Bygglovsenheten", "asa.oberg@bollebygd.se")
    assert [h["kind"] for h in book.history(message.id)] == ["created"]
    # the call's own record says a message was left: it is handed off
    event_log.flush()
    assert [e["kind"] for e in event_log.events("CA1")] == ["message_left"]
    assert event_log.events("CA1")[0]["data"] == {"message_id": message.id, "target": "asa",
                                                  "source": "desk"}


def test_every_bad_field_is_reported_at_once(book: MessageBook) -> None:
    with pytest.raises(MessageError) as caught:
        book.create({"target": "nobody", "category": "parkering", "callback_number": NUMBER,
                     "promised_by": "2026-03-02T08:00", "colour": "red"}, by="anna", now=T0)
    assert list(caught.value.errors) == ["target", "callback_number", "category", "question",
                                         "promised_by", "colour"]
    assert caught.value.errors == {
        "colour": "unknown field; expected one of target, call_id, caller_name, callback_number, "
                  "consent, category, question, case_number, promised_by",
        "target": 'no directory entry "nobody"',
        "question": "missing",
        "category": 'expected one of fraga, arende, bygglov, ovrigt, got "parkering"',
        "callback_number": "kept only with the caller's consent: set consent to true when the caller "
                           "agrees (samtycke)",
        "promised_by": "2026-03-02T08:00:00+01:00 is not in the future",
    }
    assert book.list("all") == []  # nothing stored


@pytest.mark.parametrize(("number", "error"), [
    ("12", '"12" is not a valid phone number'),
    ("ring mig", '"ring mig" is not a phone number'),
    (4711, "expected a phone number such as 070-123 45 67"),
])  # fmt: skip
def test_a_callback_number_must_be_a_phone_number(book: MessageBook, number: object, error: str) -> None:
    with pytest.raises(MessageError) as caught:
        book.create(desk(callback_number=number), by="anna", now=T0)
    assert caught.value.errors == {"callback_number": error}


def test_without_a_number_no_consent_is_needed_and_a_promise_can_be_given(book: MessageBook) -> None:
    message = book.create(desk(callback_number=None, consent=None, promised_by="2026-03-02T15:00"),
                          by="anna", now=T0)
    assert (message.callback_number, message.callback_hash, message.consent) == (None, None, False)
    assert message.promised_by == local(DAY, 15)


def test_a_target_without_e_mail_is_kept_for_the_desk_and_never_due(book: MessageBook) -> None:
    message = book.create(desk(target="miljo"), by="anna", now=T0)
    assert (message.delivery, message.next_attempt_at, message.target_unit) == (
        "unaddressed", None, "Miljöenheten")
    assert book.due(T0 + timedelta(days=30)) == [] and book.next_due() is None
    assert [m.id for m in book.list("open")] == [message.id]


def test_a_voice_message_joins_the_list_with_its_audio(book: MessageBook, event_log: EventLog) -> None:
    at = local(DAY, 18, 30)
    trace = Trace(at, "recording", "message", {"ref": "CA9.wav", "duration_s": 14.2})
    future = book.from_recording("CA9", trace, caller="+46 70 123 45 67", category="bygglov")
    assert future is not None
    message = book.get(future.result(timeout=5))
    assert message is not None
    assert (message.source, message.call_id, message.audio_ref, message.duration_s) == (
        "voicemail", "CA9", "CA9.wav", 14.2)
    assert (message.target_id, message.target_email, message.callback_number, message.category) == (
        "vaxeln", "kontaktcenter@bollebygd.se", "+46701234567", "bygglov")
    assert message.question == "Röstmeddelande / Voice message (14 s)"
    assert (message.delivery, message.promised_by) == ("pending", at + timedelta(hours=24))
    # no audio, or not a recording: nothing
    assert book.from_recording("CA10", Trace(at, "recording", "message", {"ref": None})) is None
    # a withheld number: kept without a number
    withheld = book.from_recording("CA11", trace, caller="anonymous")
    assert withheld is not None
    kept = book.get(withheld.result(timeout=5))
    assert kept is not None and (kept.callback_number, kept.consent) == (None, False)


def test_a_voice_message_to_a_target_missing_from_the_directory_is_kept(
        event_log: EventLog, directory: Directory) -> None:
    book = MessageBook(event_log, entries=directory, categories=CATEGORIES, promise_hours=8,
                       voicemail_target="gone")
    future = book.from_recording("CA1", Trace(T0, "recording", "message", {"ref": "a.wav"}))
    assert future is not None
    message = book.get(future.result(timeout=5))
    assert message is not None and (message.target_id, message.delivery) == ("gone", "unaddressed")


# --------------------------------------------------------------------------- the outbox


def test_retry_delay_doubles_from_the_minimum_up_to_the_cap() -> None:
    assert [retry_delay(n, 60, 600) for n in range(0, 7)] == [0, 60, 120, 240, 480, 600, 600]
    assert retry_delay(10_000, 60, 600) == 600  # no overflow after many attempts


def test_a_failing_message_is_retried_with_backoff_and_never_dropped(book: MessageBook) -> None:
    message = book.create(desk(), by="anna", now=T0)
    assert [m.id for m in book.due(T0)] == [message.id]
    now = T0
    waits = []
    for _ in range(7):
        failed = book.failed(message.id, now, "SMTPConnectError: connection refused")
        assert failed.next_attempt_at is not None
        waits.append((failed.next_attempt_at - now).total_seconds())
        assert book.due(failed.next_attempt_at - timedelta(seconds=1)) == []  # not before its time
        now = failed.next_attempt_at
        assert [m.id for m in book.due(now)] == [message.id]
    assert waits == [60, 120, 240, 480, 600, 600, 600]
    kept = book.get(message.id)
    assert kept is not None
    assert (kept.delivery, kept.attempts, kept.last_error) == (
        "retrying", 7, "SMTPConnectError: connection refused")
    assert book.next_due() == now
    history = book.history(message.id)
    assert [h["kind"] for h in history] == ["created", *["attempt_failed"] * 7]
    done = book.delivered(message.id, now)
    assert (done.delivery, done.attempts, done.delivered_at, done.next_attempt_at, done.last_error) == (
        "delivered", 8, now, None, None)
    assert book.due(now + timedelta(days=1)) == [] and book.next_due() is None


def test_the_outbox_sends_the_oldest_due_first_and_skips_closed_messages(book: MessageBook) -> None:
    first = book.create(desk(), by="anna", now=T0)
    second = book.create(desk(target="bygglov"), by="anna", now=T0 + timedelta(minutes=1))
    third = book.create(desk(), by="erik", now=T0 + timedelta(minutes=2))
    book.close(second.id, by="asa", now=T0 + timedelta(minutes=3), outcome="reached")
    assert [m.id for m in book.due(T0 + timedelta(minutes=5))] == [first.id, third.id]
    assert [m.id for m in book.due(T0 + timedelta(seconds=30))] == [first.id]


# --------------------------------------------------------------------------- closing


def test_closing_registers_the_callback_once(book: MessageBook) -> None:
    message = book.create(desk(), by="anna", now=T0)
    later = T0 + timedelta(hours=3)
    closed = book.close(message.id, by="asa", now=later, outcome="reached", note="Svar givet")
    assert (closed.closed_at, closed.closed_by, closed.outcome, closed.close_note) == (
        later, "asa", "reached", "Svar givet")
    assert not closed.is_open and not closed.overdue(later + timedelta(days=9))
    assert book.list("open") == [] and [m.id for m in book.list("closed")] == [message.id]
    with pytest.raises(MessageError) as caught:
        book.close(message.id, by="erik", now=later, outcome="reached")
    assert caught.value.status == 409
    assert caught.value.errors == {"state": "already closed at 2026-03-02T11:00:00.000Z by asa"}
    with pytest.raises(MessageNotFound):
        book.close(9999, by="asa", now=later, outcome="reached")
    with pytest.raises(MessageError, match="outcome: expected one of reached, no-answer"):
        book.close(message.id, by="asa", now=later, outcome="klart")
    assert [h["kind"] for h in book.history(message.id)] == ["created", "closed"]
    # the raw number is for dialling: a closed message shows only the masked one
    body = closed.as_json(later, reveal=True)
    assert body["callback_number"] is None and body["callback_masked"] == "+46 70-*** ** 67"
    assert book.get(message.id) is not None
    fresh = book.create(desk(), by="anna", now=T0)
    assert fresh.as_json(T0, reveal=True)["callback_number"] == "+46701234567"
    assert fresh.as_json(T0)["callback_number"] is None


def test_a_promise_is_overdue_once_its_time_has_passed_without_a_callback(book: MessageBook) -> None:
    message = book.create(desk(promised_by="2026-03-02T12:00"), by="anna", now=T0)
    assert not message.overdue(local(DAY, 12))
    assert message.overdue(local(DAY, 12, 1))
    late = book.close(message.id, by="asa", now=local(DAY, 13), outcome="no-answer")
    assert late.overdue(local(DAY, 13))


# --------------------------------------------------------------------------- the e-mail


def test_the_e_mail_names_category_and_case_in_the_subject_and_holds_what_to_do(book: MessageBook) -> None:
    message = book.create(desk(), by="anna", now=T0)
    mail = render_email(message, sender="Kontaktcenter <kc@bollebygd.se>", now=T0)
    assert mail["Subject"] == f"Meddelande / Message #{message.id}: bygglov, ärende / case BN 2026/117"
    assert (mail["From"], mail["To"], mail["X-Ivr-Message"]) == (
        "Kontaktcenter <kc@bollebygd.se>", "asa.oberg@bollebygd.se", str(message.id))
    assert mail["Message-ID"].endswith("@bollebygd.se>")
    body = mail.get_content()
    for line in ("Hej Åsa Öberg,", "Från / From: Karin Svensson", "Ring upp / Call back: +46701234567",
                 "Senast / By: 2026-03-03 09:00", "Ärendenummer / Case number: BN 2026/117",
                 "Mottagare / To: Åsa Öberg, Bygglovsenheten",
                 "Skrivet / Written: 2026-03-02 09:00 av / by anna",
                 "Fråga / Question:\nHur långt har mitt bygglov kommit?"):
        assert line in body, line
    assert "Röstmeddelande" not in body


def test_a_voice_message_e_mail_links_the_audio(book: MessageBook) -> None:
    trace = Trace(T0, "recording", "message", {"ref": "CA9.wav", "duration_s": 31})
    future = book.from_recording("CA9", trace, caller=NUMBER)
    assert future is not None
    message = book.get(future.result(timeout=5))
    assert message is not None
    linked = render_email(message, sender="kc@bollebygd.se", now=T0, audio_url_base="https://ivr.example.se/")
    assert linked["Subject"] == f"Meddelande / Message #{message.id}: röstmeddelande"
    assert (f"Röstmeddelande / Voice message (31 s): https://ivr.example.se/api/messages/{message.id}/audio"
            in linked.get_content())
    assert "Röstmeddelande / Voice message (31 s): CA9.wav" in render_email(
        message, sender="kc@bollebygd.se", now=T0).get_content()


# --------------------------------------------------------------------------- first-contact resolution


def test_a_handed_off_call_is_never_resolved_at_first_contact(db: Path, event_log: EventLog) -> None:
    """Four handled calls, all coded resolved, surveyed "yes", no repeat contact; c1 and c2
    left a message. FCR: coded 2/4, survey 2/4, repeat 2/4 (a message counts as a repeat)."""
    nine = local(DAY, 9)
    rows = [answered(n, nine, 20, 100, 20, queue="A", category="bygglov", caller_hash=f"h{n}", coded=1,
                     resolution="resolved", survey="yes", handed_off=int(n <= 2)) for n in range(1, 5)]
    event_log.close()
    insert(db, rows)
    r = metrics.compute(db, DAY, DAY, as_of=datetime(2026, 6, 1, tzinfo=UTC))
    assert (r["handled"], r["handed_off"], r["survey_answers"]) == (4, 2, 4)
    assert (r["fcr_coded"], r["fcr_survey"], r["fcr_repeat"]) == (0.5, 0.5, 0.5)
    assert r["by_queue"]["A"]["fcr_repeat"] == 0.5


def test_a_message_marks_the_call_handed_off_in_its_summary(book: MessageBook, event_log: EventLog) -> None:
    """The summary comes from the events: an answered, resolved call, then a desk message."""
    caller = {"caller": NUMBER, "flow": "t", "transport": "sim"}
    event_log.append_many("CA1", [
        Trace(T0, "call_started", None, caller),
        Trace(T0, "queue_joined", None, {"queue": "A", "category": "bygglov"}),
        Trace(T0 + timedelta(seconds=20), "queue_answered", None,
              {"queue": "A", "agent": "anna", "wait_s": 20}),
        Trace(T0 + timedelta(seconds=200), "call_ended", None, {"end": "queue:A"}),
    ])  # fmt: skip
    event_log.append("CA2", Trace(T0, "call_started", None, caller))
    event_log.append("CA2", Trace(T0, "recording", "message", {"ref": "CA2.wav", "duration_s": 5}))
    event_log.append("CA2", Trace(T0, "call_ended", None, {"end": "message"}))
    event_log.flush()
    assert event_log.call("CA1")["handed_off"] == 0
    book.create(desk(call_id="CA1"), by="anna", now=T0 + timedelta(seconds=230))
    event_log.flush()
    assert event_log.call("CA1")["handed_off"] == 1  # a late event re-derives the ended call
    assert event_log.call("CA2")["handed_off"] == 1  # a voice message hands off too


# --------------------------------------------------------------------------- report figures


def test_message_figures_per_unit_against_a_hand_computed_log(db: Path, book: MessageBook) -> None:
    """Seven messages on 2 March (and one the evening before, outside the period), as of
    5 March 12:00. Promises are 24 h unless given. Time to callback in seconds:

    m1 bygglov 09:00, closed 10:00 (3 600, kept), delivered at once
    m2 åsa     09:30, promised 11:30, closed 13:30 (14 400, broken), failed once, delivered (late)
    m3 bygglov 10:00, closed 3 March 12:00 (93 600, broken: promise 3 March 10:00), delivered
    m4 bygglov 11:00, open: promise 3 March 11:00 passed (broken); failing (undelivered)
    m5 miljö   12:00, closed 12:30 (1 800, kept); no e-mail (unaddressed)
    m6 miljö   13:00, promised 20 March: open, pending; unaddressed
    m7 voice   14:00, no target: open, promise 3 March 14:00 passed (broken); unaddressed

    All: closed 4 -> sorted 1 800, 3 600, 14 400, 93 600: median (3 600 + 14 400) / 2 = 9 000,
    p90 = the ceil(0.9 * 4) = 4th = 93 600. Bygglovsenheten (m1-m4): median of 3 600, 14 400,
    93 600 = 14 400; p90 = ceil(2.7) = 3rd = 93 600.
    """
    book.voicemail_target = None
    book.create(desk(target="bygglov"), by="anna", now=local(DAY - timedelta(days=1), 23, 30))
    m1 = book.create(desk(target="bygglov"), by="anna", now=local(DAY, 9))
    m2 = book.create(desk(promised_by="2026-03-02T11:30"), by="anna", now=local(DAY, 9, 30))
    m3 = book.create(desk(target="bygglov"), by="erik", now=local(DAY, 10))
    m4 = book.create(desk(target="bygglov"), by="erik", now=local(DAY, 11))
    m5 = book.create(desk(target="miljo"), by="anna", now=local(DAY, 12))
    m6 = book.create(desk(target="miljo", promised_by="2026-03-20T12:00"), by="anna", now=local(DAY, 13))
    voice = book.from_recording("CA7", Trace(local(DAY, 14), "recording", "message", {"ref": "CA7.wav"}))
    assert voice is not None and voice.result(timeout=5)
    book.delivered(m1.id, local(DAY, 9, 1))
    book.failed(m2.id, local(DAY, 9, 31), "refused")
    book.delivered(m2.id, local(DAY, 9, 33))
    book.delivered(m3.id, local(DAY, 10, 1))
    book.failed(m4.id, local(DAY, 11, 1), "refused")
    book.close(m1.id, by="asa", now=local(DAY, 10), outcome="reached")
    book.close(m2.id, by="asa", now=local(DAY, 13, 30), outcome="reached")
    book.close(m3.id, by="asa", now=local(DAY + timedelta(days=1), 12), outcome="no-answer")
    book.close(m5.id, by="anna", now=local(DAY, 12, 30), outcome="reached")
    assert m6.promised_by == local(date(2026, 3, 20), 12)
    book.log.flush()

    r = metrics.compute(db, DAY, DAY, as_of=local(DAY + timedelta(days=3), 12))["messages"]
    total = {k: v for k, v in r.items() if k != "by_unit"}
    assert total == {"messages": 7, "voice_messages": 1, "open": 3, "closed": 4,
                     "callback_median_s": 9000.0, "callback_p90_s": 93600.0, "promises_kept": 2,
                     "promises_broken": 4, "promises_pending": 1, "delivered": 3, "delivered_late": 1,
                     "undelivered": 1, "unaddressed": 3}  # fmt: skip
    assert list(r["by_unit"]) == ["Bygglovsenheten", "Miljöenheten", "(none)"]
    assert r["by_unit"]["Bygglovsenheten"] == {
        "messages": 4, "voice_messages": 0, "open": 1, "closed": 3, "callback_median_s": 14400.0,
        "callback_p90_s": 93600.0, "promises_kept": 1, "promises_broken": 3, "promises_pending": 0,
        "delivered": 3, "delivered_late": 1, "undelivered": 1, "unaddressed": 0}  # fmt: skip
    assert r["by_unit"]["Miljöenheten"] == {
        "messages": 2, "voice_messages": 0, "open": 1, "closed": 1, "callback_median_s": 1800.0,
        "callback_p90_s": 1800.0, "promises_kept": 1, "promises_broken": 0, "promises_pending": 1,
        "delivered": 0, "delivered_late": 0, "undelivered": 0, "unaddressed": 2}  # fmt: skip
    none = r["by_unit"]["(none)"]
    assert (none["messages"], none["voice_messages"], none["promises_broken"], none["callback_median_s"]) == (
        1, 1, 1, None)
    # as of the evening of 2 March: m1 m2 m5 closed (m2 broken); m3 m4 m6 m7 open, none due yet
    early = metrics.compute(db, DAY, DAY, as_of=local(DAY, 20))["messages"]
    assert (early["closed"], early["open"]) == (3, 4)
    assert (early["promises_broken"], early["promises_pending"]) == (1, 4)
    assert early["callback_median_s"] == 3600.0  # of 1 800, 3 600, 14 400


def test_the_report_table_and_html_show_messages_per_unit(db: Path, book: MessageBook) -> None:
    from ivr.report import render

    book.create(desk(target="bygglov"), by="anna", now=local(DAY, 9))
    book.log.flush()
    result = metrics.compute(db, DAY, DAY, as_of=local(DAY, 12))
    table = render(result, "table")
    assert "Meddelanden per enhet / Messages by unit" in table and "Bygglovsenheten" in table
    assert "Löften brutna / Promises broken" in table
    html = render(result, "html")
    assert "Messages to case officers by unit" in html and "http" not in html.split("<main>")[1]


def test_the_raw_callback_number_is_stored_only_in_its_column(db: Path, book: MessageBook) -> None:
    message = book.create(desk(call_id="CA1"), by="anna", now=T0)
    book.log.flush()
    conn = sqlite3.connect(db)
    try:
        found = [table for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                 if any("+46701234567" in str(v) for row in conn.execute(f'SELECT * FROM "{table}"')
                        for v in row)]  # fmt: skip
    finally:
        conn.close()
    assert found == ["messages"]
    assert message.callback_hash == book.log.caller_hash(NUMBER)


def test_one_line_fields_refuse_line_breaks(book: MessageBook) -> None:
    """They go in the e-mail's subject: a line break would break the header."""
    with pytest.raises(MessageError) as caught:
        book.create({**desk(), "case_number": "BN 1\nBcc: x@example.com", "caller_name": "Karin\tS"},
                    by="anna", now=T0)
    assert caught.value.errors == {"caller_name": "expected one line (no line breaks or tabs)",
                                   "case_number": "expected one line (no line breaks or tabs)"}
