"""Commands -> TwiML documents, with ``twilio.twiml.voice_response.VoiceResponse``.

Pure functions of their arguments: no I/O, no state but a cache. Every URL in a document is
absolute, built from the public base address (``[twilio] public_url``, or the address
the request came in on), so Twilio's requests are signed for the address a reverse
proxy shows it, and every action URL carries the document's ``step``: the transport
uses it to tell a retried webhook from a new one.

* ``Play``: ``<Play>`` of ``/recordings/...`` when the prompt has audio, else
  ``<Say language voice>``.
* ``Gather``: ``<Gather input="dtmf" numDigits timeout finishOnKey action>`` with the
  prompts nested, then a ``<Redirect>`` to the action marked ``timeout=1`` (no input).
* ``Record``: the prompts, ``<Record action maxLength finishOnKey
  recordingStatusCallback>``, then a ``<Redirect>`` marked ``empty=1``.
* ``Enqueue``: ``<Enqueue waitUrl action>`` in a Twilio queue named after ours.
* ``Transfer``: ``<Dial action>`` of the target (a number, ``client:NAME``, ``sip:...``).
* ``Hangup``: ``<Hangup/>``.
* an offer: ``<Dial timeout action>`` of the agent's endpoint, whose ``url`` reports the
  answer.

Building a document with ``VoiceResponse`` (an ElementTree, serialised) costs more than
the rest of a webhook's handling, and most documents recur: every caller of a menu gets
the same one for the same step. So the documents are kept in a bounded cache keyed by
every argument they are built from (frozen values: prompts, commands, the base address,
the step, the style); being pure functions, a cached document is the very text that
would be built again. Only the offer to an agent, which names the call, is built each
time.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from ivr.controller import CALLBACK_HINT
from ivr.vocabulary import Command, Hangup, Prompt, Record, Transfer
from ivr.vocabulary import Gather as GatherCommand

LANGUAGES = {"sv": "sv-SE", "en": "en-GB"}
QUEUE_NAME_MAX = 64  # Twilio's limit on a queue's name
CACHE_SIZE = 4096    # documents kept per kind (a few hundred bytes each)
WAIT_PAUSE_S = 15    # between waitUrl polls when no hold music is configured

SORRY = Prompt("sv", "Tyvärr gick något fel. Försök igen om en stund. Hej då.")


@dataclass(frozen=True, slots=True)
class Style:
    """What the documents need from ``[twilio]``: voices, hold music, caller id."""

    voice_sv: str = "Polly.Astrid"
    voice_en: str = "Polly.Amy"
    hold_music: str | None = None   # under recordings/
    caller_id: str | None = None

    def voice(self, language: str) -> tuple[str, str]:
        if language == "en":
            return LANGUAGES["en"], self.voice_en
        return LANGUAGES["sv"], self.voice_sv


def url(base: str, name: str, **query: object) -> str:
    """``{base}/twilio/{name}?{query}``, ``None`` values left out."""
    pairs = [(k, str(v)) for k, v in query.items() if v is not None]
    return f"{base}/twilio/{name}" + (f"?{urlencode(pairs)}" if pairs else "")


def recording_url(base: str, audio: str) -> str:
    return f"{base}/recordings/{quote(audio)}"


def _speak(parent: VoiceResponse | Gather, prompt: Prompt, base: str, style: Style) -> None:
    if prompt.audio:
        parent.play(recording_url(base, prompt.audio))
    elif prompt.text:
        language, voice = style.voice(prompt.language)
        parent.say(prompt.text, language=language, voice=voice)


def _endpoint(dial: Dial, address: str, **attrs: str) -> None:
    """``client:NAME`` -> ``<Client>``, ``sip:...`` -> ``<Sip>``, else ``<Number>``."""
    if address.startswith("client:"):
        dial.client(address[len("client:"):], method="POST", **attrs)
    elif address.startswith("sip:"):
        dial.sip(address, method="POST", **attrs)
    else:
        dial.number(address, method="POST", **attrs)


_cached = functools.lru_cache(maxsize=CACHE_SIZE, typed=True)


def flow(plays: Iterable[Prompt], cmd: Command | None, *, base: str, step: int, style: Style) -> str:
    """The prompts, then the flow's blocking command (Gather, Record, Transfer, Hangup)."""
    return _flow(tuple(plays), cmd, base, step, style)


@_cached
def _flow(plays: tuple[Prompt, ...], cmd: Command | None, base: str, step: int, style: Style) -> str:
    r = VoiceResponse()
    for prompt in plays:
        _speak(r, prompt, base, style)
    match cmd:
        case GatherCommand():
            action = url(base, "gather", step=step)
            g = r.gather(input="dtmf", num_digits=cmd.max_digits, timeout=max(1, round(cmd.timeout_s)),
                         finish_on_key=cmd.finish_on_key or "", action=action, method="POST",
                         action_on_empty_result=False)
            for prompt in cmd.prompts:
                _speak(g, prompt, base, style)
            r.redirect(url(base, "gather", step=step, timeout=1), method="POST")
        case Record():
            for prompt in cmd.prompts:
                _speak(r, prompt, base, style)
            r.record(action=url(base, "record", step=step), method="POST", max_length=cmd.max_length_s,
                     finish_on_key=cmd.finish_on_key, play_beep=True,
                     recording_status_callback=url(base, "recording-status"),
                     recording_status_callback_method="POST")
            r.redirect(url(base, "record", step=step, empty=1), method="POST")
        case Transfer():
            attrs = {"caller_id": style.caller_id} if style.caller_id else {}
            dial = r.dial(action=url(base, "transfer-result", step=step), method="POST", **attrs)
            _endpoint(dial, cmd.target)
        case Hangup():
            r.hangup()
        case None:
            pass
        case _:
            raise ValueError(f"no TwiML for {type(cmd).__name__}")
    return str(r)


def enqueue(plays: Iterable[Prompt], queue: str, *, base: str, step: int, style: Style) -> str:
    return _enqueue(tuple(plays), queue, base, step, style)


@_cached
def _enqueue(plays: tuple[Prompt, ...], queue: str, base: str, step: int, style: Style) -> str:
    r = VoiceResponse()
    for prompt in plays:
        _speak(r, prompt, base, style)
    r.enqueue(queue[:QUEUE_NAME_MAX], wait_url=url(base, "wait", step=step), wait_url_method="POST",
              action=url(base, "queue-exit", step=step), method="POST")
    return str(r)


def dial_agent(plays: Iterable[Prompt], *, agent: str, endpoint: str, call_sid: str, ring_s: float,
               base: str, step: int, style: Style) -> str:
    """Ring the agent; the ``url`` runs on the agent's leg when they answer."""
    r = VoiceResponse()
    for prompt in plays:
        _speak(r, prompt, base, style)
    attrs = {"caller_id": style.caller_id} if style.caller_id else {}
    dial = r.dial(action=url(base, "dial-result", step=step, agent=agent), method="POST",
                  timeout=max(5, round(ring_s)), **attrs)
    _endpoint(dial, endpoint, url=url(base, "agent-answer", call=call_sid, agent=agent, step=step))
    return str(r)


def wait(announcements: Iterable[Prompt], *, base: str, step: int, style: Style,
         callback_language: str | None = None) -> str:
    """One round of waiting: announcements, then hold music (or a pause). With
    ``callback_language`` the round listens for 1 (call me back), said after each
    announcement."""
    return _wait(tuple(announcements), base, step, style, callback_language)


@_cached
def _wait(said: tuple[Prompt, ...], base: str, step: int, style: Style, callback_language: str | None) -> str:
    r = VoiceResponse()
    parent: VoiceResponse | Gather = r
    if callback_language is not None:
        parent = r.gather(input="dtmf", num_digits=1, timeout=1, action=url(base, "wait-key", step=step),
                          method="POST", action_on_empty_result=False)
    for prompt in said:
        _speak(parent, prompt, base, style)
    if callback_language is not None and said:  # with each position announcement
        hint = CALLBACK_HINT.get(callback_language, CALLBACK_HINT["sv"])
        _speak(parent, Prompt(callback_language, hint), base, style)
    if style.hold_music:
        parent.play(recording_url(base, style.hold_music))
    else:
        parent.pause(length=WAIT_PAUSE_S)
    return str(r)


@functools.cache
def leave() -> str:
    """From a waitUrl: out of the queue, on to the ``<Enqueue action>``."""
    r = VoiceResponse()
    r.leave()
    return str(r)


@_cached
def agent_whisper(text: str | None, style: Style) -> str:
    """On the agent's leg before the two are connected."""
    r = VoiceResponse()
    if text:
        language, voice = style.voice("sv")
        r.say(text, language=language, voice=voice)
    return str(r)


@_cached
def refuse_agent(style: Style) -> str:
    r = VoiceResponse()
    language, voice = style.voice("sv")
    r.say("Samtalet har redan kopplats vidare.", language=language, voice=voice)
    r.hangup()
    return str(r)


@_cached
def retry_later(*, base: str, seconds: int = 5) -> str:
    """Twilio could not queue the caller: wait a moment and ask again."""
    r = VoiceResponse()
    r.pause(length=seconds)
    r.redirect(url(base, "resume"), method="POST")
    return str(r)


@_cached
def sorry(style: Style) -> str:
    r = VoiceResponse()
    _speak(r, SORRY, "", style)
    r.hangup()
    return str(r)


@functools.cache
def empty() -> str:
    return str(VoiceResponse())
