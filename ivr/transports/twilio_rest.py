"""Twilio's REST API as the Twilio transport uses it: redirect a live call to a new URL, and
take recorded voice messages out of Twilio.

Redirects are ``calls(sid).update(url=...)``, through ``twilio.rest.Client`` with the HTTP
client injectable (any ``twilio.http.HttpClient``; an ``AsyncHttpClient`` is awaited, a
synchronous one runs in a worker thread so the event loop never blocks). A failure that
may pass (network error, timeout, HTTP 429 or 5xx) is retried with exponential backoff,
the sleep injectable so tests never wait; any other refusal (404: the call is gone,
400: not in progress) is final. Every failure is logged; nothing here raises.

Voice messages (:class:`Recordings`): when Twilio says a recording is ready, its audio
(``RecordingUrl`` + ``.wav``, HTTP basic auth with the account) is downloaded into the
messages folder as ``twilio-RE....wav`` (temporary file, then renamed), then the
recording is deleted at Twilio (``recordings(sid).delete()``; a 404 means it is gone already).
The media is binary, which ``twilio.http`` clients return as text, so it is fetched with
aiohttp (:class:`AiohttpMedia`, the session injectable; any object with
``fetch_media`` will do), with the same retries. A download that keeps failing is
logged (``recording left at Twilio``) and the recording stays there: nothing is lost,
and the daily purge deletes it at Twilio when its retention is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http import HttpClient
from twilio.rest import Client

from ivr.retention import RemoteRecording, twilio_file_name, twilio_recording_sid

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]
T = TypeVar("T")
MAX_RECORDING_BYTES = 64 * 1024 * 1024  # a <Record> of maxLength 3600 s in 8 kHz 16-bit WAV is 58 MB


class Media(Protocol):
    """Fetches a recording's audio: (HTTP status, body; empty unless 200)."""

    async def fetch_media(self, url: str, auth: tuple[str, str], timeout_s: float) -> tuple[int, bytes]: ...


class AiohttpMedia:
    """:class:`Media` over aiohttp; the session injectable, else made on first use and closed here."""

    def __init__(self, session: aiohttp.ClientSession | None = None):
        self._session = session
        self._own = session is None

    async def fetch_media(self, url: str, auth: tuple[str, str], timeout_s: float) -> tuple[int, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Authorization": aiohttp.encode_basic_auth(*auth)}
        async with self._session.get(url, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                return resp.status, b""
            body = bytearray()
            async for chunk in resp.content.iter_chunked(65536):
                body += chunk
                if len(body) > MAX_RECORDING_BYTES:
                    raise ValueError(f"{url}: more than {MAX_RECORDING_BYTES} bytes; not a voice message")
            return 200, bytes(body)

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()


def retryable(exc: BaseException) -> bool:
    """Worth trying again: the network, a timeout, Twilio busy (429) or failing (5xx)."""
    if isinstance(exc, TwilioRestException):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, OSError | TimeoutError | aiohttp.ClientError)


class Rest:
    """Redirects calls; ``retries`` more attempts after the first, delays doubling."""

    def __init__(self, account_sid: str, auth_token: str, *, retries: int,
                 http_client: HttpClient | None = None, sleep: Sleep = asyncio.sleep,
                 first_delay_s: float = 0.5, max_delay_s: float = 8.0, timeout_s: float = 10.0,
                 media: Media | None = None, media_timeout_s: float = 60.0):
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
        self.media = media if media is not None else AiohttpMedia()
        self.media_timeout_s = media_timeout_s
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

    async def _retrying(self, what: str, op: Callable[[], Awaitable[T]], *,
                        final: str) -> tuple[bool, T | None]:
        """``op`` until it succeeds, retrying what may pass; (succeeded, its result)."""
        for attempt in range(self.retries + 1):
            if attempt:
                await self.sleep(self.delay(attempt))
            try:
                return True, await op()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                if retryable(exc) and attempt < self.retries:
                    log.warning("twilio REST: %s failed (attempt %d of %d): %s; retrying in %.1f s", what,
                                attempt + 1, self.retries + 1, _describe(exc), self.delay(attempt + 1))
                    continue
                log.error("twilio REST: gave up %s after %d attempt(s): %s; %s", what, attempt + 1,
                          _describe(exc), final)
                return False, None
        return False, None

    async def download_recording(self, recording_sid: str, media_url: str) -> bytes | None:
        """The audio at ``media_url`` (authenticated with the account), or None."""

        async def fetch() -> bytes:
            status, body = await self.media.fetch_media(media_url, (self.account_sid, self.auth_token),
                                                        self.media_timeout_s)
            if status != 200:
                raise TwilioRestException(status, media_url, "fetching the recording's media failed",
                                          method="GET")
            return body

        ok, body = await self._retrying(f"downloading recording {recording_sid}", fetch,
                                        final="recording left at Twilio")
        return body if ok else None

    async def delete_recording(self, recording_sid: str) -> bool:
        """Delete the recording at Twilio; True when it is gone (404: already gone)."""
        return await self.delete_recording_outcome(recording_sid) in ("deleted", "gone")

    async def delete_recording_outcome(self, recording_sid: str) -> str:
        """Delete the recording at Twilio: ``"deleted"``; ``"gone"`` (404, deleted before);
        ``"refused"`` (another 4xx, e.g. 403: trying again will not help); ``"retry"``
        (network, 429 or 5xx through every retry: worth another try later)."""

        async def delete() -> str:
            recording = self._get_client().recordings(recording_sid)
            try:
                if self._http is not None and self._http.is_async:
                    await recording.delete_async()
                else:
                    await asyncio.to_thread(recording.delete)
            except TwilioRestException as e:
                if e.status == 404:
                    return "gone"
                if retryable(e):
                    raise
                log.error("twilio REST: deleting recording %s at Twilio refused: %s; recording left "
                          "at Twilio (delete it in the Twilio console)", recording_sid, _describe(e))
                return "refused"
            return "deleted"

        ok, outcome = await self._retrying(f"deleting recording {recording_sid} at Twilio", delete,
                                           final="recording left at Twilio")
        return outcome if ok and outcome is not None else "retry"

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            close = getattr(self._http, "close", None)
            if close is not None:
                await close()
        close_media = getattr(self.media, "close", None)
        if close_media is not None:
            await close_media()


class Recordings:
    """Voice messages out of Twilio: downloaded into ``folder``, then deleted at Twilio."""

    def __init__(self, rest: Rest, folder: Path):
        self.rest, self.folder = rest, folder
        self._busy: set[str] = set()  # RecordingSids being kept (Twilio may send the callback twice)

    async def keep(self, recording_sid: str, recording_url: str, *, call_sid: str = "") -> Path | None:
        """Download ``recording_url`` + ``.wav`` to ``twilio-<sid>.wav``, then delete it at Twilio.

        The path of the local copy, or None when it could not be had (logged; the recording
        stays at Twilio). A copy already here is not fetched again; the deletion is retried.
        """
        path = self.folder / twilio_file_name(recording_sid)
        if twilio_recording_sid(recording_url) != recording_sid:  # our credentials go to Twilio only
            raise ValueError(f"RecordingUrl {recording_url[:120]!r} is not Twilio's URL of {recording_sid}")
        if recording_sid in self._busy:
            return None
        self._busy.add(recording_sid)
        try:
            if not await asyncio.to_thread(path.is_file):
                audio = await self.rest.download_recording(recording_sid, recording_url + ".wav")
                if audio is None:
                    log.error("twilio: recording %s of call %s could not be downloaded: recording left at "
                              "Twilio (deleted there by the daily purge after [privacy] recording_days)",
                              recording_sid, call_sid or "?")
                    return None
                await asyncio.to_thread(write_atomically, path, audio)
                log.info("twilio: recording %s of call %s stored as %s (%d bytes)", recording_sid,
                         call_sid or "?", path.name, len(audio))
            if await self.rest.delete_recording(recording_sid):
                log.info("twilio: recording %s deleted at Twilio", recording_sid)
            return path
        finally:
            self._busy.discard(recording_sid)

    async def delete(self, due: list[RemoteRecording]) -> tuple[list[RemoteRecording], int]:
        """Delete recordings past their retention at Twilio: (those to try again at the next
        purge, how many were deleted now). One already gone (404) is neither; one Twilio
        refuses (403 ...) is logged and not tried again, so it cannot hold every later purge
        back to its day."""
        outcomes = [(r, await self.rest.delete_recording_outcome(r.sid)) for r in due]
        again = [r for r, outcome in outcomes if outcome == "retry"]
        deleted = sum(outcome == "deleted" for _r, outcome in outcomes)
        if due:
            log.info("twilio: %d recording(s) past retention: %d deleted at Twilio, %d already gone, "
                     "%d refused, %d to try again", len(due), deleted,
                     sum(o == "gone" for _r, o in outcomes), sum(o == "refused" for _r, o in outcomes),
                     len(again))
        return again, deleted


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file in the same folder, then renamed over it:
    a reader sees the whole file or none. Readable by the owner only (personal data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TwilioRestException):
        return f"HTTP {exc.status} (code {exc.code}): {exc.msg}"
    return f"{type(exc).__name__}: {exc}"
