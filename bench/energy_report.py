"""What bench/energy.py measures and how it prints it: scales, steps, phases, the last lines."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.energy_site import POLL_INTERVAL_S
from sim.loadgen import percentile
from supervisors.loop_lag import EVERY_S, histogram_percentile

TARGET_MS = 50.0
TARGET_N = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale:
    cars: tuple[int, ...]
    runs: int  # per phase: runs of `steps` steps down, each followed by a restore
    steps: int
    bg_cps: int
    bg_rate_hz: float
    car_workers: int
    # The site's settle_s: more than a step's fan-out, or the cars that get their profile later
    # are cut again (see energy_site.energy_toml). The figure does not depend on it; the time
    # between steps does.
    settle_s: float


FULL = Scale(
    cars=(10, 100, 500), runs=5, steps=4, bg_cps=400, bg_rate_hz=1.5, car_workers=2, settle_s=1.5
)
# --quick: two steps a phase (three took 29.5 s on a host 3x slower than the reference, at the
# limit of the 30; a step with its settle: about 1 s).
QUICK = Scale(
    cars=(10, 50), runs=1, steps=2, bg_cps=150, bg_rate_hz=1.5, car_workers=2, settle_s=0.4
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cut:
    """One overload step: ms from the first read of the changed meter."""

    last_ms: float
    first_ms: float
    poll_ms: float  # change -> that read (the poll), not part of the figure
    missing: int  # cars without a lowered TxProfile within CUT_TIMEOUT_S
    odd: int  # lowered to something else than the step asks for
    step_ms: float | None  # the allocator's step time, if its status still shows that step
    # the edge's own stamp: the last of the batch's SetChargingProfile frames written to its
    # socket (the broker's "profiles" status), ms from the same read; None if not reported
    written_ms: float | None = None
    # the edge's stages, ms from the same read: the allocator's step began, it sent the batch,
    # the broker received it, first and last frame written (None if not reported)
    stages: tuple[float, ...] | None = None
    # CPU time of the broker's loop from receipt to the last frame (with the wall time between
    # the two stages: whether the fan-out ran or waited for a core)
    broker_cpu_ms: float | None = None


@dataclass(slots=True, kw_only=True)
class Phase:
    n: int
    loaded: bool
    cuts: list[Cut] = field(default_factory=list)
    wall_s: float = 0.0
    energy_cpu_pct: float = 0.0
    broker_cpu_pct: float = 0.0
    cars_cpu_pct: float = 0.0
    max_step_ms: float = 0.0
    batches: int = 0
    load_ms: list[float] = field(default_factory=list)  # background round trips
    load_s: float = 0.0
    # each node's loop lag over the phase (supervisors/loop_lag.py: histogram, bucket -> count)
    energy_lag: dict[str, int] = field(default_factory=dict)
    broker_lag: dict[str, int] = field(default_factory=dict)


def lag_histogram(node: dict[str, Any]) -> dict[str, int]:
    """A node status's loop-lag histogram (counted since the node started)."""
    return dict((node.get("loop_lag") or {}).get("histogram") or {})


def histogram_change(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What was counted between two readings (a restarted node counts from zero again)."""
    if any(after.get(k, 0) < n for k, n in before.items()):
        return dict(after)
    return {k: n - before.get(k, 0) for k, n in after.items()}


def lag_text(counts: dict[str, int]) -> str:
    """p50 and p99 as the histogram's bucket bounds: the lag was at most that."""
    p50, p99 = histogram_percentile(counts, 0.5), histogram_percentile(counts, 0.99)
    if p50 is None or p99 is None:
        return "not sampled"
    return f"p50 <= {p50:g} ms p99 <= {p99:g} ms ({sum(counts.values())} samples)"


def phase_line(ph: Phase) -> str:
    last = sorted(c.last_ms for c in ph.cuts)
    first = sorted(c.first_ms for c in ph.cuts)
    spread = sorted(c.last_ms - c.first_ms for c in ph.cuts)
    polls = [c.poll_ms for c in ph.cuts]
    steps = sorted(c.step_ms for c in ph.cuts if c.step_ms is not None)
    written = sorted(c.written_ms for c in ph.cuts if c.written_ms is not None)
    text = (
        f"N={ph.n} {'loaded' if ph.loaded else 'idle'}: meter sample -> last SetChargingProfile "
        f"written by the edge p50 {percentile(written, 0.5):.1f} ms p99 "
        f"{percentile(written, 0.99):.1f} ms ({len(written)} of the steps); "
        "-> last TxProfile received by a car p50 "
        f"{percentile(last, 0.5):.1f} ms p99 {percentile(last, 0.99):.1f} ms max "
        f"{max(last, default=0.0):.1f} ms; first TxProfile p50 {percentile(first, 0.5):.1f} ms "
        f"p99 {percentile(first, 0.99):.1f} ms; fan-out (last - first) p50 "
        f"{percentile(spread, 0.5):.1f} ms p99 {percentile(spread, 0.99):.1f} ms; "
        f"{len(ph.cuts)} steps, cars missed {sum(c.missing for c in ph.cuts)}, odd limits "
        f"{sum(c.odd for c in ph.cuts)}; poll delay before the sample (not counted) mean "
        f"{statistics.fmean(polls) if polls else 0:.0f} ms; CPU energy node "
        f"{ph.energy_cpu_pct:.0f}%, broker {ph.broker_cpu_pct:.0f}%, cars {ph.cars_cpu_pct:.0f}%; "
        f"allocator step (status last_step_ms) p50 {percentile(steps, 0.5):.1f} ms max "
        f"{max(steps, default=0.0):.1f} ms ({len(steps)} of the steps), max_step_ms so far "
        f"{ph.max_step_ms:.1f}; {ph.batches} batches"
    )
    staged = [c.stages for c in ph.cuts if c.stages is not None]
    if staged:
        p50 = [percentile(sorted(s[i] for s in staged), 0.5) for i in range(5)]
        text += (
            f"; edge stages p50 from the sample: allocator step began {p50[0]:.1f} ms, sent "
            f"{p50[1]:.1f} ms, broker received {p50[2]:.1f} ms, first frame written "
            f"{p50[3]:.1f} ms, last {p50[4]:.1f} ms"
        )
        cpu = sorted(c.broker_cpu_ms for c in ph.cuts if c.broker_cpu_ms is not None)
        if cpu:
            wall = sorted(s[4] - s[2] for s in staged)
            text += (
                f" (broker received -> last frame: wall p50 {percentile(wall, 0.5):.1f} ms, "
                f"its loop's CPU p50 {percentile(cpu, 0.5):.1f} ms, min {cpu[0]:.1f} max "
                f"{cpu[-1]:.1f} ms for the same number of frames: how much the host's speed "
                "varies)"
            )
    text += (
        f"; loop lag (sampled every {EVERY_S:g} s) energy node {lag_text(ph.energy_lag)}, "
        f"broker {lag_text(ph.broker_lag)}"
    )
    if ph.loaded:
        rate = len(ph.load_ms) / ph.load_s if ph.load_s else 0.0
        text += (
            f"; background {rate:.0f} msg/s answered, round trip p50 "
            f"{percentile(ph.load_ms, 0.5):.1f} ms p99 {percentile(ph.load_ms, 0.99):.1f} ms"
        )
    return text


def report(
    phases: list[Phase],
    scale: Scale,
    quick: bool,
    *,
    peers_aside: bool = True,
    cpu_affinity: str = "off",
    broker_shards: int = 1,
    realtime_energy: bool = False,
) -> list[str]:
    lines = [
        f"bench/energy.py {'--quick ' if quick else ''}on {os.cpu_count()} cores: edge in nodes "
        f"mode, SDM630 simulator polled every {POLL_INTERVAL_S:g} s, cars in "
        f"{scale.car_workers} processes; {scale.bg_cps} other charge points connected (2 "
        f"processes), silent when idle, {scale.bg_rate_hz:g} msg/s each when loaded; "
        + (
            "the simulated peers (cars, cloud, other charge points) at the lowest CPU priority, "
            "as if on their own processors (bench/peers.py)"
            if peers_aside
            else "the simulated peers at the edge's CPU priority (--peers-compete)"
        )
        + (
            "; each edge node's loop on a CPU of its own (--cpu-affinity auto)"
            if cpu_affinity == "auto"
            else "; the edge's nodes placed by the scheduler (cpu_affinity off, the default)"
        )
        + (
            f"; {broker_shards} broker nodes (--broker-shards), the charge points spread over "
            "them; the broker's CPU is theirs together, its loop lag the first's"
            if broker_shards > 1
            else ""
        )
        + (
            "; the energy node's loop at real-time priority (--realtime-energy)"
            if realtime_energy
            else ""
        )
    ]
    lines += [phase_line(ph) for ph in sorted(phases, key=lambda p: (p.n, p.loaded))]
    biggest = max(scale.cars)
    # The target is on the last SetChargingProfile written (the words); what the cars
    # received is printed beside it.
    p99 = {
        ph.loaded: percentile(sorted(_written(c) for c in ph.cuts), 0.99)
        for ph in phases
        if ph.n == biggest
    }
    received = {
        ph.loaded: percentile(sorted(c.last_ms for c in ph.cuts), 0.99)
        for ph in phases
        if ph.n == biggest
    }
    worst = max(p99.values(), default=0.0)
    scope = f"target p99 <= {TARGET_MS:g} ms at {TARGET_N} charge points"
    verdict = "ok" if worst <= TARGET_MS else "MISSED"
    if biggest != TARGET_N:
        # A smaller site says nothing about the target's: its figures, no verdict.
        scope += f" (this run stops at {biggest})"
        verdict = f"not judged at {biggest}"
    lines.append(
        f"{scope}, meter sample -> last SetChargingProfile written: idle "
        f"{p99.get(False, 0.0):.1f} ms, loaded {p99.get(True, 0.0):.1f} ms: "
        f"{verdict} (received by the cars: idle "
        f"{received.get(False, 0.0):.1f} ms, loaded {received.get(True, 0.0):.1f} ms)"
    )
    lines.append(energy_node_line(phases, biggest))
    return lines


def energy_node_line(phases: list[Phase], n: int) -> str:
    """The issue's "the energy node's loop unaffected by broker load", idle against loaded at
    the biggest scale: the energy node's own part of the figure (meter sample -> its batch
    handed to the broker), its step, and its loop's lag; the broker's lag beside it."""
    by_load = {ph.loaded: ph for ph in phases if ph.n == n}
    if set(by_load) != {False, True}:
        return f"energy node under broker load: not measured (N={n} has no idle and loaded phase)"
    parts = []
    for loaded in (False, True):
        ph = by_load[loaded]
        began = sorted(c.stages[0] for c in ph.cuts if c.stages is not None)
        sent = sorted(c.stages[1] for c in ph.cuts if c.stages is not None)
        making = sorted(c.stages[1] - c.stages[0] for c in ph.cuts if c.stages is not None)
        steps = sorted(c.step_ms for c in ph.cuts if c.step_ms is not None)
        parts.append(
            f"{'loaded' if loaded else 'idle'}: sample -> step began p50 "
            f"{percentile(began, 0.5):.1f} ms p99 {percentile(began, 0.99):.1f} ms, -> batch "
            f"handed to the broker p50 {percentile(sent, 0.5):.1f} ms p99 "
            f"{percentile(sent, 0.99):.1f} ms (the step until then p50 "
            f"{percentile(making, 0.5):.1f} ms p99 {percentile(making, 0.99):.1f} ms), step p50 "
            f"{percentile(steps, 0.5):.1f} ms, CPU {ph.energy_cpu_pct:.0f}%, loop lag "
            f"{lag_text(ph.energy_lag)} (the broker's {lag_text(ph.broker_lag)})"
        )
    return (
        f"energy node under broker load, N={n} (its own process and loop; what the load can take "
        f"is CPU on the shared cores): " + "; ".join(parts)
    )


def _written(c: Cut) -> float:
    """A step the edge did not report counts at what the cars received (never better)."""
    return c.last_ms if c.written_ms is None else c.written_ms
