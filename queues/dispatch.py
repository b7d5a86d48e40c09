"""Dispatch strategies: which available agent gets a caller, and which caller an agent gets.

Everything is kept in sorted lists of small tuples, so a decision is a look at the first
element (or a binary search) instead of a scan over callers or agents:

* each queue keeps its dispatchable entries (waiting, not ringing, no future
  ``not_before``) sorted by :func:`entry_key` = (-priority, original join, arrival
  number): the first element is the next caller, and a caller's position is a bisection;
* each queue keeps its *available* agents sorted by the strategy's :func:`agent_key`:

  - ``longest-idle``: (idle since, agent order) -- idle since the end of the last wrap-up
    or the login;
  - ``round-robin``: (agent order,) -- the next agent after the one offered last, in
    the stable order of the agents' configuration, wrapping around;
  - ``skills``: (-level of the queue's skill, idle since, agent order);

* all available agents are also kept sorted longest-idle first: after a skills queue's
  ``fallback_after_s`` a caller may go to any of them, skilled agents first.

An agent whose offer for a caller rang out (or who declined it) is passed over for that
caller while another agent in the same choice is free (:func:`pick`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Sequence, Set
from typing import Any, TypeVar

T = TypeVar("T")
Key = tuple[int, ...]


def entry_key(priority: int, joined_us: int, seq: int) -> Key:
    """Dispatch order: higher priority first, then the earlier original join."""
    return (-priority, joined_us, seq)


def agent_key(strategy: str, level: int, idle_us: int, order: int) -> Key:
    """An available agent's place in a queue's list; the last element is always ``order``."""
    if strategy == "round-robin":
        return (order,)
    if strategy == "skills":
        return (-level, idle_us, order)
    return (idle_us, order)


def add(keys: list[Any], key: Any) -> None:
    insort(keys, key)


def remove(keys: list[Any], key: Any) -> None:
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        del keys[i]


def rank(keys: Sequence[Any], key: Any) -> int:
    """1-based place of ``key`` in a sorted list."""
    return bisect_left(keys, key) + 1


def start_of(strategy: str, keys: Sequence[Key], last_order: int) -> int:
    """Where the choice starts: the front, or for round-robin just after the last agent."""
    if strategy != "round-robin" or not keys:
        return 0
    return bisect_right(keys, (last_order,)) % len(keys)


def pick(tiers: Sequence[tuple[Sequence[Key], int]], by_order: Callable[[int], T],
         missed: Set[str], ident: Callable[[T], str]) -> T | None:
    """The first agent over the tiers (each a sorted key list and a start index, read
    cyclically) who has not missed this caller; failing that, the first one who has."""
    fallback: T | None = None
    for keys, start in tiers:
        n = len(keys)
        for j in range(n):
            agent = by_order(keys[(start + j) % n][-1])
            if not missed or ident(agent) not in missed:
                return agent
            if fallback is None:
                fallback = agent
    return fallback
