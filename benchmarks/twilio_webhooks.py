"""Twilio webhooks with 500 calls in progress: throughput and latency against bare aiohttp.

Each server runs in a process of its own (one core for it), the client in this process
(the other core), the same client for both servers, one after the other in one run:

* **ivr**: the Twilio transport as ``ivr serve`` builds it: every request signed as
  Twilio signs it and checked, the controller, the queue engine with its timers, a real
  event log (SQLite; its writer in a process or a thread as config.toml's ``[store] writer``
  says, as ``ivr serve`` opens it). The server's clock is a Tuesday morning (open hours)
  running at real speed; the queues' ``max_length`` and ``max_wait_s`` are lifted so 500 callers
  can wait (a bad day, not a misconfiguration).
* **bare**: the same aiohttp server (``AppRunner``, ``TCPSite``, no access log) with one
  handler that reads the form and answers a small fixed XML document; no signature
  check, nothing kept. The client sends it exactly the same requests (URLs, form bodies,
  signature headers).

Before measuring, the client brings ``--calls`` calls in (500): each posts
``/twilio/voice`` and answers the menu with a key that leads to a queue, so the
controller holds 500 sessions waiting in its queues (in ``<Enqueue>`` at Twilio). The
measured traffic is then cycles of five webhooks, as Twilio sends them while the
center stays at 500 calls in progress:

1. a new call: ``/twilio/voice`` (a session, the greeting and the menu);
2. its menu answer: ``/twilio/gather?step=1`` (it joins a queue: ``<Enqueue>``);
3. a waiting caller's hold round: ``/twilio/wait?step=2``;
4. the longest-waiting caller hangs up: ``/twilio/queue-exit?step=2``, ``QueueResult=hangup``;
5. that call's status callback: ``/twilio/status``, ``CallStatus=completed``.

Two measurements per server:

* **throughput**: closed loop, ``--concurrency`` cycles at once for ``--seconds``:
  requests answered per second;
* **latency at a fixed rate** (``--rate``, 200 requests/s, for ``--seconds``): request
  *k* is due at t0 + k/rate; it is sent then (or when the request before it in its
  cycle has its answer, if that is later), and its latency counts from when it was due,
  so time spent queueing counts.

CPU figures: the server process (event loop and event-log writer together), its event
loop thread alone, and this (client) process, each as a share of one core.

    python benchmarks/twilio_webhooks.py [--calls 500] [--seconds 10] [--rate 200] [--concurrency 16]
                                         [--rounds N] [--only ivr|bare] [--profile FILE] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from tests.twilio_driver import ACCOUNT_SID, AUTH_TOKEN, sid, sign  # noqa: E402

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)  # a Tuesday, 09:30 in Stockholm: open
KEYS = ("1", "3", "5", "0")  # main-menu keys that lead straight to a queue
CYCLE = 5  # requests per cycle
BARE_DOC = ('<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/twilio/gather?step=1" '
            'input="dtmf" numDigits="1"><Say language="sv-SE" voice="Polly.Astrid">Välkommen till '
            'Bollebygds kommun.</Say></Gather></Response>')


# --------------------------------------------------------------------------- the server's process


class RunningClock:
    """Real time, shifted to start at ``T0`` (the queue engine's timers run at real speed)."""

    def __init__(self) -> None:
        self.offset = T0 - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class Discard:
    """An event log that keeps nothing (``--log discard``): what the log costs the server."""

    db_path = last_error = None

    def append_many(self, *_args: Any) -> None: ...
    def append_agent(self, *_args: Any) -> None: ...
    def add_note(self, *_args: Any) -> None: ...
    def keep_raw_number(self, *_args: Any) -> None: ...
    def flush(self, *_args: Any) -> None: ...
    def close(self, *_args: Any) -> None: ...


PARTS: dict[str, list[float]] = {}  # --breakdown: part -> [calls, seconds]


def instrument() -> None:
    """``--breakdown``: time the parts of a webhook by wrapping them (each wrapper adds
    about 0.3 µs to what it measures; the total is the ``timed`` histogram's)."""
    import functools

    from aiohttp.web_request import BaseRequest

    from ivr.controller import ContactCenter
    from ivr.store import EventLog
    from ivr.transports import twilio_webhooks
    from ivr.transports.twilio import TwilioTransport

    def wrap(owner: Any, name: str, label: str, is_async: bool = False) -> None:
        fn, acc, clock = getattr(owner, name), PARTS.setdefault(label, [0, 0.0]), time.perf_counter
        if is_async:
            async def timed(*a: Any, **k: Any) -> Any:
                t = clock()
                try:
                    return await fn(*a, **k)
                finally:
                    acc[0] += 1
                    acc[1] += clock() - t
        else:
            def timed(*a: Any, **k: Any) -> Any:
                t = clock()
                try:
                    return fn(*a, **k)
                finally:
                    acc[0] += 1
                    acc[1] += clock() - t
        setattr(owner, name, functools.wraps(fn)(timed))

    wrap(BaseRequest, "post", "form parsing (aiohttp, as bare does)", is_async=True)
    wrap(twilio_webhooks, "signed", "signature (twilio RequestValidator)")
    wrap(twilio_webhooks.Webhooks, "_enter", "checks at the door (form and signature included)", True)
    wrap(ContactCenter, "start_call", "controller: a new call (its log appends included)")
    wrap(ContactCenter, "call_event", "controller: a call's event (its log appends included)")
    wrap(EventLog, "append_many", "event log appends (on the loop)")
    wrap(TwilioTransport, "render", "TwiML rendering")


def breakdown(app: web.Application) -> str:
    from ivr.server import METRICS

    routes = app[METRICS].latency._routes  # noqa: SLF001 (the benchmark reads the histogram's counts)
    requests = sum(sum(counts[:-1]) for route, counts in routes.items() if route.startswith("/twilio/"))
    total = sum(counts[-1] for route, counts in routes.items() if route.startswith("/twilio/"))
    lines = [f"  handler (timed, all webhooks): {total / requests * 1e6:6.1f} µs/request over {requests:.0f}"]
    for label, (calls, seconds) in sorted(PARTS.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"    {label:52} {seconds / requests * 1e6:6.1f} µs/request "
                     f"({calls / requests:.2f} calls, {seconds / max(calls, 1) * 1e6:.1f} µs each)")
    return "\n".join(lines)


def build_ivr(tmp: Path, calls: int, log: str = "real") -> web.Application:
    from ivr.config import load_settings
    from ivr.server import Runtime, make_app
    from ivr.store import EventLog
    from ivr.transports.twilio import install

    env = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    plain = load_settings(ROOT / "config.toml", env=env)
    overrides: dict[str, object] = {}
    for name in plain.queues:
        overrides[f"queues.{name}.max_length"] = calls * 4
        overrides[f"queues.{name}.max_wait_s"] = 24 * 3600
    settings = load_settings(ROOT / "config.toml", env=env, overrides=overrides)
    writer = settings.store.writer if log == "real" else log  # as `ivr serve` opens it, or as asked
    event_log: Any = Discard() if log == "discard" else EventLog.open(
        tmp / "bench.db", hash_key=b"benchmark-key-0123456789", writer=writer)
    runtime = Runtime(settings, sink=event_log, clock=RunningClock())
    return make_app(runtime, setups=[lambda app, rt: install(app, rt, demo=False)])


def build_bare() -> web.Application:
    async def fixed(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(text=BARE_DOC, content_type="text/xml", charset="utf-8")

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"calls_in_progress": None})

    app = web.Application()
    for name in ("voice", "gather", "wait", "queue-exit", "status"):
        app.router.add_post(f"/twilio/{name}", fixed)
    app.router.add_get("/healthz", healthz)
    return app


def children_cpu() -> float:
    """CPU seconds of this process's children (the event log's writer process), from /proc."""
    import os

    total = 0.0
    for child in multiprocessing.active_children():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def server_process(conn: Any, mode: str, calls: int, profile: str | None = None,
                   log: str = "real", parts: bool = False) -> None:
    """Serve ``mode`` on a free loopback port; answer ``cpu`` and ``stop`` on ``conn``."""
    with tempfile.TemporaryDirectory() as tmp:
        # as `ivr serve` logs (INFO), into a file: the lines logged are counted
        log_path = Path(tmp) / "server.log"
        logging.basicConfig(level=logging.INFO, filename=log_path,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")

        async def main() -> None:
            if parts and mode == "ivr":
                instrument()
            app = build_ivr(Path(tmp), calls, log) if mode == "ivr" else build_bare()
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            conn.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()

            async def loop_cpu() -> float:
                return time.thread_time()

            def control() -> None:
                while True:
                    command = conn.recv()
                    if command == "cpu":
                        loop_s = asyncio.run_coroutine_threadsafe(loop_cpu(), loop).result()
                        conn.send((time.process_time(), loop_s, children_cpu()))
                    else:
                        loop.call_soon_threadsafe(stop.set)
                        return

            threading.Thread(target=control, daemon=True).start()
            if profile:  # the event loop's thread only (not the event log's writer)
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
                await stop.wait()
                profiler.disable()
                profiler.dump_stats(profile)
            else:
                await stop.wait()
            summary = breakdown(app) if parts and mode == "ivr" else ""
            await runner.cleanup()  # flushes and closes the event log
            conn.send(summary)

        asyncio.run(main())
        logging.shutdown()
        conn.send(sum(1 for _ in log_path.open(encoding="utf-8")))


# --------------------------------------------------------------------------- the client


class Http:
    """A lean HTTP/1.1 client over kept-alive loopback connections (as wrk or h2load are):
    requests are written whole, answers read by ``Content-Length``. The aiohttp client
    costs about as much CPU per request as the bare server does, so it, not the server,
    would set the baseline; this one costs a fraction of that."""

    def __init__(self, port: int, connections: int):
        self.port = port
        self.host = f"127.0.0.1:{port}".encode()
        self.size = connections
        self.pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.opened: list[asyncio.StreamWriter] = []

    async def open(self) -> None:
        for _ in range(self.size):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened.append(writer)
            self.pool.put_nowait((reader, writer))

    async def close(self) -> None:
        for writer in self.opened:
            writer.close()

    async def request(self, method: bytes, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        head = [method + b" " + path.encode() + b" HTTP/1.1", b"Host: " + self.host]
        if method == b"POST":
            head += [b"Content-Type: application/x-www-form-urlencoded",
                     b"Content-Length: " + str(len(body)).encode()]
        head += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
        reader, writer = await self.pool.get()
        try:
            writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
            status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            length = 0
            for line in lines:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            answer = await reader.readexactly(length) if length else b""
        except BaseException:
            writer.close()
            raise
        self.pool.put_nowait((reader, writer))
        return int(status_line.split(b" ", 2)[1]), answer


class Client:
    """Twilio's side: signed form posts, and the calls the center holds."""

    def __init__(self, http: Http, *, check: bool):
        self.http = http
        self.base = f"http://127.0.0.1:{http.port}"  # what the requests are signed for
        self.check = check  # look at the answers (the ivr server's: the bare one is fixed)
        self.held: deque[tuple[str, str]] = deque()  # (CallSid, From) of callers waiting
        self.rng = random.Random(4711)
        self.latencies: list[float] = []
        self.done = 0

    def params(self, call_sid: str, caller: str, **extra: str) -> dict[str, str]:
        return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": call_sid,
                "CallStatus": "in-progress", "Direction": "inbound", "From": caller, "To": "+46331234567",
                "Caller": caller, "Called": "+46331234567", "FromCountry": "SE", "ToCountry": "SE",
                **extra}

    async def post(self, path: str, params: dict[str, str], expect: bytes | None = None,
                   due: float | None = None) -> None:
        headers = {"X-Twilio-Signature": sign(AUTH_TOKEN, self.base + path, params)}
        body = urlencode(params).encode()
        if due is not None:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        status, answer = await self.http.request(b"POST", path, body, headers)
        if status != 200 or (self.check and expect is not None and expect not in answer):
            raise RuntimeError(f"{path}: HTTP {status}, expected {expect!r} in: {answer[:300]!r}")
        if due is not None:
            self.latencies.append(time.perf_counter() - due)
        self.done += 1

    async def bring_in(self, due: Callable[[int], float | None] = lambda _s: None) -> None:
        """A new call: the menu, then a key into a queue; the caller is held."""
        call_sid, caller = sid(), f"+4670{self.rng.randrange(10**7):07d}"
        await self.post("/twilio/voice", self.params(call_sid, caller, CallStatus="ringing"), b"<Gather",
                        due(0))
        await self.post("/twilio/gather?step=1", self.params(call_sid, caller, Digits=self.rng.choice(KEYS)),
                        b"<Enqueue", due(1))
        self.held.append((call_sid, caller))

    async def cycle(self, due: Callable[[int], float | None] = lambda _s: None) -> None:
        await self.bring_in(due)
        call_sid, caller = self.held[self.rng.randrange(len(self.held))]
        await self.post("/twilio/wait?step=2", self.params(call_sid, caller, QueueSid="QU" + "1" * 32,
                        QueuePosition="250", QueueTime="120", AvgQueueTime="300",
                        CurrentQueueSize="500", MaxQueueSize="1000"), None, due(2))
        call_sid, caller = self.held.popleft()
        await self.post("/twilio/queue-exit?step=2", self.params(call_sid, caller, QueueResult="hangup",
                        QueueSid="QU" + "1" * 32, QueueTime="300"), None, due(3))
        await self.post("/twilio/status", self.params(call_sid, caller, CallStatus="completed",
                        CallDuration="320"), None, due(4))

    async def in_progress(self) -> int | None:
        status, answer = await self.http.request(b"GET", "/healthz")
        return json.loads(answer)["calls_in_progress"] if status == 200 else None


async def closed_loop(client: Client, concurrency: int, seconds: float) -> tuple[int, float]:
    """Cycles back to back on ``concurrency`` workers; requests answered and the seconds taken."""
    end = time.perf_counter() + seconds
    before, t0 = client.done, time.perf_counter()

    async def worker() -> None:
        while time.perf_counter() < end:
            await client.cycle()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return client.done - before, time.perf_counter() - t0


async def fixed_rate(client: Client, rate: float, seconds: float) -> list[float]:
    """``rate`` requests/s, each timed from when it was due."""
    client.latencies = []
    cycles = int(rate * seconds) // CYCLE
    t0 = time.perf_counter() + 0.05

    def due_of(i: int) -> Callable[[int], float]:
        return lambda step: t0 + (i * CYCLE + step) / rate

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, due_of(i)(0) - time.perf_counter() - 0.002))
        await client.cycle(due_of(i))

    await asyncio.gather(*(one(i) for i in range(cycles)))
    return client.latencies


async def bring_in(client: Client, calls: int, concurrency: int) -> None:
    todo = iter(range(calls))

    async def worker() -> None:
        for _ in todo:
            await client.bring_in()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def cpu_of(conn: Any) -> Cpu:
    conn.send("cpu")
    return conn.recv()


Cpu = tuple[float, float, float]  # the server process, its event loop thread, its children


def cpu(server0: Cpu, server1: Cpu, client0: float, client1: float, wall: float) -> dict[str, float]:
    """Shares of one core: the server process, its event loop thread, its writer process, the client."""
    return {"server": (server1[0] - server0[0]) / wall, "loop": (server1[1] - server0[1]) / wall,
            "writer": (server1[2] - server0[2]) / wall, "client": (client1 - client0) / wall}


async def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    profile = args.profile if mode == "ivr" else None
    process = ctx.Process(target=server_process, name=f"{mode}-server",
                          args=(child, mode, args.calls, profile, args.log, args.breakdown))
    process.start()
    port = conn.recv()
    out: dict[str, Any] = {"mode": mode}
    http = Http(port, max(args.concurrency, 64))
    await http.open()
    try:
        client = Client(http, check=mode == "ivr")
        t0 = time.perf_counter()
        await bring_in(client, args.calls, 16)
        out["bring_in_s"] = time.perf_counter() - t0
        out["held_before"] = await client.in_progress()
        await closed_loop(client, args.concurrency, 1.0)  # warm up

        server0, client0 = cpu_of(conn), time.process_time()
        requests, wall = await closed_loop(client, args.concurrency, args.seconds)
        server1, client1 = cpu_of(conn), time.process_time()
        out["throughput"] = requests / wall
        out["server_us"] = (server1[0] - server0[0]) / requests * 1e6  # CPU per request
        out["cpu_closed"] = cpu(server0, server1, client0, client1, wall)
        out["held_mid"] = await client.in_progress()

        await asyncio.sleep(0.5)
        t0, server0, client0 = time.perf_counter(), cpu_of(conn), time.process_time()
        latencies = await fixed_rate(client, args.rate, args.seconds)
        wall = time.perf_counter() - t0
        server1, client1 = cpu_of(conn), time.process_time()
        q = statistics.quantiles(latencies, n=100)
        out["fixed"] = {"requests": len(latencies), "achieved": len(latencies) / wall,
                        "p50_ms": q[49] * 1000, "p90_ms": q[89] * 1000, "p99_ms": q[98] * 1000,
                        "max_ms": max(latencies) * 1000}
        out["cpu_fixed"] = cpu(server0, server1, client0, client1, wall)
        out["held_after"] = await client.in_progress()
    finally:
        await http.close()
    conn.send("stop")
    out["breakdown"] = conn.recv()
    out["log_lines"] = conn.recv()
    process.join(30)
    return out


def show(result: dict[str, Any], rate: float) -> None:
    c, f, cf = result["cpu_closed"], result["fixed"], result["cpu_fixed"]
    held = "" if result["held_before"] is None else (
        f"; calls in progress {result['held_before']} / {result['held_mid']} / {result['held_after']} "
        f"(before / after throughput / after latency)")
    print(f"{result['mode']}: brought in in {result['bring_in_s']:.1f} s{held}; "
          f"{result['log_lines']} log lines")
    print(f"  throughput   {result['throughput']:8,.0f} requests/s   "
          f"CPU: server {c['server']:.0%} (loop {c['loop']:.0%}), writer process {c['writer']:.0%}, "
          f"client {c['client']:.0%}; "
          f"server CPU {result['server_us']:.0f} µs/request")
    print(f"  at {rate:.0f}/s      p50 {f['p50_ms']:6.2f} ms  p90 {f['p90_ms']:6.2f} ms  "
          f"p99 {f['p99_ms']:6.2f} ms  max {f['max_ms']:6.2f} ms  ({f['requests']} requests, "
          f"{f['achieved']:.0f}/s; CPU: server {cf['server']:.0%}, client {cf['client']:.0%})")
    if result.get("breakdown"):
        print(result["breakdown"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="calls in progress while measuring")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s of the latency run")
    parser.add_argument("--concurrency", type=int, default=16, help="cycles at once in the throughput run")
    parser.add_argument("--rounds", type=int, default=1, help="bare and ivr in turn, this many times")
    parser.add_argument("--only", choices=("ivr", "bare"), help="measure one server only")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the ivr server's event loop into FILE")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--log", choices=("real", "process", "thread", "discard"), default="real",
                        help="real: the event log as config.toml's [store] writer says (as `ivr serve`); "
                             "process or thread: that writer; discard: a log that keeps nothing")
    parser.add_argument("--breakdown", action="store_true",
                        help="time the parts of the ivr server's webhooks (slows it a little)")
    args = parser.parse_args()

    print(f"Twilio webhooks on loopback, {args.calls} calls in progress; server and client in separate "
          f"processes; throughput: {args.concurrency} cycles at once, {args.seconds:.0f} s")
    ratios, rounds = [], []
    for n in range(args.rounds):  # bare and ivr in turn: a busy machine slows both alike
        results = {mode: asyncio.run(measure(mode, args)) for mode in ("bare", "ivr")
                   if args.only in (None, mode)}
        rounds.append(results)
        print(f"round {n + 1}")
        for result in results.values():
            show(result, args.rate)
        if len(results) == 2:
            ratios.append(results["ivr"]["throughput"] / results["bare"]["throughput"])
            p99 = results["ivr"]["fixed"]["p99_ms"]
            print(f"  ratio ivr / bare: {ratios[-1]:.0%} (target: at least 50 %); "
                  f"ivr p99 at {args.rate:.0f}/s: {p99:.2f} ms (target: under 20 ms)")
    if len(ratios) > 1:
        print(f"ratio over {len(ratios)} rounds: median {statistics.median(ratios):.0%}, "
              f"{min(ratios):.0%}-{max(ratios):.0%}")
    if args.json:
        print(json.dumps(rounds, indent=1))


if __name__ == "__main__":
    main()

