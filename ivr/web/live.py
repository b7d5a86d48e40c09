"""Server-sent events: the live queue state for wallboards, and each agent's desk.

A client of ``GET /api/queues/stream`` gets the full state as an ``event: state`` at
once, then again after every change. Changes come from the :class:`ivr.server.Router`'s
``listeners`` (offers, cancelled offers, connections) and from the API itself (agent
actions, announcement switches); a light periodic check of the queue engine's
snapshot catches the rest (a caller joining while every agent is busy, a hang-up, a
timer), since the controller announces none of those. A comment line (``: keepalive``)
goes out every ``heartbeat_s`` so proxies keep the connection open.

``GET /api/agent/stream`` uses the same hub with a state of its own per client (one
agent's desk, :meth:`LiveHub.stream` with ``state`` and ``changes_only``): every notice
reaches every client, and a desk sends an event only when its own picture changed.

Each client has a small bounded queue of change notices. The listener never waits: a
full queue drops its oldest notice (every event carries the whole state, so nothing is
lost but an intermediate picture), and a client that cannot take a write within
``write_timeout_s`` is disconnected. So a slow or stuck client never holds up the
controller or the other clients. On shutdown every stream is ended cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
POLL_S = 1.0
QUEUE_SIZE = 16
WRITE_TIMEOUT_S = 10.0

_CLOSE = object()


class _Client:
    __slots__ = ("queue", "dropped")

    def __init__(self, size: int):
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=size)
        self.dropped = 0

    def put(self, item: Any) -> None:
        """Never waits: a full queue loses its oldest notice."""
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                    self.dropped += 1


class LiveHub:
    """The streams of one server. ``notify`` is a Router listener: ``(kind, payload)``."""

    def __init__(self, state: Callable[[], dict[str, Any]],
                 fingerprint: Callable[[dict[str, Any]], Any], *,
                 dumps: Callable[[Any], str], heartbeat_s: float | None = None,
                 poll_s: float | None = None, queue_size: int | None = None,
                 write_timeout_s: float | None = None):
        self.state, self.fingerprint, self.dumps = state, fingerprint, dumps
        self.heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        self.poll_s = POLL_S if poll_s is None else poll_s
        self.queue_size = QUEUE_SIZE if queue_size is None else queue_size
        self.write_timeout_s = WRITE_TIMEOUT_S if write_timeout_s is None else write_timeout_s
        self.clients: set[_Client] = set()
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    # ------------------------------------------------------------------ notices

    def notify(self, kind: str, payload: Any = None) -> None:
        """Something changed. Safe from any thread; never blocks."""
        if self.closed or not self.clients:
            return
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self._put_all, kind)
        else:
            self._put_all(kind)

    def _put_all(self, item: Any) -> None:
        for client in list(self.clients):
            client.put(item)

    async def close(self) -> None:
        """End every stream (on shutdown); later connections are refused."""
        self.closed = True
        self._put_all(_CLOSE)

    # ------------------------------------------------------------------ a stream

    async def stream(self, request: web.Request, *,
                     state: Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]] | None = None,
                     fingerprint: Callable[[dict[str, Any]], Any] | None = None,
                     changes_only: bool = False) -> web.StreamResponse:
        """One client's stream. ``state`` and ``fingerprint`` replace the hub's for this
        client (a view of its own, such as one agent's desk; ``state`` may be async);
        with ``changes_only`` a notice sends an event only when the fingerprint moved
        (the notices of every other agent's changes reach every client)."""
        state_of = state or self.state
        print_of = fingerprint or self.fingerprint

        async def current() -> dict[str, Any]:
            value = state_of()
            return await value if inspect.isawaitable(value) else value  # type: ignore[return-value]

        if self.closed:
            raise web.HTTPServiceUnavailable(reason="shutting down")
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache, no-store",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        })
        await response.prepare(request)
        client = _Client(self.queue_size)
        self.clients.add(client)
        loop = asyncio.get_running_loop()
        seq = 0
        last_print: Any = None
        last_write = loop.time()

        async def write(data: str) -> None:
            nonlocal last_write
            await asyncio.wait_for(response.write(data.encode("utf-8")), self.write_timeout_s)
            last_write = loop.time()

        async def send(cause: str, body: dict[str, Any] | None = None) -> None:
            nonlocal seq, last_print
            body = await current() if body is None else body
            last_print = print_of(body)
            seq += 1
            await write(f"id: {seq}\nevent: state\ndata: {self.dumps({'cause': cause, **body})}\n\n")

        try:
            await write("retry: 3000\n")
            await send("connect")
            while True:
                wait = self.heartbeat_s - (loop.time() - last_write)
                if self.poll_s:
                    wait = min(wait, self.poll_s)
                try:
                    item = await asyncio.wait_for(client.queue.get(), max(0.0, wait))
                except TimeoutError:
                    item = None
                if item is None:  # quiet: look for changes nobody announced; keep alive
                    body = await current() if self.poll_s else None
                    if body is not None and print_of(body) != last_print:
                        await send("poll", body)
                    elif loop.time() - last_write >= self.heartbeat_s:
                        await write(": keepalive\n\n")
                    continue
                causes = [item]
                while not client.queue.empty():  # one event for a burst of changes
                    causes.append(client.queue.get_nowait())
                if any(c is _CLOSE for c in causes):
                    break
                body = await current()
                if not changes_only or print_of(body) != last_print:
                    await send(str(causes[-1]), body)
        except (ConnectionResetError, TimeoutError) as e:
            log.info("live stream to %s ended: %s", request.remote,
                     "too slow" if isinstance(e, TimeoutError) else "disconnected")
            return response
        finally:
            self.clients.discard(client)
            if client.dropped:
                log.info("live stream to %s: %d notices coalesced", request.remote, client.dropped)
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            await asyncio.wait_for(response.write_eof(), self.write_timeout_s)
        return response
