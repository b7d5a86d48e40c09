"""What the engine does when a timer falls due, and the steps it shares with the API.

Each ``_on_KIND`` runs when a timer of that kind pops from the heap and is still live
(see :meth:`queues.core._Core._live`), at the timer's own due time: ``ring`` (an offer
rang out), ``wrapup`` (the wrap-up ran out: the call is logged uncoded), ``max_wait``
(overflow), ``fallback`` (a skills queue's caller may go to any agent), ``announce``
(position and estimated wait) and ``retry`` (a callback is due again).
"""

from __future__ import annotations

from datetime import datetime

from queues.core import _Agent, _Core, _Entry, seconds_us, span_s
from queues.model import CancelOffer
from queues.states import Offered, Talking


class _Reactions(_Core):
    def _cancel(self, a: _Agent, e: _Entry, reason: str, at: datetime, *, pause: bool) -> None:
        self._out.append(CancelOffer(at, a.id, e.call_id, reason))
        self._set_state(a, a.state.decline(at, pause=pause), at)

    def _ring_out(self, a: _Agent, reason: str, at: datetime, t: int) -> None:
        state: Offered = a.state  # type: ignore[assignment]
        e = self._entries[state.call_id]
        pause = reason == "ring-timeout" and e.queue.config.pause_on_missed
        self._cancel(a, e, reason, at, pause=pause)
        self._log(at, e.call_id, "queue_ring_timeout", agent=a.id)
        e.missed.add(a.id)
        self._back_to_waiting(e, at, t)
        self._serve_agent(a, at, t)

    def _end_talk(self, a: _Agent, e: _Entry, at: datetime, t: int) -> None:
        state: Talking = a.state  # type: ignore[assignment]
        talk_s = span_s(state.started_us, t)
        self._log(at, e.call_id, "talk_ended", agent=a.id, talk_s=talk_s)
        deadline = t + e.queue.wrapup_us
        self._set_state(a, state.end_talk(at, e.queue.name, talk_s, deadline), at)
        self._schedule(deadline, "wrapup", (a, e.call_id))

    # ------------------------------------------------------------------ timers, by kind

    def _on_ring(self, ref: tuple[_Agent, str], at: datetime, t: int) -> None:
        self._ring_out(ref[0], "ring-timeout", at, t)

    def _on_wrapup(self, ref: tuple[_Agent, str], at: datetime, t: int) -> None:
        a = ref[0]
        self._wrapup_done(a, at, t)
        self._set_state(a, a.state.done(at, t), at)  # type: ignore[attr-defined]
        self._serve_agent(a, at, t)

    def _on_max_wait(self, e: _Entry, at: datetime, t: int) -> None:
        e.max_wait_us = None
        if e.kind != "call":
            return
        if e.stage == "waiting":
            self._overflow(e, "max_wait", at, t)
        elif e.stage == "ringing":
            e.overdue = True  # leaves if this offer is not answered

    def _on_fallback(self, e: _Entry, at: datetime, t: int) -> None:
        e.fallback_us = None
        if e.stage == "waiting":
            self._unlink(e)
            e.fallback = True
            self._link(e)
            self._serve_entry(e, at, t)
        else:
            e.fallback = True

    def _on_announce(self, e: _Entry, at: datetime, t: int) -> None:
        e.announce_us = None
        if e.kind != "call" or e.stage not in ("waiting", "ringing"):
            return
        if e.stage == "waiting":
            self._announce(e, at)
        e.announce_us = self._schedule(t + seconds_us(e.queue.config.announce_every_s),
                                       "announce", e)

    def _on_retry(self, e: _Entry, at: datetime, t: int) -> None:
        e.retry_us = None
        if e.stage == "scheduled":
            self._set_stage(e, "waiting")
            self._serve_entry(e, at, t)
