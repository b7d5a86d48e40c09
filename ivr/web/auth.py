"""Who is calling the API: users, passwords, session cookies, roles and lockouts.

Users are the ``[users.NAME]`` tables of ``config.toml``; a user with ``demo = true``
exists only while the server runs with ``--demo``. A request proves who it is in one of
two ways:

* **HTTP Basic** (``Authorization: Basic ...``), for scripts and API clients: the
  password is checked on every request (a successful check is remembered for a minute,
  keyed by an HMAC of the password, so a polling client does not pay argon2 each time);
* a **session cookie** from ``POST /api/login``: ``USER.EXPIRY.SIGNATURE`` where the
  signature is HMAC-SHA256 over the user and the expiry with the server's secret
  (``IVR_SESSION_KEY``, or a random key per process). The cookie is HttpOnly,
  SameSite=Strict, Secure over https, and lasts 12 hours.

Passwords are argon2 hashes checked with argon2-cffi in a worker thread (slow on
purpose; never on the event loop). Failed attempts are logged without the password and
counted per user and client address: after 5 failures in a row that pair is locked
out for 30 seconds (on the runtime's clock), answered 429 without a password check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = logging.getLogger(__name__)

SESSION_COOKIE = "ivr_session"
SESSION_KEY_ENV = "IVR_SESSION_KEY"
SESSION_TTL = timedelta(hours=12)
MIN_KEY_BYTES = 16
MAX_FAILURES = 5                    # failures in a row per (user, address) ...
LOCKOUT = timedelta(seconds=30)     # ... then locked out this long
VERIFIED_TTL = timedelta(seconds=60)  # a Basic password checked once is trusted this long
MAX_TRACKED = 10_000                # failure counters kept; beyond, only lockouts are kept
ROLES = ("agent", "supervisor")

_hasher = PasswordHasher()
# Checked against when the user is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("no such user: " + secrets.token_hex(8))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` for ``[users.NAME] password_hash`` (``ivr passwd``)."""
    if not isinstance(password, str) or not password:
        raise ValueError("password: expected a non-empty string")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; slow on purpose (run it in a thread)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str               # "agent" | "supervisor"
    agent: str | None       # the agent id the user works as
    display: str | None


class AuthError(Exception):
    """A request without valid credentials: answered ``status`` with ``message``."""

    def __init__(self, status: int, message: str, *, challenge: bool = False,
                 retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.challenge, self.retry_after = challenge, retry_after


def session_key(env: Mapping[str, str] | None = None) -> bytes:
    """The secret that signs session cookies: ``IVR_SESSION_KEY``, or a random key."""
    env = os.environ if env is None else env
    value = env.get(SESSION_KEY_ENV)
    if value:
        key = value.encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"{SESSION_KEY_ENV}: expected at least {MIN_KEY_BYTES} bytes, "
                             f"got {len(key)}")
        return key
    log.warning("%s is not set: session cookies are signed with a random key and do not "
                "survive a restart (everyone logs in again)", SESSION_KEY_ENV)
    return secrets.token_bytes(32)


class Authenticator:
    """Users, password checks, session cookies and the failure counter of one server."""

    def __init__(self, users: Mapping[str, Any], *, demo: bool, now: Callable[[], datetime],
                 key: bytes):
        self.users: dict[str, Any] = {n: u for n, u in users.items() if demo or not u.demo}
        self.now = now
        self._key = key
        self._failures: dict[tuple[str, str], tuple[int, datetime | None]] = {}
        self._verified: dict[tuple[str, bytes], datetime] = {}
        self._revoked: dict[str, datetime] = {}  # signatures of logged-out cookies -> expiry

    # ------------------------------------------------------------------ passwords

    def user(self, name: str) -> User | None:
        u = self.users.get(name)
        if u is None or u.role not in ROLES:
            return None
        return User(u.name, u.role, u.agent, u.display)

    async def check_password(self, name: str, password: str, address: str) -> User:
        """The user, when ``password`` is right; AuthError 401 (wrong) or 429 (locked out)."""
        now = self.now()
        slot = (name, address)
        count, until = self._failures.get(slot, (0, None))
        if until is not None and now < until:
            wait = max(1, int((until - now).total_seconds() + 0.999))
            log.warning("login refused: user %r from %s is locked out for %d s", name, address, wait)
            raise AuthError(429, f"too many failed logins; try again in {wait} s", retry_after=wait)
        user = self.user(name)
        stored = self.users[name].password_hash if user is not None else _DUMMY_HASH
        fingerprint = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        trusted = self._verified.get((name, fingerprint))
        if user is not None and trusted is not None and now < trusted:
            ok = True
        else:
            ok = await asyncio.to_thread(verify_password, stored, password) and user is not None
        if not ok:
            count += 1  # (a lockout that has run out left the count at 0)
            locked = now + LOCKOUT if count >= MAX_FAILURES else None
            if len(self._failures) >= MAX_TRACKED:
                self._failures = {k: v for k, v in self._failures.items()
                                  if v[1] is not None and now < v[1]}
            self._failures[slot] = (0 if locked else count, locked)
            log.warning("login failed: user %r from %s (%s)%s", name, address,
                        "unknown user" if user is None else "wrong password",
                        f"; locked out for {LOCKOUT.seconds} s" if locked else "")
            raise AuthError(401, "wrong user or password", challenge=True)
        self._failures.pop(slot, None)
        self._verified = {k: t for k, t in self._verified.items() if t > now}
        self._verified[(name, fingerprint)] = now + VERIFIED_TTL
        assert user is not None
        return user

    # ------------------------------------------------------------------ cookies

    def _sign(self, name: str, expiry: int) -> str:
        message = f"{name}\0{expiry}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, user: User) -> tuple[str, datetime]:
        """A session cookie value for ``user`` and when it expires."""
        expires = self.now() + SESSION_TTL
        expiry = int(expires.timestamp())
        name = base64.urlsafe_b64encode(user.name.encode()).decode().rstrip("=")
        return f"{name}.{expiry}.{self._sign(user.name, expiry)}", expires

    def from_cookie(self, value: str) -> User:
        """The user a cookie vouches for; AuthError 401 when forged, expired or revoked."""
        bad = AuthError(401, "invalid or expired session; log in again")
        parts = value.split(".")
        if len(parts) != 3:
            raise bad
        encoded, expiry_text, signature = parts
        try:
            name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            expiry = int(expiry_text)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise bad from None
        if not hmac.compare_digest(self._sign(name, expiry), signature):
            log.warning("a session cookie with a bad signature (user %r)", name)
            raise bad
        if self.now().timestamp() >= expiry or signature in self._revoked:
            raise bad
        user = self.user(name)
        if user is None:  # removed from the config, or a demo user without --demo
            raise bad
        return user

    def revoke(self, value: str) -> None:
        """Log a cookie out for good (it stays refused until it would have expired)."""
        now = self.now()
        self._revoked = {s: t for s, t in self._revoked.items() if t > now}
        parts = value.split(".")
        if len(parts) == 3 and parts[1].isdigit():
            try:
                self.from_cookie(value)
            except AuthError:
                return
            self._revoked[parts[2]] = datetime.fromtimestamp(int(parts[1]), now.tzinfo)

    # ------------------------------------------------------------------ requests

    async def authenticate(self, request: web.Request) -> User:
        """The user making ``request`` (Basic first, then the cookie), or AuthError 401/429."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, encoded = header.partition(" ")
            if scheme.lower() != "basic":
                raise AuthError(401, "unsupported authorization scheme; use Basic", challenge=True)
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise AuthError(401, "malformed Basic credentials", challenge=True) from None
            name, sep, password = decoded.partition(":")
            if not sep:
                raise AuthError(401, "malformed Basic credentials", challenge=True)
            return await self.check_password(name, password, client_address(request))
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is not None:
            return self.from_cookie(cookie)
        raise AuthError(401, "authentication required (HTTP Basic or POST /api/login)", challenge=True)


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def set_session_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(SESSION_COOKIE, value, max_age=int(SESSION_TTL.total_seconds()), path="/",
                        httponly=True, samesite="Strict", secure=request.secure)


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict",
                        secure=request.secure)
