"""The JSON API of agents and supervisors (``/api/...``); see ``docs/api.md``.

Agents work their calls (log in, pause, accept, hang up, code the wrap-up, transfer);
supervisors see the queues live (JSON and server-sent events), the day's figures and
switch announcements.
Every change goes through :class:`ivr.controller.ContactCenter` with the runtime's
clock, then ``runtime.poke()`` so the timer loop sees new deadlines. Reads of the event
log (the IVR path of a call, repeat callers, the day's figures from :mod:`ivr.metrics`)
run in a worker thread, never on the loop.

Errors are always ``{"error": "..."}`` with the status: 400 for a bad request (bad JSON,
an unknown field, a request the queue engine refuses), 401 without valid credentials,
403 for the wrong role, 404 for an unknown resource, 409 for a transfer that is not
possible now, 429 while locked out.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ivr import metrics
from ivr.hours import STOCKHOLM
from ivr.server import Runtime
from ivr.store import format_at
from ivr.transfers import KINDS as TRANSFER_KINDS
from ivr.transfers import TransferError, resolve_target
from ivr.web.auth import (
    Authenticator,
    AuthError,
    User,
    clear_session_cookie,
    client_address,
    session_key,
    set_session_cookie,
)
from ivr.web.live import LiveHub
from queues import CallLog, Offer, QueueError
from queues.model import CALLBACK_RESULTS, RESOLUTIONS

log = logging.getLogger(__name__)

PAUSE_REASONS = ("lunch", "admin", "training", "meeting", "other")
NOTE_MAX = 4000
TEXT_MAX = 1000
CALL_INFO_CACHE = 256  # calls whose IVR path and repeat flag are remembered
FIGURES_TTL_S = 5.0  # the day's figures are computed again after this (or after a change)
RECENT_MAX = 10  # completed calls on the wallboard
QUEUE_FIGURES = ("calls", "offered", "answered", "abandoned", "service_level", "asa_s", "longest_wait_s")
FCR_FIGURES = ("handled", "fcr_coded", "uncoded", "fcr_repeat", "fcr_repeat_pending",
               "fcr_repeat_excluded", "fcr_survey", "survey_answers")
# queue log kinds after which the day's figures are stale
FIGURE_KINDS = frozenset({"queue_answered", "queue_abandoned", "queue_overflow", "queue_closed",
                          "wrapup", "callback_requested", "callback_attempt", "callback_failed"})

API: web.AppKey[Api] = web.AppKey("ivr_api")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


dumps = functools.partial(json.dumps, ensure_ascii=False, default=_default)


def reply(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _choices(names: Any) -> str:
    return ", ".join(f'"{n}"' for n in names)


# --------------------------------------------------------------------------- bodies


class Field:
    """One field of a JSON body: its check and whether it must be there."""

    def __init__(self, check: Callable[[str, Any], Any], *, required: bool = False):
        self.check, self.required = check, required


def text(max_len: int, *, choices: tuple[str, ...] | None = None, nullable: bool = False
         ) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ApiError(400, f"{name}: expected a non-empty string, got {json.dumps(value)}")
        if len(value) > max_len:
            raise ApiError(400, f"{name}: at most {max_len} characters, got {len(value)}")
        if choices is not None and value not in choices:
            raise ApiError(400, f"{name}: expected one of {_choices(choices)}, got "
                           f"{json.dumps(value, ensure_ascii=False)}{_suggest(value, choices)}")
        return value
    return check


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ApiError(400, f"{name}: expected true or false, got {json.dumps(value)}")
    return value


def anything(name: str, value: Any) -> Any:
    return value


async def read_body(request: web.Request, fields: Mapping[str, Field]) -> dict[str, Any]:
    """The JSON object of a request, checked field by field; an empty body is ``{}``."""
    raw = await request.read()
    if raw.strip():
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"body: expected JSON ({e})") from None
    else:
        data = {}
    if not isinstance(data, dict):
        raise ApiError(400, f"body: expected a JSON object, got {type(data).__name__}")
    for key in data:
        if key not in fields:
            expected = f"expected one of {_choices(fields)}" if fields else "expected no fields"
            raise ApiError(400, f'unknown field "{key}": {expected}{_suggest(key, fields)}')
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        if name in data:
            out[name] = spec.check(name, data[name])
        elif spec.required:
            raise ApiError(400, f"{name}: missing")
    return out


# --------------------------------------------------------------------------- middleware


def _error_response(status: int, message: str, headers: Mapping[str, str] | None = None
                    ) -> web.Response:
    return reply({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    """Under ``/api/``: every error as ``{"error": ...}`` JSON; others pass untouched."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as e:
        return _error_response(e.status, e.message)
    except AuthError as e:
        headers = {}
        if e.challenge:
            headers["WWW-Authenticate"] = 'Basic realm="ivr", charset="UTF-8"'
        if e.retry_after is not None:
            headers["Retry-After"] = str(e.retry_after)
        return _error_response(e.status, e.message, headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        keep = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")}
        message = {404: "not found", 405: f"method {request.method} not allowed"}.get(
            e.status, e.reason)
        if e.status == 413:
            message = "request body too large"
        return _error_response(e.status, message, keep)
    except TransferError as e:
        return _error_response(e.status, str(e))
    except (QueueError, ValueError) as e:
        return _error_response(400, str(e))
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        return _error_response(500, "internal error")


# --------------------------------------------------------------------------- the API


Handler = Callable[[web.Request, User], Awaitable[web.StreamResponse]]


class Api:
    def __init__(self, runtime: Runtime, *, demo: bool, key: bytes | None = None):
        self.runtime = runtime
        self.settings = runtime.settings
        self.auth = Authenticator(self.settings.users, demo=demo, now=runtime.now,
                                  key=key if key is not None else session_key())
        self.offers: dict[str, Offer] = {}  # agent -> the latest offer it got
        self.dialling: set[str] = set()  # agents who accepted a callback and owe its result
        self._call_info: dict[str, dict[str, Any]] = {}  # call_id -> path, repeat (bounded)
        self.hub = LiveHub(self.overview, fingerprint, dumps=dumps)
        self.figures = DayFigures(runtime)

    # ------------------------------------------------------------------ plumbing

    def on_router_event(self, kind: str, payload: Any) -> None:
        """A Router listener: remember each agent's latest offer (queue, category, number)."""
        if kind == "offer" and isinstance(payload, Offer):
            self.offers[payload.agent] = payload
        elif kind == "call_log" and isinstance(payload, CallLog) and payload.kind in FIGURE_KINDS:
            self.figures.invalidate()

    def routes(self, app: web.Application) -> None:
        add = app.router
        add.add_post("/api/login", self.login)
        add.add_post("/api/logout", self.logout)
        add.add_get("/api/session", self.guard("agent", self.session))
        for action in ("login", "logout", "pause", "resume", "accept", "decline", "hangup",
                       "wrapup", "callback-result", "transfer", "transfer/complete", "transfer/cancel"):
            add.add_post(f"/api/agent/{action}",
                         self.guard("agent", functools.partial(self.agent_action, action)))
        add.add_get("/api/agent/state", self.guard("agent", self.agent_state))
        add.add_get("/api/agent/stream", self.guard("agent", self.agent_stream))
        add.add_get("/api/queues", self.guard("supervisor", self.queues))
        add.add_get("/api/queues/stream", self.guard("supervisor", self.stream))
        add.add_get("/api/agents", self.guard("supervisor", self.agents))
        add.add_get("/api/wallboard", self.guard("supervisor", self.wallboard))
        add.add_get("/api/announcements", self.guard("supervisor", self.announcements))
        add.add_post("/api/announcements/{slot}", self.guard("supervisor", self.set_announcement))

    def guard(self, role: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Authenticate, check the role (and, for POST, that the request is not cross-site)."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            if request.method == "POST":
                same_origin(request)
            user = await self.auth.authenticate(request)
            if role == "supervisor" and user.role != "supervisor":
                raise ApiError(403, "this needs the supervisor role")
            return await handler(request, user)
        return wrapped

    def acting_agent(self, request: web.Request, user: User) -> str:
        """The agent a request is about: the user's own, or ``?agent=ID`` for a supervisor."""
        given = request.query.get("agent")
        if user.role == "supervisor":
            agent = given or user.agent
            if not agent:
                raise ApiError(400, "agent: a supervisor names the agent with ?agent=ID")
        else:
            if given is not None and given != user.agent:
                raise ApiError(403, "an agent acts only for itself (?agent= is for supervisors)")
            agent = user.agent
            if not agent:
                raise ApiError(403, f'user "{user.name}" is not linked to an agent')
        if agent not in self.settings.agents:
            raise ApiError(400, f'agent: unknown agent "{agent}"{_suggest(agent, self.settings.agents)}')
        return agent

    def changed(self, kind: str, payload: Any = None) -> None:
        self.runtime.poke()
        self.hub.notify(kind, payload)

    # ------------------------------------------------------------------ sessions

    async def login(self, request: web.Request) -> web.Response:
        same_origin(request)
        body = await read_body(request, {"user": Field(text(200), required=True),
                                          "password": Field(text(1000), required=True)})
        try:
            user = await self.auth.check_password(body["user"], body["password"],
                                                  client_address(request))
        except AuthError as e:
            e.challenge = False  # a form, not a Basic prompt
            raise
        value, expires = self.auth.issue(user)
        log.info("user %r (%s) logged in from %s", user.name, user.role, client_address(request))
        response = reply({**user_json(user), "expires": expires})
        set_session_cookie(request, response, value)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        same_origin(request)
        cookie = request.cookies.get("ivr_session")
        if cookie is not None:
            self.auth.revoke(cookie)
        response = reply({"ok": True})
        clear_session_cookie(request, response)
        return response

    async def session(self, request: web.Request, user: User) -> web.Response:
        return reply(user_json(user))

    # ------------------------------------------------------------------ agents

    async def agent_action(self, action: str, request: web.Request, user: User) -> web.Response:
        agent = self.acting_agent(request, user)
        now = self.runtime.now()
        center = self.runtime.center
        if action == "pause":
            body = await read_body(request, {"reason": Field(text(40, choices=PAUSE_REASONS),
                                                             required=True)})
            center.agent(now, agent, "pause", reason=body["reason"])
        elif action == "wrapup":
            body = await read_body(request, {
                "category": Field(text(100, nullable=True)),
                "resolution": Field(text(40, choices=RESOLUTIONS), required=True),
                "note": Field(text(NOTE_MAX, nullable=True))})
            center.agent(now, agent, "wrapup", category=body.get("category"),
                         resolution=body["resolution"], note=body.get("note"))
        elif action == "callback-result":
            body = await read_body(request, {"result": Field(text(40, choices=CALLBACK_RESULTS),
                                                             required=True)})
            center.agent(now, agent, "callback_result", result=body["result"])
            self.dialling.discard(agent)
        elif action == "transfer":
            await self.start_transfer(request, agent)
        elif action in ("transfer/complete", "transfer/cancel"):
            await read_body(request, {})
            self.talking_call(agent, now)
            center.agent(now, agent, action.replace("/", "_"))
        elif action == "hangup":
            await read_body(request, {})
            state = self.runtime.queues.agent_state(agent)
            if state != "talking":
                raise ApiError(400, f'agent "{agent}" is not talking ({state})')
            if agent not in self.dialling:
                center.agent_left(now, agent)
            if agent in self.dialling or self.runtime.queues.agent_state(agent) == "talking":
                raise ApiError(400, f'agent "{agent}" is dialling a callback; report '
                               "callback-result first")
        else:  # login, logout, resume, accept, decline: no fields
            await read_body(request, {})
            center.agent(now, agent, action)
            offer = self.offers.get(agent)
            if action == "accept" and offer is not None and offer.kind == "callback":
                self.dialling.add(agent)
        if action in ("accept", "hangup", "wrapup", "callback-result", "logout") or \
                action.startswith("transfer"):
            self.figures.invalidate()
        self.changed("agent", {"agent": agent, "action": action})
        return reply(self.agent_summary(agent, now))

    def talking_call(self, agent: str, now: datetime) -> str:
        """The call the agent is talking to; 409 when there is none."""
        state = self.runtime.queues.snapshot(now)["agents"][agent]
        if state["state"] != "talking" or not state["call_id"]:
            raise ApiError(409, f'agent "{agent}" is not talking to a caller ({state["state"]})')
        return state["call_id"]

    async def start_transfer(self, request: web.Request, agent: str) -> None:
        """``{"kind": "blind"|"attended", "target": {"queue"|"directory"|"number": ...}}`` or
        the older ``{"to_queue": NAME}``; the target is resolved (a directory entry read) in
        a worker thread, then the controller starts the transfer on the clock's now."""
        queues = tuple(self.settings.queues)
        body = await read_body(request, {"kind": Field(text(20, choices=TRANSFER_KINDS)),
                                          "target": Field(anything),
                                          "to_queue": Field(text(100, choices=queues))})
        if "to_queue" in body and "target" in body:
            raise ApiError(400, 'give "target" or the older "to_queue", not both')
        if "to_queue" in body:
            spec: Any = {"queue": body["to_queue"]}
        elif "target" in body:
            spec = body["target"]
        else:
            raise ApiError(400, 'target: missing; expected {"queue": NAME}, {"directory": ID} or '
                                '{"number": "+46..."}')
        call_id = self.talking_call(agent, self.runtime.now())
        center = self.runtime.center
        transport = self.runtime.router.owner.get(call_id, "sim")
        holder = request.app.get(_directory_key())
        directory = getattr(holder, "directory", None)
        target = await asyncio.to_thread(resolve_target, spec, transport=transport, queues=queues,
                                         directory=directory, policy=center.transfers.policy)
        center.agent(self.runtime.now(), agent, "transfer", call_id=call_id, kind=body.get("kind", "blind"),
                     target=target)

    def agent_summary(self, agent: str, now: datetime, snap: Mapping[str, Any] | None = None
                      ) -> dict[str, Any]:
        if snap is None:
            snap = self.runtime.queues.snapshot(now)["agents"][agent]
        config = self.settings.agents[agent]
        return {"agent": agent, "name": config.name, "state": snap["state"],
                "reason": snap["reason"], "since": snap["since"], "call_id": snap["call_id"],
                "queues": self.served(agent)}

    def served(self, agent: str) -> list[str]:
        skills = self.settings.agents[agent].skills
        return [name for name, q in self.settings.queues.items() if q.needs in skills]

    async def agent_state(self, request: web.Request, user: User) -> web.Response:
        return reply(await self.desk_state(self.acting_agent(request, user)))

    async def agent_stream(self, request: web.Request, user: User) -> web.StreamResponse:
        agent = self.acting_agent(request, user)
        return await self.hub.stream(request, state=functools.partial(self.desk_state, agent),
                                     fingerprint=desk_fingerprint, changes_only=True)

    async def desk_state(self, agent: str) -> dict[str, Any]:
        """What the agent desk shows: the state, the current offer or call, the deadline
        (ring-out or end of wrap-up), whether a callback is being dialled, and the
        callbacks waiting in the agent's queues (without their numbers)."""
        now = self.runtime.now()
        engine = self.runtime.queues
        snap = engine.snapshot(now)["agents"][agent]
        body = self.agent_summary(agent, now, snap)
        call_id = body.pop("call_id")
        body["call"] = None if call_id is None else await self.call_json(agent, call_id, now)
        body["transfer"] = None if call_id is None else self.runtime.center.transfer_state(call_id)
        body["deadline"] = engine.deadline(agent)
        body["dialling"] = agent in self.dialling and snap["state"] == "talking"
        body["at"] = now
        served = body["queues"]
        body["callbacks"] = [{**c, "queue": name, "queue_display": dict(self.settings.queues[name].display)}
                             for name, rows in engine.callers(now).items() if name in served
                             for c in rows if c["kind"] == "callback"]
        body["callbacks"].sort(key=lambda c: -c["wait_s"])
        return body

    async def call_json(self, agent: str, call_id: str, now: datetime) -> dict[str, Any]:
        """What the agent sees of its current offer or call; never a raw number for a call."""
        offer = self.offers.get(agent)
        if offer is not None and offer.call_id != call_id:
            offer = None
        queue = offer.queue if offer is not None else None
        attributes = dict(offer.attributes) if offer is not None else {}
        kind = offer.kind if offer is not None else "call"
        info = await self.log_info(call_id, now)
        q = self.settings.queues.get(queue) if queue else None
        return {
            "call_id": call_id,
            "kind": kind,
            "queue": queue,
            "queue_display": dict(q.display) if q is not None else None,
            "categories": list(q.categories) if q is not None else [],
            "category": offer.category if offer is not None else None,
            "case_number": attributes.get("case_number"),
            "attributes": attributes,
            "language": offer.language if offer is not None else None,
            "offered_at": offer.at if offer is not None else None,
            "wait_s": offer.wait_s if offer is not None else None,
            "callback_number": offer.number if offer is not None and kind == "callback" else None,
            "path": info["path"],
            "repeat_caller": info["repeat_caller"],
            "repeat_contacts": info["repeat_contacts"],
            "repeat_window_days": self.settings.privacy.repeat_window_days,
        }

    async def log_info(self, call_id: str, now: datetime) -> dict[str, Any]:
        """The IVR path and the repeat-caller flag from the event log (in a thread; cached)."""
        cached = self._call_info.get(call_id)
        if cached is not None:
            return cached
        window = timedelta(days=self.settings.privacy.repeat_window_days)
        info = await asyncio.to_thread(read_call_info, self.runtime.sink, call_id, now - window)
        if info["path"] is not None:
            if len(self._call_info) >= CALL_INFO_CACHE:
                self._call_info.pop(next(iter(self._call_info)))
            self._call_info[call_id] = info
        return info

    # ------------------------------------------------------------------ supervisors

    def agent_rows(self, snap: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [{"agent": aid, "name": a.name, "skills": dict(a.skills),
                 "queues": self.served(aid), **snap["agents"].get(aid, {})}
                for aid, a in self.settings.agents.items()]

    def overview(self) -> dict[str, Any]:
        """The live state a supervisor sees: queues with their callers and agents."""
        now = self.runtime.now()
        snap = self.runtime.queues.snapshot(now)
        callers = self.runtime.queues.callers(now)
        agents = self.agent_rows(snap)
        queues = {}
        for name, q in self.settings.queues.items():
            serving: dict[str, list[dict[str, Any]]] = {}
            for a in agents:
                if name in a["queues"]:
                    serving.setdefault(a["state"], []).append(
                        {"agent": a["agent"], "name": a["name"], "since": a["since"],
                         "reason": a["reason"]})
            queues[name] = {"display": dict(q.display), "categories": list(q.categories),
                            **snap["queues"].get(name, {}),
                            "callers": callers.get(name, []), "agents": serving}
        return {"at": now, "queues": queues, "agents": agents,
                "announcements": [slot_json(s, now) for s in self.runtime.board.states()]}

    async def queues(self, request: web.Request, user: User) -> web.Response:
        return reply(self.overview())

    async def stream(self, request: web.Request, user: User) -> web.StreamResponse:
        return await self.hub.stream(request)

    async def agents(self, request: web.Request, user: User) -> web.Response:
        snap = self.runtime.queues.snapshot(self.runtime.now())
        return reply({"agents": self.agent_rows(snap)})

    async def wallboard(self, request: web.Request, user: User) -> web.Response:
        return reply(await self.day_figures())

    async def day_figures(self) -> dict[str, Any]:
        """Today's figures per queue and per hour, FCR today and this week, recent calls."""
        raw = await self.figures.get()
        kpi = self.settings.kpi
        body: dict[str, Any] = {
            "at": raw["at"], "available": raw["error"] is None, "error": raw["error"],
            "date": raw["date"], "week_from": raw["week_from"],
            "service_level_s": kpi.service_level_s, "service_level_goal": kpi.service_level_goal,
            "repeat_window_days": self.settings.privacy.repeat_window_days,
        }
        day, week = raw["day"] or {}, raw["week"] or {}
        by_queue = day.get("by_queue", {})
        body["queues"] = {name: {k: by_queue.get(name, {}).get(k, _ZERO.get(k)) for k in QUEUE_FIGURES}
                          for name in self.settings.queues}
        body["total"] = {k: day.get(k, _ZERO.get(k)) for k in QUEUE_FIGURES}
        body["fcr"] = {"today": {k: day.get(k, _ZERO.get(k)) for k in FCR_FIGURES},
                       "week": {k: week.get(k, _ZERO.get(k)) for k in FCR_FIGURES}}
        by_hour = day.get("by_hour", {})
        body["hours"] = [{"hour": h, **{k: by_hour.get(h, {}).get(k, _ZERO.get(k))
                                        for k in ("calls", "answered", "abandoned", "service_level")}}
                         for h in range(24)]
        agents, queues = self.settings.agents, self.settings.queues
        body["recent"] = [{**r, "agent_name": agents[r["agent"]].name if r["agent"] in agents else None,
                           "queue_display": dict(queues[r["queue"]].display) if r["queue"] in queues
                           else None} for r in raw["recent"]]
        return body

    async def announcements(self, request: web.Request, user: User) -> web.Response:
        now = self.runtime.now()
        return reply({"announcements": [slot_json(s, now) for s in self.runtime.board.states()]})

    async def set_announcement(self, request: web.Request, user: User) -> web.Response:
        slot = request.match_info["slot"]
        board = self.runtime.board
        if slot not in board:
            names = [s.slot for s in board.states()]
            raise ApiError(404, f'unknown announcement slot "{slot}"{_suggest(slot, names)}')
        languages = tuple(self.runtime.flow.languages)
        body = await read_body(request, {"enabled": Field(boolean, required=True),
                                          "until": Field(anything), "text": Field(anything)})
        now = self.runtime.now()
        until = parse_until(body.get("until"), now)
        new_text = None
        if body.get("text") is not None:
            given = body["text"]
            if not isinstance(given, dict):
                raise ApiError(400, 'text: expected an object of language -> text, e.g. '
                               '{"sv": "...", "en": "..."}')
            for lang, value in given.items():
                if lang not in languages:
                    raise ApiError(400, f'text: unknown language "{lang}": expected '
                                   f"{_choices(languages)}")
                text(TEXT_MAX)(f"text.{lang}", value)
            new_text = {**board.state(slot).text, **given}
            if missing := [lang for lang in languages if lang not in new_text]:
                raise ApiError(400, f"text: missing {_choices(missing)}")
        state = board.set(slot, body["enabled"], until, new_text)
        log.info("announcement %s switched %s by %s%s", slot, "on" if state.enabled else "off",
                 user.name, f" until {until.isoformat()}" if until else "")
        self.changed("announcement", {"slot": slot})
        return reply(slot_json(state, now))

    async def shutdown(self, app: web.Application) -> None:
        if self.on_router_event in self.runtime.router.listeners:
            self.runtime.router.listeners.remove(self.on_router_event)
        if self.hub.notify in self.runtime.router.listeners:
            self.runtime.router.listeners.remove(self.hub.notify)
        await self.hub.close()


# --------------------------------------------------------------------------- helpers


def user_json(user: User) -> dict[str, Any]:
    return {"user": user.name, "role": user.role, "agent": user.agent, "display": user.display}


def same_origin(request: web.Request) -> None:
    """Refuse a browser's cross-site POST (a form on another site riding on the session)."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise ApiError(403, "cross-site request refused")
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.host:
        raise ApiError(403, "cross-site request refused")


def parse_until(value: Any, now: datetime) -> datetime | None:
    """An ISO date-time (local Swedish time when it has no offset), in the future."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f'until: expected an ISO date-time such as "2026-03-01T18:00", '
                       f"got {json.dumps(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f'until: expected an ISO date-time such as "2026-03-01T18:00", '
                       f'got "{value}"') from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=STOCKHOLM)
    if parsed <= now:
        raise ApiError(400, f"until: {parsed.isoformat()} is not in the future")
    return parsed


def slot_json(state: Any, now: datetime) -> dict[str, Any]:
    return {"slot": state.slot, "enabled": state.enabled, "active": state.active(now),
            "until": state.until, "text": dict(state.text), "audio": dict(state.audio)}


def fingerprint(state: Mapping[str, Any]) -> Any:
    """What counts as a change for the live view (waits that merely grow do not)."""
    queues = tuple((name, q.get("waiting"), q.get("callbacks"), q.get("agents_serving"),
                    tuple((c["call_id"], c["stage"], c["position"]) for c in q["callers"]))
                   for name, q in state["queues"].items())
    agents = tuple((a["agent"], a.get("state"), a.get("reason"), a.get("call_id"))
                   for a in state["agents"])
    slots = tuple((s["slot"], s["active"]) for s in state["announcements"])
    return queues, agents, slots


def desk_fingerprint(body: Mapping[str, Any]) -> Any:
    """What counts as a change for one agent's desk."""
    call = body.get("call") or {}
    transfer = body.get("transfer") or {}
    return (body["state"], body["reason"], body["since"], call.get("call_id"), body["dialling"],
            body["deadline"], tuple((c["call_id"], c["stage"], c["attempts"]) for c in body["callbacks"]),
            transfer.get("state"), transfer.get("since"))


def read_call_info(sink: Any, call_id: str, since: datetime) -> dict[str, Any]:
    """In a worker thread: the nodes the call entered and whether its caller (by hash)
    called before within the window. Unknown (None) when the sink is not an event log."""
    events_of = getattr(sink, "events", None)
    if events_of is None:
        return {"path": None, "repeat_caller": None, "repeat_contacts": None}
    flush = getattr(sink, "flush", None)
    if flush is not None:
        flush()
    events = events_of(call_id)
    path = [e["node"] for e in events if e["kind"] == "node_entered"]
    caller_hash = next((e["data"].get("caller_hash") for e in events
                        if e["kind"] == "call_started" and isinstance(e["data"], dict)), None)
    db_path = getattr(sink, "db_path", None)
    contacts = 0
    if caller_hash and db_path is not None:
        contacts = repeat_contacts(Path(db_path), caller_hash, call_id, since)
    return {"path": path, "repeat_caller": contacts > 0, "repeat_contacts": contacts}


def _read_only(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(Path(db_path).absolute().as_uri() + "?mode=ro", uri=True)


def repeat_contacts(db_path: Path, caller_hash: str, call_id: str, since: datetime) -> int:
    """How many other calls from ``caller_hash`` started at or after ``since``."""
    conn = _read_only(db_path)
    try:
        row = conn.execute("SELECT COUNT(*) FROM calls WHERE caller_hash = ? AND call_id != ? "
                           "AND started_at >= ?", (caller_hash, call_id, format_at(since))).fetchone()
    finally:
        conn.close()
    return row[0]


# The queue is the one the wrapped-up conversation was answered in (the calls row has
# only the final queue, and is derived when the call ends).
_RECENT_SQL = """SELECT e.at, e.call_id, e.data, (SELECT json_extract(q.data, '$.queue') FROM events q
 WHERE q.call_id = e.call_id AND q.seq < e.seq AND q.kind = 'queue_answered' ORDER BY q.seq DESC LIMIT 1),
 c.category FROM events e LEFT JOIN calls c ON c.call_id = e.call_id
 WHERE e.kind = 'wrapup' AND e.at >= ? ORDER BY e.at DESC, e.id DESC LIMIT ?"""


def recent_calls(db_path: Path, since: datetime, limit: int = RECENT_MAX) -> list[dict[str, Any]]:
    """The calls most recently wrapped up (coded or not) since ``since``, latest first:
    one row per call, from its latest wrap-up; no caller data."""
    conn = _read_only(db_path)
    try:
        rows = conn.execute(_RECENT_SQL, (format_at(since), limit * 4)).fetchall()
    finally:
        conn.close()
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for at, call_id, data, queue, category in rows:
        if call_id in seen:
            continue
        seen.add(call_id)
        try:
            wrap = json.loads(data) if data else {}
        except ValueError:
            wrap = {}
        wrap = wrap if isinstance(wrap, dict) else {}
        out.append({"call_id": call_id, "at": at, "queue": queue, "agent": wrap.get("agent"),
                    "category": wrap.get("category") or category, "resolution": wrap.get("resolution"),
                    "coded": bool(wrap.get("coded"))})
        if len(out) >= limit:
            break
    return out


_ZERO = {"calls": 0, "offered": 0, "answered": 0, "abandoned": 0, "handled": 0, "uncoded": 0,
         "fcr_repeat_pending": 0, "fcr_repeat_excluded": 0, "survey_answers": 0}


def compute_figures(sink: Any, settings: Any, now: datetime) -> dict[str, Any]:
    """In a worker thread: today's KPIs, this week's (Monday to today), the recent calls."""
    today = now.astimezone(STOCKHOLM).date()
    monday = today - timedelta(days=today.weekday())
    out: dict[str, Any] = {"at": now, "date": today.isoformat(), "week_from": monday.isoformat(),
                           "day": None, "week": None, "recent": [], "error": None}
    path = getattr(sink, "db_path", None)
    if path is None:
        out["error"] = "no event log"
        return out
    flush = getattr(sink, "flush", None)
    if flush is not None:
        flush()
    kpi = settings.kpi
    options = {"service_level_s": kpi.service_level_s, "short_abandon_s": kpi.short_abandon_s,
               "abandons_in_service_level": kpi.abandons_in_service_level,
               "repeat_window_days": settings.privacy.repeat_window_days, "as_of": now}
    try:
        out["day"] = metrics.compute(path, today, today, **options)
        out["week"] = out["day"] if monday == today else metrics.compute(path, monday, today, **options)
        midnight = datetime(today.year, today.month, today.day, tzinfo=STOCKHOLM)
        out["recent"] = recent_calls(Path(path), midnight)
    except (metrics.MetricsError, sqlite3.Error) as e:
        log.warning("the day's figures cannot be computed: %s", e)
        out["error"] = str(e)
    return out


class DayFigures:
    """:func:`compute_figures` in a worker thread, kept ``ttl_s`` on the runtime's clock or
    until :meth:`invalidate`; callers arriving while it runs share the one computation."""

    def __init__(self, runtime: Runtime, ttl_s: float = FIGURES_TTL_S):
        self.runtime, self.ttl = runtime, timedelta(seconds=ttl_s)
        self.computed = 0  # how many times (for tests and logs)
        self._value: dict[str, Any] | None = None
        self._stale = True
        self._task: asyncio.Future[dict[str, Any]] | None = None

    def invalidate(self) -> None:
        self._stale = True

    async def get(self) -> dict[str, Any]:
        now = self.runtime.now()
        value = self._value
        if value is not None and not self._stale and now - value["at"] < self.ttl \
                and value["date"] == now.astimezone(STOCKHOLM).date().isoformat():
            return value
        if self._task is None or self._task.done():
            self._stale = False
            self._task = asyncio.ensure_future(asyncio.to_thread(
                compute_figures, self.runtime.sink, self.runtime.settings, now))
            self._task.add_done_callback(self._keep)
        return await asyncio.shield(self._task)

    def _keep(self, task: asyncio.Future[dict[str, Any]]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._value = task.result()
            self.computed += 1
        else:
            self._stale = True


def _directory_key() -> Any:
    """The staff directory's AppKey (ivr.web.directory imports this module: looked up late)."""
    from ivr.web.directory import DIRECTORY

    return DIRECTORY


# --------------------------------------------------------------------------- setup


def setup(app: web.Application, runtime: Runtime, *, demo: bool) -> None:
    """Add the API's routes, its Router listeners and its shutdown to ``app``."""
    api = Api(runtime, demo=demo)
    app[API] = api
    app.middlewares.append(json_errors)
    api.routes(app)
    runtime.router.listeners.append(api.on_router_event)
    runtime.router.listeners.append(api.hub.notify)
    app.on_shutdown.append(api.shutdown)
