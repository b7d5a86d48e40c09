"""Estimated wait time (EWT) for a caller at a given place in a queue.

The formula, for a caller at position ``p`` (1 = next) in a queue::

    EWT(p) = (p - 1/2) x AHT / N            N > 0
    EWT(p) = None                           N = 0 (nobody to wait for: unknown)

* ``N`` is the number of agents *serving* the queue (they have its skill) who are
  logged in and not paused: available, ringing, talking or in wrap-up.
* ``AHT`` (average handle time) is an exponentially weighted mean of the queue's recent
  handle times, talk plus wrap-up, ``AHT <- AHT + ALPHA x (h - AHT)`` with ``ALPHA =
  0.2`` (the last ten calls carry 89 % of the weight), seeded with the queue's
  ``expected_handle_s`` so the first callers of the day get a sensible figure.

Why ``p - 1/2``: the ``N`` agents free up at a combined rate of ``N / AHT``, so the
caller at place ``p`` waits for about ``p`` of those releases, but the first release
comes sooner than a full ``AHT / N``: agents are, on average, half-way through their
current call when the caller arrives. With fixed handle times the residual is exactly
half, with exponential ones it is a whole AHT; telephone handle times lie in between and
closer to the first. The accuracy, measured against a simulation on a virtual clock,
is stated (and tested) in ``docs/queues.md``.

The estimate deliberately ignores agents' skills levels, priorities of callers who
will join later and abandonment ahead of the caller (which makes the real wait
shorter); it is what a caller is told, so it errs on the long side.
"""

from __future__ import annotations

ALPHA = 0.2


class HandleTime:
    """An exponentially weighted mean of handle times (seconds), seeded with a guess."""

    __slots__ = ("value", "samples")

    def __init__(self, seed_s: float):
        self.value = float(seed_s)
        self.samples = 0

    def add(self, handle_s: float) -> None:
        self.value += ALPHA * (max(0.0, handle_s) - self.value)
        self.samples += 1


def estimated_wait(position: int, aht_s: float, serving: int) -> float | None:
    """EWT(position) in seconds, or None when no agent serving the queue is at work."""
    if serving <= 0:
        return None
    return max(0.0, (position - 0.5) * aht_s / serving)
