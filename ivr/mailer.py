"""Mailing messages to case officers: SMTP with aiosmtplib, and the delivery loop.

:class:`Mailer` sends one e-mail through ``[smtp]`` (STARTTLS and login when configured;
the password from ``IVR_SMTP_PASSWORD``, never logged). :class:`DeliveryLoop` is the
server's task: it sends what is due, records each attempt in the message
(:class:`ivr.messages.MessageBook`), and sleeps until the next due time on the runtime's
clock, or until it is poked (a new message). A message that cannot be sent is kept and
tried again after a growing delay (:func:`ivr.messages.retry_delay`), never dropped.
SQLite work runs in worker threads; only the SMTP conversation runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from ivr.messages import MessageBook, render_email

log = logging.getLogger(__name__)


class MailError(RuntimeError):
    """An e-mail could not be handed to the SMTP server; the reason, without secrets."""


class Mailer:
    def __init__(self, smtp: Any, *, tls_context: ssl.SSLContext | None = None) -> None:
        if smtp.host is None:
            raise ValueError("smtp.host is not set: e-mail is off")
        self.smtp, self.tls_context = smtp, tls_context

    @property
    def sender(self) -> str:
        return self.smtp.from_address

    async def send(self, mail: EmailMessage) -> None:
        smtp = self.smtp
        login = {"username": smtp.username, "password": smtp.password or ""} if smtp.username else {}
        try:
            await aiosmtplib.send(mail, hostname=smtp.host, port=smtp.port, start_tls=smtp.starttls,
                                  timeout=smtp.timeout_s, tls_context=self.tls_context, **login)
        except aiosmtplib.SMTPException as e:
            raise MailError(f"{type(e).__name__}: {e}") from None
        except (OSError, TimeoutError) as e:
            raise MailError(f"{smtp.host}:{smtp.port}: {type(e).__name__}: {e}") from None


class DeliveryLoop:
    """Sends due messages; waits for the next due time by ``now()`` or a :meth:`poke`."""

    def __init__(self, book: MessageBook, mailer: Mailer, *, now: Callable[[], datetime],
                 audio_url_base: str | None = None) -> None:  # fmt: skip
        self.book, self.mailer, self.now = book, mailer, now
        self.audio_url_base = audio_url_base
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def poke(self) -> None:
        """Something may be due sooner (a new message): look again. Safe from any thread."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._wake.set)

    async def deliver_due(self) -> int:
        """One round: try every message due now; the number delivered."""
        self._loop = asyncio.get_running_loop()
        delivered = 0
        for message in await asyncio.to_thread(self.book.due, self.now()):
            try:  # one message that cannot be rendered or sent never holds up the others
                mail = render_email(message, sender=self.mailer.sender, audio_url_base=self.audio_url_base,
                                    now=self.now())
                await self.mailer.send(mail)
            except (MailError, ValueError) as e:
                log.warning("messages: delivery of message %d to %s failed (attempt %d), kept for a "
                            "retry: %s", message.id, message.target_email, message.attempts + 1, e)
                await asyncio.to_thread(self.book.failed, message.id, self.now(), str(e))
                continue
            await asyncio.to_thread(self.book.delivered, message.id, self.now())
            log.info("messages: message %d delivered to %s", message.id, message.target_email)
            delivered += 1
        return delivered

    async def next_delay(self) -> float | None:
        due = await asyncio.to_thread(self.book.next_due)
        return None if due is None else max(0.0, (due - self.now()).total_seconds())

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        while True:
            try:
                await self.deliver_due()
                delay = await self.next_delay()
            except Exception:  # the store is failing: try again later, never die
                log.exception("messages: the delivery round failed")
                delay = self.mailer.smtp.retry_min_s
            # On 3.11 asyncio.wait_for (used inside aiosmtplib too) can swallow a cancellation
            # that arrives as its awaitable finishes: honour one that is still pending, and
            # wait with asyncio.timeout, which does not swallow it.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
