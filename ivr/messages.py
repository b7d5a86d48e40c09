"""Messages to case officers ("meddelande till handläggare"): create, deliver, close.

A message is written at the agent desk (the caller's name, a callback number given with
consent, a category, the question, a case number, the time the callback is promised by)
or left as a voice message in the flow's ``message`` node. It goes to a person or unit of
the directory (:mod:`ivr.directory`): the target's unit, name and e-mail are copied into
the message when it is created, so that a later change in the directory does not rewrite
history. It is mailed there (:mod:`ivr.mailer`) and listed as open until the officer's
callback is registered (:meth:`MessageBook.close`).

Delivery states: ``pending`` (not tried yet, or e-mail is off), ``retrying`` (an attempt
failed; tried again after :func:`retry_delay`, never dropped), ``delivered``, and
``unaddressed`` (the target has no e-mail address: the message is only in the desk list).

Storage is the ``messages`` table of the event log (schema 4, :mod:`ivr.store`). Every
write is a function run on the event log's one writer thread (``EventLog.submit``);
reads use its reader connection. The methods of :class:`MessageBook` block until SQLite
answers, so the web layer and the mailer call them in a worker thread
(``asyncio.to_thread``); :meth:`MessageBook.from_recording`, for the controller on the
event loop, only queues its write. A message with a call also appends a
``message_left`` trace to that call, so that the call counts as handed off and never as
resolved at first contact (:mod:`ivr.summary`, :mod:`ivr.metrics`).

No aiohttp here: this module is used by the web layer, the mailer and the controller.
"""

from __future__ import annotations

import concurrent.futures
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any, Protocol

import phonenumbers

from ivr.hours import STOCKHOLM
from ivr.privacy import mask_number
from ivr.store import EventLog, format_at
from ivr.summary import MESSAGE_KIND
from ivr.vocabulary import Trace

log = logging.getLogger(__name__)

SOURCES = ("desk", "voicemail")
DELIVERY_STATES = ("pending", "retrying", "delivered", "unaddressed")
OUTCOMES = ("reached", "no-answer", "wrong-number", "other")  # of the callback
LIMITS = {"caller_name": 200, "question": 4000, "case_number": 40, "note": 1000, "call_id": 100,
          "category": 100, "target": 200, "error": 500}  # fmt: skip
FIELDS = ("target", "call_id", "caller_name", "callback_number", "consent", "category", "question",
          "case_number", "promised_by")  # fmt: skip
STATES = ("open", "closed", "all")
ONE_LINE = frozenset({"target", "call_id", "caller_name", "case_number", "category"})  # header-safe


class MessageError(ValueError):
    """A message that cannot be created or changed as asked: ``errors`` is field -> reason."""

    def __init__(self, errors: Mapping[str, str], status: int = 400):
        self.errors, self.status = dict(errors), status
        super().__init__("; ".join(f"{name}: {why}" for name, why in self.errors.items()))


class MessageNotFound(LookupError):
    def __init__(self, message_id: int):
        super().__init__(f"no message {message_id}")
        self.message_id = message_id


class Entries(Protocol):
    """The directory as messages use it (``ivr.directory.Directory`` fits)."""

    def get(self, entry_id: str) -> Any: ...


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    created_at: datetime
    call_id: str | None
    created_by: str | None
    source: str
    target_id: str | None
    target_unit: str | None
    target_name: str | None
    target_email: str | None
    caller_name: str | None
    callback_number: str | None  # raw E.164, only with consent, until retention clears it
    callback_masked: str | None
    callback_hash: str | None
    consent: bool
    category: str | None
    question: str | None
    case_number: str | None
    promised_by: datetime | None
    audio_ref: str | None
    duration_s: float | None
    delivery: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    outcome: str | None
    close_note: str | None
    personal_data_purged_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def overdue(self, now: datetime) -> bool:
        """The promised time has passed without a callback (a broken promise so far)."""
        if self.promised_by is None:
            return False
        return (self.closed_at or now) > self.promised_by

    def as_json(self, now: datetime, *, reveal: bool = False) -> dict[str, Any]:
        """For the desk. The raw callback number only with ``reveal`` and while open: it is
        there to be dialled; lists and closed messages show the masked form."""
        body = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("callback_number", "callback_hash", "personal_data_purged_at")}
        body["state"] = "open" if self.is_open else "closed"
        body["callback_number"] = self.callback_number if reveal and self.is_open else None
        body["overdue"] = self.overdue(now)
        body["has_audio"] = self.audio_ref is not None
        return body


_TIMES = frozenset({"created_at", "promised_by", "next_attempt_at", "delivered_at", "closed_at",
                    "personal_data_purged_at"})  # fmt: skip


def _message(row: Mapping[str, Any]) -> Message:
    values = {}
    for f in fields(Message):
        value = row[f.name]
        if f.name in _TIMES and value is not None:
            value = parse_at(value)
        values[f.name] = bool(value) if f.name == "consent" else value
    return Message(**values)


def parse_at(text: str) -> datetime:
    """A time as the event log stores it (``...Z``) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True, slots=True)
class Draft:
    """A validated message, ready to be stored."""

    source: str
    created_at: datetime
    created_by: str | None
    call_id: str | None
    target_id: str | None
    target_unit: str | None
    target_name: str | None
    target_email: str | None
    caller_name: str | None
    callback_number: str | None
    consent: bool
    category: str | None
    question: str | None
    case_number: str | None
    promised_by: datetime
    audio_ref: str | None = None
    duration_s: float | None = None


def parse_callback_number(value: Any) -> str:
    """A Swedish or international phone number as E.164; ValueError says why not."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a phone number such as 070-123 45 67")
    try:
        parsed = phonenumbers.parse(value, "SE")
    except phonenumbers.NumberParseException:
        raise ValueError(f'"{value}" is not a phone number') from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f'"{value}" is not a valid phone number')
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def parse_promise(value: Any, now: datetime) -> datetime:
    """An ISO date-time (Swedish local time when it has no offset), in the future."""
    if not isinstance(value, str):
        raise ValueError('expected a date-time such as "2026-12-02T10:00"')
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'expected a date-time such as "2026-12-02T10:00", got "{value}"') from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=STOCKHOLM)
    if moment <= now:
        raise ValueError(f"{moment.isoformat()} is not in the future")
    return moment


def validate(data: Mapping[str, Any], *, now: datetime, by: str | None, categories: tuple[str, ...],
             promise_hours: int, entries: Entries | None) -> Draft:
    """A desk message from a JSON object; :class:`MessageError` lists every bad field."""
    errors: dict[str, str] = {}
    for name in data:
        if name not in FIELDS:
            errors[name] = "unknown field; expected one of " + ", ".join(FIELDS)

    def text(name: str, *, required: bool = False) -> str | None:
        value = data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                errors[name] = "missing"
            return None
        if not isinstance(value, str) or not value.strip():
            errors[name] = "expected a non-empty string"
            return None
        if len(value) > LIMITS[name]:
            errors[name] = f"at most {LIMITS[name]} characters, got {len(value)}"
            return None
        if name in ONE_LINE and any(ch in value.strip() for ch in "\r\n\t\x00"):
            errors[name] = "expected one line (no line breaks or tabs)"  # it goes in a mail header
            return None
        return value.strip()

    target_id, call_id = text("target", required=True), text("call_id")
    caller_name, question, case_number = text("caller_name"), text("question", required=True), \
        text("case_number")
    category = text("category", required=True)
    if category is not None and category not in categories:
        errors["category"] = f'expected one of {", ".join(categories)}, got "{category}"'
    consent = data.get("consent", False)
    if not isinstance(consent, bool):
        errors["consent"] = "expected true or false"
        consent = False
    number = None
    if data.get("callback_number") not in (None, ""):
        try:
            number = parse_callback_number(data["callback_number"])
        except ValueError as e:
            errors["callback_number"] = str(e)
        if not consent:
            errors.setdefault("callback_number", "kept only with the caller's consent: set consent "
                              "to true when the caller agrees (samtycke)")
    promised_by = now + timedelta(hours=promise_hours)
    if data.get("promised_by") is not None:
        try:
            promised_by = parse_promise(data["promised_by"], now)
        except ValueError as e:
            errors["promised_by"] = str(e)
    entry = None
    if target_id is not None:
        entry = entries.get(target_id) if entries is not None else None
        if entry is None:
            errors["target"] = f'no directory entry "{target_id}"'
    if errors:  # in the order of the form, unknown fields last
        order = {name: i for i, name in enumerate(FIELDS)}
        raise MessageError({name: errors[name] for name in sorted(errors, key=lambda n: order.get(n, 99))})
    return Draft(
        source="desk", created_at=now, created_by=by, call_id=call_id, target_id=target_id,
        target_unit=_unit(entry), target_name=getattr(entry, "name", None),
        target_email=getattr(entry, "email", None), caller_name=caller_name,
        callback_number=number, consent=consent, category=category, question=question,
        case_number=case_number, promised_by=promised_by)


def _unit(entry: Any) -> str | None:
    if entry is None:
        return None
    return entry.unit or (entry.name if entry.kind == "unit" else None)


# --------------------------------------------------------------------------- delivery timing


def retry_delay(attempts: int, min_s: float, max_s: float) -> float:
    """Seconds to wait after ``attempts`` failed attempts: min_s, doubling, at most max_s."""
    if attempts < 1:
        return 0.0
    return min(max_s, min_s * 2.0 ** min(attempts - 1, 60))


# --------------------------------------------------------------------------- e-mail


def render_email(message: Message, *, sender: str, audio_url_base: str | None = None,
                 now: datetime) -> EmailMessage:
    """The plain-text e-mail to the case officer, Swedish with English."""
    if not message.target_email:
        raise MessageError({"target": "has no e-mail address"})
    mail = EmailMessage()
    subject = f"Meddelande / Message #{message.id}: {message.category or 'röstmeddelande'}"
    if message.case_number:
        subject += f", ärende / case {message.case_number}"
    mail["Subject"] = subject
    mail["From"] = sender
    mail["To"] = message.target_email
    mail["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    mail["Message-ID"] = make_msgid(f"ivr-message-{message.id}", domain=domain)
    mail["X-Ivr-Message"] = str(message.id)
    mail.set_content(email_body(message, audio_url_base=audio_url_base))
    return mail


def _local(moment: datetime | None) -> str:
    return "–" if moment is None else moment.astimezone(STOCKHOLM).strftime("%Y-%m-%d %H:%M")


def email_body(message: Message, *, audio_url_base: str | None = None) -> str:
    greeting = f"Hej {message.target_name}," if message.target_name else "Hej,"
    lines = [
        greeting, "",
        "Du har fått ett meddelande via kontaktcenter. Ring upp senast den tid som står nedan.",
        "You have a message from the contact centre. Please call back by the time below.", "",
        f"Från / From: {message.caller_name or '(namn saknas / no name given)'}",
        f"Ring upp / Call back: {message.callback_number or '(nummer saknas / no number given)'}",
        f"Senast / By: {_local(message.promised_by)}",
        f"Kategori / Category: {message.category or '–'}",
        f"Ärendenummer / Case number: {message.case_number or '–'}",
        f"Mottagare / To: {message.target_name or '–'}"
        + (f", {message.target_unit}" if message.target_unit else ""),
        f"Skrivet / Written: {_local(message.created_at)}"
        + (f" av / by {message.created_by}" if message.created_by else ""), "",
    ]  # fmt: skip
    if message.question:
        lines += ["Fråga / Question:", message.question, ""]
    if message.audio_ref:
        where = (f"{audio_url_base.rstrip('/')}/api/messages/{message.id}/audio" if audio_url_base
                 else message.audio_ref)
        length = f" ({message.duration_s:.0f} s)" if message.duration_s else ""
        lines += [f"Röstmeddelande / Voice message{length}: {where}", ""]
    lines += [
        f"Registrera återkopplingen i kontaktcentrets skrivbord när du har ringt: meddelande {message.id}.",
        f"Register the callback at the contact centre desk once you have called: message {message.id}.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the book

_COLUMNS = ("created_at", "call_id", "created_by", "source", "target_id", "target_unit",
            "target_name", "target_email", "caller_name", "callback_number", "callback_masked",
            "callback_hash", "consent", "category", "question", "case_number", "promised_by",
            "audio_ref", "duration_s", "delivery", "next_attempt_at")  # fmt: skip
_INSERT = f"INSERT INTO messages ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_EVENT = "INSERT INTO message_events (message_id, at, kind, by, detail) VALUES (?, ?, ?, ?, ?)"


class MessageBook:
    """Messages in the event log's database. Blocking: call from a worker thread, except
    :meth:`from_recording`, which only queues its write."""

    def __init__(self, log: EventLog, *, entries: Entries | None, categories: tuple[str, ...],
                 promise_hours: int, retry_min_s: float = 60.0, retry_max_s: float = 3600.0,
                 voicemail_target: str | None = None) -> None:  # fmt: skip
        self.log, self.entries = log, entries
        self.categories, self.promise_hours = tuple(categories), promise_hours
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.voicemail_target = voicemail_target
        self.listeners: list[Callable[[str, int], None]] = []  # (kind, message id): created, ...

    @classmethod
    def from_settings(cls, log: EventLog, settings: Any, entries: Entries | None) -> MessageBook:
        return cls(log, entries=entries, categories=settings.messages.categories,
                   promise_hours=settings.messages.promise_hours,
                   retry_min_s=settings.smtp.retry_min_s, retry_max_s=settings.smtp.retry_max_s,
                   voicemail_target=settings.messages.voicemail_target)

    # ------------------------------------------------------------------ creating

    def create(self, data: Mapping[str, Any], *, by: str | None, now: datetime) -> Message:
        """Validate a desk message and store it; :class:`MessageError` for bad fields."""
        draft = validate(data, now=now, by=by, categories=self.categories,
                         promise_hours=self.promise_hours, entries=self.entries)
        message_id = self.log.submit(lambda conn: self._insert(conn, draft)).result()
        self._left(draft, message_id)
        message = self.get(message_id)
        assert message is not None
        return message

    def from_recording(self, call_id: str, trace: Trace, *, caller: str | None = None,
                       category: str | None = None) -> concurrent.futures.Future | None:
        """A voice message the flow's ``message`` node recorded becomes a message.

        ``trace`` is the engine's ``recording`` trace (data: ``ref`` of the audio,
        ``duration_s``); ``caller`` is the caller's raw number (the session's), kept as the
        callback number: the prompt asks the caller to leave a message to be called back.
        It goes to ``[messages] voicemail_target`` (a directory entry id; none: only the
        desk list). Does not wait on SQLite: returns the future of the stored id, or None
        when the trace holds no audio.
        """
        data = trace.data or {}
        ref = data.get("ref")
        if trace.kind != "recording" or not isinstance(ref, str) or not ref:
            return None
        try:
            number = parse_callback_number(caller) if caller else None
        except ValueError:
            number = None  # a withheld number or an internal extension: nothing to call
        duration = data.get("duration_s")
        length = f" ({duration:.0f} s)" if isinstance(duration, int | float) and duration else ""
        base = Draft(
            source="voicemail", created_at=trace.at, created_by=None, call_id=call_id,
            target_id=self.voicemail_target, target_unit=None, target_name=None, target_email=None,
            caller_name=None, callback_number=number, consent=number is not None, category=category,
            question=f"Röstmeddelande / Voice message{length}", case_number=None,
            promised_by=trace.at + timedelta(hours=self.promise_hours), audio_ref=ref,
            duration_s=float(duration) if isinstance(duration, int | float) else None)

        def store(conn: sqlite3.Connection) -> int:
            entry = None
            if self.voicemail_target and self.entries is not None:
                try:
                    entry = self.entries.get(self.voicemail_target)
                except Exception:  # the directory is unreadable: keep the message anyway
                    log.exception("messages: directory lookup of %s failed", self.voicemail_target)
                if entry is None:
                    log.warning("messages: voicemail_target %r is not in the directory; the voice "
                                "message of call %s is kept for the desk only",
                                self.voicemail_target, call_id)
            draft = base if entry is None else _with_target(base, entry)
            return self._insert(conn, draft)

        future = self.log.submit(store)
        future.add_done_callback(self._stored_voicemail)
        return future

    def _stored_voicemail(self, future: concurrent.futures.Future) -> None:
        if future.exception() is not None:
            log.error("messages: a voice message could not be stored: %s", future.exception())
            return
        self._notify("created", future.result())

    def _insert(self, conn: sqlite3.Connection, draft: Draft) -> int:
        """On the writer thread: the row and its first history event; returns the id."""
        delivery = "pending" if draft.target_email else "unaddressed"
        created = format_at(draft.created_at)
        values = {
            **{name: getattr(draft, name) for name in _COLUMNS if hasattr(draft, name)},
            "created_at": created, "promised_by": format_at(draft.promised_by),
            "callback_masked": mask_number(draft.callback_number) if draft.callback_number else None,
            "callback_hash": self.log.caller_hash(draft.callback_number) if draft.callback_number else None,
            "consent": int(draft.consent), "delivery": delivery,
            "next_attempt_at": created if delivery == "pending" else None,
        }  # fmt: skip
        cursor = conn.execute(_INSERT, [values[name] for name in _COLUMNS])
        message_id = int(cursor.lastrowid or 0)
        conn.execute(_EVENT, (message_id, created, "created", draft.created_by,
                              f"{draft.source} to {draft.target_id or '(no target)'}"))
        return message_id

    def _left(self, draft: Draft, message_id: int) -> None:
        """The call's own record says a message was left (the call is handed off)."""
        if draft.call_id:
            self.log.append(draft.call_id, Trace(draft.created_at, MESSAGE_KIND, None, {
                "message_id": message_id, "target": draft.target_id, "source": draft.source}))
        self._notify("created", message_id)

    # ------------------------------------------------------------------ reading

    def get(self, message_id: int) -> Message | None:
        rows = self.log.query("SELECT * FROM messages WHERE id = ?", (message_id,))
        return _message(rows[0]) if rows else None

    def list(self, state: str = "open", *, limit: int = 500) -> list[Message]:
        """Open messages oldest promise first; closed ones (and all) newest first."""
        if state not in STATES:
            raise MessageError({"state": f'expected one of {", ".join(STATES)}, got "{state}"'})
        where = {"open": "WHERE closed_at IS NULL", "closed": "WHERE closed_at IS NOT NULL", "all": ""}[state]
        order = "promised_by, id" if state == "open" else "created_at DESC, id DESC"
        rows = self.log.query(f"SELECT * FROM messages {where} ORDER BY {order} LIMIT ?", (limit,))
        return [_message(row) for row in rows]

    def history(self, message_id: int) -> list[dict[str, Any]]:
        return self.log.query("SELECT at, kind, by, detail FROM message_events WHERE message_id = ? "
                              "ORDER BY id", (message_id,))

    def due(self, now: datetime, *, limit: int = 50) -> list[Message]:
        """Open messages with an address whose next delivery attempt is due at ``now``."""
        rows = self.log.query(
            "SELECT * FROM messages WHERE delivery IN ('pending', 'retrying') AND closed_at IS NULL "
            "AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?", (format_at(now), limit))
        return [_message(row) for row in rows]

    def next_due(self) -> datetime | None:
        rows = self.log.query("SELECT MIN(next_attempt_at) AS at FROM messages WHERE delivery IN "
                              "('pending', 'retrying') AND closed_at IS NULL")
        return parse_at(rows[0]["at"]) if rows and rows[0]["at"] else None

    # ------------------------------------------------------------------ delivery

    def delivered(self, message_id: int, now: datetime) -> Message:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE messages SET delivery = 'delivered', attempts = attempts + 1, "
                         "delivered_at = ?, next_attempt_at = NULL, last_error = NULL WHERE id = ?",
                         (format_at(now), message_id))
            conn.execute(_EVENT, (message_id, format_at(now), "delivered", None, None))
        return self._change(message_id, write, "delivered")

    def failed(self, message_id: int, now: datetime, error: str) -> Message:
        """An attempt failed: kept, tried again after :func:`retry_delay`."""
        error = error[:LIMITS["error"]]

        def write(conn: sqlite3.Connection) -> None:
            (attempts,) = conn.execute("SELECT attempts FROM messages WHERE id = ?", (message_id,)).fetchone()
            attempts += 1
            later = now + timedelta(seconds=retry_delay(attempts, self.retry_min_s, self.retry_max_s))
            conn.execute("UPDATE messages SET delivery = 'retrying', attempts = ?, next_attempt_at = ?, "
                         "last_error = ? WHERE id = ?", (attempts, format_at(later), error, message_id))
            conn.execute(_EVENT, (message_id, format_at(now), "attempt_failed", None, error))
        return self._change(message_id, write, "delivery_failed")

    # ------------------------------------------------------------------ closing

    def close(self, message_id: int, *, by: str, now: datetime, outcome: str,
              note: str | None = None) -> Message:
        """Register the callback: by whom, when, how it went. Closed once only (409)."""
        if outcome not in OUTCOMES:
            raise MessageError({"outcome": f'expected one of {", ".join(OUTCOMES)}, got "{outcome}"'})
        if note is not None and (not isinstance(note, str) or len(note) > LIMITS["note"]):
            raise MessageError({"note": f"expected text of at most {LIMITS['note']} characters"})

        def write(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT closed_at, closed_by FROM messages WHERE id = ?",
                               (message_id,)).fetchone()
            if row is None:
                raise MessageNotFound(message_id)
            if row[0] is not None:
                raise MessageError({"state": f"already closed at {row[0]} by {row[1]}"}, status=409)
            conn.execute("UPDATE messages SET closed_at = ?, closed_by = ?, outcome = ?, close_note = ? "
                         "WHERE id = ?", (format_at(now), by, outcome, note, message_id))
            conn.execute(_EVENT, (message_id, format_at(now), "closed", by, outcome))
        return self._change(message_id, write, "closed")

    def _change(self, message_id: int, write: Callable[[sqlite3.Connection], None], kind: str) -> Message:
        def checked(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is None:
                raise MessageNotFound(message_id)
            write(conn)
        self.log.submit(checked).result()
        self._notify(kind, message_id)
        message = self.get(message_id)
        assert message is not None
        return message

    def _notify(self, kind: str, message_id: int) -> None:
        for listener in list(self.listeners):
            try:
                listener(kind, message_id)
            except Exception:
                log.exception("messages: listener failed on %s", kind)


def _with_target(draft: Draft, entry: Any) -> Draft:
    return replace(draft, target_unit=_unit(entry), target_name=entry.name, target_email=entry.email)
