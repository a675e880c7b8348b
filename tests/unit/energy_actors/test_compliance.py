"""Compliance: a connector that ignores its profile is flagged over a window, and its excess
becomes fixed load the others make room for."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from actors.allocation import allocate
from actors.allocation_types import AllocationConfig, PerPhase
from actors.compliance import (
    ComplianceConfig,
    Tracker,
    allowed_at,
    as_fixed_load,
    limit_set,
    observe,
)
from tests.unit.energy.builders import car, node

CFG = ComplianceConfig(tolerance_a=2.0, grace_s=30.0, react_s=10.0, window_s=300.0)


def phases(a: float) -> PerPhase:
    return (a, a, a)


def run(
    samples: list[tuple[float, float]], *, limits: list[tuple[float, float]] | None = None
) -> Tracker:
    """Limits ``(at_s, limit_a)`` (default: 16 A from t=0) and samples ``(at_s, measured_a)``."""
    t = Tracker()
    events: list[tuple[float, int, float]] = [(s, 0, a) for s, a in (limits or [(0.0, 16.0)])]
    events += [(s, 1, a) for s, a in samples]
    for at, kind, value in sorted(events):
        if kind == 0:
            t = limit_set(t, phases(value), now_s=at, cfg=CFG)
        else:
            t = observe(t, phases(value), at_s=at, cfg=CFG)
    return t


@pytest.mark.parametrize(
    ("samples", "limits", "flagged"),
    [
        pytest.param([(20, 16.0), (40, 16.5), (60, 17.0)], None, False, id="follows"),
        pytest.param([(20, 17.9), (40, 17.9), (80, 17.9)], None, False, id="within-tolerance"),
        pytest.param([(20, 25.0), (40, 25.0)], None, False, id="over-shorter-than-grace"),
        pytest.param([(20, 25.0), (35, 25.0), (50, 25.0)], None, True, id="over-for-grace"),
        pytest.param(
            [(20, 25.0), (35, 16.0), (50, 25.0), (65, 25.0)], None, False, id="run-interrupted"
        ),
        pytest.param([(5, 30.0), (9, 30.0)], None, False, id="first-limit-too-young-to-judge"),
        pytest.param(
            # 32 A until t=100, then 16 A: draws of 30 A are fine until t=110 (react_s).
            [(102, 30.0), (108, 30.0), (112, 16.0), (150, 16.0)],
            [(0.0, 32.0), (100.0, 16.0)],
            False,
            id="decrease-gets-react-time",
        ),
        pytest.param(
            [(111, 30.0), (125, 30.0), (142, 30.0)],
            [(0.0, 32.0), (100.0, 16.0)],
            True,
            id="ignores-a-decrease",
        ),
    ],
)
def test_flag_over_window(
    samples: list[tuple[float, float]], limits: list[tuple[float, float]] | None, flagged: bool
) -> None:
    assert run(samples, limits=limits).flagged is flagged


def test_flag_clears_only_after_grace_within_limit() -> None:
    t = run([(20, 25.0), (35, 25.0), (50, 25.0)])
    assert t.flagged
    t = observe(t, phases(16.0), at_s=60, cfg=CFG)
    assert t.flagged, "one good sample does not clear the flag"
    t = observe(t, phases(16.0), at_s=95, cfg=CFG)
    assert not t.flagged


def test_old_or_repeated_samples_are_ignored() -> None:
    t = run([(20, 25.0), (35, 25.0)])
    again = observe(t, phases(25.0), at_s=35, cfg=CFG)
    assert again == t
    older = observe(t, phases(25.0), at_s=30, cfg=CFG)
    assert older == t


def test_allowed_at_takes_the_highest_limit_within_react_time() -> None:
    t = Tracker()
    t = limit_set(t, phases(32.0), now_s=0, cfg=CFG)
    t = limit_set(t, phases(10.0), now_s=50, cfg=CFG)
    t = limit_set(t, phases(20.0), now_s=55, cfg=CFG)
    assert allowed_at(t, 5, CFG) is None
    assert allowed_at(t, 52, CFG) == phases(32.0)
    assert allowed_at(t, 58, CFG) == phases(32.0)
    assert allowed_at(t, 62, CFG) == phases(20.0)


@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=10), st.floats(min_value=0, max_value=40)),
        min_size=1,
        max_size=30,
    )
)
def test_a_connector_within_its_limit_is_never_flagged(steps: list[tuple[float, float]]) -> None:
    t = limit_set(Tracker(), phases(16.0), now_s=0, cfg=CFG)
    at = 10.0
    for gap, draw in steps:
        at += gap + 0.01
        t = observe(t, phases(min(draw, 16.0 + CFG.tolerance_a)), at_s=at, cfg=CFG)
        assert not t.flagged


def _allowed_by_definition(
    history: list[tuple[float, float]], at_s: float, cfg: ComplianceConfig
) -> float | None:
    """allowed_at as the module states it, over the whole history: the limit in force at
    ``at_s - react_s`` and every one set since (up to ``at_s``)."""
    before = [a for since, a in history if since <= at_s - cfg.react_s]
    if not before:
        return None
    return max([before[-1], *(a for since, a in history if at_s - cfg.react_s < since <= at_s)])


@given(
    st.lists(
        st.tuples(st.floats(min_value=0.1, max_value=120), st.sampled_from([0.0, 6.0, 10.0, 16.0])),
        min_size=1,
        max_size=60,
    ),
    st.floats(min_value=0, max_value=400),
)
# a sample window_s old, judged against a limit set react_s before the horizon of the pruning
@example([(1.0, 0.0), (1.0, 6.0), (1.0, 0.0), (59.0, 0.0), (120.0, 0.0), (120.0, 6.0)], 291.0)
def test_pruned_history_answers_as_the_whole_history(
    changes: list[tuple[float, float]], late_s: float
) -> None:
    """The tracker keeps only the limits it may still need (pruned on every change, scanned
    from the newest): a sample up to ``window_s`` old is judged against the same limit as with
    the whole history kept."""
    cfg = ComplianceConfig(tolerance_a=2.0, grace_s=30.0, react_s=10.0, window_s=300.0)
    t, now, history = Tracker(), 0.0, []
    for gap, limit in changes:
        now += gap
        t = limit_set(t, phases(limit), now_s=now, cfg=cfg)
        if not history or history[-1][1] != limit:
            history.append((now, limit))
    assert len(t.limits) <= len(history)
    at = now - min(late_s, cfg.window_s)
    expected = _allowed_by_definition(history, at, cfg)
    assert allowed_at(t, at, cfg) == (None if expected is None else phases(expected))


# --- fixed load ------------------------------------------------------------------------------


def test_unmetered_node_loses_the_draw_and_the_others_share_what_is_left() -> None:
    nodes = [node("site", limit_a=63.0), node("garage", parent="site", limit_a=32.0)]
    demands = [
        car("bad", node="garage", measured_a=(24.0, 24.0, 24.0), settled=True, offered_a=16.0),
        car("good", node="garage", measured_a=(16.0, 16.0, 16.0), settled=True, offered_a=16.0),
    ]
    fixed = as_fixed_load(nodes, demands, ["bad"], meters_trusted=True)
    garage = next(n for n in fixed.nodes if n.name == "garage")
    assert garage.limit.current_a == (8.0, 8.0, 8.0)
    assert "less 24.0 A drawn by bad" in garage.limit.sources[0]
    site = next(n for n in fixed.nodes if n.name == "site")
    assert site.limit.current_a == (39.0, 39.0, 39.0)
    assert fixed.draw_by_connector["bad"] == (24.0, 24.0, 24.0)
    assert [d.connector_id for d in fixed.demands] == ["good"]
    cfg = AllocationConfig(margin_a=0.0)
    before = allocate(nodes, demands, cfg).limits()
    after = allocate(list(fixed.nodes), list(fixed.demands), cfg).limits()
    assert after["good"] < before["good"]
    # What the garage breaker carries: the offender's real draw plus what the others get.
    assert 24.0 + after["good"] <= 32.0 + 1e-6


def test_a_power_limit_on_an_unmetered_node_loses_the_draw_too() -> None:
    # Two connectors under one charge point's section 14a dimming (4.2 kW: 18.26 A in all):
    # one ignores its profile at 6 A a phase; the other gets what the total has left.
    nodes = [
        node("site", limit_a=63.0, meter_a=(20.0, 20.0, 20.0)),
        node("cp", parent="site", limit_a=math.inf, total_a=4200 / 230),
    ]
    demands = [
        car("bad", node="cp", measured_a=(6.0, 6.0, 6.0), settled=True, offered_a=6.0),
        car("good", node="cp", phases=1, measured_a=(8.0, 0.0, 0.0), offered_a=8.0),
    ]
    fixed = as_fixed_load(nodes, demands, ["bad"], meters_trusted=True)
    cp = next(n for n in fixed.nodes if n.name == "cp")
    assert cp.limit.total_a == pytest.approx(4200 / 230 - 18.0)
    assert "less 18.0 A drawn by bad" in cp.limit.total_source
    after = allocate(list(fixed.nodes), list(fixed.demands), AllocationConfig()).limits()
    assert after["good"] == 0.0  # 0.26 A left: below the 6 A minimum


def test_metered_node_keeps_its_limit_the_meter_sees_the_draw() -> None:
    nodes = [node("site", limit_a=32.0, meter_a=(40.0, 40.0, 40.0))]
    demands = [
        car("bad", measured_a=(24.0, 24.0, 24.0), settled=False, offered_a=16.0),
        car("good", measured_a=(16.0, 16.0, 16.0), settled=False, offered_a=16.0),
    ]
    fixed = as_fixed_load(nodes, demands, ["bad"], meters_trusted=True)
    assert fixed.nodes[0].limit == nodes[0].limit
    cfg = AllocationConfig(margin_a=0.0)
    after = allocate(list(fixed.nodes), list(fixed.demands), cfg).limits()
    assert 24.0 + after["good"] <= 32.0 + 1e-6
    untrusted = as_fixed_load(nodes, demands, ["bad"], meters_trusted=False)
    assert untrusted.nodes[0].limit.current_a == (8.0, 8.0, 8.0), "fail-safe ignores meters"


def test_one_phase_offender_only_lowers_its_grid_phase() -> None:
    nodes = [node("site", limit_a=32.0)]
    demands = [car("bad", phases=1, rotation="SRT", measured_a=(20.0, 0.0, 0.0), offered_a=10.0)]
    fixed = as_fixed_load(nodes, demands, ["bad"], meters_trusted=True)
    assert fixed.nodes[0].limit.current_a == (32.0, 12.0, 32.0)


def test_inactive_flagged_connector_stays_in() -> None:
    nodes = [node("site", limit_a=32.0)]
    demands = [car("gone", active=False, measured_a=(20.0, 20.0, 20.0))]
    fixed = as_fixed_load(nodes, demands, ["gone"], meters_trusted=True)
    assert fixed.nodes[0].limit == nodes[0].limit
    assert fixed.demands == tuple(demands)
