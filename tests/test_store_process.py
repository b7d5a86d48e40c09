"""The event log's writer in a child process (``writer="process"``, ivr.store_process).

A child start costs ~0.3-0.5 s: most tests share one process-mode log (module scope, its
own call ids and agents per test); the file starts five children in all.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr import store, store_process
from ivr.store import BatchWriter, EventLog, StoreError
from ivr.vocabulary import Trace

from .fixtures.queue_calls import JOINED, SCENARIOS
from .test_store import KEY, at, typical_call

ROOT = Path(__file__).resolve().parent.parent


def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A locked database fails at once and is retried soon (the child gets these at start)."""
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 1)
    monkeypatch.setattr(store, "RETRY_FIRST_DELAY_S", 0.001)
    monkeypatch.setattr(store, "RETRY_MAX_DELAY_S", 0.01)


@pytest.fixture(scope="module")
def plog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventLog]:
    """One process-mode log for the module (one child start)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast_retries(monkeypatch)
        event_log = EventLog.open(tmp_path_factory.mktemp("proc") / "events.db", hash_key=KEY,
                                  writer="process")  # fmt: skip
    yield event_log
    event_log.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll with a deadline: only for what no event or future tells (a child's restart,
    an error reported from the child, a process ending)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        pause.wait(0.005)


def late_wrapup_call() -> list[Trace]:
    """Start, queue, answer, end; the wrap-up (the last trace) coded after the hang-up."""
    steps = JOINED + SCENARIOS["answered, coded after the caller hung up"][0]
    return [Trace(at(s), kind, None, data) for s, kind, data in steps]


def feed(event_log: EventLog, prefix: str) -> None:
    """The same traces, in the same order, for the comparison of the two modes."""
    event_log.append_many(f"{prefix}-menu", typical_call())
    wrapup = late_wrapup_call()
    event_log.append_many(f"{prefix}-late", wrapup[:-1])
    event_log.flush()
    event_log.append(f"{prefix}-late", wrapup[-1])
    event_log.flush()


def without_call_id(row: dict | None) -> dict:
    assert row is not None
    return {k: v for k, v in row.items() if k != "call_id"}


def rows(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------- same as the thread


def test_an_unknown_writer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"writer must be one of thread, process, not 'fork'"):
        EventLog.open(tmp_path / "events.db", hash_key=KEY, writer="fork")
    assert not (tmp_path / "events.db").exists()


def test_the_process_writes_what_the_thread_writes(plog: EventLog, tmp_path: Path) -> None:
    thread_log = EventLog.open(tmp_path / "thread.db", hash_key=KEY)
    try:
        feed(thread_log, "eq")
        feed(plog, "eq")
        for call_id in ("eq-menu", "eq-late"):
            assert plog.events(call_id) == thread_log.events(call_id)
            assert plog.call(call_id) == thread_log.call(call_id)
        late = plog.call("eq-late")
        assert (late["status"], late["resolution"], late["coded"]) == ("ended", "resolved", 1)
        assert plog.call("eq-menu")["queue"] == "bygg"
    finally:
        thread_log.close()


def test_agent_states_notes_and_raw_numbers_are_written(plog: EventLog) -> None:
    plog.append_agent("p-a1", at(0), "available")
    plog.append_agent("p-a1", at(5), "talking", call_id="p-c1")
    plog.add_note("p-c1", "p-a1", at(61), "Ringer om bygglov för Storgatan 3")
    plog.keep_raw_number("p-c1", "+46701234567", "callback", at(62))
    plog.keep_raw_number("p-c1", "+46707654321", "callback", at(63))  # replaces the first
    plog.flush()
    assert plog.query("SELECT state, prev_state FROM agent_events WHERE agent = 'p-a1' ORDER BY id") == [
        {"state": "available", "prev_state": None}, {"state": "talking", "prev_state": "available"}]
    assert [r["text"] for r in plog.query("SELECT text FROM notes WHERE call_id = 'p-c1'")] == [
        "Ringer om bygglov för Storgatan 3"]
    assert plog.query("SELECT number FROM raw_numbers WHERE call_id = 'p-c1'") == [{"number": "+46707654321"}]


def test_submit_runs_after_what_was_queued_before_it(plog: EventLog) -> None:
    plog.append("s-c1", Trace(at(0), "call_started", None, {"flow": "t"}))
    count = "SELECT COUNT(*) FROM events WHERE call_id = 's-c1'"
    seen = plog.submit(lambda conn: conn.execute(count).fetchone()[0])
    plog.append("s-c1", Trace(at(1), "node_entered", "start"))
    assert seen.result(timeout=10) == 1  # after the event queued before it, before the one after

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO notes (call_id, at, text) VALUES ('s-c1', 'x', 'rolled back')")
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        plog.submit(bad).result(timeout=10)
    plog.flush()
    assert plog.query("SELECT * FROM notes WHERE call_id = 's-c1'") == []
    assert len(plog.events("s-c1")) == 2 and plog.last_error is None


# --------------------------------------------------------------------------- failures


def test_a_locked_database_shows_in_last_error_until_it_is_released(plog: EventLog) -> None:
    blocker = sqlite3.connect(plog.db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        plog.append_many("l-c1", typical_call())  # returns at once all the same
        wait_until(lambda: plog.last_error is not None, "the child reports the locked database")
        assert "database is locked" in plog.last_error
        blocker.execute("COMMIT")
        plog.flush()
    finally:
        blocker.close()
    assert len(plog.events("l-c1")) == len(typical_call())
    assert plog.last_error is None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C; systemd's stop
def test_the_child_ignores_ctrl_c_and_a_service_stop(plog: EventLog, signum: int) -> None:
    plog.append(f"i-before-{signum}", Trace(at(0), "call_started"))
    plog.flush()  # acknowledged: the child is running (a signal while it starts up would end it)
    pid = plog._host.pid
    os.kill(pid, signum)
    plog.append(f"i-{signum}", Trace(at(0), "call_started"))
    plog.flush()
    assert plog._host.pid == pid and len(plog.events(f"i-{signum}")) == 1


def test_a_killed_child_is_restarted_and_nothing_is_lost_or_doubled(
    plog: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    first = plog._host.pid
    plog.append_many("k-c0", typical_call())
    plog.flush()
    for n in range(1, 40):  # some of these are in the pipe or being written when it dies
        plog.append_many(f"k-c{n}", typical_call())
        if n == 20:
            os.kill(first, signal.SIGKILL)
    plog.flush()
    assert plog._host.pid != first
    assert "writer process of" in caplog.text and str(plog.db_path) in caplog.text
    counts = rows(plog.db_path, "SELECT call_id, COUNT(*), MAX(seq) FROM events WHERE call_id LIKE 'k-%' "
                                "GROUP BY call_id")  # fmt: skip
    assert sorted(counts) == sorted((f"k-c{n}", len(typical_call()), len(typical_call())) for n in range(40))
    assert all(plog.call(f"k-c{n}")["status"] == "ended" for n in range(40))
    assert plog.last_error is None  # cleared by the new child's first acknowledgement


def test_a_resent_batch_is_not_stored_twice(tmp_path: Path) -> None:
    """What the new child does with a batch the old one had committed before dying."""
    event_log = EventLog.open(tmp_path / "events.db", hash_key=KEY)
    event_log.close()
    db = store._connect(tmp_path / "events.db")
    writer = BatchWriter(threading.Event(), lambda error: None)
    batch = [
        [("r-c1", 1, "2026-12-01T08:30:00.000Z", "call_started", None, "{}"),
         ("r-c1", 2, "2026-12-01T08:31:00.000Z", "call_ended", None, "{}")],
        store._Write(store._INSERT_AGENT, ("r-a1", "2026-12-01T08:30:00.000Z", "available", None, None)),
        store._Write(store._INSERT_NOTE, ("r-c1", "r-a1", "2026-12-01T08:30:30.000Z", "en anteckning")),
    ]  # fmt: skip
    try:
        writer.write(db.conn, batch)
        writer.write(db.conn, batch, resent=True)
        writer.write(db.conn, [[("r-c1", 2, "2026-12-01T08:32:00.000Z", "wrapup", None, "{}")]], resent=True)
    finally:
        db.close()
    path = tmp_path / "events.db"
    assert rows(path, "SELECT seq, kind FROM events") == [
        (1, "call_started"), (2, "call_ended"), (3, "wrapup")]  # fmt: skip
    assert rows(path, "SELECT COUNT(*) FROM agent_events") == [(1,)]
    assert rows(path, "SELECT COUNT(*) FROM notes") == [(1,)]
    assert rows(path, "SELECT status FROM calls") == [("ended",)]


# --------------------------------------------------------------------------- closing


def test_close_writes_everything_queued_and_the_child_exits(tmp_path: Path) -> None:
    event_log = EventLog.open(tmp_path / "events.db", hash_key=KEY, writer="process")
    host = event_log._host
    for n in range(50):
        event_log.append_many(f"c{n}", typical_call())
    event_log.close()
    assert not host._process.is_alive() and host._process.exitcode == 0
    assert rows(tmp_path / "events.db", "SELECT COUNT(*) FROM events") == [(50 * len(typical_call()),)]
    assert rows(tmp_path / "events.db", "SELECT COUNT(*) FROM calls WHERE status = 'ended'") == [(50,)]
    with pytest.raises(StoreError, match="is closed"):
        event_log.append("c1", Trace(at(0), "call_started"))


def test_close_gives_up_on_a_write_that_keeps_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fast_retries(monkeypatch)
    event_log = EventLog.open(tmp_path / "events.db", hash_key=KEY, writer="process")
    host = event_log._host
    blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        event_log.append("c1", Trace(at(0), "call_started"))
        # the child has the batch and is failing on it (on a loaded machine its start-up alone
        # can outlast the close timeout below)
        wait_until(lambda: event_log.last_error is not None, "the child reports the locked database")
        with pytest.raises(StoreError, match="could not be written: .*database is locked"):
            event_log.close(timeout=0.3)  # does not hang, and says so
    finally:
        blocker.close()
    assert "1 queue items lost" in caplog.text
    assert not host._process.is_alive()
    event_log.close()  # closed all the same


def test_the_child_ends_when_its_parent_dies(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from ivr.store import EventLog\n"
        "if __name__ == '__main__':\n"
        "    log = EventLog.open(sys.argv[1], hash_key=b'k' * 16, writer='process')\n"
        "    print(log._host.pid, flush=True)\n"
        "    os._exit(0)  # dies without closing the log\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "events.db")], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    child = int(done.stdout.split()[0])
    wait_until(lambda: not _running(child), f"the orphaned writer process {child} ends")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


# --------------------------------------------------------------------------- restarts under load


class _Context:
    """``store_process._CONTEXT`` with one-page pipes (a full pipe in a few kB, not 64), and
    ``on_start`` run instead of each further child start (the first goes as usual)."""

    def __init__(self, real: Any, on_start: Callable[[Any], None] | None = None) -> None:
        self._real, self.on_start, self.started = real, on_start, 0

    def Pipe(self, duplex: bool = True) -> tuple[Any, Any]:  # noqa: N802 (multiprocessing's name)
        a, b = self._real.Pipe(duplex=duplex)
        fcntl.fcntl(a.fileno(), fcntl.F_SETPIPE_SZ, 4096)
        return a, b

    def Process(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        process = self._real.Process(*args, **kwargs)
        self.started += 1
        return _Starting(process, self.on_start) if self.on_start and self.started > 1 else process


class _Starting:
    """A child process whose ``start`` is ``on_start(process)``."""

    def __init__(self, process: Any, on_start: Callable[[Any], None]) -> None:
        self._process, self.start = process, functools.partial(on_start, process)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._process, name)


def _big(event_log: EventLog, call_id: str, host: Any, batches: int) -> None:
    """A 2.5 kB event that the forwarder sends as a batch of its own."""
    event_log.append(call_id, Trace(at(0), "call_started", None, {"pad": "x" * 2500}))
    wait_until(lambda: len(host._unacked) == batches, f"{call_id} sent")


def test_a_restart_resending_more_than_a_pipe_holds_does_not_deadlock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new child retries a locked write, reporting each failure into a full pipe back
    while the old child's batches are still being resent into a full pipe to it: the parent
    must go on reading its reports (it resent from the reading thread, and both stuck)."""
    fast_retries(monkeypatch)
    monkeypatch.setattr(store, "RETRY_MAX_DELAY_S", 0.001)
    monkeypatch.setattr(store_process, "_CONTEXT", _Context(store_process._CONTEXT))
    event_log = EventLog.open(tmp_path / "events.db", hash_key=KEY, writer="process")
    host = event_log._host
    reports: list[str | None] = []
    monkeypatch.setattr(event_log, "_report", lambda error: reports.append(error))
    blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        _big(event_log, "d-c1", host, 1)
        wait_until(lambda: "locked" in str(reports[-1:]), "the child is stuck on the first batch")
        _big(event_log, "d-c2", host, 2)
        _big(event_log, "d-c3", host, 3)  # more than the pipe holds: the forwarder waits
        first = host.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: host.pid != first, "a new child")
        reports.clear()
        # a page holds ~60 reports: 200 are read only if the parent keeps reading
        wait_until(lambda: sum("locked" in str(r) for r in reports) > 200, "the new child's reports read")
        blocker.execute("COMMIT")
        event_log.flush()
    finally:
        blocker.close()
        event_log.close(timeout=2)
    assert rows(tmp_path / "events.db", "SELECT call_id, seq FROM events ORDER BY call_id") == [
        ("d-c1", 1), ("d-c2", 1), ("d-c3", 1)]  # fmt: skip


def test_a_child_that_cannot_be_restarted_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures = []

    def fail_once(process: Any) -> None:
        if not failures:
            failures.append(process)
            raise OSError(11, "Resource temporarily unavailable")
        process.start()

    monkeypatch.setattr(store_process, "_CONTEXT", _Context(store_process._CONTEXT, fail_once))
    event_log = EventLog.open(tmp_path / "events.db", hash_key=KEY, writer="process")
    try:
        first = event_log._host.pid
        os.kill(first, signal.SIGKILL)
        event_log.append("f-c1", Trace(at(0), "call_started"))
        event_log.flush()
        assert failures and event_log._host.pid not in (first, None)
        assert "could not be restarted" in caplog.text
        assert len(event_log.events("f-c1")) == 1 and event_log.last_error is None
    finally:
        event_log.close()


def test_a_child_started_while_closing_gives_up_is_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() gives up on a failing write while the receiver restarts the child: abandon()
    kills the old one, and the new one (which would retry for ever) is ended too."""
    fast_retries(monkeypatch)

    def start_as_close_gives_up(process: Any) -> None:
        process.start()
        event_log._abandon.set()  # what close() does when its timeout is up
        event_log._host.abandon()

    monkeypatch.setattr(store_process, "_CONTEXT", _Context(store_process._CONTEXT, start_as_close_gives_up))
    event_log = EventLog.open(tmp_path / "events.db", hash_key=KEY, writer="process")
    host = event_log._host
    blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        event_log.append("g-c1", Trace(at(0), "call_started"))
        wait_until(lambda: event_log.last_error is not None, "the child is stuck")
        first = host.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: host.pid != first, "a new child")
        wait_until(lambda: not host._receiver.is_alive(), "the receiver ends")
        assert not host._process.is_alive()
    finally:
        blocker.close()
        with contextlib.suppress(StoreError):
            event_log.close(timeout=1)


def test_a_writer_process_that_cannot_start_leaves_nothing_open(tmp_path, monkeypatch) -> None:
    closed: list[object] = []
    real_connect = store._connect

    def connect(path):
        db = real_connect(path)
        real_close = db.close
        db.close = lambda: (closed.append(db), real_close())[1]
        return db

    def fail(self):
        raise OSError("no more processes")

    monkeypatch.setattr(store, "_connect", connect)
    monkeypatch.setattr(store_process.WriterHost, "_start_child", fail)
    with pytest.raises(OSError, match="no more processes"):
        EventLog.open(tmp_path / "x.db", hash_key=b"k" * 16, writer="process")
    assert len(closed) == 2  # the reader and the writer's connection
