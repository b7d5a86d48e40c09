"""Twilio's REST API as the Twilio transport uses it: redirect a live call to a new URL.

One call, ``calls(sid).update(url=...)``, through ``twilio.rest.Client`` with the HTTP
client injectable (any ``twilio.http.HttpClient``; an ``AsyncHttpClient`` is awaited, a
synchronous one runs in a worker thread so the event loop never blocks). A failure that
may pass (network error, timeout, HTTP 429 or 5xx) is retried with exponential backoff,
the sleep injectable so tests never wait; any other refusal (404: the call is gone,
400: not in progress) is final. Every failure is logged; nothing here raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http import HttpClient
from twilio.rest import Client

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]


def retryable(exc: BaseException) -> bool:
    """Worth trying again: the network, a timeout, Twilio busy (429) or failing (5xx)."""
    if isinstance(exc, TwilioRestException):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, OSError | TimeoutError | aiohttp.ClientError)


class Rest:
    """Redirects calls; ``retries`` more attempts after the first, delays doubling."""

    def __init__(self, account_sid: str, auth_token: str, *, retries: int,
                 http_client: HttpClient | None = None, sleep: Sleep = asyncio.sleep,
                 first_delay_s: float = 0.5, max_delay_s: float = 8.0, timeout_s: float = 10.0):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.retries = retries
        self.sleep = sleep
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self._http = http_client
        self._own_http = http_client is None
        self._client: Client | None = None
        self.failures = 0  # attempts that failed, for /metrics and tests

    def client(self) -> Client:
        """The ``twilio.rest.Client`` (transfers use its Participants API)."""
        return self._get_client()

    def _get_client(self) -> Client:
        if self._client is None:
            if self._http is None:  # made on first use: aiohttp wants a running loop
                from twilio.http.async_http_client import AsyncTwilioHttpClient

                self._http = AsyncTwilioHttpClient(timeout=self.timeout_s)
            self._client = Client(self.account_sid, self.auth_token, http_client=self._http,
                                  environment={})
        return self._client

    def delay(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (1-based): 0.5, 1, 2, 4, 8, 8..."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** (attempt - 1))

    async def redirect(self, call_sid: str, url: str, *,
                       still_needed: Callable[[], bool] = lambda: True) -> bool:
        """Point the live call at ``url`` (POST). True when Twilio accepted it.

        ``still_needed`` is asked before every attempt: when the change reached the call
        another way (its next webhook), the remaining attempts are skipped.
        """
        for attempt in range(self.retries + 1):
            if attempt:
                await self.sleep(self.delay(attempt))
            if not still_needed():
                return False
            try:
                await self._update(call_sid, url)
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                if retryable(exc) and attempt < self.retries:
                    log.warning("twilio REST: redirecting %s failed (attempt %d of %d): %s; retrying in "
                                "%.1f s", call_sid, attempt + 1, self.retries + 1, _describe(exc),
                                self.delay(attempt + 1))
                    continue
                log.error("twilio REST: gave up redirecting %s to %s after %d attempt(s): %s; the caller "
                          "stays where the engine has them and hears of the change on their next webhook",
                          call_sid, url, attempt + 1, _describe(exc))
                return False
        return False

    async def _update(self, call_sid: str, url: str) -> None:
        calls = self._get_client().calls(call_sid)
        if self._http is not None and self._http.is_async:
            await calls.update_async(url=url, method="POST")
        else:
            await asyncio.to_thread(calls.update, url=url, method="POST")

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            close = getattr(self._http, "close", None)
            if close is not None:
                await close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TwilioRestException):
        return f"HTTP {exc.status} (code {exc.code}): {exc.msg}"
    return f"{type(exc).__name__}: {exc}"
