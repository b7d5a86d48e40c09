"""Delivery to a real SMTP server (aiosmtpd on loopback, port 0), on an injected clock.

The server runs in aiosmtpd's own thread; the test's loop talks to it with aiosmtplib.
Nothing sleeps: the clock only moves when a test moves it, and waiting for the server is
a wait on an event that only a failing test would time out.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ivr.config import load_settings
from ivr.directory import Directory, Entry
from ivr.mailer import DeliveryLoop, Mailer
from ivr.messages import MessageBook
from ivr.store import EventLog

from .test_messages import CATEGORIES, KEY, T0, desk

WAIT_S = 5.0  # reached only when a test fails
PASSWORD = "hemligt-lösen-123"


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.mails: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.mails.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.arrived.set()
        return "250 Message accepted"


class LoopbackController(Controller):
    """aiosmtpd's Controller on port 0: learn the port before it checks the server is up."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def smtp_server(inbox: Inbox, port: int = 0, **kw) -> LoopbackController:
    controller = LoopbackController(inbox, hostname="127.0.0.1", port=port, **kw)
    controller.start()
    return controller


class ManualClock:
    def __init__(self) -> None:
        self.value = T0

    def now(self):
        return self.value


def settings_for(tmp_path: Path, port: int, extra: str = "", env: dict | None = None):
    path = tmp_path / "config.toml"
    path.write_text(f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\n'
                    f'from = "Kontaktcenter <kc@bollebygd.se>"\ntimeout_s = 5\n'
                    f"retry_min_s = 60\nretry_max_s = 600\n{extra}", encoding="utf-8")
    return load_settings(path, env=env or {})


@pytest.fixture
def book(tmp_path: Path) -> Iterator[MessageBook]:
    db = tmp_path / "ivr.db"
    with Directory(db) as directory:
        directory.upsert(Entry(id="asa", kind="person", name="Åsa Öberg", unit="Bygglovsenheten",
                               email="asa.oberg@bollebygd.se"))
        log = EventLog.open(db, hash_key=KEY)
        yield MessageBook(log, entries=directory, categories=CATEGORIES, promise_hours=24,
                          retry_min_s=60, retry_max_s=600)
        log.close()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


async def test_a_message_is_delivered_with_the_right_headers_and_body(tmp_path, book, inbox) -> None:
    server = smtp_server(inbox)
    try:
        clock = ManualClock()
        smtp = settings_for(tmp_path, server.port).smtp
        message = await asyncio.to_thread(book.create, desk(), by="anna", now=T0)
        delivery = DeliveryLoop(book, Mailer(smtp), now=clock.now)
        assert await delivery.deliver_due() == 1
    finally:
        server.stop()
    assert inbox.envelopes == [("kc@bollebygd.se", ["asa.oberg@bollebygd.se"])]
    mail = inbox.mails[0]
    assert mail["Subject"] == f"Meddelande / Message #{message.id}: bygglov, ärende / case BN 2026/117"
    assert (mail["From"], mail["To"], mail["X-Ivr-Message"]) == (
        "Kontaktcenter <kc@bollebygd.se>", "asa.oberg@bollebygd.se", str(message.id))
    body = mail.get_content()
    assert "Ring upp / Call back: +46701234567" in body and "Hur långt har mitt bygglov kommit?" in body
    done = book.get(message.id)
    assert done is not None
    assert (done.delivery, done.attempts, done.delivered_at, done.next_attempt_at) == (
        "delivered", 1, T0, None)
    assert await delivery.deliver_due() == 0  # sent once


async def test_a_server_that_is_down_keeps_the_message_and_it_is_sent_when_due(
        tmp_path, book, inbox, caplog) -> None:
    server = smtp_server(inbox)
    port = server.port
    server.stop()  # down: the port refuses connections
    clock = ManualClock()
    smtp = settings_for(tmp_path, port).smtp
    message = await asyncio.to_thread(book.create, desk(), by="anna", now=T0)
    delivery = DeliveryLoop(book, Mailer(smtp), now=clock.now)
    with caplog.at_level(logging.WARNING, logger="ivr.mailer"):
        assert await delivery.deliver_due() == 0
    kept = book.get(message.id)
    assert kept is not None
    assert (kept.delivery, kept.attempts, kept.next_attempt_at) == ("retrying", 1, T0 + timedelta(seconds=60))
    assert kept.last_error is not None and f"127.0.0.1 on port {port}" in kept.last_error
    assert f"delivery of message {message.id} to asa.oberg@bollebygd.se failed (attempt 1)" in caplog.text
    assert await delivery.next_delay() == 60.0
    assert [h["kind"] for h in book.history(message.id)] == ["created", "attempt_failed"]

    server = smtp_server(inbox, port=port)  # back up
    try:
        clock.value = T0 + timedelta(seconds=59)
        assert await delivery.deliver_due() == 0 and inbox.mails == []  # not due yet
        clock.value = T0 + timedelta(seconds=60)
        assert await delivery.deliver_due() == 1
    finally:
        server.stop()
    done = book.get(message.id)
    assert done is not None
    assert (done.delivery, done.attempts, done.delivered_at, done.last_error) == (
        "delivered", 2, T0 + timedelta(seconds=60), None)
    assert len(inbox.mails) == 1


async def test_the_loop_wakes_for_a_new_message_without_waiting_for_a_timer(tmp_path, book, inbox) -> None:
    server = smtp_server(inbox)
    clock = ManualClock()
    delivery = DeliveryLoop(book, Mailer(settings_for(tmp_path, server.port).smtp), now=clock.now)
    book.listeners.append(lambda kind, _id: kind == "created" and delivery.poke())
    task = asyncio.ensure_future(delivery.run())
    try:
        assert await delivery.next_delay() is None  # nothing to send: it waits without a timeout
        await asyncio.to_thread(book.create, desk(), by="anna", now=T0)  # pokes from a thread
        assert await asyncio.to_thread(inbox.arrived.wait, WAIT_S)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.stop()
    assert len(inbox.mails) == 1


# --------------------------------------------------------------------------- STARTTLS and login


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, well under a second)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"openssl cannot make a test certificate: {e}")
    return cert, key


def check_login(logins: list[str]):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"kontaktcenter", PASSWORD.encode())
        if ok:
            logins.append(f"{mechanism}:{auth_data.login.decode()}:{session.ssl is not None}")
        return AuthResult(success=ok)
    return authenticator


async def test_starttls_and_login_with_the_password_from_the_environment(
        tmp_path, book, inbox, certificate, caplog) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    logins: list[str] = []
    server = smtp_server(inbox, tls_context=server_tls, require_starttls=True, auth_required=True,
                         authenticator=check_login(logins))
    try:
        settings = settings_for(tmp_path, server.port, 'username = "kontaktcenter"\n',
                                env={"IVR_SMTP_PASSWORD": PASSWORD})
        smtp = type(settings.smtp)(**{**{f: getattr(settings.smtp, f) for f in settings.smtp.__slots__},
                                      "starttls": True})
        assert smtp.password == PASSWORD and PASSWORD not in repr(smtp)
        client_tls = ssl.create_default_context(cafile=str(cert))
        clock = ManualClock()
        await asyncio.to_thread(book.create, desk(), by="anna", now=T0)
        delivery = DeliveryLoop(book, Mailer(smtp, tls_context=client_tls), now=clock.now)
        with caplog.at_level(logging.DEBUG):
            assert await delivery.deliver_due() == 1
    finally:
        server.stop()
    assert logins == ["PLAIN:kontaktcenter:True"]  # logged in after STARTTLS
    assert len(inbox.mails) == 1
    assert PASSWORD not in caplog.text


async def test_a_message_that_cannot_be_mailed_does_not_hold_up_the_others(tmp_path, book, inbox) -> None:
    server = smtp_server(inbox)
    try:
        clock = ManualClock()
        bad = await asyncio.to_thread(book.create, desk(), by="anna", now=T0)
        good = await asyncio.to_thread(book.create, desk(), by="anna", now=T0)
        # a case number with a line break (as an older version let through) cannot go in a header
        await asyncio.to_thread(lambda: book.log.submit(lambda conn: conn.execute(
            "UPDATE messages SET case_number = 'BN 1\nBcc: x@example.com' WHERE id = ?", (bad.id,))
        ).result(5))
        delivery = DeliveryLoop(book, Mailer(settings_for(tmp_path, server.port).smtp), now=clock.now)
        assert await delivery.deliver_due() == 1
    finally:
        server.stop()
    assert len(inbox.mails) == 1 and inbox.mails[0]["X-Ivr-Message"] == str(good.id)
    kept = book.get(bad.id)
    assert kept is not None and kept.delivery == "retrying" and kept.attempts == 1
