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
records every request and answers from a script (``500``, ``429``, an exception, else
``200``; a deleted participant ``204``); ``Call.follow_rest()`` then does what Twilio does
with each, in order: a redirect of the caller's call (the ``<Enqueue action>`` with
``QueueResult=redirected``, then the new URL); a redirect of the agent's leg (its new
document runs on that leg, and the caller's ``<Dial>`` to it ends: its ``action`` with
``DialCallStatus=completed``); Conference Participants created, updated (``Hold``,
``HoldUrl``, ``EndConferenceOnExit``) and deleted. It also serves a recording's media
(``fetch_media``: ``GET RecordingUrl.wav`` with the account's basic auth, from the same
script; the bytes are ``audio(sid)``) and deletes recordings (``DELETE
.../Recordings/RE....json``: ``204``).

Conferences (``<Dial><Conference>``, as documented for the noun and the Participants
resource): a participant joining by TwiML is labelled by ``participantLabel``; the
``statusCallback`` gets ``conference-start``/``-end`` and ``participant-join``/``-leave``
(those named in ``statusCallbackEvent``) with ``ConferenceSid``, ``FriendlyName``,
``CallSid``, ``StatusCallbackEvent``; a participant created by the API rings
(``colleague_answers()``, ``colleague_fails(status)``) and its own ``statusCallback``
gets its call progress (``CallStatus`` ringing, in-progress, completed, busy, ...). A
TwiML participant leaving (removed, or the conference ended) goes on with its ``<Dial
action>``; one with ``endConferenceOnExit`` leaving ends the conference.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twilio.http import AsyncHttpClient, HttpClient
from twilio.http.response import Response

from .conftest import ManualClock

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "twilio-test-token-0123456789abcdef"


def sid(prefix: str = "CA") -> str:
    return prefix + secrets.token_hex(16)


def sign(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's signature: the URL, then each POST parameter (sorted by name) as name+value."""
    data = url + "".join(k + params[k] for k in sorted(params))
    mac = hmac.new(token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


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
        if "/Recordings/" in uri and method == "DELETE":
            return Response(204, "")
        if "/Participants" in uri:  # the Participant resource
            conference = uri.split("/Conferences/", 1)[1].split("/", 1)[0]
            if method == "DELETE":
                return Response(204, "")
            made = call == "Participants"
            call_sid = sid() if made else call
            self.requests[-1]["call_sid"] = call_sid
            body = {"account_sid": ACCOUNT_SID, "conference_sid": conference, "call_sid": call_sid,
                    "label": (data or {}).get("Label") if made else call, "status": "queued" if made
                    else "connected", "hold": (data or {}).get("Hold") == "true"}
            return Response(201 if made else 200, json.dumps(body))
        return Response(outcome, json.dumps({"sid": call, "account_sid": ACCOUNT_SID,
                                             "status": "in-progress"}))

    async def fetch_media(self, url: str, auth: tuple[str, str], timeout_s: float) -> tuple[int, bytes]:
        """``GET`` of a recording's media (what ``ivr.transports.twilio_rest.Media`` does)."""
        assert auth == (ACCOUNT_SID, AUTH_TOKEN), "media is fetched with the account's basic auth"
        outcome = self.script.pop(0) if self.script else 200
        self.requests.append({"method": "GET", "url": url, "data": {}, "outcome": outcome})
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome >= 400:
            return outcome, b""
        return 200, self.audio(url.rsplit("/", 1)[-1].removesuffix(".wav"))

    @staticmethod
    def audio(recording_sid: str) -> bytes:
        """The media served for a recording: a WAV header, then bytes that name it."""
        return b"RIFF\x24\x00\x00\x00WAVEfmt " + recording_sid.encode() + bytes(range(256))

    def deleted_recordings(self) -> list[str]:
        """RecordingSids deleted (or already gone: 404), in order."""
        return [r["url"].rsplit("/", 1)[-1].removesuffix(".json") for r in self.requests
                if r["method"] == "DELETE" and "/Recordings/" in r["url"] and r["outcome"] in (200, 204, 404)]

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
        self.conferences: dict[str, Conference] = {}  # by name

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
class Party:
    """A conference participant."""

    call_sid: str
    label: str
    end_on_exit: bool = False
    hold: bool = False
    hold_url: str | None = None
    action: str | None = None           # joined by TwiML: its <Dial action>
    status_callback: str | None = None  # added by the API: its call progress
    events: tuple[str, ...] = ()
    state: str = "in-progress"          # added by the API: ringing until answered
    to: str = ""                        # added by the API: whom it calls


@dataclass
class Conference:
    name: str
    sid: str
    status_callback: str | None
    events: tuple[str, ...]
    parties: dict[str, Party] = field(default_factory=dict)  # by label
    ended: bool = False
    sequence: int = 0


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
    queue_time: int = 0
    agent_leg: str | None = None
    last: Sent | None = None
    rest_seen: int = 0                 # REST requests looked at (all calls')
    conference: Conference | None = None

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
                case "Dial" if len(verb) and verb[0].tag == "Conference":
                    self.state, self.verb, self.rest_of_doc = "conference", verb, verbs
                    await self._join(verb, self.sid, "caller")
                    return
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
        """Carry out this call's REST requests made since the last look, in order; how many."""
        assert self.twilio.rest is not None
        done = 0
        while self.rest_seen < len(self.twilio.rest.requests):
            r = self.twilio.rest.requests[self.rest_seen]
            self.rest_seen += 1
            if r["outcome"] not in (200, 204):
                continue
            if r["url"].endswith(f"/Calls/{self.sid}.json"):
                if self.state == "enqueue":  # dequeued by the REST API: the action is requested at once
                    await self._leave("redirected")
                await self._run(await self.post(r["data"]["Url"]))
            elif self.agent_leg is not None and r["url"].endswith(f"/Calls/{self.agent_leg}.json"):
                await self._agent_redirected(r["data"]["Url"])
            elif self.conference is not None and f"/Conferences/{self.conference.sid}/" in r["url"]:
                await self._participants(self.conference, r)
            else:
                continue  # another call's
            done += 1
        return done

    # ------------------------------------------------------------------ conferences

    def _leg(self, call_sid: str, to: str) -> dict[str, str]:
        return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": call_sid,
                "ParentCallSid": self.sid, "CallStatus": "in-progress", "Direction": "outbound-dial",
                "From": self.caller, "To": to}

    async def _agent_redirected(self, url: str) -> None:
        """The agent's leg runs a new document; the caller's <Dial> to it ends."""
        assert self.agent_leg is not None and self.state == "talking"
        sent = await self.twilio.post(url, self._leg(self.agent_leg, "client:agent"))
        assert sent.status == 200, sent.text
        doc = list(ET.fromstring(sent.text))
        if doc and doc[0].tag == "Dial" and len(doc[0]) and doc[0][0].tag == "Conference":
            await self._join(doc[0], self.agent_leg, "agent")
        dial = self.verb
        assert dial is not None
        await self._run(await self.post(dial.attrib["action"], DialCallStatus="completed",
                                        DialCallSid=self.agent_leg, DialCallDuration="30"))

    async def _conference_event(self, conf: Conference, event: str, party: Party | None = None) -> None:
        if conf.status_callback is None or event.split("-")[-1] not in conf.events:
            return
        conf.sequence += 1
        params = {"AccountSid": ACCOUNT_SID, "ConferenceSid": conf.sid, "FriendlyName": conf.name,
                  "StatusCallbackEvent": event, "SequenceNumber": str(conf.sequence),
                  "Timestamp": "Tue, 01 Dec 2026 08:30:00 +0000"}
        if party is not None:
            params.update(CallSid=party.call_sid, Hold=str(party.hold).lower(), Muted="false",
                          EndConferenceOnExit=str(party.end_on_exit).lower(), Coaching="false")
        sent = await self.twilio.post(conf.status_callback, params)
        assert sent.status == 200, sent.text

    async def _join(self, dial: ET.Element, call_sid: str, default_label: str) -> None:
        noun = dial[0]
        name = (noun.text or "").strip()
        conf = self.twilio.conferences.get(name)
        if conf is None or conf.ended:
            conf = Conference(name, sid("CF"), noun.attrib.get("statusCallback"),
                              tuple(noun.attrib.get("statusCallbackEvent", "").split()))
            self.twilio.conferences[name] = conf
        self.conference = conf
        party = Party(call_sid, noun.attrib.get("participantLabel", default_label),
                      end_on_exit=noun.attrib.get("endConferenceOnExit") == "true",
                      action=dial.attrib["action"])
        first = not conf.parties
        conf.parties[party.label] = party
        if first and noun.attrib.get("startConferenceOnEnter", "true") == "true":
            await self._conference_event(conf, "conference-start")
        await self._conference_event(conf, "participant-join", party)

    async def _participants(self, conf: Conference, r: dict[str, Any]) -> None:
        data, label = r["data"], r["url"].rsplit("/", 1)[-1].removesuffix(".json")
        if r["method"] == "POST" and label == "Participants":  # created: its phone rings
            events = data.get("StatusCallbackEvent") or []
            party = Party(r["call_sid"], data["Label"], end_on_exit=data.get("EndConferenceOnExit") == "true",
                          status_callback=data.get("StatusCallback"),
                          events=tuple(events if isinstance(events, list) else str(events).split()),
                          state="ringing", to=data["To"])
            conf.parties[party.label] = party
            await self._progress(party, "ringing")
        elif r["method"] == "POST":
            party = conf.parties[label]
            if "Hold" in data:
                party.hold, party.hold_url = data["Hold"] == "true", data.get("HoldUrl")
            if "EndConferenceOnExit" in data:
                party.end_on_exit = data["EndConferenceOnExit"] == "true"
        else:
            await self._party_leaves(conf, conf.parties[label], removed=True)

    async def _progress(self, party: Party, status: str) -> None:
        """The API participant's call progress, to its statusCallback."""
        event = {"in-progress": "answered"}.get(status, "completed" if status != "ringing" else "ringing")
        if party.status_callback is None or event not in party.events:
            return
        params = self._leg(party.call_sid, party.to)
        params.update(CallStatus=status, Direction="outbound-api", CallbackSource="call-progress-events")
        params.pop("ParentCallSid")
        sent = await self.twilio.post(party.status_callback, params)
        assert sent.status == 200, sent.text

    async def _party_leaves(self, conf: Conference, party: Party, *, removed: bool = False,
                            hung_up: bool = False) -> None:
        conf.parties.pop(party.label, None)
        if party.action is None:  # added by the API
            ringing = party.state == "ringing"
            await self._progress(party, "canceled" if ringing and removed else "completed")
            if ringing:
                return
        await self._conference_event(conf, "participant-leave", party)
        if party.action is not None:
            leg = self._leg(party.call_sid, "") if party.call_sid != self.sid else self.params()
            leg["CallStatus"] = "completed" if hung_up else "in-progress"
            sent = await self.twilio.post(party.action, leg)
            assert sent.status == 200, sent.text
            if party.call_sid == self.sid and not hung_up:  # the caller goes on in its document
                await self._run(sent)
            elif party.call_sid != self.sid:
                self.agent_heard.extend(v.tag for v in ET.fromstring(sent.text))
        if party.end_on_exit and not conf.ended:
            await self._end(conf)

    async def _end(self, conf: Conference) -> None:
        conf.ended = True
        await self._conference_event(conf, "conference-end")
        for party in list(conf.parties.values()):
            await self._party_leaves(conf, party)

    def party(self, label: str) -> Party:
        assert self.conference is not None, "the call is in no conference"
        return self.conference.parties[label]

    async def colleague_answers(self, label: str = "colleague") -> None:
        party = self.party(label)
        party.state = "in-progress"
        await self._progress(party, "in-progress")
        assert self.conference is not None
        await self._conference_event(self.conference, "participant-join", party)

    async def colleague_fails(self, status: str, label: str = "colleague") -> None:
        """The added participant's phone is ``busy``, not answered (``no-answer``) or ``failed``."""
        party = self.party(label)
        assert self.conference is not None
        self.conference.parties.pop(label)
        await self._progress(party, status)

    async def party_hangs_up(self, label: str) -> None:
        """A participant (the colleague, the agent) hangs up."""
        assert self.conference is not None
        await self._party_leaves(self.conference, self.party(label), hung_up=True)

    async def hang_up(self) -> None:
        if self.state == "conference" and self.conference is not None:  # the caller leaves the conference
            await self._party_leaves(self.conference, self.party("caller"), hung_up=True)
            await self._completed()
            return
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
              demo: bool = False, setups: tuple[Any, ...] = ()) -> Rig:
    """The application with the Twilio transport (and ``setups``, e.g. the API's, after it)."""
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
        install(app, rt, demo=demo, http_client=fake, sleep=sleep, media=fake)), *setups])
    client = await aiohttp_client(app)
    twilio = Twilio(client, token=env.get("TWILIO_AUTH_TOKEN", AUTH_TOKEN), public=public, rest=fake)
    return Rig(runtime, made[0], twilio, fake, clock, log, sleeps, on_sleep)
