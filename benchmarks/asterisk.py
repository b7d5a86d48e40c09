"""Asterisk transport: the controller's own latency per AGI round trip, on loopback.

Two stopwatches, one run. *In the controller*: from the moment the bytes of an
``AsyncAGIExec`` arrive to the moment the next ``AGI`` action for that channel is written
(at the end of that pass of the event loop, when the actions queued in it leave together)
-- panoramisk's framing, our dispatch and waiter, the line's task, and when the result
ends a turn also the controller, the call engine and the event log's append. *At the
peer*: the fake Asterisk (``tests/ami_peer.py``, in a process of its own) stamps when it
writes the ``AsyncAGIExec`` and when it reads the next ``AGI`` action: the whole round
trip, loopback included. Asterisk's own pick-up delay (20-100 ms per command, see
``../shared/ami/README.md``) is not in either: the peer answers at once.

Kinds of round trip:

* ``menu turn`` -- ``WAIT FOR DIGIT 6000`` times out -> ``InputTimeout`` through the
  controller and the engine -> the re-prompt's first ``STREAM FILE``;
* ``within a turn`` -- a menu prompt's ``STREAM FILE`` ends -> ``WAIT FOR DIGIT``;
* ``hold step`` -- one ``WAIT FOR DIGIT`` of the queue's hold loop -> the next.

The baseline, in the same run against the same peer, is a bare client that writes a
canned next ``AGI`` action as soon as it finds an ``AsyncAGIExec`` in the bytes it reads,
measured with the same two stopwatches.

    python benchmarks/asterisk.py [--calls 1,100] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.transports import ami  # noqa: E402
from tests.ami_peer import AmiPeer  # noqa: E402
from tests.asterisk_harness import Harness, render_all  # noqa: E402

SECRET = "s3cret-ami"


# --------------------------------------------------------------------------- the peer's process


class RecyclingPeer(AmiPeer):
    """Keeps ``calls`` callers in the menu: one who reaches the queue's music is replaced."""

    recycle = True

    async def _execute(self, chan: Any, command: str) -> str | None:
        if self.recycle and command.startswith("SET MUSIC ON") and chan.uniqueid.startswith("menu-"):
            loop = asyncio.get_running_loop()
            loop.call_soon(self.hangup, chan.uniqueid)
            loop.call_soon(lambda: self.call(f"menu-{next(self._seq)}"))
        return await super()._execute(chan, command)


def peer_process(conn: Any, calls: int, seconds: float, mode: str) -> None:
    logging.basicConfig(level=logging.ERROR)  # a client gone mid-write is no news here

    async def main() -> None:
        peer = RecyclingPeer(secret=SECRET, wait_cap=0.0)
        peer.recycle = mode == "menu"
        conn.send(await peer.start())
        while peer.logins < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        for i in range(calls):
            peer.call(f"{mode}-{i}", keys="1" if mode == "hold" else "")
        deadline = time.monotonic() + seconds + 30
        while peer.writers and time.monotonic() < deadline:  # until the client has gone
            await asyncio.sleep(0.05)
        conn.send(peer.trace)
        await peer.stop()

    asyncio.run(main())


KINDS = ("menu turn", "within a turn", "hold step", "bare echo")


def kind_of(channel: str, done: str | None, command: str) -> str | None:
    if "bare-" in channel or done is None and command == "WAIT FOR DIGIT 1":
        return "bare echo" if "bare-" in channel else None
    if done == "WAIT FOR DIGIT 6000" and command.startswith("STREAM FILE"):
        return "menu turn"
    if done and done.startswith("STREAM FILE") and command == "WAIT FOR DIGIT 6000":
        return "within a turn"
    if done == "WAIT FOR DIGIT 1" and command == "WAIT FOR DIGIT 1":
        return "hold step"
    return None


def round_trips(trace: list[tuple[int, str, str, str]]) -> dict[str, list[float]]:
    """At the peer: µs from an AsyncAGIExec written to the next AGI action read on its channel."""
    last: dict[str, tuple[int, str]] = {}
    out: dict[str, list[float]] = {k: [] for k in KINDS}
    for ns, kind, uid, command in trace:
        if kind == "exec":
            last[uid] = (ns, command)
        elif (before := last.pop(uid, None)) and (k := kind_of(uid, before[1], command)):
            out[k].append((ns - before[0]) / 1000)  # (no "before": pipelined, written earlier)
    return out


class Probe:
    """In this process: µs from an AsyncAGIExec's bytes arriving to the next AGI action written."""

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}  # command id -> command
        self.last: dict[str, tuple[int, str | None]] = {}  # channel -> (ns, command it answered)
        self.out: dict[str, list[float]] = {k: [] for k in KINDS}

    def received(self, ns: int, frame: str) -> None:
        if frame.startswith("Event: AsyncAGIExec"):
            fields = dict(line.split(": ", 1) for line in frame.split("\r\n") if ": " in line)
            self.last[fields["Channel"]] = (ns, self.sent.pop(fields.get("CommandId", ""), None))

    def written(self, ns: int, channel: str, command_id: str, command: str) -> None:
        self.sent[command_id] = command
        before = self.last.pop(channel, None)
        if before is not None and (k := kind_of(channel, before[1], command)) is not None:
            self.out[k].append((ns - before[0]) / 1000)


PROBE = Probe()


def instrument() -> None:
    """Stamp the controller's protocol: bytes in (per frame) and AGI actions out."""
    protocol = ami._Protocol
    data_received, frame = protocol.data_received, protocol._frame
    send, flush = protocol.send, protocol._flush

    def timed_data_received(self: Any, data: bytes) -> None:
        self._stamp = time.perf_counter_ns()
        data_received(self, data)

    def timed_frame(self: Any, text: str) -> None:
        PROBE.received(self._stamp, text.strip())
        frame(self, text)

    def timed_send(self: Any, action: Any, as_list: Any = False) -> Any:
        if action.get("Action") == "AGI":
            self.__dict__.setdefault("_agi_out", []).append(
                (action["Channel"], action["CommandID"], action["Command"]))
        return send(self, action, as_list)

    def timed_flush(self: Any) -> None:  # actions leave together at the end of the loop's pass
        flush(self)
        now = time.perf_counter_ns()
        for channel, command_id, command in self.__dict__.pop("_agi_out", []):
            PROBE.written(now, channel, command_id, command)

    protocol.data_received, protocol._frame = timed_data_received, timed_frame
    protocol.send, protocol._flush = timed_send, timed_flush


# --------------------------------------------------------------------------- the two clients


async def controller(port: int, seconds: float, tmp: Path, recordings: Path) -> None:
    peer = AmiPeer(secret=SECRET)
    peer.port = port  # the harness only reads the port
    harness = Harness(peer, tmp, recordings)
    harness.transport.config = type(harness.transport.config)(
        hold_step_s=0.001, messages=str(tmp / "messages"), hangup_grace_s=0.2)
    await harness.start()
    await asyncio.sleep(seconds)
    harness.transport._closing = True
    await harness.stop()


async def bare_client(port: int, seconds: float) -> None:
    """Log in, then answer every AsyncAGIExec with the next canned AGI action at once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"Action: Login\r\nUsername: ivr\r\nSecret: {SECRET}\r\nEvents: on\r\n\r\n".encode())
    counter = 0
    buffer = b""

    async def pump() -> None:
        nonlocal buffer, counter
        while True:
            data = await reader.read(65536)
            if not data:
                return
            ns = time.perf_counter_ns()
            buffer += data
            *frames, buffer = buffer.split(b"\r\n\r\n")
            for frame in frames:
                if frame.startswith(b"Event: AsyncAGIStart") or frame.startswith(b"Event: AsyncAGIExec"):
                    start = frame.index(b"\r\nChannel: ") + 11
                    channel = frame[start:frame.index(b"\r\n", start)]
                    counter += 1
                    writer.write(b"Action: AGI\r\nChannel: " + channel + b"\r\nCommand: WAIT FOR DIGIT 1\r\n"
                                 b"CommandID: bare-%d\r\n\r\n" % counter)
                    if frame.startswith(b"Event: AsyncAGIExec"):
                        PROBE.out["bare echo"].append((time.perf_counter_ns() - ns) / 1000)

    task = asyncio.ensure_future(pump())
    await asyncio.sleep(seconds)
    task.cancel()
    writer.close()


def run(mode: str, calls: int, seconds: float, recordings: Path) -> tuple[dict, dict]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=peer_process, args=(child, calls, seconds, mode))
    process.start()
    port = parent.recv()
    PROBE.__init__()
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "bare":
            asyncio.run(bare_client(port, seconds))
        else:
            asyncio.run(controller(port, seconds, Path(tmp), recordings))
    trace = parent.recv()
    process.join(10)
    return {k: list(v) for k, v in PROBE.out.items()}, round_trips(trace)


def show(name: str, inside: list[float], peer: list[float]) -> str:
    def figures(values: list[float]) -> str:
        if len(values) < 2:
            return f"{'-':>7} {'-':>7} {'-':>7}"
        q = statistics.quantiles(values, n=100)
        return f"{statistics.median(values):>7.0f} {q[89]:>7.0f} {q[98]:>7.0f}"

    return f"{name:14} {len(inside):>8} {figures(inside)}   {figures(peer)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="1,100", help="concurrent calls, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    instrument()
    with tempfile.TemporaryDirectory() as tmp:
        recordings = Path(tmp) / "recordings"
        render_all(recordings)
        for calls in (int(c) for c in args.calls.split(",")):
            menu, menu_peer = run("menu", calls, args.seconds, recordings)
            hold, hold_peer = run("hold", calls, args.seconds, recordings)
            bare, bare_peer = run("bare", calls, args.seconds, recordings)
            print(f"\n{calls} concurrent call(s), {args.seconds:.0f} s per run; µs")
            print(f"{'':14} {'':8} {'in the controller':^23}   {'round trip at the peer':^23}")
            print(f"{'round trip':14} {'samples':>8} {'median':>7} {'p90':>7} {'p99':>7}   "
                  f"{'median':>7} {'p90':>7} {'p99':>7}")
            rows = (("menu turn", menu, menu_peer), ("within a turn", menu, menu_peer),
                    ("hold step", hold, hold_peer), ("bare echo", bare, bare_peer))
            for name, inside, peer in rows:
                print(show(name, inside[name], peer[name]))
            base = statistics.median(bare["bare echo"]) if bare["bare echo"] else 0.0
            for name, inside, _peer in rows[:3]:
                if inside[name]:
                    print(f"added by the controller over the bare client, {name}: "
                          f"{statistics.median(inside[name]) - base:.0f} µs (median)")


if __name__ == "__main__":
    main()
