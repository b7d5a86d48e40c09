"""The JSON API of messages to case officers (``/api/messages``); see ``docs/messages.md``.

Agents write messages and see the open ones; supervisors see all. Every read and write
of the message book runs in a worker thread (``asyncio.to_thread``): the book's writes
go through the event log's one writer thread and wait for it there, never on the loop.
With ``[smtp] host`` set, a :class:`ivr.mailer.DeliveryLoop` task sends them.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr.directory import Directory
from ivr.mailer import DeliveryLoop, Mailer
from ivr.messages import OUTCOMES, STATES, MessageBook, MessageError, MessageNotFound
from ivr.retention import local_audio_name
from ivr.server import Runtime
from ivr.web.api import API, ApiError, Field, read_body, reply, text
from ivr.web.auth import User

log = logging.getLogger(__name__)

MESSAGES: web.AppKey[Messages] = web.AppKey("ivr_messages")
AUDIO_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".gsm": "audio/x-gsm"}


class Messages:
    def __init__(self, runtime: Runtime, book: MessageBook, loop: DeliveryLoop | None,
                 recordings: Path) -> None:  # fmt: skip
        self.runtime, self.book, self.delivery, self.recordings = runtime, book, loop, recordings

    @property
    def email(self) -> str:
        return "on" if self.delivery is not None else "not-configured"

    def body(self, message: Any, *, reveal: bool = False) -> dict[str, Any]:
        return {**message.as_json(self.runtime.now(), reveal=reveal), "email": self.email}

    async def create(self, request: web.Request, user: User) -> web.Response:
        data = await _json_object(request)
        now = self.runtime.now()
        call_id = data.get("call_id")
        if isinstance(call_id, str) and call_id and not await self.may_hand_off(user, call_id):
            # a message marks its call as handed off (never resolved at first contact): only
            # for a call the agent has taken (a supervisor: any call in the log)
            return reply({"error": "call_id: not a call of yours", "errors": {
                "call_id": "not a call you have taken"}}, status=400)
        try:
            message = await asyncio.to_thread(self.book.create, data, by=user.agent or user.name, now=now)
        except MessageError as e:
            return reply({"error": str(e), "errors": e.errors}, status=e.status)
        log.info("message %d written by %s to %s", message.id, user.name, message.target_id)
        return reply(self.body(message, reveal=True), status=201)

    async def may_hand_off(self, user: User, call_id: str) -> bool:
        center = self.runtime.center
        agent = user.agent
        if agent is not None and call_id in (center.call_of(agent), self.runtime.queues.agent_call(agent)):
            return True  # the call the agent is on, or is wrapping up
        if user.role == "supervisor" and call_id in center.sessions:
            return True
        sql = "SELECT agent FROM calls WHERE call_id = ?"
        rows = await asyncio.to_thread(self.book.log.query, sql, (call_id,))
        if not rows:
            return False
        return user.role == "supervisor" or (user.agent is not None and rows[0]["agent"] == user.agent)

    async def list(self, request: web.Request, user: User) -> web.Response:
        state = request.query.get("state", "open")
        if state not in STATES:
            raise ApiError(400, f'state: expected one of {", ".join(STATES)}, got "{state}"')
        if state != "open" and user.role != "supervisor":
            raise ApiError(403, "agents see open messages; state=closed and state=all need the "
                           "supervisor role")
        messages = await asyncio.to_thread(self.book.list, state)
        return reply({"messages": [self.body(m) for m in messages], "email": self.email,
                      "categories": list(self.book.categories), "outcomes": list(OUTCOMES)})

    async def one(self, request: web.Request, user: User) -> web.Response:
        message = await self.visible(request, user)
        history = await asyncio.to_thread(self.book.history, message.id)
        return reply({**self.body(message, reveal=True), "history": history})

    async def close(self, request: web.Request, user: User) -> web.Response:
        message_id = _id(request)
        body = await read_body(request, {"outcome": Field(text(40, choices=OUTCOMES), required=True),
                                          "note": Field(text(1000, nullable=True))})
        try:
            message = await asyncio.to_thread(self.book.close, message_id, by=user.agent or user.name,
                                              now=self.runtime.now(), outcome=body["outcome"],
                                              note=body.get("note"))
        except MessageNotFound as e:
            raise ApiError(404, str(e)) from None
        except MessageError as e:
            return reply({"error": str(e), "errors": e.errors}, status=e.status)
        log.info("message %d closed by %s: %s", message.id, user.name, message.outcome)
        return reply(self.body(message))

    async def audio(self, request: web.Request, user: User) -> web.StreamResponse:
        message = await self.visible(request, user)
        if message.audio_ref is None:
            raise ApiError(404, f"message {message.id} has no voice recording")
        path = self.audio_path(message.audio_ref)
        if path is None:
            raise ApiError(404, f"the recording of message {message.id} is not on this server "
                           "(deleted by retention, or not yet fetched from the telephony provider)")
        content_type = AUDIO_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    def audio_path(self, ref: str) -> Path | None:
        """The local file of a recording, only inside the messages directory (a Twilio
        RecordingUrl: the copy the transport downloaded, ``twilio-RE....wav``)."""
        root = self.recordings.resolve()
        path = (root / local_audio_name(ref)).resolve()
        return path if root in path.parents and path.is_file() else None

    async def visible(self, request: web.Request, user: User) -> Any:
        message_id = _id(request)
        message = await asyncio.to_thread(self.book.get, message_id)
        if message is None:
            raise ApiError(404, f"no message {message_id}")
        if not message.is_open and user.role != "supervisor":
            raise ApiError(403, f"message {message_id} is closed; closed messages need the supervisor role")
        return message


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, f'no message "{raw}"')
    return int(raw)


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; the book checks the fields (all errors at once)."""
    try:
        data = await request.json()
    except ValueError as e:
        raise ApiError(400, f"body: expected JSON ({e})") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"body: expected a JSON object, got {type(data).__name__}")
    return data


def setup(app: web.Application, runtime: Runtime, *, demo: bool) -> None:
    """Add the routes, and the delivery task when ``[smtp] host`` is set."""
    sink = runtime.sink
    if not hasattr(sink, "submit") or getattr(sink, "db_path", None) is None:
        log.warning("messages: the sink is not an event log; /api/messages is off")
        return
    api = app[API]  # ivr.web.api's setup runs first: its authentication guards these routes
    settings = runtime.settings
    directory = Directory(sink.db_path, now=runtime.now)
    book = MessageBook.from_settings(sink, settings, directory)
    delivery = None
    if settings.smtp.enabled:
        delivery = DeliveryLoop(book, Mailer(settings.smtp), now=runtime.now,
                                audio_url_base=settings.messages.audio_url_base)
        book.listeners.append(lambda kind, message_id: kind == "created" and delivery.poke())
    else:
        log.info("messages: [smtp] host is not set; messages are kept as pending, not mailed")
    # Voice messages: the controller calls this for each `recording` trace it drains
    # (ContactCenter.on_recording, see docs/messages.md).
    runtime.center.on_recording = lambda call_id, session, trace: book.from_recording(
        call_id, trace, caller=session.caller, category=session.category)
    messages = Messages(runtime, book, delivery, Path(sink.db_path).parent / "messages")
    app[MESSAGES] = messages
    add = app.router
    add.add_post("/api/messages", api.guard("agent", messages.create))
    add.add_get("/api/messages", api.guard("agent", messages.list))
    add.add_get("/api/messages/{id}", api.guard("agent", messages.one))
    add.add_post("/api/messages/{id}/close", api.guard("agent", messages.close))
    add.add_get("/api/messages/{id}/audio", api.guard("agent", messages.audio))

    async def start(_app: web.Application) -> None:
        if delivery is not None:
            runtime.spawn(delivery.run(), "message-delivery")

    async def cleanup(_app: web.Application) -> None:
        await asyncio.to_thread(directory.close)

    app.on_startup.append(start)
    app.on_cleanup.append(cleanup)
