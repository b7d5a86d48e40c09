"""``ivr serve``: the contact center on asyncio and aiohttp.

:class:`Runtime` owns the controller on the event loop: the clock (injectable), the
timer loop that wakes exactly at the queue engine's next deadline, the daily purge, and
the :class:`Router` through which the controller reaches whichever transport owns a
call (Twilio, Asterisk, the browser test phone). Transports add their own routes and
tasks; this module knows none of them by name. ``make_app`` builds the aiohttp
application with ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import ipaddress
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ivr import __version__
from ivr.announcements import AnnouncementBoard
from ivr.controller import ContactCenter, Transport
from ivr.flow import Flow
from ivr.flowcheck import FlowContext, load_flow
from ivr.hours import STOCKHOLM
from ivr.transfers import Transfers
from ivr.vocabulary import Command
from queues import AgentConfig, CancelOffer, Offer, QueueConfig, QueueEngine

log = logging.getLogger(__name__)

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Router:
    """The controller's one transport: hands each request to the transport owning it."""

    def __init__(self, endpoints: Callable[[str], Iterable[str]] | None = None) -> None:
        self.transports: dict[str, Transport] = {}
        self.owner: dict[str, str] = {}  # call_id -> transport name
        self.listeners: list[Callable[[str, Any], None]] = []  # (kind, payload) for live views
        # agent -> the transports their phone is reachable on (config: [agents.X.endpoints])
        self.endpoints = endpoints or (lambda _agent: ())

    def add(self, name: str, transport: Transport) -> None:
        self.transports[name] = transport

    def claim(self, call_id: str, name: str) -> None:
        self.owner[call_id] = name

    def release(self, call_id: str) -> None:
        self.owner.pop(call_id, None)

    def _for_call(self, call_id: str) -> Transport | None:
        name = self.owner.get(call_id)
        return self.transports.get(name) if name else None

    def notify(self, kind: str, payload: Any) -> None:
        """Tell live views (agent desk, wallboard streams) that something changed."""
        for listener in list(self.listeners):
            try:
                listener(kind, payload)
            except Exception:
                log.exception("live listener failed on %s", kind)

    def send(self, call_id: str, commands: list[Command]) -> None:
        transport = self._for_call(call_id)
        if transport is None:
            log.warning("commands for call %s, which no transport owns", call_id)
            return
        transport.send(call_id, commands)

    def _for_agent(self, agent: str) -> Transport | None:
        """The transport that rings ``agent``'s phone: the first of their endpoints that is
        running; else the first transport (which declines or leaves it to the desk)."""
        for name in self.endpoints(agent):
            if name in self.transports:
                return self.transports[name]
        return next(iter(self.transports.values()), None)

    def offer(self, offer: Offer) -> None:
        """An offer rings on the line that owns its call; a callback (no call owned by any
        line yet) on the transport of the agent's endpoint."""
        self.notify("offer", offer)
        transport = self._for_call(offer.call_id) or self._for_agent(offer.agent)
        if transport is not None:
            transport.offer(offer)

    def cancel_offer(self, cancel: CancelOffer) -> None:
        self.notify("cancel_offer", cancel)
        transport = self._for_call(cancel.call_id) or self._for_agent(cancel.agent)
        if transport is not None:
            transport.cancel_offer(cancel)

    def connect(self, agent: str, call_id: str) -> None:
        self.notify("connect", {"agent": agent, "call_id": call_id})
        transport = self._for_call(call_id)
        if transport is not None:
            transport.connect(agent, call_id)

    def can_transfer(self, call_id: str) -> bool:
        """Whether the line owning ``call_id`` can carry out agent transfers."""
        return hasattr(self._for_call(call_id), "transfer")

    def transfer(self, action: Any) -> None:
        """Hand an :mod:`ivr.transfers` action to the line owning its call (the
        controller turns an exception here into a refused transfer)."""
        self.notify("transfer_action", action)
        transport = self._for_call(action.call_id)
        if transport is None or not hasattr(transport, "transfer"):
            raise RuntimeError(f"the line of call {action.call_id} cannot transfer")
        transport.transfer(action)


class Runtime:
    def __init__(self, settings: Any, *, sink: Any, clock: Clock | None = None,
                 flow: Flow | None = None, timers: bool = True):
        self.settings = settings
        self.clock = clock or SystemClock()
        self.sink = sink
        self.timers = timers
        self.flow = flow or load_flow(settings.flows_dir / "switchboard.toml",
                                      FlowContext.from_settings(settings))
        self.board = AnnouncementBoard.from_settings(settings.announcements)
        self.queues = QueueEngine(
            {name: QueueConfig.from_settings(q) for name, q in settings.queues.items()},
            {aid: AgentConfig.from_settings(a) for aid, a in settings.agents.items()})
        self.router = Router(endpoints=self._agent_endpoints)
        self.center = ContactCenter(self.flow, self.queues, schedules=settings.hours, board=self.board,
                                    sink=sink, transport=self.router,
                                    transfers=Transfers(settings.transfers.policy()))
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start() when timers run
        self._timer: asyncio.TimerHandle | None = None  # wakes at the next deadline
        self._timer_due: datetime | None = None
        self._rearm_pending = False
        self.tick_retry_s = 1.0  # after a failed tick (not a hot loop of failures)
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.started = self.clock.now()

    def now(self) -> datetime:
        return self.clock.now()

    def _agent_endpoints(self, agent: str) -> Iterable[str]:
        settings = self.settings.agents.get(agent)
        return settings.endpoints.keys() if settings is not None else ()

    def poke(self) -> None:
        """Something changed: the next deadline may have moved. Cheap: one ``call_soon``
        per loop iteration however many webhooks poke, and the timer is only moved when the
        deadline did."""
        if self._loop is not None and not self._rearm_pending:
            self._rearm_pending = True
            self._loop.call_soon(self._rearm)

    def _rearm(self) -> None:
        self._rearm_pending = False
        due = self.center.next_deadline()
        if due == self._timer_due and (due is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due is not None and self._loop is not None:
            delay = max(0.0, (due - self.now()).total_seconds())
            self._timer = self._loop.call_at(self._loop.time() + delay, self._fire)

    def _fire(self) -> None:
        """The queue engine's deadline: let it act (ring-outs, wrap-up ends, announcements)."""
        due, self._timer, self._timer_due = self._timer_due, None, None
        try:
            self.center.tick(self.now())
        except Exception:  # one bad timer must not stop the others: try again a little later
            log.exception("queue timers: tick failed; trying again in %s s", self.tick_retry_s)
            if self._loop is not None:
                self._timer_due = due
                self._timer = self._loop.call_later(self.tick_retry_s, self._fire)
            return
        self._rearm()

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)
        task.add_done_callback(lambda t: t in self._tasks and self._tasks.remove(t))

    async def start(self) -> None:
        if self.timers:
            self._loop = asyncio.get_running_loop()
            self.poke()
            self.spawn(self._purge_loop(), "daily-purge")

    async def stop(self) -> None:
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception:
                log.exception("closing a transport failed")
        if self._timer is not None:
            self._timer.cancel()
        self._loop = self._timer = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.center.shutdown(self.now())
        close = getattr(self.sink, "close", None)
        if close is not None:
            await asyncio.get_running_loop().run_in_executor(None, close)

    async def _purge_loop(self) -> None:
        from ivr.retention import purge

        hour, minute = (int(x) for x in self.settings.server.purge_at.split(":"))
        while True:
            local = self.now().astimezone(STOCKHOLM)
            nxt = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if nxt <= local:
                nxt += timedelta(days=1)
            await asyncio.sleep((nxt - local).total_seconds())
            p = self.settings.privacy
            path = getattr(self.sink, "db_path", None)
            if path is None:
                continue
            flush = getattr(self.sink, "flush", None)
            loop = asyncio.get_running_loop()
            if flush is not None:
                await loop.run_in_executor(None, flush)
            done = await loop.run_in_executor(None, functools.partial(
                purge, path, now=self.now(), raw_number_days=p.raw_number_days, note_days=p.note_days,
                recording_days=p.recording_days, messages_dir=path.parent / "messages"))
            log.info("daily purge: %s", "; ".join(str(d) for d in done))
            twilio = self.router.transports.get("twilio")
            purge_remote = getattr(twilio, "purge_recordings", None)
            if purge_remote is not None:  # recordings still at Twilio past recording_days
                try:
                    log.info("daily purge: %s", await purge_remote(
                        path, now=self.now(), recording_days=p.recording_days))
                except Exception:
                    log.exception("daily purge: deleting recordings at Twilio failed")


# ---------------------------------------------------------------------------- metrics


class Metrics:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.registry = CollectorRegistry()
        self.calls = Gauge("ivr_calls_in_progress", "Calls with a live session", registry=self.registry)
        self.waiting = Gauge("ivr_callers_waiting", "Callers waiting per queue", ["queue"],
                             registry=self.registry)
        self.agents = Gauge("ivr_agents", "Agents by state", ["state"], registry=self.registry)
        self.latency = _Latency()
        self.registry.register(self.latency)

    def observe(self, route: str, seconds: float) -> None:
        """One request's time to answer, under its route."""
        self.latency.observe(route, seconds)

    def render(self) -> bytes:
        snap = self.runtime.queues.snapshot(self.runtime.now())
        self.calls.set(len(self.runtime.center.sessions))
        for name, q in snap["queues"].items():
            self.waiting.labels(queue=name).set(q["waiting"])
        counts = dict.fromkeys(("offline", "available", "offered", "talking", "wrapup", "paused"), 0)
        for agent in snap["agents"].values():
            counts[agent["state"]] = counts.get(agent["state"], 0) + 1
        for state, n in counts.items():
            self.agents.labels(state=state).set(n)
        return generate_latest(self.registry)


class _Latency:
    """``ivr_webhook_seconds``, a Prometheus histogram by route, counted in plain lists and
    turned into the histogram only when ``/metrics`` is read: prometheus_client's own
    ``Histogram.observe`` takes two locks and walks the buckets in Python on every request,
    about 3 µs of a webhook's time on the event loop (which is the only thread observing)."""

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

    def __init__(self) -> None:
        self._routes: dict[str, list[float]] = {}  # route -> count per bucket (+Inf last), then the sum

    def observe(self, route: str, seconds: float) -> None:
        counts = self._routes.get(route)
        if counts is None:
            counts = self._routes[route] = [0.0] * (len(self.BUCKETS) + 2)
        counts[bisect.bisect_left(self.BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily("ivr_webhook_seconds", "Time to answer a webhook (and /healthz)",
                                       labels=["route"])
        for route, counts in sorted(self._routes.items()):
            cumulative = list(itertools.accumulate(counts[:-1]))
            bounds = [str(b) for b in self.BUCKETS] + ["+Inf"]
            family.add_metric([route], list(zip(bounds, cumulative, strict=True)), counts[-1])
        return [family]


METRICS: web.AppKey[Metrics] = web.AppKey("metrics")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def timed(handler: Handler) -> Handler:
    """``handler`` with its time to answer in ``/metrics`` (``ivr_webhook_seconds``, by route).

    A wrapper on the routes that need it (the webhooks), not a middleware: aiohttp runs
    middlewares (two layers, with its own) on every request of every route, which cost the
    webhooks about a tenth of their throughput (docs/performance.md)."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        try:
            return await handler(request)
        finally:
            resource = request.match_info.route.resource
            name = resource.canonical if resource is not None else "unmatched"
            request.app[METRICS].observe(name, time.perf_counter() - start)

    return run


async def healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    error = getattr(runtime.sink, "last_error", None)
    path = getattr(runtime.sink, "db_path", None)
    body = {
        "status": "ok" if error is None else "degraded",
        "version": __version__,
        "store": {"path": str(path) if path else None, "ok": error is None, "last_error": error},
        "calls_in_progress": len(runtime.center.sessions),
        "transports": sorted(runtime.router.transports),
    }
    return web.json_response(body, status=200 if error is None else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(runtime: Runtime, *, setups: list[Callable[[web.Application, Runtime], None]] = ()
             ) -> web.Application:
    app = web.Application()
    app[RUNTIME] = runtime
    app[METRICS] = Metrics(runtime)
    app.router.add_get("/healthz", timed(healthz))
    app.router.add_get("/metrics", metrics)
    for setup in setups:
        setup(app, runtime)

    async def on_startup(_app: web.Application) -> None:
        await runtime.start()

    async def on_cleanup(_app: web.Application) -> None:
        await runtime.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def setups_for(settings: Any, *, demo: bool) -> list[Callable[[web.Application, Runtime], None]]:
    """The routes and tasks of every part the configuration switches on.

    Each part is a module with ``setup(app, runtime, *, demo)``: it adds its routes,
    registers its transport with ``runtime.router`` and its tasks with ``runtime.spawn``.
    """
    import importlib

    parts = ["ivr.web.api", "ivr.web.pages", "ivr.web.phone", "ivr.web.directory", "ivr.web.messages"]
    if settings.twilio.enabled:
        parts.append("ivr.transports.twilio")
    if settings.asterisk.enabled:
        parts.append("ivr.transports.asterisk")
    return [functools.partial(importlib.import_module(name).setup, demo=demo) for name in parts]
