"""The CPU time of the allocator's step until its lowering batch is handed over, robust to a busy
host: the figure to compare two versions of the step with.

    python bench/allocator_cpu.py [--quick] [--runs 7]

Wall times on the shared 2-core VMs vary 2-3x within minutes (bench/RESULTS.md), and a whole
step's CPU time moves with them. So this replays the same steps many times: it runs
bench/allocator.py's scenarios at 500 connectors (the site at bench/energy.py's pace, and every
limit lowered on 10 feeders), keeps a copy (pickle) of the allocator's state before each step
that hands a lowering batch over, and times each copy's step until the hand-over ``--runs``
times (CPU of this thread, the garbage collector off as the energy node has it there:
supervisors/gc_policy.collections_deferred); per step the fastest run counts. Compare two
versions alternately, in separate processes (a checkout of each), several pairs.

``--quick``: 100 connectors, 3 runs per step.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import pickle
import statistics
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.site_state import SiteState
from bench.allocator import site_pace_figure, step_times


def lowering_steps(scenario: str, n: int, rounds: int) -> list[bytes]:
    """The allocator's state (pickled, with the step's arguments) before each step of the
    scenario that handed a lowering batch over."""
    kept: list[bytes] = []
    stepping = SiteState.stepping

    def recording(
        self: SiteState, **kw: Any
    ) -> Generator[Any, None, Any]:  # the step as it is, its state kept first
        before = pickle.dumps((self, kw))
        out = yield from stepping(self, **kw)
        if out is not None and out.sent:
            kept.append(before)
        return out

    SiteState.stepping = recording  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the scenarios' own figures
            if scenario == "pace":
                site_pace_figure(n, rounds)
            else:
                step_times(n, rounds)
    finally:
        SiteState.stepping = stepping  # type: ignore[method-assign]
    return kept


def fastest_ms(kept: list[bytes], runs: int) -> list[float]:
    """Per kept step, the least CPU time (ms) of ``runs`` runs until the hand-over."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        out = []
        for blob in kept:
            times = []
            for _ in range(runs):
                state, kw = pickle.loads(blob)
                run = state.stepping(**kw)
                started = time.thread_time_ns()
                next(run)
                times.append(time.thread_time_ns() - started)
            out.append(min(times) / 1e6)
        return out
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connectors", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="100 connectors, 3 runs per step")
    args = parser.parse_args()
    if args.quick:
        args.connectors, args.runs = 100, 3
    lines = []
    for scenario, name in (
        ("pace", "bench/energy.py's site at its pace, overload"),
        ("steps", "every limit lowered, 10 feeders"),
    ):
        best = fastest_ms(lowering_steps(scenario, args.connectors, args.rounds), args.runs)
        lines.append(
            f"step until the lowering batch is handed over, {args.connectors} connectors, {name}: "
            f"CPU p50 {statistics.median(best):.2f} ms, sum {sum(best):.1f} ms over {len(best)} "
            f"steps (each the fastest of {args.runs} runs)"
        )
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
