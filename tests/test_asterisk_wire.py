"""The AMI link and the AGI text against the recorded Asterisk 22 traffic
(``tests/fixtures/ami/``) and the fake peer speaking it over TCP."""

from __future__ import annotations

import asyncio
import functools
import json
import logging

import pytest
from panoramisk.actions import Action
from panoramisk.message import Message

from ivr.server import Runtime, make_app
from ivr.store import EventLog
from ivr.transports import agi
from ivr.transports.ami import ActionTimeout, AmiClient, ChannelGone, _Link, _Protocol, parse_frame
from ivr.transports.asterisk import setup

from .ami_peer import FIXTURES, AmiPeer
from .asterisk_harness import KEY, render_all, settings_for, until


def recorded(kind: str) -> list[dict]:
    """Every recorded server frame whose Event is ``kind``."""
    frames = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            chunk = json.loads(line)
            if chunk.get("dir") == "S->C":
                for frame in chunk["data"].split("\r\n\r\n"):
                    fields = dict(f.split(": ", 1) for f in frame.split("\r\n") if ": " in f)
                    if fields.get("Event") == kind:
                        frames.append(fields)
    return frames


# --------------------------------------------------------------------------- AGI text


def test_every_recorded_agi_result_parses() -> None:
    results = {f["Result"]: agi.parse_result(f["Result"]) for f in recorded("AsyncAGIExec")}
    assert len(results) >= 8 and all(r.code == 200 for r in results.values())
    pressed = results["200%20result%3D50%20endpos%3D17760%0A"]
    assert (pressed.key, pressed.endpos, pressed.hung_up) == ("2", 17760, False)
    timeout = results["200%20result%3D%20(timeout)%0A"]
    assert (timeout.result, timeout.timed_out, timeout.key) == ("", True, None)
    assert results["200%20result%3D4711%0A"].result == "4711"
    assert results["200%20result%3D49%0A"].key == "1"
    assert results["200%20result%3D-1%20endpos%3D24160%0A"].hung_up
    assert agi.parse_result("200 result=1 (BUSY)").data == "BUSY"  # GET VARIABLE
    assert agi.parse_result("510 Invalid or unknown command").hung_up
    assert agi.parse_result("").code == 0


def test_the_recorded_agi_environment_gives_caller_and_called() -> None:
    env = agi.parse_env(recorded("AsyncAGIStart")[0]["Env"])
    assert env["agi_channel"].startswith("Local/") and env["agi_uniqueid"].startswith("ivr-")
    assert agi.caller_and_called(env) == ("5551234", None)  # dnid "unknown", extension "s"
    assert agi.caller_and_called({"agi_callerid": "unknown", "agi_dnid": "+46330000000"}) == (
        None, "+46330000000")
    assert agi.caller_and_called({"agi_callerid": "0701234567", "agi_dnid": "", "agi_extension": "100"}) == (
        "0701234567", "100")


def test_agi_commands_are_written_as_asterisk_took_them() -> None:
    sent = {f.split(": ", 1)[1] for path in FIXTURES.glob("*.jsonl")
            for line in path.read_text(encoding="utf-8").splitlines()
            if json.loads(line).get("dir") == "C->S"
            for f in json.loads(line)["data"].split("\r\n") if f.startswith("Command: ")}
    assert agi.stream_file("demo-congrats", "0123456789") in sent
    assert agi.stream_file("digits/2") in sent
    assert agi.get_data("demo-enterkeywords", 8, 6) in sent
    assert agi.wait_for_digit(8) in sent
    assert {agi.answer(), agi.hangup()} <= sent
    assert agi.get_data("", 5, 3) == 'GET DATA "" 5000 3'
    assert agi.stream_file('ivr/my "best" prompt') == 'STREAM FILE "ivr/my \\"best\\" prompt" ""'
    assert agi.record_file("/spool/1.2", 120, "#") == 'RECORD FILE /spool/1.2 wav "#" 120000 BEEP s=5'
    assert agi.exec_app("Dial", "Local/+4633000000@ivr-transfer,60") == \
        'EXEC Dial "Local/+4633000000@ivr-transfer,60"'
    assert agi.dial_string("PJSIP/1001", "t") == "PJSIP/1001" and agi.transfer_outcome("ANSWER") is None
    outcomes = [agi.transfer_outcome(s) for s in ("BUSY", "NOANSWER", "CHANUNAVAIL")]
    assert outcomes == ["busy", "no-answer", "failed"]
    assert agi.safe_name("1764577800.1/../x") == "1764577800.1_.._x"


# --------------------------------------------------------------------------- framing


def test_the_fast_frame_parser_gives_exactly_panoramisks_message_for_every_recorded_frame() -> None:
    frames = [f.strip().removeprefix("Asterisk Call Manager/11.0.0").strip()
              for path in sorted(FIXTURES.glob("*.jsonl"))
              for line in path.read_text(encoding="utf-8").splitlines()
              if json.loads(line).get("dir") == "S->C"
              for f in json.loads(line)["data"].split("\r\n\r\n")]
    frames += ["Response: Success\r\nActionID: 1\r\nChanVariable: A=1\r\nChanVariable: B=2\r\n"
               "chanVariable: 3",
               "Event: Newexten\r\nAppData: a: b: c\r\nNoColon\r\n",
               "Event: AsyncAGIExec\r\nResult: 200%20result%3D%20(timeout)%0A\r\nResult: x%20y",
               "Response: Follows\r\nActionID: 2\r\nthe body\r\n--END COMMAND--", "not: an AMI message", ""]
    assert len(frames) > 300
    for frame in frames:
        ours, theirs = parse_frame(frame), Message.from_line(frame)
        assert (ours is None) == (theirs is None), frame
        if ours is not None:
            assert ours._store == theirs._store, frame
            fields = ("event", "result", "id", "success")
            assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields]


def test_every_recorded_chunk_frames_into_the_events_asterisk_sent(caplog) -> None:
    """The recorded bytes, chunked as they came (banner first, frames split across reads)."""
    caplog.set_level(logging.WARNING)
    for path in sorted(FIXTURES.glob("*.jsonl")):
        client = _Collect()
        protocol = _Protocol(_Link(client))
        protocol.connection_made(_NullTransport())
        expected = []
        for line in path.read_text(encoding="utf-8").splitlines():
            chunk = json.loads(line)
            if chunk.get("dir") == "S->C" and chunk.get("conn", 1) == 1:
                protocol.data_received(chunk["data"].encode())
                expected += [f.split("\r\n")[0][len("Event: "):] for f in chunk["data"].split("\r\n\r\n")
                             if f.startswith("Event: ")]
        assert client.seen == [e for e in expected if e], path.name
    assert "does not parse" not in caplog.text


class _Collect:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def _dispatch(self, message) -> None:
        self.seen.append(str(message.event))

    def _link_lost(self, link) -> None:
        pass


class _NullTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        pass


async def test_actions_written_in_one_pass_of_the_loop_leave_in_one_write_in_order() -> None:
    transport = _NullTransport()
    protocol = _Protocol(_Link(_Collect()))
    protocol.connection_made(transport)
    for n in range(3):
        protocol.send(Action({"Action": "AGI", "Channel": f"PJSIP/{n}", "Command": "ANSWER"}))
    assert transport.writes == []
    await asyncio.sleep(0)
    assert len(transport.writes) == 1
    text = transport.writes[0].decode()
    assert text.count("\r\n\r\n") == 3
    assert text.index("PJSIP/0") < text.index("PJSIP/1") < text.index("PJSIP/2")


# --------------------------------------------------------------------------- the client on TCP


@pytest.fixture
async def peer():
    p = AmiPeer(secret="s3cret-ami")
    await p.start()
    yield p
    await p.stop()


async def client_for(peer: AmiPeer, **options) -> tuple[AmiClient, asyncio.Task]:
    client = AmiClient("127.0.0.1", peer.port, "ivr", "s3cret-ami", action_timeout_s=0.5,
                       backoff_s=0.01, reconnect_max_s=0.05, keepalive_s=None, **options)
    client.on("AsyncAGIExec", client.agi_result)
    task = asyncio.ensure_future(client.run())
    await asyncio.wait_for(client.ready.wait(), 5)
    return client, task


async def test_agi_waiters_are_registered_before_the_action_is_written_and_match_any_spelling(peer):
    client, task = await client_for(peer)
    chan = peer.call("1764577800.201")
    peer.on_agi("WAIT FOR DIGIT", None)  # Asterisk takes the command; its result comes later
    written: list[bool] = []
    transport = client._link.protocol.transport
    real_write = transport.write

    def write(data: bytes) -> None:  # at the moment of writing, the waiter must exist
        lines = data.decode().split("\r\n")
        ids = [line.split(": ", 1)[1] for line in lines if line.startswith("CommandID: ")]
        written.append(all(i in client._agi for i in ids))
        real_write(data)

    transport.write = write
    waiter = client.send_agi(chan.name, agi.wait_for_digit(5), timeout_s=5)
    action = await peer.wait_for("AGI")
    peer.send_raw(f"Event: AsyncAGIExec\r\nChannel: {chan.name}\r\nUniqueid: {chan.uniqueid}\r\n"
                  f"COMMANDID: {action['CommandID']}\r\nResult: 200%20result%3D49%0A\r\n\r\n".encode())
    result = await asyncio.wait_for(waiter, 2)
    assert written == [True] and result.key == "1" and client.waiting() == 0
    gone = client.send_agi("PJSIP/nobody-0001", agi.answer(), timeout_s=0)
    with pytest.raises(ChannelGone, match="does not exist"):
        await asyncio.wait_for(gone, 2)
    await client.close()
    await task


async def test_an_action_without_a_response_times_out_and_is_forgotten(peer):
    client, task = await client_for(peer)
    peer.mute("Status")
    with pytest.raises(ActionTimeout):
        await client.action({"Action": "Status"}, timeout=0.05)
    assert not client._link.protocol.responses
    items = await client.event_list({"Action": "CoreShowChannels"})
    assert items == []  # an empty list: the response and the Complete event only
    peer.call("1764577800.202")
    items = await client.event_list({"Action": "CoreShowChannels"})
    assert [str(m.Uniqueid) for m in items] == ["1764577800.202"]
    await client.close()
    await task


async def test_a_link_that_stops_answering_pings_is_dropped_and_made_again(peer):
    client, task = await client_for(peer)
    client.keepalive_s, client.action_timeout_s = 0.02, 0.05
    client._link.close()  # the next link gets the keepalive
    await until(lambda: peer.logins == 2 and client.ready.is_set())
    peer.mute("Ping")
    await until(lambda: peer.logins == 3, what="a new login after the unanswered Ping")
    await client.close()
    await task


async def test_serve_with_asterisk_enabled_logs_in_when_the_app_starts(aiohttp_client, peer, tmp_path):
    recordings = tmp_path / "recordings"
    render_all(recordings)
    settings = settings_for(peer.port, recordings)
    runtime = Runtime(settings, sink=EventLog.open(tmp_path / "ivr.db", hash_key=KEY), timers=False)
    client = await aiohttp_client(make_app(runtime, setups=[functools.partial(setup, demo=False)]))
    await until(lambda: peer.logins == 1, what="the login of the transport setup() added")
    body = await (await client.get("/healthz")).json()
    assert body["transports"] == ["asterisk"]
    peer.call("1764577800.203", keys="0")
    await until(lambda: "1764577800.203" in runtime.center.sessions, what="the call")
    assert runtime.router.owner["1764577800.203"] == "asterisk"
    await client.close()
