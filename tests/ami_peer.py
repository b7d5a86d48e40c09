"""A fake Asterisk that speaks AMI over a real TCP socket, as the recordings show it.

Every frame it sends is a frame of the recorded Asterisk 22 traffic
(``tests/fixtures/ami/*.jsonl``) with the call's own values put in: the banner, the login
answers (a refused login answers late, then the socket closes), ``ActionID`` echoed,
event lists (``EventList: start`` ... ``*Complete``), ``AsyncAGIStart`` with a URL-encoded
``Env``, ``AsyncAGIExec`` with a URL-encoded ``Result`` and ``CommandId`` spelled so,
``DTMFBegin``/``DTMFEnd``, ``Hangup``, ``OriginateResponse`` and the ``Bridge`` events.

Channels live in the peer, not in a connection (as in Asterisk): a client that drops
and logs in again finds them, minus those that hung up meanwhile. Per channel, AGI
commands run one after another; keys pressed (``press``) are heard by the next command
that listens for them. Tests script it: ``on_agi("WAIT FOR DIGIT", None)`` never answers,
``mute("Bridge")`` never responds, ``agents[endpoint] = "busy"`` refuses offers. ``Bridge``
moves a channel that is already bridged, as Asterisk does (transfers rely on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ami"
EOL = "\r\n"


def parse(frame: str) -> list[tuple[str, str]]:
    pairs = []
    for line in frame.split(EOL):
        key, sep, value = line.partition(": ")
        if sep:
            pairs.append((key, value))
    return pairs


class Frames:
    """The first recorded frame of each kind, by ``Event`` name or ``Response: Message``."""

    def __init__(self, directory: Path = FIXTURES):
        self.templates: dict[str, list[tuple[str, str]]] = {}
        for path in sorted(directory.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                chunk = json.loads(line)
                if chunk.get("dir") != "S->C":
                    continue
                for frame in chunk["data"].split(EOL + EOL):
                    pairs = parse(frame.removeprefix("Asterisk Call Manager/11.0.0" + EOL))
                    d = dict(pairs)
                    name = d.get("Event") or (f"{d['Response']}: {d.get('Message', '')}"
                                              if "Response" in d else None)
                    if name:
                        self.templates.setdefault(name, pairs)

    def build(self, name: str, **values: Any) -> str:
        """The template ``name`` with ``values`` put in (``None`` drops a field)."""
        pairs = list(self.templates[name])
        given = {k.replace("_", "-").lower(): (k.replace("_", "-"), v) for k, v in values.items()}
        out = []
        for key, value in pairs:
            if key.lower() in given:
                _k, v = given.pop(key.lower())
                if v is not None:
                    out.append((key, str(v)))
            elif key != "ActionID":
                out.append((key, value))
        out += [(k, str(v)) for k, v in given.values() if v is not None]
        return EOL.join(f"{k}: {v}" for k, v in out) + EOL + EOL


FRAMES = Frames()


@dataclass
class Chan:
    name: str
    uniqueid: str
    context: str = "ivr"
    exten: str = "s"
    priority: int = 2
    caller: str = "5551234"
    in_agi: bool = True
    app: str = "AGI"
    bridge: str | None = None
    peer: Chan | None = None
    gone: bool = False
    keys: deque[str] = field(default_factory=deque)
    commands: asyncio.Queue[tuple[str, str] | None] = field(default_factory=asyncio.Queue)
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    executing: bool = False
    vars: dict[str, str] = field(default_factory=dict)
    worker: asyncio.Task[None] | None = None

    def common(self) -> dict[str, Any]:
        return {"Channel": self.name, "Uniqueid": self.uniqueid, "Linkedid": self.uniqueid,
                "Context": self.context, "Exten": self.exten, "Priority": self.priority,
                "CallerIDNum": self.caller, "ChannelState": 6, "ChannelStateDesc": "Up"}


class AmiPeer:
    def __init__(self, *, username: str = "ivr", secret: str = "s3cret-ami", login_delay: float = 0.01,
                 wait_cap: float = 0.05):
        self.username, self.secret = username, secret
        self.login_delay = login_delay      # a refused login answers this late (Asterisk: ~1 s)
        self.wait_cap = wait_cap            # WAIT FOR DIGIT / GET DATA time out after at most this
        self.agi_delay = 0.0                # pickup delay of a queued AGI command (Asterisk: 20-100 ms)
        self.dial_status = "NOANSWER"       # what EXEC Dial ends with
        self.after_bridge = "agi"           # the caller's next priority after a bridge: AGI again
        # the other contexts as docs/asterisk.md writes them: (context, exten) -> app per priority
        # (1-based; past the end: hung up, as Asterisk does when a priority does not exist)
        self.dialplan: dict[tuple[str, str], list[str]] = {
            ("ivr-agent", "s"): ["AGI", "AGI", "Hangup"]}
        self.agents: dict[str, str] = {}    # endpoint -> "answer" (default) | "busy" | "manual"
        self.dtmf_events = True             # DTMFBegin/DTMFEnd sent (the manager user has `read = dtmf`)
        self.rules: list[tuple[Callable[[str], bool], Any]] = []
        self.muted: set[str] = set()        # actions never answered
        self.unqueued: set[str] = set()     # AGI commands (prefixes) whose action is never answered
        self.channels: dict[str, Chan] = {}
        self.names: dict[str, str] = {}     # uniqueid -> channel name, also after the hang-up
        self.writers: list[asyncio.StreamWriter] = []
        self.clients: set[asyncio.Task[Any]] = set()
        self.actions: list[dict[str, str]] = []   # every action received, in order
        self.trace: list[tuple[int, str, str, str]] = []  # (ns, "exec"|"agi", uniqueid, command)
        self.results: list[tuple[str, str, str]] = []  # (uniqueid, command, result) as answered
        self.connections = self.logins = self.refused = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self._seq = itertools.count(0x2240)
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ server

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self.drop()
        for task in list(self.clients):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 1)
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
            self.server = None
        for chan in self.channels.values():
            if chan.worker is not None:
                chan.worker.cancel()

    def drop(self) -> None:
        """Close every client connection at once (a crash, a cut cable)."""
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self.clients.add(task)
            task.add_done_callback(self.clients.discard)
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        logged_in = False
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                action = dict(parse(raw.decode()))
                self.actions.append(action)
                self._changed.set()
                name = action.get("Action", "")
                if name.lower() == "login":
                    logged_in = await self._login(action, writer)
                    if not logged_in:
                        return
                elif logged_in and name not in self.muted:
                    await self._action(name, action, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer in self.writers:
                self.writers.remove(writer)
            writer.close()

    async def _login(self, action: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        aid = action.get("ActionID")
        if action.get("Username") != self.username or action.get("Secret") != self.secret:
            self.refused += 1
            await asyncio.sleep(self.login_delay)
            writer.write(FRAMES.build("Error: Authentication failed", ActionID=aid).encode())
            await writer.drain()
            writer.close()
            return False
        self.logins += 1
        writer.write((FRAMES.build("Success: Authentication accepted", ActionID=aid)
                      + FRAMES.build("FullyBooted") + FRAMES.build("SuccessfulAuth")).encode())
        self.writers.append(writer)
        return True

    def emit(self, text: str) -> None:
        for writer in list(self.writers):
            writer.write(text.encode())

    def send_raw(self, data: bytes) -> None:
        for writer in list(self.writers):
            writer.write(data)

    def event(self, name: str, chan: Chan, **values: Any) -> None:
        self.emit(FRAMES.build(name, **{**chan.common(), **values}))

    # ------------------------------------------------------------------ scripting and waiting

    def on_agi(self, match: str | Callable[[str], bool], reply: Any) -> None:
        """AGI commands starting with ``match`` (or for which it is true) answer ``reply``: a
        result line, a callable (command -> result line), or None (never answered)."""
        test = match if callable(match) else (lambda command: command.startswith(match))
        self.rules.insert(0, (test, reply))

    def mute(self, action: str) -> None:
        self.muted.add(action)

    def seen(self, name: str, **fields: str) -> list[dict[str, str]]:
        return [a for a in self.actions if a.get("Action") == name
                and all(a.get(k, "").startswith(v) for k, v in fields.items())]

    async def wait_for(self, name: str, count: int = 1, timeout: float = 5.0,
                       **fields: str) -> dict[str, str]:
        """The ``count``-th action ``name`` whose fields start with ``fields``."""
        deadline = time.monotonic() + timeout
        while len(found := self.seen(name, **fields)) < count:
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                got = [f"{a.get('Action')} {a.get('Command', '')}".strip() for a in self.actions]
                raise AssertionError(f"no {name} {fields} (x{count}) in {timeout} s; got {got}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return found[count - 1]

    # ------------------------------------------------------------------ calls

    def call(self, uniqueid: str, caller: str = "+46701234567", dnid: str = "+46330000000",
             keys: str = "") -> Chan:
        """A citizen's call reaches AGI(agi:async) in [ivr]."""
        chan = Chan(f"PJSIP/trunk-{next(self._seq):08x}", uniqueid, caller=caller)
        chan.keys.extend(keys)
        self._add(chan)
        values = {"agi_channel": chan.name, "agi_uniqueid": uniqueid, "agi_callerid": caller,
                  "agi_dnid": dnid, "agi_extension": dnid, "agi_calleridname": "unknown"}
        lines = []
        for line in unquote(dict(parse(FRAMES.build("AsyncAGIStart")))["Env"]).split("\n"):
            key, sep, _ = line.partition(": ")  # the recorded Env, with this call's values
            lines.append(f"{key}: {values[key]}" if sep and key in values else line)
        self.event("AsyncAGIStart", chan, Env=quote("\n".join(lines), safe=""))
        return chan

    def _add(self, chan: Chan) -> None:
        self.channels[chan.uniqueid] = chan
        self.names[chan.uniqueid] = chan.name
        chan.worker = asyncio.ensure_future(self._agi_worker(chan))

    def press(self, uniqueid: str, keys: str) -> None:
        """Keys the next listening AGI command hears."""
        self.channels[uniqueid].keys.extend(keys)

    def press_now(self, uniqueid: str, key: str) -> None:
        """A key pressed now: AGI hears it only if a command runs (else just DTMF events)."""
        self._dtmf(self.channels[uniqueid], key)

    def hangup(self, uniqueid: str, cause: int = 16) -> None:
        """The caller (or an agent) hangs up."""
        chan = self.channels.get(uniqueid)
        if chan is None or chan.gone:
            return
        chan.gone = True
        if chan.executing:
            chan.interrupt.set()  # the running command answers -1, then the channel ends
        else:
            self._ended(chan, cause)

    def _ended(self, chan: Chan, cause: int = 16) -> None:
        chan.gone = True
        self.channels.pop(chan.uniqueid, None)
        chan.commands.put_nowait(None)
        if chan.in_agi:
            self.event("AsyncAGIEnd", chan)
        other = chan.peer
        if other is not None:
            self.event("BridgeLeave", chan, BridgeUniqueid=chan.bridge, BridgeNumChannels=1)
        self.event("Hangup", chan, Cause=cause, Cause_txt="Normal Clearing")
        if other is not None and not other.gone:
            other.peer = chan.peer = None
            self._left_alone(other)

    def _left_alone(self, chan: Chan) -> None:
        """The other side of a two-party bridge left (hung up, or was moved into another
        bridge): the bridge dissolves and ``chan`` goes on at its next priority: AGI again
        in [ivr]; elsewhere what ``dialplan`` has there (``[ivr-agent]``: ``s,2`` is
        ``AGI(agi:async)``, ``s,3`` ``Hangup()``)."""
        self.event("BridgeLeave", chan, BridgeUniqueid=chan.bridge, BridgeNumChannels=0)
        self.emit(FRAMES.build("BridgeDestroy", BridgeUniqueid=chan.bridge, BridgeNumChannels=0))
        chan.bridge = None
        apps = self.dialplan.get((chan.context, chan.exten), [])
        next_app = apps[chan.priority - 1] if 0 < chan.priority <= len(apps) else "Hangup"
        if self.after_bridge == "agi" if chan.context == "ivr" else next_app == "AGI":
            chan.in_agi, chan.app = True, "AGI"
            self.event("AsyncAGIStart", chan, Env=quote("agi_request: async\n\n", safe=""))
        else:
            self._ended(chan)

    # ------------------------------------------------------------------ AGI

    async def _agi_worker(self, chan: Chan) -> None:
        while (item := await chan.commands.get()) is not None:
            cmd_id, command = item
            if self.agi_delay:
                await asyncio.sleep(self.agi_delay)
            if not chan.in_agi:
                continue
            chan.interrupt.clear()
            chan.executing = True
            self.event("AGIExecStart", chan, CommandId=next(self._seq), Command=command)
            try:
                result = await self._execute(chan, command)
            finally:
                chan.executing = False
            if result is None:
                continue  # never answered, or the channel was taken into a bridge
            self.event("AGIExecEnd", chan, CommandId=next(self._seq), Command=command,
                       ResultCode=result.split(" ")[0], Result="Success")
            self.trace.append((time.perf_counter_ns(), "exec", chan.uniqueid, command))
            self.results.append((chan.uniqueid, command, result))
            self.event("AsyncAGIExec", chan, Result=quote(result + "\n", safe=""), CommandId=cmd_id)
            if chan.gone or command == "HANGUP":
                self._ended(chan, 16)
                return

    async def _wait(self, chan: Chan, seconds: float) -> bool:
        """True when the caller hung up (or a bridge took the channel) meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(chan.interrupt.wait(), seconds)
        return chan.interrupt.is_set()

    def _key(self, chan: Chan) -> str | None:
        if not chan.keys:
            return None
        key = chan.keys.popleft()
        self._dtmf(chan, key)
        return key

    def _dtmf(self, chan: Chan, key: str) -> None:
        if self.dtmf_events:
            self.event("DTMFBegin", chan, Digit=key, Direction="Received")
            self.event("DTMFEnd", chan, Digit=key, DurationMs=100, Direction="Received")

    async def _execute(self, chan: Chan, command: str) -> str | None:
        for matches, reply in self.rules:
            if matches(command):
                if reply is None:
                    await chan.interrupt.wait()
                    return "200 result=-1" if chan.gone else None
                return reply(command) if callable(reply) else reply
        words = command.split(" ")
        verb = " ".join(words[:2])
        if verb == "STREAM FILE":
            if words[-1] != '""' and (key := self._key(chan)):
                return f"200 result={ord(key)} endpos=17760"
            return "200 result=-1 endpos=24160" if await self._wait(chan, 0) else "200 result=0 endpos=12736"
        if verb in ("WAIT FOR", "GET DATA", "RECORD FILE"):
            timeout = int(words[4 if verb == "GET DATA" else 5 if verb == "RECORD FILE" else 3]) / 1000
            if verb == "GET DATA":
                wanted, digits = int(words[-1]), ""
                while len(digits) < wanted and (key := self._key(chan)) and key != "#":
                    digits += key
                if digits:
                    return f"200 result={digits}"
            elif (key := self._key(chan)) is not None:
                return f"200 result={ord(key)}" + (" (dtmf) endpos=16000" if verb == "RECORD FILE" else "")
            if await self._wait(chan, min(timeout, self.wait_cap)):
                return None if not chan.gone else "200 result=-1" + (" (hangup) endpos=8000"
                                                                     if verb == "RECORD FILE" else "")
            return {"GET DATA": "200 result= (timeout)", "RECORD FILE": "200 result=0 (timeout) endpos=16000"
                    }.get(verb, "200 result=0")
        if verb == "EXEC Dial":
            chan.vars["DIALSTATUS"] = self.dial_status
            return "200 result=0"
        if verb == "GET VARIABLE":
            value = chan.vars.get(words[2])
            return f"200 result=1 ({value})" if value else "200 result=0"
        if words[0] in ("ANSWER", "HANGUP") or verb in ("SET MUSIC",):
            return "200 result=1" if words[0] == "HANGUP" else "200 result=0"
        return "510 Invalid or unknown command"

    # ------------------------------------------------------------------ actions

    async def _action(self, name: str, a: dict[str, str], writer: asyncio.StreamWriter) -> None:
        aid = a.get("ActionID")

        def reply(template: str, **values: Any) -> None:
            writer.write(FRAMES.build(template, ActionID=aid, **values).encode())

        chan = self._find(a.get("Channel", ""))
        if name == "AGI":
            if chan is None or chan.gone or not chan.in_agi:
                reply("Error: Channel Local/hangup3@citizen-sim-00002242;1 does not exist.",
                      Message=f"Channel {a.get('Channel')} does not exist." if chan is None or chan.gone
                      else "Failed to add AGI command to queue")
                return
            if any(a.get("Command", "").startswith(p) for p in self.unqueued):
                return
            self.trace.append((time.perf_counter_ns(), "agi", chan.uniqueid, a.get("Command", "")))
            reply("Success: Added AGI command to queue")
            chan.commands.put_nowait((a.get("CommandID", ""), a.get("Command", "")))
        elif name == "Ping":
            writer.write(f"Response: Success\r\nActionID: {aid}\r\nPing: Pong\r\nTimestamp: "
                         f"{time.time():.6f}\r\n\r\n".encode())
        elif name == "Originate":
            reply("Success: Originate successfully queued")
            asyncio.get_running_loop().call_soon(self._originated, a)
        elif name == "Bridge":
            chan, other = self._find(a.get("Channel1", "")), self._find(a.get("Channel2", ""))
            if chan is None or other is None:
                reply("Error: Authentication failed", Message="Channel2 does not exist")
                return
            reply("Success: Channels have been bridged")
            self._bridge(chan, other)
        elif name == "Hangup":
            if chan is None:
                reply("Error: Authentication failed", Message="No such channel")
                return
            reply("Success: Channel Hungup")
            self.hangup(chan.uniqueid)
        elif name in ("CoreShowChannels", "Status"):
            self._list(name, aid, writer)
        elif name == "Logoff":
            reply("Goodbye: Thanks for all the fish.")
            await writer.drain()
            writer.close()
        else:
            reply("Error: Authentication failed", Message="Invalid/unknown command")

    def _find(self, name: str) -> Chan | None:
        return self.channels.get(name) or next((c for c in self.channels.values() if c.name == name), None)

    def _list(self, name: str, aid: str | None, writer: asyncio.StreamWriter) -> None:
        item = "CoreShowChannel" if name == "CoreShowChannels" else "Status"
        live = [c for c in self.channels.values() if not c.gone]
        text = FRAMES.build("Success: Channels will follow" if item == "CoreShowChannel"
                            else "Success: Channel status will follow", ActionID=aid)
        for c in live:
            app = c.app if c.bridge is None else ""
            text += FRAMES.build(item, ActionID=aid, **c.common(), Application=app,
                                 ApplicationData="agi:async" if app == "AGI" else "",
                                 BridgeId=c.bridge or "", BridgeID=c.bridge or "")
        text += FRAMES.build(f"{item}sComplete" if item == "CoreShowChannel" else "StatusComplete",
                             ActionID=aid, ListItems=len(live), Items=len(live))
        writer.write(text.encode())

    def _originated(self, a: dict[str, str]) -> None:
        endpoint, uid = a.get("Channel", ""), a.get("ChannelId", f"orig-{next(self._seq)}")
        mode = self.agents.get(endpoint, "answer")
        chan = Chan(f"{endpoint}-{next(self._seq):08x}", uid, context=a.get("Context", ""),
                    exten=a.get("Exten", "s"), priority=1, caller=endpoint, in_agi=False, app="AppDial")
        chan.vars["action"] = a.get("ActionID", "")
        self._add(chan)
        if mode == "busy":
            self.channels.pop(uid, None)
            chan.commands.put_nowait(None)
            self.emit(FRAMES.build("OriginateResponse", ActionID=a.get("ActionID"), Response="Failure",
                                   Channel=endpoint, Reason=5, Uniqueid="<null>"))
        elif mode == "answer":
            self.answer(uid)

    def answer(self, uniqueid: str) -> None:
        """A rung phone answers: it enters AGI in its context (our ChannelId is its uniqueid)."""
        chan = self.channels[uniqueid]
        chan.in_agi, chan.app = True, "AGI"
        self.emit(FRAMES.build("OriginateResponse", ActionID=chan.vars["action"], Response="Success",
                               Channel=chan.name, Context=chan.context, Uniqueid=uniqueid, Reason=4))
        self.event("AsyncAGIStart", chan, Env=quote(f"agi_channel: {chan.name}\nagi_uniqueid: {uniqueid}\n\n",
                                                    safe=""))

    def _bridge(self, a: Chan, b: Chan) -> None:
        """A new bridge of ``a`` and ``b``. A channel already bridged elsewhere is *moved*
        (``ast_bridge_add_channel``): the partner it leaves is alone, and that bridge dissolves."""
        if a.peer is b:
            return
        for chan in (a, b):
            old = chan.peer
            if old is not None:
                self.event("BridgeLeave", chan, BridgeUniqueid=chan.bridge, BridgeNumChannels=1)
                old.peer = chan.peer = None
                self._left_alone(old)
        bridge = f"87de4b8a-cbdf-4a96-87cf-{next(self._seq):012x}"
        self.emit(FRAMES.build("BridgeCreate", BridgeUniqueid=bridge))
        for n, chan in enumerate((a, b), 1):
            if chan.bridge is None:  # from the dialplan: it goes on at the next priority afterwards
                chan.priority += 1
            chan.in_agi, chan.bridge = False, bridge
            chan.peer = b if chan is a else a
            if chan.executing:
                chan.interrupt.set()  # the yank ends the running command without a result
            while not chan.commands.empty():
                chan.commands.get_nowait()
            self.event("BridgeEnter", chan, BridgeUniqueid=bridge, BridgeNumChannels=n)
