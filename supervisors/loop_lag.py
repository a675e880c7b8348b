"""How late a node's event loop runs what is due: its loop lag, in ``run.py status``.

Every ``every_s`` (0.1 s) a task asks the loop to wake it and notes how late it woke. The lag is
what anything due on that loop waited for (a timer, a frame, a meter poll) while the loop ran
other work, collected garbage or waited for a core. ``status`` shows, per node, the last minute's
p50, p99 and max (``loop_lag``) and a histogram counted since the node started: whoever reads it
twice (``bench/energy.py`` at the start and end of a phase) gets the lag of what ran between.

Whether broker load reaches the energy node's loop is read here: each node is its own process
with its own loop, so the broker's work never runs on the energy node's loop; what its load can
still take is CPU time the two share, and that shows as the energy node's lag. In single-process
mode every node shares one loop, so each node shows the same lag.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import time
from collections.abc import Callable
from typing import Any

EVERY_S = 0.1
WINDOW_S = 60.0
# Upper bounds of the histogram's buckets, ms; the last bucket is everything above.
BUCKETS_MS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000)


class LoopLag:
    def __init__(self, *, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self.recent: collections.deque[tuple[float, float]] = collections.deque()
        self.counts = [0] * (len(BUCKETS_MS) + 1)
        self.samples = 0
        self.max_ms = 0.0

    def add(self, at_s: float, lag_ms: float) -> None:
        self.recent.append((at_s, lag_ms))
        horizon = at_s - self.window_s
        while self.recent and self.recent[0][0] < horizon:
            self.recent.popleft()
        self.counts[bisect.bisect_left(BUCKETS_MS, lag_ms)] += 1
        self.samples += 1
        self.max_ms = max(self.max_ms, lag_ms)

    def report(self) -> dict[str, Any]:
        window = sorted(lag for _, lag in self.recent)
        return {
            "every_s": EVERY_S,
            "window_s": self.window_s,
            "samples": len(window),
            "p50_ms": _round(percentile(window, 0.5)),
            "p99_ms": _round(percentile(window, 0.99)),
            "max_ms": _round(window[-1] if window else None),
            "max_ms_since_start": _round(self.max_ms if self.samples else None),
            # counted since the node started: bucket upper bound (ms; "inf" above the last) ->
            # samples, so two readings give the lag of what ran between them
            "histogram": {_label(i): n for i, n in enumerate(self.counts)},
        }


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def histogram_percentile(counts: dict[str, int], q: float) -> float | None:
    """The bucket bound at or under which ``q`` of the samples lie (a histogram from
    :meth:`LoopLag.report`, or the difference of two): the lag is at most that."""
    total = sum(counts.values())
    if total <= 0:
        return None
    wanted, seen = q * total, 0
    for i in range(len(BUCKETS_MS) + 1):
        seen += counts.get(_label(i), 0)
        if seen >= wanted:
            return BUCKETS_MS[i] if i < len(BUCKETS_MS) else float("inf")
    return float("inf")


def _label(i: int) -> str:
    return f"{BUCKETS_MS[i]:g}" if i < len(BUCKETS_MS) else "inf"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def monitor(
    lag: LoopLag, *, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic
) -> None:
    """Run for the life of the node (a task; cancel it to stop)."""
    while True:
        due = clock() + every_s
        await asyncio.sleep(every_s)
        now = clock()
        lag.add(now, max(0.0, (now - due) * 1000.0))
