"""The controller on the Asterisk transport against the fake Asterisk, for the tests.

``Harness`` is a ``Runtime`` with the real event log, the real engines and the Asterisk
transport connected over loopback TCP to an :class:`tests.ami_peer.AmiPeer`, with every
delay tiny (timeouts, backoff, hold steps), so a whole call takes milliseconds.
"""

from __future__ import annotations

import asyncio
import time
import wave
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ivr.config import load_settings
from ivr.controller import CALLBACK_CONFIRM, CALLBACK_HINT
from ivr.flowcheck import FlowContext, load_flow
from ivr.prompts import all_prompts, tts_path
from ivr.server import Runtime
from ivr.store import EventLog
from ivr.transports.asterisk import AsteriskTransport, attach
from ivr.transports.asterisk_line import LineConfig

from .ami_peer import AmiPeer
from .conftest import ManualClock

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)  # a Tuesday, 09:30 in Stockholm: open
SECRET = "s3cret-ami"
KEY = b"asterisk-test-key-0123456"


def write_wav(path: Path, seconds: float = 0.1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * int(8000 * seconds))


def settings_for(port: int, recordings: Path, *, secret: str = SECRET, **asterisk: Any) -> Any:
    settings = load_settings(ROOT / "config.toml", env={"IVR_AMI_SECRET": secret})
    a = replace(settings.asterisk, enabled=True, port=port, **asterisk)
    return replace(settings, recordings_dir=recordings, asterisk=a)


def render_all(recordings: Path) -> None:
    """A short WAV at the rendered path of every prompt of the default flow."""
    settings = load_settings(ROOT / "config.toml", env={})
    flow = load_flow(ROOT / "callflows" / "switchboard.toml", FlowContext.from_settings(settings))
    for prompt in all_prompts(flow, settings):
        write_wav(recordings / tts_path(prompt.language, prompt.text))
    for texts in (CALLBACK_HINT, CALLBACK_CONFIRM):  # the line's own callback prompts
        for language in flow.languages:
            write_wav(recordings / tts_path(language, texts[language]))


class Harness:
    def __init__(self, peer: AmiPeer, tmp: Path, recordings: Path, *, secret: str = SECRET,
                 action_timeout_s: float = 2.0, login_attempts: int = 5, **options: Any):
        self.peer = peer
        self.clock = ManualClock(T0)
        self.settings = settings_for(peer.port, recordings, secret=secret, action_timeout_s=action_timeout_s,
                                     reconnect_max_s=0.05, login_attempts=login_attempts)
        self.log = EventLog.open(tmp / "ivr.db", hash_key=KEY)
        self.runtime = Runtime(self.settings, sink=self.log, clock=self.clock, timers=False)
        config = LineConfig(hold_step_s=0.02, messages=str(tmp / "messages"), hangup_grace_s=0.2)
        options = {"espeak": None, "backoff_s": 0.01, "keepalive_s": None, "config": config, **options}
        self.transport: AsteriskTransport = attach(self.runtime, **options)
        self.center = self.runtime.center

    async def start(self) -> Harness:
        self.runtime.spawn(self.transport.run(), "asterisk-ami")
        await asyncio.wait_for(self.transport.ami.ready.wait(), 5)
        return self

    async def stop(self) -> None:
        await self.runtime.stop()

    def row(self, call_id: str) -> dict:
        self.log.flush()
        row = self.log.call(call_id)
        assert row is not None, f"no calls row for {call_id}"
        return row

    def events(self, call_id: str, kind: str | None = None) -> list[dict]:
        self.log.flush()
        return [e for e in self.log.events(call_id) if kind is None or e["kind"] == kind]

    def kinds(self, call_id: str) -> list[str]:
        return [e["kind"] for e in self.events(call_id)]


def sound(language: str, text: str) -> str:
    """What Asterisk is asked to play for a text prompt (its rendering, ``[asterisk] sounds = "ivr"``)."""
    return "ivr/" + tts_path(language, text).with_suffix("").as_posix()


def agi(peer: AmiPeer, uid: str, prefix: str = "") -> list[str]:
    """The AGI commands sent for the call ``uid``, in order."""
    return [a["Command"] for a in peer.seen("AGI", Channel=peer.names[uid])
            if a["Channel"] == peer.names[uid] and a["Command"].startswith(prefix)]


async def until(condition: Any, timeout: float = 5.0, what: str = "") -> None:
    """Wait (polling the event loop) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.002)


# --------------------------------------------------------------------------- fixtures (imported by the tests)


@pytest.fixture(scope="session", name="recordings")
def recordings_fixture(tmp_path_factory):
    path = tmp_path_factory.mktemp("recordings")
    render_all(path)
    return path


@pytest.fixture(name="peer")
async def peer_fixture():
    p = AmiPeer(secret=SECRET)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture(name="h")
async def harness_fixture(peer, tmp_path, recordings):
    harness = await Harness(peer, tmp_path, recordings).start()
    yield harness
    await harness.stop()
