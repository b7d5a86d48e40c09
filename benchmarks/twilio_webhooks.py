"""Twilio webhook round trips through the whole stack, on loopback, signed.

Each simulated call is two timed webhooks as Twilio sends them: ``POST /twilio/voice``
(the call comes in: signature check, a new session, the greeting and the menu as TwiML)
and the ``<Gather>`` answer (key 1: the menu is left for a queue, the caller joins the
queue engine, an ``<Enqueue>`` comes back), both logged to a real event log (SQLite,
one writer thread). The call is then hung up (status callback, not timed) so the state
stays the size of a busy day rather than growing.

Baseline in the same run: a bare aiohttp handler on the same loopback that returns a
fixed TwiML string, requested with the same signed form posts: the floor that HTTP,
aiohttp and the client set on this machine.

    python benchmarks/twilio_webhooks.py [--calls N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import ClientSession, web  # noqa: E402

from ivr.config import load_settings  # noqa: E402
from ivr.server import Runtime, make_app  # noqa: E402
from ivr.store import EventLog  # noqa: E402
from ivr.transports.twilio import install  # noqa: E402
from tests.twilio_driver import ACCOUNT_SID, AUTH_TOKEN, sid, sign  # noqa: E402

FIXED = ('<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/twilio/gather?step=1" '
         'input="dtmf" numDigits="1"><Say language="sv-SE">Välkommen.</Say></Gather></Response>')


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def form(call_sid: str, **extra: str) -> dict[str, str]:
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": call_sid,
            "CallStatus": "in-progress", "Direction": "inbound", "From": "+46701234567",
            "To": "+46331234567", **extra}


async def post(session: ClientSession, url: str, params: dict[str, str]) -> tuple[float, str]:
    headers = {"X-Twilio-Signature": sign(AUTH_TOKEN, url, params)}
    t0 = time.perf_counter()
    async with session.post(url, data=params, headers=headers) as resp:
        text = await resp.text()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {text}")
    return elapsed, text


async def run_calls(base: str, calls: int, concurrency: int, *, full: bool) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"voice": [], "gather": [], "call": []}
    todo = iter(range(calls))

    async def worker(session: ClientSession) -> None:
        for _ in todo:
            call_sid = sid()
            t_voice, doc = await post(session, base + "/twilio/voice", form(call_sid))
            action = ET.fromstring(doc).find("Gather").attrib["action"]  # type: ignore[union-attr]
            url = action if action.startswith("http") else base + action
            t_gather, _ = await post(session, url, form(call_sid, Digits="1"))
            times["voice"].append(t_voice)
            times["gather"].append(t_gather)
            times["call"].append(t_voice + t_gather)
            if full:
                await post(session, base + "/twilio/status", form(call_sid, CallStatus="completed"))

    async with ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return times


def latency(name: str, samples: list[float]) -> None:
    q = statistics.quantiles(samples, n=100)
    print(f"  {name:<28} p50 {q[49] * 1000:6.2f} ms   p99 {q[98] * 1000:6.2f} ms")


def throughput(name: str, calls: int, wall: float) -> None:
    print(f"{name}: {calls} calls in {wall:.2f} s = {calls / wall:,.0f} calls/s, "
          f"{3 * calls / wall:,.0f} webhooks/s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
        settings = load_settings(ROOT / "config.toml", env=env)
        log = EventLog.open(Path(tmp) / "bench.db", hash_key=b"benchmark-key-0123456789")
        runtime = Runtime(settings, sink=log)
        app = make_app(runtime, setups=[lambda a, rt: install(a, rt, demo=False)])
        runner, base = await serve(app)
        await run_calls(base, 50, args.concurrency, full=True)  # warm up
        t0 = time.perf_counter()
        full = await run_calls(base, args.calls, args.concurrency, full=True)
        wall_full = time.perf_counter() - t0
        await runner.cleanup()  # flushes and closes the log

    async def fixed(_request: web.Request) -> web.Response:
        await _request.post()
        return web.Response(text=FIXED, content_type="text/xml")

    bare = web.Application()
    bare.router.add_post("/twilio/voice", fixed)
    bare.router.add_post("/twilio/gather", fixed)
    bare.router.add_post("/twilio/status", fixed)
    runner, base = await serve(bare)
    await run_calls(base, 50, args.concurrency, full=True)
    t0 = time.perf_counter()
    baseline = await run_calls(base, args.calls, args.concurrency, full=True)
    wall_bare = time.perf_counter() - t0
    await runner.cleanup()

    n = args.calls
    print(f"twilio webhooks on loopback, signed, concurrency {args.concurrency} "
          f"(3 requests a call: voice, gather, status; voice and gather timed)")
    throughput("full stack", n, wall_full)
    latency("/twilio/voice", full["voice"])
    latency("gather answer", full["gather"])
    latency("voice + gather", full["call"])
    throughput("bare handler (fixed TwiML)", n, wall_bare)
    latency("one request", baseline["voice"] + baseline["gather"])
    latency("two requests", baseline["call"])


if __name__ == "__main__":
    asyncio.run(main())
