"""``ivr simulate-load``: days of calls on a virtual clock, through the real engines.

Citizens arrive by the hour (a municipal day profile), pick topics in the menu, wait
with limited patience, sometimes ask to be called back, talk to agents who work the
office hours with a lunch break, get coded, answer the survey, and call again when
their question was not resolved. Everything goes through the same ``CallSession``,
``QueueEngine`` and ``ContactCenter`` as live calls, and into the event log, so the
reports, the staffing figures and the benchmarks run on realistic data. The same seed
gives the same log.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ivr.announcements import AnnouncementBoard
from ivr.controller import ContactCenter
from ivr.flow import Flow, suggest
from ivr.vocabulary import (
    CallerHungUp,
    Command,
    Digits,
    Enqueue,
    Gather,
    InputTimeout,
    Play,
    Record,
    RecordingDone,
    Transfer,
)
from queues import AgentConfig, CancelOffer, Offer, QueueConfig, QueueEngine, QueueError

STOCKHOLM = ZoneInfo("Europe/Stockholm")
CHARS_PER_SECOND = 14.0

# Share of a day's calls per local hour: the morning peak and the after-lunch bump
# that Swedish municipal contact centers report; a few calls out of hours.
HOURLY = {7: 1.0, 8: 12.0, 9: 14.0, 10: 12.0, 11: 9.0, 12: 6.0, 13: 11.0, 14: 10.0,
          15: 8.0, 16: 4.0, 17: 1.5, 18: 1.0, 19: 0.5, 20: 0.3, 21: 0.2}
# (weight, keys) of what callers press in the default flow's menus.
MENU_MIX = [
    (20, ["1"]), (6, ["2", "1"]), (4, ["2", "2"]), (3, ["2", "3"]), (3, ["2", "4", "4711#"]),
    (14, ["3"]), (6, ["4", "1"]), (3, ["4", "2"]), (3, ["4", "3"]), (2, ["4", "4"]),
    (10, ["5"]), (14, ["0"]), (3, ["9", "1"]), (3, ["7", "3"]), (3, ["t", "0"]), (3, ["h"]),
]


@dataclass(frozen=True)
class Profile:
    """How citizens and agents behave; every field can be set in a TOML file."""

    calls_per_day: int = 400
    weekend_share: float = 0.1          # weekend traffic relative to a weekday
    patience_mean_s: float = 300.0      # exponential patience in the queue
    talk_mean_s: float = 200.0          # lognormal talk time, this mean
    wrapup_mean_s: float = 25.0
    coded_share: float = 0.93           # calls the agent codes within the wrap-up time
    resolved_share: float = 0.55
    forwarded_share: float = 0.2
    callback_promised_share: float = 0.1
    wrong_queue_share: float = 0.05     # the rest is "other"
    survey_share: float = 0.3
    survey_yes_share: float = 0.75
    repeat_if_unresolved: float = 0.45  # an unresolved caller calls again within days
    callback_share: float = 0.15        # callers who ask to be called back after waiting
    callback_after_s: float = 120.0
    callback_answer_share: float = 0.8
    no_answer_share: float = 0.02       # offers an agent lets ring out
    ring_s: float = 6.0
    lunch_minutes: int = 30
    population_factor: int = 25         # distinct callers = calls_per_day x this

    @classmethod
    def from_file(cls, path: Path, **overrides: Any) -> Profile:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        names = {f.name for f in fields(cls)}
        for key in raw:
            if key not in names:
                raise ValueError(f"{path}: {key}: unknown profile key{suggest(key, names)}")
        return replace(cls(**raw), **overrides)


@dataclass
class Caller:
    number: str
    topic: list[str]  # the menu keys that lead to the caller's question
    keys: list[str]   # what is left to press, the survey answer included
    queue: str | None = None
    answered: bool = False
    patience: Any = None  # the scheduled hang-up


@dataclass(order=True)
class _Job:
    at: datetime
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class Clock:
    """A virtual clock with a timer heap."""

    def __init__(self, start: datetime):
        self.now = start
        self._heap: list[_Job] = []
        self._seq = itertools.count()

    def at(self, when: datetime, fn: Callable[[], None]) -> _Job:
        job = _Job(max(when, self.now), next(self._seq), fn)
        heapq.heappush(self._heap, job)
        return job

    def run_until(self, end: datetime) -> None:
        while self._heap and self._heap[0].at <= end:
            job = heapq.heappop(self._heap)
            if job.cancelled:
                continue
            self.now = job.at
            job.fn()
        self.now = max(self.now, end)


class LoadSimulation:
    def __init__(self, settings: Any, flow: Flow, sink: Any, profile: Profile, *, seed: int,
                 agents: int | None, start: date, progress: bool = True):
        self.settings = settings
        self.profile = profile
        self.rng = random.Random(seed)
        self.seed = seed
        self.progress = progress
        self.start_day = start
        self.clock = Clock(datetime.combine(start, time(0), STOCKHOLM))
        qconfs = {name: QueueConfig.from_settings(q) for name, q in settings.queues.items()}
        self.agent_confs = self._agents(agents, qconfs)
        self.categories = {name: tuple(q.categories) for name, q in settings.queues.items()}
        self.queues = QueueEngine(qconfs, self.agent_confs)
        self.center = ContactCenter(flow, self.queues, schedules=settings.hours,
                                    board=AnnouncementBoard.from_settings(settings.announcements),
                                    sink=sink, transport=self)
        self.callers: dict[str, Caller] = {}
        self.offers: dict[str, Offer] = {}
        self.population = [f"+4670{n:07d}" for n in
                           self.rng.sample(range(10_000_000),
                                           profile.calls_per_day * profile.population_factor)]
        self._ids = itertools.count(1)
        self._tick_at: datetime | None = None
        self.calls = 0

    def _agents(self, count: int | None, qconfs: dict[str, QueueConfig]) -> dict[str, AgentConfig]:
        if count is None:
            return {a: AgentConfig.from_settings(s) for a, s in self.settings.agents.items()}
        skills = {q.skill or q.name: 5 for q in qconfs.values()}
        return {f"agent-{i:03d}": AgentConfig(f"agent-{i:03d}", f"Agent {i}", skills)
                for i in range(1, count + 1)}

    # ------------------------------------------------------------------ plan

    def run(self, days: int) -> int:
        for d in range(days):
            day = self.start_day + timedelta(days=d)
            self._plan_day(day)
            end = datetime.combine(day + timedelta(days=1), time(0), STOCKHOLM)
            self.clock.run_until(end)
            if self.progress:
                done = int(30 * (d + 1) / days)
                print(f"\r[{'#' * done}{'.' * (30 - done)}] day {d + 1}/{days} {day} "
                      f"calls {self.calls}", end="", file=sys.stderr, flush=True)
        # let the last calls finish, then close whatever is still live
        self.clock.run_until(self.clock.now + timedelta(hours=6))
        self.center.shutdown(self.clock.now)
        if self.progress:
            print(file=sys.stderr)
        return self.calls

    def _plan_day(self, day: date) -> None:
        p = self.profile
        weekday = day.weekday() < 5
        total = p.calls_per_day * (1.0 if weekday else p.weekend_share)
        weights = sum(HOURLY.values())
        for hour, w in HOURLY.items():
            n = self._poisson(total * w / weights)
            for _ in range(n):
                at = (datetime.combine(day, time(hour), STOCKHOLM)
                      + timedelta(seconds=self.rng.uniform(0, 3600)))
                self.clock.at(at, lambda: self.new_call(self.rng.choice(self.population)))
        schedule = self.settings.hours.get("office")
        intervals = schedule.hours_on(day) if schedule is not None else None
        for i, agent in enumerate(self.agent_confs):
            for iv in intervals or ():
                start = datetime.combine(day, iv.start, STOCKHOLM)
                end = datetime.combine(day, iv.end if iv.end != time.max else time(23, 59), STOCKHOLM)
                self.clock.at(start, lambda a=agent: self.agent(a, "login"))
                self.clock.at(end, lambda a=agent: self.agent(a, "logout"))
                lunch = datetime.combine(day, time(11), STOCKHOLM) + timedelta(minutes=15 * (i % 8))
                if start < lunch and lunch + timedelta(minutes=p.lunch_minutes) < end:
                    self.clock.at(lunch, lambda a=agent: self.agent(a, "pause", reason="lunch"))
                    self.clock.at(lunch + timedelta(minutes=p.lunch_minutes),
                                  lambda a=agent: self.agent(a, "resume"))

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        if mean > 50:  # normal approximation keeps large days fast
            return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))
        limit, k, prod = math.exp(-mean), 0, self.rng.random()
        while prod > limit:
            k += 1
            prod *= self.rng.random()
        return k

    # ------------------------------------------------------------------ callers

    def new_call(self, number: str, topic: list[str] | None = None) -> None:
        p = self.profile
        if topic is None:
            topic = list(self.rng.choices([k for _w, k in MENU_MIX], [w for w, _k in MENU_MIX])[0])
        script = [*topic, *(["1" if self.rng.random() < p.survey_yes_share else "2"]
                            if self.rng.random() < p.survey_share else [])]
        call_id = f"sim{self.seed}-{next(self._ids):07d}"
        self.callers[call_id] = Caller(number, topic, script)
        self.calls += 1
        self.center.start_call(self.clock.now, call_id, number, "+46330000000", "sim")
        self._schedule_tick()

    def send(self, call_id: str, commands: list[Command]) -> None:
        caller = self.callers.get(call_id)
        if caller is None or not commands:
            return
        last = commands[-1]
        speak = sum(len(c.prompt.text) for c in commands if isinstance(c, Play)) / CHARS_PER_SECOND
        now = self.clock.now + timedelta(seconds=speak)
        if isinstance(last, Gather):
            speak = sum(len(p.text) for p in last.prompts) / CHARS_PER_SECOND
            now += timedelta(seconds=speak)
            key = caller.keys.pop(0) if caller.keys else "h"
            if key == "h":
                self._later(now, lambda: self.center.call_event(call_id, CallerHungUp(self.clock.now)))
            elif key == "t":
                self._later(now + timedelta(seconds=last.timeout_s),
                            lambda: self.center.call_event(call_id, InputTimeout(self.clock.now)))
            else:
                self._later(now + timedelta(seconds=2),
                            lambda: self.center.call_event(call_id, Digits(self.clock.now, key)))
        elif isinstance(last, Record):
            self._later(now + timedelta(seconds=20), lambda: self.center.call_event(
                call_id, RecordingDone(self.clock.now, f"sim:{call_id}", 20.0)))
        elif isinstance(last, Enqueue):
            caller.queue = last.queue
            patience = self.rng.expovariate(1 / self.profile.patience_mean_s)
            if self.rng.random() < self.profile.callback_share and patience > self.profile.callback_after_s:
                caller.patience = self._later(now + timedelta(seconds=self.profile.callback_after_s),
                                              lambda: self._ask_callback(call_id))
            else:
                caller.patience = self._later(now + timedelta(seconds=patience),
                                              lambda: self._give_up(call_id))
        elif isinstance(last, Transfer):
            self._later(now + timedelta(seconds=90),
                        lambda: self.center.call_event(call_id, CallerHungUp(self.clock.now)))

    def _give_up(self, call_id: str) -> None:
        caller = self.callers.get(call_id)
        if caller is None or caller.answered:
            return
        self.center.call_event(call_id, CallerHungUp(self.clock.now))
        self._maybe_repeat(caller, hours=(0.1, 4))

    def _ask_callback(self, call_id: str) -> None:
        caller = self.callers.get(call_id)
        if caller is not None and not caller.answered:
            self.center.request_callback(self.clock.now, call_id)

    def _maybe_repeat(self, caller: Caller, hours: tuple[float, float]) -> None:
        if self.rng.random() < self.profile.repeat_if_unresolved:
            when = self.clock.now + timedelta(hours=self.rng.uniform(*hours))
            self.clock.at(when, lambda: self.new_call(caller.number, list(caller.topic)))

    # ------------------------------------------------------------------ agents

    def agent(self, agent: str, action: str, **kwargs: Any) -> None:
        try:
            self.center.agent(self.clock.now, agent, action, **kwargs)
        except QueueError:
            if action == "logout":  # busy with a call: finish it first, then go
                self._later(self.clock.now + timedelta(seconds=60),
                            lambda: self.agent(agent, action, **kwargs))
        self._schedule_tick()

    def offer(self, offer: Offer) -> None:
        self.offers[offer.agent] = offer
        if self.rng.random() < self.profile.no_answer_share:
            return  # rings out; the queue engine's timer moves on
        when = self.clock.now + timedelta(seconds=self.rng.uniform(2, 2 * self.profile.ring_s))
        self._later(when, lambda: self._accept(offer))

    def cancel_offer(self, cancel: CancelOffer) -> None:
        if (o := self.offers.get(cancel.agent)) is not None and o.call_id == cancel.call_id:
            del self.offers[cancel.agent]

    def _accept(self, offer: Offer) -> None:
        if self.offers.get(offer.agent) is not offer:
            return
        del self.offers[offer.agent]
        self.agent(offer.agent, "accept")
        if offer.kind == "callback":
            answered = self.rng.random() < self.profile.callback_answer_share
            self._later(self.clock.now + timedelta(seconds=15),
                        lambda: self._callback_dialled(offer, answered))

    def _callback_dialled(self, offer: Offer, answered: bool) -> None:
        self.agent(offer.agent, "callback_result", result="answered" if answered else "no-answer")
        if answered:
            self._talk(offer)

    def connect(self, agent: str, call_id: str) -> None:
        caller = self.callers.get(call_id)
        if caller is not None:
            caller.answered = True
            if caller.patience is not None:
                caller.patience.cancelled = True
        queue = caller.queue if caller and caller.queue else ""
        offer = Offer(self.clock.now, agent, call_id, queue, "call", None, None, (), 0.0)
        self._talk(offer)

    def _talk(self, offer: Offer) -> None:
        p = self.profile
        sigma = 0.6
        talk = self.rng.lognormvariate(math.log(p.talk_mean_s) - sigma ** 2 / 2, sigma)
        self._later(self.clock.now + timedelta(seconds=talk), lambda: self._hang_up_agent(offer))

    def _hang_up_agent(self, offer: Offer) -> None:
        self.center.agent_left(self.clock.now, offer.agent)
        p = self.profile
        if self.rng.random() >= p.coded_share:
            self._schedule_tick()
            return  # never coded: the engine records it as uncoded when wrap-up runs out
        wrap = min(self.rng.expovariate(1 / p.wrapup_mean_s), 25.0)
        resolution = self.rng.choices(
            ["resolved", "forwarded", "callback-promised", "wrong-queue", "other"],
            [p.resolved_share, p.forwarded_share, p.callback_promised_share, p.wrong_queue_share,
             max(0.0, 1 - p.resolved_share - p.forwarded_share - p.callback_promised_share
                 - p.wrong_queue_share)])[0]
        cats = self.categories.get(offer.queue) or ("ovrigt",)
        category = self.rng.choice(cats)
        self._later(self.clock.now + timedelta(seconds=wrap),
                    lambda: self.agent(offer.agent, "wrapup", category=category, resolution=resolution))
        caller = self.callers.get(offer.call_id)
        if caller is not None and resolution != "resolved":
            self._maybe_repeat(caller, hours=(2, 72))

    # ------------------------------------------------------------------ timers

    def _later(self, when: datetime, fn: Callable[[], None]) -> Any:
        def run() -> None:
            fn()
            self._schedule_tick()
        return self.clock.at(when, run)

    def _schedule_tick(self) -> None:
        due = self.center.next_deadline()
        pending = self._tick_at
        if due is None or (pending is not None and self.clock.now <= pending <= due):
            return
        self._tick_at = due

        def tick() -> None:
            self._tick_at = None
            self.center.tick(self.clock.now)
            self._schedule_tick()
        self.clock.at(due, tick)
