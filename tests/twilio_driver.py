"""A fake Twilio that speaks the wire: signed form posts in, TwiML documents out.

``Twilio`` plays Twilio's side of the webhooks against the real application over real
HTTP (aiohttp's test server): it posts the documented parameters form-encoded, signs
every request as Twilio does (HMAC-SHA1 over the full URL followed by the POST
parameters sorted by name, each name then value, base64; header X-Twilio-Signature --
computed here from that description, not with the library's validator), parses every
answer as XML and follows it the way Twilio would:

* ``<Say>``/``<Play>`` are "heard" (kept in ``Call.heard``), ``<Pause>`` passes;
* ``<Gather>`` waits: ``press()`` posts ``Digits`` to its action, ``timeout()`` goes on
  with the next verb (the fallback ``<Redirect>``);
* ``<Redirect>`` posts to its URL and runs the answer; falling off the end hangs up;
* ``<Enqueue>`` waits: ``wait_round()`` posts its ``waitUrl`` and runs that document
  (``<Leave/>`` posts the ``action`` with ``QueueResult=leave``), ``hang_up()`` posts
  the action with ``QueueResult=hangup``;
* ``<Dial>`` of an agent rings: ``agent_answers()`` runs the ``url`` of the ``<Client>``
  or ``<Number>`` on a new agent leg, ``agent_hangs_up()`` / ``dial_ends()`` post the
  ``action`` with ``DialCallStatus``;
* ``<Record>`` waits: ``record()`` posts ``RecordingUrl`` to its action and to the
  ``recordingStatusCallback``;
* ``<Hangup/>`` (and every hang-up) posts the number's status callback, ``completed``.

``FakeRest`` is the REST API behind ``twilio.rest.Client`` (an injected HTTP client): it
records every ``calls(sid).update`` and answers from a script (``500``, ``429``, an
exception, else ``200``); ``Call.follow_rest()`` then does what Twilio does with a
redirect: the ``<Enqueue action>`` with ``QueueResult=redirected``, then the new URL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twilio.http import AsyncHttpClient, HttpClient
from twilio.http.response import Response

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "twilio-test-token-0123456789abcdef"


def sid(prefix: str = "CA") -> str:
    return prefix + secrets.token_hex(16)


def sign(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's signature: the URL, then each POST parameter (sorted by name) as name+value."""
    data = url + "".join(k + params[k] for k in sorted(params))
    mac = hmac.new(token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class ManualClock:
    def __init__(self, now: datetime):
        self.value = now

    def now(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> datetime:
        self.value += timedelta(seconds=seconds)
        return self.value


# ---------------------------------------------------------------------------- REST


class _Script:
    def __init__(self, outcomes: list[Any] | tuple[Any, ...] = ()):
        self.script = list(outcomes)
        self.requests: list[dict[str, Any]] = []  # method, url, data, outcome

    def _answer(self, method: str, uri: str, data: dict[str, object] | None) -> Response:
        outcome = self.script.pop(0) if self.script else 200
        self.requests.append({"method": method, "url": uri, "data": dict(data or {}), "outcome": outcome})
        if isinstance(outcome, BaseException):
            raise outcome
        call = uri.rsplit("/", 1)[-1].removesuffix(".json")
        if outcome >= 400:
            return Response(outcome, json.dumps({"code": 20000 + outcome, "status": outcome,
                                                 "message": "fake failure"}))
        return Response(outcome, json.dumps({"sid": call, "account_sid": ACCOUNT_SID,
                                             "status": "in-progress"}))

    def redirects(self, call_sid: str) -> list[str]:
        """URLs the call was successfully redirected to, in order."""
        return [r["data"]["Url"] for r in self.requests
                if r["url"].endswith(f"/Calls/{call_sid}.json") and r["outcome"] == 200]


class FakeRest(_Script, AsyncHttpClient):
    def __init__(self, outcomes: list[Any] | tuple[Any, ...] = ()):
        AsyncHttpClient.__init__(self, logging.getLogger("fake-twilio-rest"), True)
        _Script.__init__(self, outcomes)

    async def request(self, method: str, uri: str, params: Any = None, data: Any = None,
                      headers: Any = None, auth: Any = None, timeout: Any = None,
                      allow_redirects: bool = False) -> Response:
        assert auth == (ACCOUNT_SID, AUTH_TOKEN), "REST calls authenticate with the account"
        return self._answer(method, uri, data)


class SyncFakeRest(_Script, HttpClient):
    """The same, as a blocking client (the transport must run it in a thread)."""

    def __init__(self, outcomes: list[Any] | tuple[Any, ...] = ()):
        HttpClient.__init__(self, logging.getLogger("fake-twilio-rest"), False)
        _Script.__init__(self, outcomes)

    def request(self, method: str, uri: str, params: Any = None, data: Any = None, headers: Any = None,
                auth: Any = None, timeout: Any = None, allow_redirects: bool = False) -> Response:
        return self._answer(method, uri, data)


# ---------------------------------------------------------------------------- webhooks


@dataclass
class Sent:
    url: str
    params: dict[str, str]
    signature: str | None
    status: int = 0
    text: str = ""


class Twilio:
    """Twilio's side of the webhooks for one application under test."""

    def __init__(self, client: Any, *, token: str = AUTH_TOKEN, public: str | None = None,
                 rest: _Script | None = None):
        self.client = client  # aiohttp TestClient
        self.server = str(client.make_url("")).rstrip("/")
        self.public = (public or self.server).rstrip("/")
        self.token = token
        self.rest = rest
        self.sent: list[Sent] = []

    def url(self, path: str) -> str:
        return self.public + path

    async def post(self, url: str, params: dict[str, str], *, signature: str | None = "sign",
                   sign_as: str | None = None) -> Sent:
        """POST as Twilio: form-encoded, signed for ``url`` (or ``sign_as``) unless told not to."""
        if not url.startswith(self.public):
            raise AssertionError(f"Twilio was told to request {url}, outside {self.public}")
        if signature == "sign":
            signature = sign(self.token, sign_as or url, params)
        headers = {"X-Twilio-Signature": signature} if signature is not None else {}
        resp = await self.client.post(url[len(self.public):], data=params, headers=headers)
        sent = Sent(url, dict(params), signature, resp.status, await resp.text())
        self.sent.append(sent)
        return sent

    async def replay(self, sent: Sent) -> Sent:
        """Twilio retrying a webhook: the same URL, parameters and signature."""
        return await self.post(sent.url, sent.params, signature=sent.signature)

    def call(self, caller: str = "+46701234567", called: str = "+46331234567") -> Call:
        return Call(self, sid(), caller, called)


@dataclass
class Call:
    twilio: Twilio
    sid: str
    caller: str
    called: str
    heard: list[str] = field(default_factory=list)
    agent_heard: list[str] = field(default_factory=list)
    state: str = "new"        # gather | enqueue | dial | talking | record | ended
    verb: ET.Element | None = None
    rest_of_doc: list[ET.Element] = field(default_factory=list)
    followed: int = 0
    queue_time: int = 0
    agent_leg: str | None = None
    last: Sent | None = None

    # ------------------------------------------------------------------ requests

    def params(self, **extra: str) -> dict[str, str]:
        status = "ringing" if self.state == "new" else "in-progress"
        base = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": self.sid,
                "CallStatus": status, "Direction": "inbound", "From": self.caller, "To": self.called,
                "Caller": self.caller, "Called": self.called, "FromCountry": "SE", "ToCountry": "SE"}
        base.update(extra)
        return base

    async def post(self, url: str, **extra: str) -> Sent:
        self.last = await self.twilio.post(url, self.params(**extra))
        assert self.last.status == 200, f"{url}: HTTP {self.last.status} {self.last.text}"
        return self.last

    async def _run(self, sent: Sent) -> None:
        await self._follow(list(ET.fromstring(sent.text)))

    async def _follow(self, verbs: list[ET.Element]) -> None:
        while verbs:
            verb, verbs = verbs[0], verbs[1:]
            match verb.tag:
                case "Say" | "Play":
                    self.heard.append(verb.text or "")
                case "Pause":
                    pass
                case "Gather" | "Record" | "Enqueue" | "Dial":
                    for inner in verb if verb.tag == "Gather" else ():
                        if inner.tag in ("Say", "Play"):
                            self.heard.append(inner.text or "")
                    self.state = {"Gather": "gather", "Record": "record", "Enqueue": "enqueue",
                                  "Dial": "dial"}[verb.tag]
                    self.verb, self.rest_of_doc = verb, verbs
                    return
                case "Redirect":
                    await self._run(await self.post(verb.text or ""))
                    return
                case "Hangup":
                    break
                case other:
                    raise AssertionError(f"unexpected TwiML verb <{other}> in a call document")
        await self._completed()

    async def _completed(self) -> None:
        self.state = "ended"
        await self.post(self.twilio.url("/twilio/status"), CallStatus="completed", CallDuration="60")

    def _expect(self, state: str) -> ET.Element:
        assert self.state == state and self.verb is not None, f"call is {self.state}, not {state}"
        return self.verb

    # ------------------------------------------------------------------ the caller

    async def start(self) -> Sent:
        sent = await self.post(self.twilio.url("/twilio/voice"))
        self.state = "running"
        await self._run(sent)
        return sent

    async def press(self, digits: str) -> Sent:
        gather = self._expect("gather")
        sent = await self.post(gather.attrib["action"], Digits=digits)
        await self._run(sent)
        return sent

    async def timeout(self) -> None:
        self._expect("gather")
        await self._follow(self.rest_of_doc)

    async def record(self, seconds: int = 10) -> Sent:
        rec = self._expect("record")
        recording = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid('RE')}"
        extra = {"RecordingUrl": recording, "RecordingDuration": str(seconds),
                 "RecordingSid": recording.rsplit("/", 1)[-1], "Digits": "#"}
        sent = await self.post(rec.attrib["action"], **extra)
        if "recordingStatusCallback" in rec.attrib:
            await self.post(rec.attrib["recordingStatusCallback"], RecordingStatus="completed",
                            RecordingUrl=recording, RecordingSid=extra["RecordingSid"],
                            RecordingDuration=str(seconds))
        await self._run(sent)
        return sent

    async def wait_round(self, press: str | None = None) -> str:
        """One round of the waitUrl; returns the wait document."""
        enqueue = self._expect("enqueue")
        self.queue_time += 10
        sent = await self.post(enqueue.attrib["waitUrl"], QueueSid=sid("QU"), QueuePosition="1",
                               QueueTime=str(self.queue_time), AvgQueueTime="30", CurrentQueueSize="1",
                               MaxQueueSize="100")
        for verb in ET.fromstring(sent.text):
            match verb.tag:
                case "Say" | "Play":
                    self.heard.append(verb.text or "")
                case "Gather":
                    self.heard.extend(v.text or "" for v in verb if v.tag in ("Say", "Play"))
                    if press is not None:
                        answer = await self.post(verb.attrib["action"], Digits=press)
                        if any(v.tag == "Leave" for v in ET.fromstring(answer.text)):
                            await self._leave("leave")
                        return sent.text
                case "Leave":
                    await self._leave("leave")
                    return sent.text
                case "Hangup":
                    await self._completed()
                    return sent.text
        return sent.text

    async def _leave(self, result: str) -> None:
        enqueue = self._expect("enqueue")
        sent = await self.post(enqueue.attrib["action"], QueueResult=result, QueueSid=sid("QU"),
                               QueueTime=str(self.queue_time))
        if result == "leave":
            await self._run(sent)

    async def follow_rest(self) -> int:
        """Carry out the REST redirects made since the last look; how many."""
        assert self.twilio.rest is not None
        urls = self.twilio.rest.redirects(self.sid)[self.followed:]
        for url in urls:
            self.followed += 1
            if self.state == "enqueue":  # dequeued by the REST API: the action is requested at once
                await self._leave("redirected")
            await self._run(await self.post(url))
        return len(urls)

    async def hang_up(self) -> None:
        if self.state == "enqueue":
            await self._leave("hangup")
        elif self.state in ("dial", "talking"):  # the Dial ends with the caller
            dial = self.verb
            assert dial is not None
            status = "completed" if self.state == "talking" else "canceled"
            await self.post(dial.attrib["action"], CallStatus="completed", DialCallStatus=status,
                            DialCallSid=self.agent_leg or sid(), DialCallDuration="30")
        await self._completed()

    # ------------------------------------------------------------------ the agent's leg

    def dialled(self) -> tuple[str, str]:
        """What the ringing ``<Dial>`` calls: ("Client", "anna") or ("Number", "+46...")."""
        noun = next(iter(self._expect("dial")))
        return noun.tag, (noun.text or "").strip()

    async def agent_answers(self) -> str:
        """The agent picks up: the noun's url runs on their leg. Returns its document."""
        dial = self._expect("dial")
        noun = next(iter(dial))
        self.agent_leg = sid()
        leg = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": self.agent_leg,
               "ParentCallSid": self.sid, "CallStatus": "in-progress", "Direction": "outbound-dial",
               "From": self.caller, "To": f"client:{noun.text}" if noun.tag == "Client" else noun.text or ""}
        sent = await self.twilio.post(noun.attrib["url"], leg)
        assert sent.status == 200, sent.text
        doc = list(ET.fromstring(sent.text))
        self.agent_heard.extend(v.text or "" for v in doc if v.tag in ("Say", "Play"))
        if any(v.tag == "Hangup" for v in doc):  # the agent's leg was refused
            await self.dial_ends("completed")
        else:
            self.state = "talking"
        return sent.text

    async def agent_hangs_up(self, talked_s: int = 120) -> Sent:
        dial = self.verb
        assert self.state == "talking" and dial is not None, f"call is {self.state}, not talking"
        sent = await self.post(dial.attrib["action"], DialCallStatus="completed",
                               DialCallSid=self.agent_leg or sid(), DialCallDuration=str(talked_s))
        await self._run(sent)
        return sent

    async def dial_ends(self, status: str) -> Sent:
        """The dialled party did not answer (``no-answer``, ``busy``, ``failed``)."""
        dial = self.verb
        assert self.state in ("dial", "talking") and dial is not None
        sent = await self.post(dial.attrib["action"], DialCallStatus=status, DialCallSid=sid())
        await self._run(sent)
        return sent


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# ---------------------------------------------------------------------------- the application


T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)  # a Tuesday, 09:30 in Stockholm: open


@dataclass
class Rig:
    """The application under test, its fake Twilio and what the tests look at."""

    runtime: Any
    transport: Any
    twilio: Twilio
    rest: _Script
    clock: ManualClock
    log: Any
    sleeps: list[float]
    on_sleep: list[Any] = field(default_factory=list)  # coroutines functions run by the next sleeps

    @property
    def center(self) -> Any:
        return self.runtime.center

    def advance(self, seconds: float) -> datetime:
        now = self.clock.advance(seconds)
        self.center.tick(now)
        return now

    async def settle(self) -> None:
        """Let the REST redirects under way finish."""
        await self.transport.drain()

    async def row(self, call_sid: str) -> dict[str, Any] | None:
        await asyncio.get_running_loop().run_in_executor(None, self.log.flush)
        return self.log.call(call_sid)

    async def events(self, call_sid: str) -> list[dict[str, Any]]:
        await asyncio.get_running_loop().run_in_executor(None, self.log.flush)
        return self.log.events(call_sid)


async def rig(aiohttp_client: Any, tmp_path: Path, *, overrides: dict[str, object] | None = None,
              env: dict[str, str] | None = None, rest: _Script | None = None, public: str | None = None,
              demo: bool = False) -> Rig:
    from ivr.config import load_settings
    from ivr.server import Runtime, make_app
    from ivr.store import EventLog
    from ivr.transports.twilio import install

    root = Path(__file__).resolve().parent.parent
    env = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN} if env is None else env
    settings = load_settings(root / "config.toml", env=env, overrides=overrides)
    log = EventLog.open(tmp_path / "ivr.db", hash_key=b"twilio-test-key-0123456789")
    clock = ManualClock(T0)
    runtime = Runtime(settings, sink=log, clock=clock, timers=False)
    fake = rest if rest is not None else FakeRest()
    sleeps: list[float] = []
    on_sleep: list[Any] = []

    async def sleep(seconds: float) -> None:  # the REST backoff, without waiting
        sleeps.append(seconds)
        if on_sleep:
            await on_sleep.pop(0)()

    made: list[Any] = []
    app = make_app(runtime, setups=[lambda app, rt: made.append(
        install(app, rt, demo=demo, http_client=fake, sleep=sleep))])
    client = await aiohttp_client(app)
    twilio = Twilio(client, token=env.get("TWILIO_AUTH_TOKEN", AUTH_TOKEN), public=public, rest=fake)
    return Rig(runtime, made[0], twilio, fake, clock, log, sleeps, on_sleep)
