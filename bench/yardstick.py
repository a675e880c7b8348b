"""The host's speed for the edge's kind of code: a fixed pure-Python workload, timed.

    python bench/yardstick.py [--quick]        (the same as bench/allocator.py --yardstick)

Prints this host's time for one round of the workload, p50 in ms. Figures taken on different
hosts (or hours: the development VMs differ by up to 3x from day to day) compare through it:
``bench/energy.py`` prints it before and after its run, against :data:`REFERENCE_MS`.

Until 2026-11-30 the yardstick timed the allocator's own step (``SiteState.step`` lowering 500
limits until its batch was handed over); once that step got faster it would have claimed a faster
host. So the workload is now of its own and never changes: nothing here imports the edge's code.
It is of the same flavour as a 500-connector step (slotted dataclasses built and copied, dicts
keyed by strings, sorting by tuples, float math, formatted reason strings, progressive filling
over groups) and runs under the nodes' garbage-collector policy, as the step did.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The reference host (the README's figures up to 2026-11-29 20:00-21:00) took 10.6 ms for the
# old yardstick (the allocator's step lowering 500 limits until its batch was handed over, p50 of
# 40 rounds' 9 such steps: bench/allocator.py --yardstick at 13f9795). This workload's reference
# is 10.6 ms x (its median / the old yardstick's median), both measured on one host (the 2-core
# development VM, 2026-11-30 20:20-20:22), alternately in separate processes, 24 pairs (12 old
# first, 12 this first):
#   old=$(cd <worktree at 13f9795> && python bench/allocator.py --yardstick)
#   new=$(python bench/yardstick.py)
# old 36.2 36.1 39.9 22.7 22.7 20.9 23.3 22.1 33.4 34.4 33.3 32.9
#     18.9 19.1 20.3 33.1 34.5 35.0 23.7 21.2 29.8 19.0 19.3 19.4    median 23.48 ms
# new 18.0 18.2 10.0 19.8 19.2  9.7 10.1 10.0 18.4 17.9 16.7 16.1
#      9.4  9.0  9.2  9.2 10.5 10.8  9.6 10.1 19.6 16.3  8.9  8.7    median 10.29 ms
# 10.6 x 10.29 / 23.48 = 4.64 (the median of the 24 pairs' own ratios: 0.474, 5.0 ms). Both
# are bimodal on this host (a process gets the fast or the slow state and keeps it): the
# reference holds to about 10 %.
REFERENCE_MS = 4.6
ITEMS = 500
GROUPS = 10
ROUNDS = 40  # about 1-2 s
QUICK_ROUNDS = 24
WARMUP_ROUNDS = 4
YOUNG_THRESHOLD = 20000  # supervisors/gc_policy.py's, as the energy node runs
_EPS = 1e-9


@dataclass(frozen=True, slots=True, kw_only=True)
class _Item:
    key: str
    group: int
    priority: int
    arrived_s: float
    max_a: float
    offered_a: float
    measured_a: tuple[float, float, float]
    phases: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Share:
    key: str
    previous_a: float
    limit_a: float
    action: str
    reason: str

    @property
    def changed(self) -> bool:
        return self.limit_a != self.previous_a


def _items(seed: int = 20261201) -> list[_Item]:
    rng = random.Random(seed)
    out = []
    for i in range(ITEMS):
        phases = (0, 1, 2) if rng.random() < 0.8 else (rng.randrange(3),)
        draw = rng.uniform(0.0, 16.0)
        out.append(
            _Item(
                key=f"CP{i:04d}/1",
                group=i % GROUPS,
                priority=rng.choice((0, 0, 0, 1, 2)),
                arrived_s=1.7e9 + rng.uniform(0.0, 36000.0),
                max_a=rng.choice((16.0, 32.0)),
                offered_a=rng.uniform(6.0, 16.0),
                measured_a=(draw, draw if len(phases) > 1 else 0.0, draw * 0.97),
                phases=phases,
            )
        )
    return out


def _round(items: list[_Item], previous: dict[str, float], r: int) -> dict[str, _Share]:
    """One allocation-like pass over every item, as a step over every connector."""
    base = 40.0 + 25.0 * (r % 3)
    # What each group draws per phase, and its room.
    drawn: dict[int, list[float]] = {}
    for it in items:
        g = drawn.setdefault(it.group, [0.0, 0.0, 0.0])
        for p in it.phases:
            g[p] += min(it.measured_a[p], it.offered_a)
    room = {
        g: [ITEMS // GROUPS * 9.0 - base - (sum(d) / 3.0 - d[p]) * 0.1 for p in range(3)]
        for g, d in drawn.items()
    }
    counted = [
        _Item(
            key=it.key,
            group=it.group,
            priority=it.priority,
            arrived_s=it.arrived_s,
            max_a=it.max_a,
            offered_a=previous.get(it.key, it.offered_a),
            measured_a=it.measured_a,
            phases=it.phases,
        )
        for it in items
    ]
    ranked = sorted(counted, key=lambda it: (-it.priority, it.arrived_s, it.key))
    level: dict[str, float] = {}
    why: dict[str, str] = {}
    for it in ranked:
        left = room[it.group]
        if all(left[p] >= 6.0 for p in it.phases):
            level[it.key] = 6.0
            for p in it.phases:
                left[p] -= 6.0
        else:
            why[it.key] = (
                f"paused: did not fit at 6.0 A on group {it.group} "
                f"(left {min(left):.1f} A); priority {it.priority}"
            )
    # Progressive filling inside each group, tier by tier.
    for g in range(GROUPS):
        members = [it for it in ranked if it.group == g and it.key in level]
        for tier in sorted({it.priority for it in members}, reverse=True):
            rising = {it.key: it for it in members if it.priority == tier}
            left = room[g]
            while rising:
                step = min(it.max_a - level[k] for k, it in rising.items())
                for p in range(3):
                    rate = sum(1 for it in rising.values() if p in it.phases)
                    if rate:
                        step = min(step, left[p] / rate)
                step = max(0.0, step)
                frozen = set()
                for k, it in rising.items():
                    level[k] += step
                    for p in it.phases:
                        left[p] -= step
                    if level[k] >= it.max_a - _EPS:
                        frozen.add(k)
                        why[k] = f"connector maximum {it.max_a:.1f} A"
                if any(left[p] <= _EPS for p in range(3)) or not frozen:
                    for k in rising:
                        if k not in frozen:
                            why[k] = f"limited by group {g}: headroom {max(left):.1f} A shared"
                    break
                for k in frozen:
                    del rising[k]
    shares: dict[str, _Share] = {}
    for it in counted:
        limit = round(int(level.get(it.key, 0.0) * 10 + 1e-6) / 10, 6)
        prev = it.offered_a
        action = "decrease" if limit < prev else "increase" if limit > prev else "unchanged"
        shares[it.key] = _Share(
            key=it.key,
            previous_a=prev,
            limit_a=limit,
            action=action,
            reason=f"{action} to {limit:.1f} A; allocation: {why.get(it.key, 'target reached')}",
        )
    return shares


def workload_ms(rounds: int = ROUNDS) -> float:
    """This host's time for one round, p50 of ``rounds`` after a few unmeasured ones (in a
    process of its own: this sets the nodes' GC policy)."""
    items = _items()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
    gc.collect()
    gc.freeze()
    times: list[float] = []
    previous: dict[str, float] = {}
    for r in range(WARMUP_ROUNDS + rounds):
        started = time.perf_counter()
        for half in (0, 1):  # two passes, as the step allocates on its high and low counts
            shares = _round(items, previous, 2 * r + half)
            previous = {k: s.limit_a for k, s in shares.items() if s.changed or k in previous}
        if r >= WARMUP_ROUNDS:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def yardstick_line(measured_ms: list[float]) -> str:
    """The last lines' words for the yardstick measured before (and after) a run."""
    slower = statistics.fmean(measured_ms) / REFERENCE_MS
    when = " ms before the run, ".join(f"{ms:.1f}" for ms in measured_ms)
    return (
        f"host yardstick (bench/yardstick.py: a fixed workload like the allocator's step at "
        f"{ITEMS} connectors, in a process of its own, p50): {when} ms "
        f"{'after' if len(measured_ms) > 1 else 'before the run'}; {REFERENCE_MS:g} ms "
        f"on the host of the README's figures: this host took {slower:.1f}x its time"
    )


def measure_yardstick(quick: bool = False) -> float:
    """:func:`workload_ms` in a child process (nothing else of the caller's runs meanwhile);
    ``quick``: fewer rounds."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())] + (["--quick"] if quick else []),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    print(f"{workload_ms(QUICK_ROUNDS if args.quick else ROUNDS):.2f}")


if __name__ == "__main__":
    main()
