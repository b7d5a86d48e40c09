"""The web pages of ``ivr serve``: login, the agent desk, the supervisor wallboard and
today's report (``docs/web.md``).

Server-rendered Jinja2 templates (``templates/``) and plain ES modules and CSS
(``static/``), served as they are: no build step, nothing fetched from elsewhere. The
pages' scripts call the JSON API (:mod:`ivr.web.api`) with the session cookie and follow
its server-sent events, so nothing here changes state besides logging in and out.

A page without a valid session redirects to ``/login?next=PATH``; a page for another
role answers 403. The login and logout forms are plain form posts (they work without
JavaScript) with the API's cross-site check. Pages send a strict Content-Security-Policy:
scripts, styles and connections from this server only, no inline script.

The interface is Swedish with the English in a smaller second line (``lang="en"``):
every label comes from :data:`LABELS`, shared by the templates and the scripts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ivr import report
from ivr.directory import KINDS as DIRECTORY_KINDS
from ivr.directory import STATUSES as DIRECTORY_STATUSES
from ivr.server import Runtime
from ivr.web.api import API, PAUSE_REASONS, Api, ApiError, same_origin
from ivr.web.auth import AuthError, User, clear_session_cookie, client_address, set_session_cookie
from queues.model import RESOLUTIONS

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self'; media-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"

# Every user-facing word of the pages: (Swedish, English). The scripts get the same table.
LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "state": {
        "offline": ("Utloggad", "Offline"), "available": ("Ledig", "Available"),
        "offered": ("Ringer", "Ringing"), "talking": ("I samtal", "Talking"),
        "wrapup": ("Efterarbete", "Wrap-up"), "paused": ("Paus", "Paused"),
    },
    "reason": {
        "lunch": ("Lunch", "Lunch"), "admin": ("Administration", "Admin"),
        "training": ("Utbildning", "Training"), "meeting": ("Möte", "Meeting"),
        "other": ("Annat", "Other"), "missed": ("Missat samtal", "Missed call"),
    },
    "resolution": {
        "resolved": ("Löst", "Resolved"), "forwarded": ("Vidarebefordrat", "Forwarded"),
        "callback-promised": ("Återkoppling utlovad", "Callback promised"),
        "wrong-queue": ("Fel kö", "Wrong queue"), "other": ("Annat", "Other"),
        "uncoded": ("Okodat", "Uncoded"),
    },
    "callback_result": {
        "answered": ("Svarade", "Answered"), "no-answer": ("Inget svar", "No answer"),
        "busy": ("Upptaget", "Busy"), "failed": ("Misslyckades", "Failed"),
    },
    "stage": {
        "ringing": ("Ringer", "Ringing"), "waiting": ("Väntar", "Waiting"),
        "scheduled": ("Nytt försök senare", "Retry scheduled"),
    },
    "fcr": {
        "fcr_coded": ("Löst enligt kodning", "FCR, agent-coded"),
        "fcr_repeat": ("Löst, ingen återkomst", "FCR, no repeat contact"),
        "fcr_survey": ("Löst enligt enkät", "FCR, survey"),
    },
    "text": {
        "yes": ("Ja", "Yes"), "no": ("Nej", "No"), "none": ("Inget", "None"),
        "on": ("På", "On"), "off": ("Av", "Off"),
        "connected": ("Ansluten", "Connected"), "reconnecting": ("Återansluter…", "Reconnecting…"),
        "incoming": ("Inkommande samtal", "Incoming call"),
        "callback": ("Återuppringning", "Callback"), "call": ("Samtal", "Call"),
        "repeat": ("Ja: {n} tidigare samtal de senaste {d} dagarna",
                   "Yes: {n} earlier calls in the last {d} days"),
        "first": ("Nej, första samtalet på {d} dagar", "No, the first call in {d} days"),
        "unknown": ("Okänt", "Unknown"),
        "wrapup_left": ("{s} s kvar av efterarbetet", "{s} s of wrap-up left"),
        "wrapup_over": ("Efterarbetstiden är slut", "Wrap-up time is over"),
        "pause_after": ("Paus efter samtalet", "Pause after the call"),
        "saved": ("Sparat", "Saved"), "error": ("Fel", "Error"),
        "until": ("till", "until"), "no_calls": ("Inga avslutade samtal i dag", "No completed calls today"),
        "no_callbacks": ("Inga återuppringningar väntar", "No callbacks waiting"),
        "calls_per_hour": ("Samtal per timme", "Calls per hour"),
        "sl_per_hour": ("Servicenivå per timme", "Service level per hour"),
        "goal": ("mål", "goal"), "hour": ("Timme", "Hour"),
        "attempts": ("försök", "attempts"), "figures_missing": ("Dagens siffror saknas", "No figures today"),
        "hits": ("{n} träffar", "{n} hits"), "no_hits": ("Inga träffar", "No hits"),
        "searching": ("Söker…", "Searching…"), "selected": ("Vald", "Selected"),
        "nobody_selected": ("Ingen vald: sök i katalogen", "Nobody selected: search the directory"),
        "ext": ("ankn.", "ext."), "languages": ("Språk", "Languages"),
        "no_transfer": ("Ingen koppling pågår", "No transfer under way"),
        "not_talking": ("Koppling går bara under ett samtal", "Transfers only during a call"),
        "no_messages": ("Inga öppna meddelanden", "No open messages"),
        "message_sent": ("Meddelandet är sparat", "The message is saved"),
        "message_closed": ("Återuppringningen är registrerad", "The callback is registered"),
        "email_off": ("E-post är inte inställd: meddelandena väntar här tills den är det",
                      "E-mail is not set up: the messages wait here until it is"),
        "promised_by": ("Återkoppling senast", "Callback by"), "overdue": ("Försenat", "Overdue"),
        "voice": ("Röstmeddelande", "Voice message"), "to": ("Till", "To"),
        "register": ("Registrera återuppringning", "Register callback"),
        "outcome": ("Resultat", "Outcome"), "show_number": ("Visa nummer", "Show number"),
        "note": ("Anteckning", "Note"),
        "fix_fields": ("Rätta de markerade fälten", "Correct the marked fields"),
        "deleted": ("Borttagen", "Deleted"), "imported": ("Importerat", "Imported"),
        "checked": ("Filen är korrekt", "The file is correct"),
        "confirm_delete": ("Ta bort {name} ur katalogen?", "Remove {name} from the directory?"),
        "import_counts": ("{entries} poster: {added} nya, {updated} ändrade, {unchanged} oförändrade, "
                          "{removed} borttagna ({encoding}, {delimiter})",
                          "{entries} entries: {added} new, {updated} changed, {unchanged} unchanged, "
                          "{removed} removed"),
        "import_problems": ("Filen har {n} fel; inget importerades",
                            "The file has {n} problems; nothing was imported"),
        "id_needed": ("En ny post behöver ett id", "A new entry needs an id"),
        "entries": ("{n} poster", "{n} entries"), "new": ("ny", "new"),
        "edit": ("Ändra", "Edit"), "set_status": ("Status", "Status"), "delete": ("Ta bort", "Delete"),
    },
    # the staff directory (ivr.directory.STATUSES, KINDS)
    "dir_status": {
        "available": ("Tillgänglig", "Available"), "busy": ("Upptagen", "Busy"),
        "meeting": ("I möte", "In a meeting"), "away": ("Borta", "Away"), "leave": ("Ledig", "On leave"),
    },
    "dir_kind": {"person": ("Person", "Person"), "unit": ("Enhet", "Unit")},
    # transfers (ivr.transfers: kinds and stages)
    "xfer_kind": {
        "blind": ("Direktkoppling", "Blind transfer"),
        "attended": ("Koppling med förfrågan", "Attended transfer"),
    },
    "xfer_state": {
        "ringing": ("Ringer hos mottagaren", "Ringing the target"),
        "consulting": ("Du talar med mottagaren; uppringaren väntar",
                       "You are talking to the target; the caller is on hold"),
        "connected": ("Kopplat", "Connected"), "completed": ("Kopplat", "Transferred"),
        "failed": ("Kopplingen misslyckades", "The transfer failed"),
        "cancelled": ("Avbruten: du talar med uppringaren", "Cancelled: you are back with the caller"),
    },
    "xfer_reason": {
        "busy": ("upptaget", "busy"), "no-answer": ("inget svar", "no answer"), "failed": ("fel", "failed"),
        "refused": ("nekades av telefonin", "refused by the telephony"),
        "target-left": ("mottagaren lade på", "the target hung up"),
        "caller-hangup": ("uppringaren lade på", "the caller hung up"),
    },
    # messages to case officers (ivr.messages: delivery states, outcomes, default categories)
    "delivery": {
        "pending": ("Ej levererat", "Not yet delivered"),
        "retrying": ("Ej levererat, försöker igen", "Not yet delivered, retrying"),
        "delivered": ("Levererat", "Delivered"),
        "unaddressed": ("Ingen e-postadress: bara här", "No e-mail address: only here"),
    },
    "outcome": {
        "reached": ("Nådde uppringaren", "Reached the caller"), "no-answer": ("Inget svar", "No answer"),
        "wrong-number": ("Fel nummer", "Wrong number"), "other": ("Annat", "Other"),
    },
    "msg_category": {
        "fraga": ("Fråga", "Question"), "arende": ("Ärende", "Case"), "synpunkt": ("Synpunkt", "Feedback"),
        "felanmalan": ("Felanmälan", "Fault report"), "ovrigt": ("Övrigt", "Other"),
    },
}


def label(group: str, key: str | None) -> Markup:
    """A bilingual label as HTML: the Swedish, then the English in a smaller line."""
    if key is None:
        return Markup("")
    sv, en = LABELS[group].get(key, (key, key))
    if sv == en:
        return Markup("{}").format(sv)
    return Markup('{} <span class="en" lang="en">{}</span>').format(sv, en)


def plain(group: str, key: str) -> str:
    sv, en = LABELS[group].get(key, (key, key))
    return sv if sv == en else f"{sv} / {en}"


def make_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(label=label, plain=plain)
    env.filters["tojson_attr"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


def safe_next(value: str | None) -> str | None:
    """A local path to go to after login (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def home_of(user: User) -> str:
    return "/wallboard" if user.role == "supervisor" else "/desk"


class Pages:
    def __init__(self, app: web.Application, runtime: Runtime):
        self.app, self.runtime = app, runtime
        self.settings = runtime.settings
        self.env = make_environment()

    @property
    def api(self) -> Api:
        return self.app[API]

    def routes(self) -> None:
        add = self.app.router
        add.add_get("/", self.root)
        add.add_get("/login", self.login_form)
        add.add_post("/login", self.login)
        add.add_post("/logout", self.logout)
        add.add_get("/desk", self.page("agent", self.desk))
        add.add_get("/wallboard", self.page("supervisor", self.wallboard))
        add.add_get("/reports/today", self.page("supervisor", self.report_today))
        add.add_get("/directory", self.page("supervisor", self.directory))
        add.add_get("/favicon.ico", no_icon)
        if not any(getattr(r, "canonical", None) == "/static" for r in add.resources()):
            add.add_static("/static", STATIC)

    # ------------------------------------------------------------------ plumbing

    def render(self, name: str, status: int = 200, **context: Any) -> web.Response:
        html = self.env.get_template(name).render(**context)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                            headers=page_headers())

    def page(self, role: str, handler: Callable[[web.Request, User], Awaitable[web.StreamResponse]]
             ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The session's user, or a redirect to the login page; 403 for the wrong role."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                user = await self.api.auth.authenticate(request)
            except AuthError as e:
                if e.status == 429:
                    return self.error(request, None, 429, e.message)
                target = request.path_qs
                raise web.HTTPSeeOther(f"/login?next={quote(target, safe='/')}") from None
            if role == "supervisor" and user.role != "supervisor":
                return self.error(request, user, 403, "Sidan är för arbetsledare / "
                                                      "This page is for supervisors")
            return await handler(request, user)
        return wrapped

    def error(self, request: web.Request, user: User | None, status: int, message: str) -> web.Response:
        titles = {403: ("Ingen behörighet", "Forbidden"), 404: ("Finns inte", "Not found"),
                  429: ("För många försök", "Too many attempts"),
                  400: ("Felaktig begäran", "Bad request")}
        sv, en = titles.get(status, ("Fel", "Error"))
        return self.render("error.html", status=status, user=user, page="error", status_code=status,
                           title_sv=sv, title_en=en, message=message,
                           home=home_of(user) if user else "/login")

    # ------------------------------------------------------------------ login

    async def root(self, request: web.Request) -> web.StreamResponse:
        try:
            user = await self.api.auth.authenticate(request)
        except AuthError:
            raise web.HTTPSeeOther("/login") from None
        raise web.HTTPSeeOther(home_of(user))

    async def login_form(self, request: web.Request) -> web.Response:
        return self.render("login.html", user=None, page="login", error=None, username="",
                           next=safe_next(request.query.get("next")) or "")

    async def login(self, request: web.Request) -> web.StreamResponse:
        try:
            same_origin(request)
        except ApiError as e:
            return self.error(request, None, e.status, "Inloggningen kom från en annan webbplats / "
                                                       "The login came from another site")
        form = await request.post()
        name = str(form.get("username", "")).strip()
        password = str(form.get("password", ""))
        target = safe_next(str(form.get("next", "")))
        error = None
        status = 200
        if not name or not password:
            error, status = ("Fyll i användarnamn och lösenord / "
                             "Enter your user name and password"), 400
        else:
            try:
                user = await self.api.auth.check_password(name, password, client_address(request))
            except AuthError as e:
                status = e.status
                if e.status == 429:
                    error = (f"För många misslyckade försök; försök igen om {e.retry_after} s / "
                             f"Too many failed attempts; try again in {e.retry_after} s")
                else:
                    error = "Fel användarnamn eller lösenord / Wrong user name or password"
            else:
                value, _ = self.api.auth.issue(user)
                log.info("user %r (%s) logged in to the pages from %s", user.name, user.role,
                         client_address(request))
                if target is None or (user.role != "supervisor" and not target.startswith("/desk")):
                    target = home_of(user)
                response = web.HTTPSeeOther(target)
                set_session_cookie(request, response, value)
                raise response
        return self.render("login.html", status=status, user=None, page="login", error=error,
                           username=name, next=target or "")

    async def logout(self, request: web.Request) -> web.StreamResponse:
        try:
            same_origin(request)
        except ApiError:
            return self.error(request, None, 403, "Utloggningen kom från en annan webbplats / "
                                                  "The logout came from another site")
        cookie = request.cookies.get("ivr_session")
        if cookie is not None:
            self.api.auth.revoke(cookie)
        response = web.HTTPSeeOther("/login")
        clear_session_cookie(request, response)
        raise response

    # ------------------------------------------------------------------ the desk

    async def desk(self, request: web.Request, user: User) -> web.Response:
        agents = self.settings.agents
        given = request.query.get("agent")
        if user.role == "supervisor":
            agent = given or user.agent
            if agent is not None and agent not in agents:
                return self.error(request, user, 404, f'Okänd handläggare / unknown agent "{agent}"')
            if agent is None:  # a supervisor picks whose desk to open
                return self.render("choose_agent.html", user=user, page="desk",
                                   agents=[{"id": a, "name": c.name} for a, c in agents.items()])
        else:
            if given is not None and given != user.agent:
                return self.error(request, user, 403, "En handläggare ser bara sin egen arbetsyta / "
                                                      "An agent sees only their own desk")
            agent = user.agent
            if agent is None or agent not in agents:
                return self.error(request, user, 403, f'Användaren "{user.name}" är inte kopplad till '
                                                      f'en handläggare / is not linked to an agent')
        queues = {name: {"display": dict(q.display), "categories": list(q.categories)}
                  for name, q in self.settings.queues.items()}
        served = self.api.served(agent)
        return self.render(
            "desk.html", user=user, page="desk", agent=agent, agent_name=agents[agent].name,
            acting_for=agent if user.role == "supervisor" else None,
            pause_reasons=PAUSE_REASONS, resolutions=RESOLUTIONS,
            callback_results=tuple(LABELS["callback_result"]), queues=queues,
            served=served, wrapup_s={n: self.settings.queues[n].wrapup_s for n in served},
            labels=LABELS, now=self.runtime.now().isoformat(), messages=self.messages_config(),
            message_categories=self.settings.messages.categories)

    def messages_config(self) -> dict[str, Any]:
        """What the desk's message form needs: the categories and the default promise."""
        messages = self.settings.messages
        return {"categories": list(messages.categories), "promise_hours": messages.promise_hours}

    # ------------------------------------------------------------------ the directory (supervisors)

    async def directory(self, request: web.Request, user: User) -> web.Response:
        return self.render("directory.html", user=user, page="directory", labels=LABELS,
                           statuses=DIRECTORY_STATUSES, kinds=DIRECTORY_KINDS,
                           now=self.runtime.now().isoformat())

    # ------------------------------------------------------------------ the wallboard

    async def wallboard(self, request: web.Request, user: User) -> web.Response:
        overview = self.api.overview()
        kpi = self.settings.kpi
        return self.render(
            "wallboard.html", user=user, page="wallboard", overview=overview,
            queues={name: dict(q.display) for name, q in self.settings.queues.items()},
            agents=overview["agents"], announcements=overview["announcements"],
            languages=list(self.runtime.flow.languages), labels=LABELS,
            service_level_s=kpi.service_level_s, goal=kpi.service_level_goal,
            repeat_window_days=self.settings.privacy.repeat_window_days)

    async def report_today(self, request: web.Request, user: User) -> web.Response:
        raw = await self.api.figures.get()
        if raw["day"] is None:
            return self.error(request, user, 503 if raw["error"] != "no event log" else 404,
                              f"Dagens rapport kan inte tas fram / today's report cannot be made: "
                              f"{raw['error']}")
        html = await asyncio.to_thread(report.render, raw["day"], "html",
                                       service_level_goal=self.settings.kpi.service_level_goal)
        return web.Response(text=html, content_type="text/html", charset="utf-8",
                            headers={**page_headers(), "Content-Security-Policy": REPORT_CSP})


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


def page_headers() -> Mapping[str, str]:
    return {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


PAGES: web.AppKey[Pages] = web.AppKey("ivr_pages")


def setup(app: web.Application, runtime: Runtime, *, demo: bool) -> None:
    """Add the pages' routes (and ``/static``) to ``app``; needs :mod:`ivr.web.api` first."""
    if API not in app:
        raise RuntimeError("ivr.web.pages needs ivr.web.api set up before it (users and sessions)")
    pages = Pages(app, runtime)
    app[PAGES] = pages
    pages.routes()
