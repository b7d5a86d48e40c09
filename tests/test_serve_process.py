"""`ivr serve` as an operator runs it: its own process, the event log's writer process, Ctrl-C.

The test starts the real command (``python -m ivr serve --demo``) on a free loopback
port, logs an agent in over the API, stops the server as Ctrl-C or a service manager does
(SIGINT or SIGTERM to the whole process group) and reads the log back: what was recorded
before the stop is written, by the writer process the default config asks for. It waits for the server to
come up and to exit (real processes), never for time to pass.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ivr.store import EventLog

from .conftest import ROOT

DEMO_KEY_ENV = {"IVR_HASH_KEY": "serve-process-test-key-0123456789"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 (loopback, our server)
        return resp.status, resp.read()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C; a service manager's stop
def test_serve_records_through_its_writer_process_and_flushes_when_stopped(tmp_path: Path,
                                                                          signum: int) -> None:
    port, db = free_port(), tmp_path / "serve.db"
    env = {**os.environ, **DEMO_KEY_ENV, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "ivr", "serve", "--demo", "--port", str(port), "--db", str(db)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30  # a cold start imports everything, twice (the writer)
        while True:
            try:
                status, body = get(f"{base}/healthz")
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "ivr serve did not answer /healthz in 30 s"
                time.sleep(0.05)  # waiting for another process to listen, not for time to pass
        health = json.loads(body)
        assert status == 200 and health["store"]["ok"] and health["store"]["path"] == str(db)
        # agent anna (demo password) logs in over the API: an agent state for the log
        basic = "Basic " + base64.b64encode(b"anna:demo").decode()
        status, body = get(f"{base}/api/agent/login", data=b"{}",
                           headers={"Content-Type": "application/json", "Authorization": basic})
        assert status == 200, body
    finally:
        # to the whole process group, as a terminal's Ctrl-C and systemd's stop do: the writer
        # process gets it too, and must leave the stop to the server
        os.killpg(server.pid, signum)
        output = server.communicate(timeout=30)[0].decode()
    assert server.returncode == 0, output
    log = EventLog.open(db, hash_key=b"reader")
    try:
        rows = log.query("SELECT state FROM agent_events WHERE agent = 'anna' ORDER BY id")
    finally:
        log.close()
    assert "serving on" in output
    # the login's agent state, written by the writer process before the server exited
    assert [r["state"] for r in rows][:1] == ["available"], output
