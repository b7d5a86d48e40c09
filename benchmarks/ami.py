"""The Asterisk transport under load: AMI frames parsed per second, and the controller's own
added latency per menu step with 100 and 500 concurrent calls.

1. **Parsing.** The recorded Asterisk 22 traffic (``tests/fixtures/ami/*.jsonl``: every
   frame Asterisk sent, ``AsyncAGIExec`` with URL-encoded results, ``Newexten``, ``VarSet``,
   ``DTMFBegin``/``DTMFEnd``, ``Hangup``, ``Newchannel``...) is fed again and again through
   the transport's real path: ``_Protocol.data_received`` (framing, the skip of events
   nobody handles), panoramisk's ``Message.from_line``, ``handle_message`` and the
   transport's own handlers as ``AsteriskTransport.subscribe()`` binds them (each
   ``AsyncAGIExec`` resolves a waiting command with its decoded result; ``AsyncAGIStart``
   is only counted, as it would start a call). Two mixes: *recorded* (as recorded, with
   ``Events: on``: most frames are dialplan chatter the transport skips unparsed) and
   *handled* (only the events the transport subscribes to, every one parsed and
   dispatched: the worst case). Two read sizes: one frame per read, and 64 KiB reads as
   under load.

2. **Concurrent calls.** A fake Asterisk (``tests/ami_peer.py``) in a process of its own
   keeps N callers in the switchboard menu over one AMI connection to the controller (the
   real runtime, engines, event log and transport, ``tests/asterisk_harness.py``). The
   peer paces each caller like a person on a phone: a queued AGI command is picked up
   after 20 ms (Asterisk with audio), prompts play 0.3-1.5 s, a key comes 0.3-1.5 s into
   a menu; callers take one of nine paths through the menus (a wrong key first, a case
   number by GET DATA, English...), wait 2-5 s in the queue with the hold steps (1 s),
   hang up, and a new caller takes their place. The peer stamps when it writes the
   ``AsyncAGIExec`` that completes a step and when it reads the next ``AGI`` action for
   that call: the difference is the controller's added latency, loopback included and the
   peer's pacing excluded. Steps: *key* (a key ends a prompt or a ``WAIT FOR DIGIT`` ->
   the engine, the event log -> the next prompt), *prompt end* (a file played -> the next
   command of the turn), *hold step* (one ``WAIT FOR DIGIT`` of the queue's hold loop ->
   the next).

Targets (issue 5): at least 20,000 events/s parsed; at 500 calls p99 under 20 ms.

    python benchmarks/ami.py [--calls 100,500] [--seconds 15] [--parse-seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.transports.ami import _Link, _Protocol  # noqa: E402
from tests.ami_peer import FIXTURES, AmiPeer, Chan  # noqa: E402
from tests.asterisk_harness import Harness, render_all  # noqa: E402

SECRET = "s3cret-ami"
PATHS = ("1", "3", "5", "0", "41", "43", "21", "71", "90", "24" + "4711#")  # keys per caller


# --------------------------------------------------------------------------- 1. parsing


def recorded_chunks() -> list[str]:
    """Every chunk Asterisk sent on the first connection of each recording, in order."""
    chunks = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            chunk = json.loads(line)
            if chunk.get("dir") == "S->C" and chunk.get("conn", 1) == 1:
                chunks.append(chunk["data"])
    return chunks


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def parse_rate(seconds: float, handled_only: bool, big_reads: bool) -> tuple[float, int]:
    """Events/s through the transport's parsing path, and how many of every 100 were dispatched."""
    async def main() -> tuple[float, int]:
        with tempfile.TemporaryDirectory() as tmp:
            harness = Harness(_Port(1), Path(tmp), Path(tmp) / "none", action_timeout_s=60)
            client = harness.transport.ami
            loop = asyncio.get_running_loop()
            counted = [0]

            def count(_message: Any) -> None:
                counted[0] += 1

            client.handlers["asyncagistart"] = []  # a start would begin a call: counted only
            for handlers in client.handlers.values():
                handlers.append(count)
            frames: list[str] = []
            for data in recorded_chunks():
                for frame in data.split("\r\n\r\n"):
                    name = frame.partition("Event: ")[2].partition("\r\n")[0].lower()
                    if frame.startswith("Asterisk Call Manager/"):
                        continue
                    if name and (not handled_only or name in client.handlers):
                        frames.append(frame)
            events = len(frames)
            link = _Link(client)
            protocol = _Protocol(link)
            protocol.connection_made(_NullTransport())
            client._link, link.protocol = link, protocol
            ids = iter(range(10**9))
            runs, feeding = 0, 0.0  # only the feeding is timed, not building the batch
            while feeding < seconds:
                batch = []  # each AsyncAGIExec answers a command that waits for it
                for frame in frames:
                    if frame.startswith("Event: AsyncAGIExec"):
                        cmd_id = f"bench-{next(ids)}"
                        client._agi[cmd_id] = (loop.create_future(), "bench")
                        head, _, rest = frame.partition("\r\nCommandId: ")
                        tail = rest.partition("\r\n")[2]
                        frame = f"{head}\r\nCommandId: {cmd_id}" + (f"\r\n{tail}" if tail else "")
                    batch.append(frame)
                text = "\r\n\r\n".join(batch) + "\r\n\r\n"
                t0 = time.perf_counter()
                if big_reads:
                    data = text.encode()
                    for i in range(0, len(data), 65536):
                        protocol.data_received(data[i:i + 65536])
                else:  # one frame per read, as a lightly loaded link delivers them
                    for frame in batch:
                        protocol.data_received((frame + "\r\n\r\n").encode())
                feeding += time.perf_counter() - t0
                runs += 1
                resolved = sum(1 for f, _ in client._agi.values() if f.done())
                assert resolved == len(client._agi), "an AsyncAGIExec did not reach its command"
                client._agi.clear()
            dispatched = round(100 * counted[0] / (events * runs))
            return events * runs / feeding, dispatched

    return asyncio.run(main())


class _Port:
    def __init__(self, port: int):
        self.port = port


# --------------------------------------------------------------------------- 2. the peer's process


class PacedPeer(AmiPeer):
    """Callers who take their time, as people do; ``calls`` of them at any moment."""

    def __init__(self, calls: int, seed: int) -> None:
        super().__init__(secret=SECRET, wait_cap=1.0)
        self.agi_delay = 0.020      # Asterisk picks a queued command up on the next audio frame
        self.target = calls
        self.random = random.Random(seed)
        self.stamps: list[tuple[int, str, str, str]] = []  # (ns, uniqueid, command, result)
        self.n = 0

    def start_call(self) -> None:
        if len(self.channels) >= self.target:
            return
        self.n += 1
        self.call(f"load-{self.n}", caller=f"+4670{self.n:07d}", keys=self.random.choice(PATHS))

    def event(self, name: str, chan: Chan, **values: Any) -> None:
        super().event(name, chan, **values)
        if name == "AsyncAGIExec":
            result = unquote(values.get("Result", "")).strip()
            command = self.results[-1][1]  # appended just before, in the same step
            self.stamps.append((time.perf_counter_ns(), chan.uniqueid, command, result))

    def _ended(self, chan: Chan, cause: int = 16) -> None:
        super()._ended(chan, cause)
        asyncio.get_running_loop().call_later(self.random.uniform(0, 1), self.start_call)  # the next caller

    async def _execute(self, chan: Chan, command: str) -> str | None:
        rnd = self.random
        if command.startswith("STREAM FILE") or chan.keys and command.startswith(("WAIT FOR", "GET DATA")):
            await asyncio.sleep(rnd.uniform(0.3, 1.5))  # a prompt plays; a key comes into it or a wait
        elif command.startswith("SET MUSIC ON"):  # in the queue: waits a while, hangs up
            asyncio.get_running_loop().call_later(rnd.uniform(2, 5), self.hangup, chan.uniqueid)
        if chan.gone:
            return "200 result=-1"
        return await super()._execute(chan, command)


def peer_process(conn: Any, calls: int, seconds: float) -> None:
    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        peer = PacedPeer(calls, seed=calls)
        conn.send(await peer.start())
        while peer.logins < 1:
            await asyncio.sleep(0.01)
        for _ in range(calls):  # callers arrive over the first two seconds
            peer.start_call()
            await asyncio.sleep(2.0 / calls)
        measure_from = time.perf_counter_ns()
        await asyncio.sleep(seconds)
        measure_to = time.perf_counter_ns()
        live, made = len(peer.channels), peer.n
        peer.target = 0  # no new callers
        while peer.writers:  # until the controller has gone (it hangs up the calls still in the menu)
            await asyncio.sleep(0.05)
        await peer.stop()
        conn.send((measure_from, measure_to, peer.stamps, peer.trace, live, made))

    asyncio.run(main())


def kind_of(command: str, result: str) -> str | None:
    key = result.startswith("200 result=") and result[11:].split(" ")[0] not in ("", "0", "-1")
    if command.startswith(("STREAM FILE", "WAIT FOR DIGIT", "GET DATA")) and key:
        return "key"
    if command.startswith("STREAM FILE"):
        return "prompt end"
    if command == "WAIT FOR DIGIT 1000":
        return "hold step"
    return None


def steps(stamps: list[tuple[int, str, str, str]], trace: list[tuple[int, str, str, str]],
          start: int, end: int) -> dict[str, list[float]]:
    """ms from the AsyncAGIExec that completed a step to the next AGI action read for that call."""
    merged = sorted([(ns, 0, uid, cmd, res) for ns, uid, cmd, res in stamps]
                    + [(ns, 1, uid, cmd, "") for ns, what, uid, cmd in trace if what == "agi"])
    last: dict[str, tuple[int, str, str]] = {}
    out: dict[str, list[float]] = {"key": [], "prompt end": [], "hold step": []}
    for ns, what, uid, command, result in merged:
        if what == 0:
            last[uid] = (ns, command, result)
        elif (before := last.pop(uid, None)) is not None and start <= before[0] <= end:
            kind = kind_of(before[1], before[2])
            if kind is not None:
                out[kind].append((ns - before[0]) / 1e6)
    return out


async def controller(port: int, seconds: float, tmp: Path, recordings: Path) -> None:
    harness = Harness(_Port(port), tmp, recordings, action_timeout_s=30)
    harness.transport.config = replace(harness.transport.config, hold_step_s=1.0)
    await harness.start()
    await asyncio.sleep(seconds)
    harness.transport._closing = True
    await harness.stop()


def run_calls(calls: int, seconds: float, recordings: Path,
              profile: bool = False) -> tuple[dict[str, list[float]], int, int, float]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=peer_process, args=(child, calls, seconds))
    process.start()
    port = parent.recv()
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        run = controller(port, seconds + 5.0, Path(tmp), recordings)  # the peer's run, and more
        if profile:
            import cProfile
            import pstats

            with cProfile.Profile(time.process_time) as prof:  # CPU time: other load does not count
                asyncio.run(run)
            prof.dump_stats(str(Path(tempfile.gettempdir()) / "ami-controller.prof"))
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        else:
            asyncio.run(run)
    cpu = time.process_time() - cpu
    start, end, stamps, trace, live, made = parent.recv()
    process.join(10)
    return steps(stamps, trace, start, end), live, made, cpu


def baseline() -> None:
    """Undo the transport's speed-ups, to see what they are worth."""
    from panoramisk.ami_protocol import AMIProtocol
    from panoramisk.message import Message

    from ivr.transports import ami

    ami.parse_frame = Message.from_line
    _Protocol.handle_message = AMIProtocol.handle_message
    send = _Protocol.send

    def send_at_once(self: Any, data: Any, as_list: Any = False) -> Any:
        future = send(self, data, as_list)
        self._flush()
        return future

    _Protocol.send = send_at_once


def figures(values: list[float]) -> str:
    if len(values) < 2:
        return f"{len(values):>8} {'-':>7} {'-':>7} {'-':>7}"
    q = statistics.quantiles(values, n=100)
    return f"{len(values):>8} {statistics.median(values):>7.2f} {q[89]:>7.2f} {q[98]:>7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="100,500", help="concurrent calls, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--parse-seconds", type=float, default=2.0)
    parser.add_argument("--profile", action="store_true", help="profile the controller (cProfile)")
    parser.add_argument("--baseline", action="store_true",
                        help="the transport without its speed-ups: panoramisk parses, one send per action")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.baseline:
        baseline()

    print("AMI frames through the transport's parsing path (one core)")
    print(f"{'mix':10} {'reads':16} {'events/s':>10} {'dispatched':>11}")
    for handled_only in (False, True):
        for big in (False, True):
            rate, dispatched = parse_rate(args.parse_seconds, handled_only, big)
            print(f"{'handled' if handled_only else 'recorded':10} {'64 KiB' if big else 'one frame':16} "
                  f"{rate:>10,.0f} {dispatched:>10} %")

    with tempfile.TemporaryDirectory() as tmp:
        recordings = Path(tmp) / "recordings"
        render_all(recordings)
        for calls in (int(c) for c in args.calls.split(",")):
            load = os.getloadavg()[0]
            out, live, made, cpu = run_calls(calls, args.seconds, recordings, args.profile)
            every = [v for values in out.values() for v in values]
            print(f"\n{calls} concurrent calls ({live} live at the end, {made} in all), {args.seconds:.0f} s "
                  f"measured; load average {load:.1f} -> {os.getloadavg()[0]:.1f}; the controller used "
                  f"{cpu:.1f} s of CPU")
            print("the controller's added latency per step, ms")
            print(f"{'step':12} {'samples':>8} {'median':>7} {'p90':>7} {'p99':>7}")
            for kind, values in out.items():
                print(f"{kind:12} {figures(values)}")
            print(f"{'all':12} {figures(every)}")


if __name__ == "__main__":
    main()
