"""The event log's writer in a child process (``EventLog.open(..., writer="process")``).

Python's sqlite3 gives up and takes back the GIL around every step of a statement, and
the summaries are Python: a writer *thread* makes the event loop wait for the GIL many
times per request. Here the loop side is unchanged (``append_many`` puts one item on the
queue) and two threads of the parent talk to a child process that does the writing:

* the *forwarding* thread takes everything queued (waiting for the first item, then
  gathering for :data:`GATHER_S`: bigger transactions are cheaper for the child, and fewer
  wake-ups cheaper for the loop) and sends it as one pickled batch with a number over a
  pipe; the child writes it in one transaction with the summaries
  (:class:`ivr.store.BatchWriter`, the code the writer thread runs) and acknowledges the
  number. A ``flush`` marker waits for the batch sent
  before it. A submitted function (``submit``: closures, not picklable) runs on the
  forwarding thread, on a write connection of the parent, once every batch before it is
  acknowledged: the order the writer thread keeps.
* the *receiver* thread reads the acknowledgements and the child's "error: ..." / "ok"
  while it retries a failing write (``last_error``, so ``/healthz`` shows the store as
  degraded), and sets the markers.

If the child dies (killed, crashed), the receiver logs it, starts a new one and resends
every batch not acknowledged (from a thread of its own: the receiver goes on reading).
A batch committed just before the death is then written again: its events are skipped
where the same event is stored under its (call_id, seq), agent states and notes where an
identical row is stored, raw numbers are replaced, and the summaries are recomputed;
nothing is stored twice.

The child ignores SIGINT and SIGTERM (Ctrl-C, a service manager stopping the service:
the parent flushes and closes) and ends when its pipe ends: when the parent closes the log, or dies.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.util
import pickle
import signal
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from ivr import store
from ivr.store import _STOP, BATCH_MAX, BatchWriter, _Call, _connect, take_batch

if TYPE_CHECKING:
    from ivr.store import EventLog

log = logging.getLogger(__name__)

GATHER_S = 0.01  # after the first item, gather this long before sending: bigger transactions, fewer wake-ups
RESTART_FIRST_DELAY_S = 0.05
RESTART_MAX_DELAY_S = 5.0
_CONTEXT = multiprocessing.get_context("spawn")  # the parent has threads: never fork
# At exit, close the open logs (write what is queued) before multiprocessing ends its
# children: atexit runs the last registered first, and multiprocessing.util registered.
atexit.register(store._close_open_logs)


class WriterHost:
    """The parent's side: the child process, the forwarding and the receiver thread.

    ``join``/``is_alive`` as a thread's, so that ``EventLog.close`` treats both alike.
    """

    def __init__(self, event_log: EventLog, connection: sqlite_utils.Database) -> None:
        self._log, self._path = event_log, event_log.db_path
        self._db = connection  # for submitted functions, on the forwarding thread
        self._state = threading.Condition()  # guards the fields below
        self._sent = self._acked = 0  # batch numbers
        self._unacked: dict[int, bytes] = {}  # batch number -> pickled batch, in order
        self._markers: list[tuple[int, threading.Event]] = []  # set once that batch is acked
        self._stopping = self._restarted = False
        self._send_lock = threading.Lock()  # the pipe to the child, and its restart
        self._process: Any = None
        self._batches: Connection | None = None
        self._acks: Connection | None = None
        self._start_child()
        name = f"event-log {self._path.name}"
        self._forwarder = threading.Thread(target=self._forward, name=f"{name} forward", daemon=True)
        self._receiver = threading.Thread(target=self._receive, name=f"{name} receive", daemon=True)
        self._forwarder.start()
        self._receiver.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def join(self, timeout: float | None = None) -> None:
        """Wait for both threads, ``timeout`` for the two together (not each)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._forwarder.join(timeout)
        self._receiver.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def is_alive(self) -> bool:
        return self._forwarder.is_alive() or self._receiver.is_alive()

    def abandon(self) -> None:
        """Give up on what is not written (``EventLog.close`` after its timeout)."""
        with self._state:
            lost = sum(len(pickle.loads(data)[1]) for data in self._unacked.values())
            self._state.notify_all()
        log.error("event log %s: closed while failing; %d queue items lost", self._path, lost)
        with contextlib.suppress(Exception):
            self._process.kill()

    # ------------------------------------------------------------------- the child

    def _start_child(self) -> list[bytes]:
        """Start a child (send lock held); the batches the last one did not acknowledge, to
        resend. Nothing changes here if it cannot be started."""
        child_reads, parent_writes = _CONTEXT.Pipe(duplex=False)
        parent_reads, child_writes = _CONTEXT.Pipe(duplex=False)
        resend = sorted(self._unacked)
        tuning = (store.BUSY_TIMEOUT_MS, store.RETRY_FIRST_DELAY_S, store.RETRY_MAX_DELAY_S)
        args = (str(self._path), child_reads, child_writes, max(resend, default=0), tuning)
        name = f"event-log {self._path.name}"
        try:
            process = _CONTEXT.Process(target=child_main, args=args, name=name, daemon=True)
            process.start()
        except BaseException:
            parent_writes.close()
            parent_reads.close()
            raise
        finally:
            child_reads.close()  # the child's ends: only the child holds them now, so that
            child_writes.close()  # its death (or ours) ends the pipes
        for old in (self._batches, self._acks):  # the last child's, if any
            if old is not None:
                old.close()
        self._process, self._batches, self._acks = process, parent_writes, parent_reads
        return [self._unacked[number] for number in resend]

    def _send(self, data: bytes) -> None:
        assert self._batches is not None
        with contextlib.suppress(OSError):  # the child is gone: the receiver restarts it, resends
            self._batches.send_bytes(data)

    # ------------------------------------------------------------------- forwarding thread

    def _forward(self) -> None:
        try:
            while True:
                batch = take_batch(self._log._queue)
                if GATHER_S and len(batch) < BATCH_MAX and batch[-1] is not _STOP:
                    time.sleep(GATHER_S)  # let more come: fewer wake-ups, fewer GIL hand-overs
                    batch += take_batch(self._log._queue, wait=False)
                items: list[Any] = []
                markers: list[threading.Event] = []
                for item in batch:
                    if isinstance(item, threading.Event):
                        markers.append(item)
                    elif isinstance(item, _Call):
                        self._send_batch(items)
                        items = []
                        self._run_call(item)
                    elif item is not _STOP:
                        items.append(item)
                self._send_batch(items)
                with self._state:
                    for marker in markers:
                        if self._acked >= self._sent:
                            marker.set()
                        else:
                            self._markers.append((self._sent, marker))
                if batch[-1] is _STOP:
                    with self._send_lock:
                        self._stopping = True
                        self._send(pickle.dumps(None))
                    return
        finally:
            self._db.close()

    def _send_batch(self, items: list[Any]) -> None:
        if not items:
            return
        with self._send_lock:
            with self._state:
                try:
                    data = pickle.dumps((self._sent + 1, items), protocol=5)
                except Exception:  # cannot happen with what append_* queue; never stop forwarding
                    log.exception("event log %s: %d queue items cannot be sent", self._path, len(items))
                    return
                self._sent += 1
                self._unacked[self._sent] = data
            self._send(data)

    def _run_call(self, call: _Call) -> None:
        """Run a submitted function here, once the child has written everything before it."""
        with self._state:
            while self._acked < self._sent and not self._log._abandon.is_set():
                self._state.wait()
        BatchWriter(self._log._abandon, self._log._report).call(self._db.conn, call)

    # ------------------------------------------------------------------- receiver thread

    def _receive(self) -> None:
        delay = RESTART_FIRST_DELAY_S
        while True:
            assert self._acks is not None
            try:
                message = self._acks.recv()
            except (EOFError, OSError):
                if not self._child_ended(delay):
                    return
                delay = min(delay * 2, RESTART_MAX_DELAY_S)
                continue
            kind, value = message
            if kind == "ack":
                delay = RESTART_FIRST_DELAY_S
                self._acknowledge(value)
            elif kind == "error":
                self._log._report(value)
            elif kind == "ok":
                self._log._report(None)

    def _acknowledge(self, number: int) -> None:
        with self._state:
            restarted, self._restarted = self._restarted, False
        if restarted:  # before the markers: a flush after a restart sees the store healthy
            self._log._report(None)
        with self._state:
            self._acked = number
            for done in [n for n in self._unacked if n <= number]:
                del self._unacked[done]
            waiting = [(n, marker) for n, marker in self._markers if n > number]
            for n, marker in self._markers:
                if n <= number:
                    marker.set()
            self._markers = waiting
            self._state.notify_all()

    def _child_ended(self, delay: float) -> bool:
        """The pipe from the child ended: done, or restart it (False: done)."""
        process = self._process
        process.join()
        with self._state:
            finished = self._stopping and not self._unacked
        if finished or self._log._abandon.is_set():
            if process.exitcode:
                log.error("event log %s: the writer process exited with code %s",
                          self._path, process.exitcode)  # fmt: skip
            return False
        error = f"the writer process of {self._path} ended (exit code {process.exitcode}); restarting it"
        log.error("event log: %s, resending %d batches", error, len(self._unacked))
        self._log._report(error)
        if self._log._abandon.wait(delay):
            return self._child_ended(delay)
        self._restart()
        return True

    def _restart(self) -> None:
        """Start a new child; what the last one did not acknowledge is resent on a thread of
        its own, which the send lock passes to (no new batch overtakes a resent one): this
        thread goes straight back to reading the child's acknowledgements and reports. Were
        it to resend itself, more than a pipe's worth would deadlock with a child that keeps
        reporting a failing write into a full pipe back."""
        self._send_lock.acquire()
        try:
            with self._state:
                self._restarted = True
            resend = self._start_child()
        except Exception as exc:  # no process to be had now: the old pipe has ended, so the
            self._send_lock.release()  # receiver comes back here, after a longer delay
            log.exception("event log %s: the writer process could not be restarted", self._path)
            self._log._report(f"the writer process of {self._path} could not be restarted: {exc}")
            return
        if self._log._abandon.is_set():  # closed meanwhile: abandon() may have killed the old one
            with contextlib.suppress(Exception):
                self._process.kill()
        try:
            threading.Thread(target=self._resend, args=(resend,), daemon=True,
                             name=f"event-log {self._path.name} resend").start()  # fmt: skip
        except RuntimeError:  # no thread to be had (shutting down): resend from here
            self._resend(resend)

    def _resend(self, batches: list[bytes]) -> None:
        """Send the batches a dead child left, then the stop if the log is closing (the send
        lock held, handed over by :meth:`_restart`)."""
        try:
            for data in batches:
                self._send(data)
            if self._stopping:
                self._send(pickle.dumps(None))
        finally:
            self._send_lock.release()


def child_main(path: str, batches: Connection, acks: Connection, resent_up_to: int,
               tuning: tuple[int, float, float]) -> None:  # fmt: skip
    """The child: write each batch that comes, acknowledge it; end when the pipe ends."""
    # Ctrl-C, and the SIGTERM a service manager sends to every process of the service, are
    # for the parent: it writes what is queued and closes us (the pipe ends).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    store.BUSY_TIMEOUT_MS, store.RETRY_FIRST_DELAY_S, store.RETRY_MAX_DELAY_S = tuning

    def report(error: str | None) -> None:
        acks.send(("error", error) if error else ("ok", None))

    db = _connect(Path(path))
    writer = BatchWriter(threading.Event(), report)
    try:
        report(None)  # up: a restart is over (the parent clears last_error)
        while True:
            try:
                message = pickle.loads(batches.recv_bytes())
            except EOFError:  # the parent is gone: what came is written
                return
            if message is None:
                return
            number, items = message
            writer.write(db.conn, items, resent=number <= resent_up_to)
            acks.send(("ack", number))
    except BrokenPipeError:  # the parent is gone
        return
    finally:
        db.close()
