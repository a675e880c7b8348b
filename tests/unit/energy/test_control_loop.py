"""The control loop over simulated time: ``now_s`` moves only when the test says so."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest

from actors.allocation_types import AllocationConfig, ConnectorDemand, NodeInput
from actors.car_learning import NEVER_SAMPLED
from actors.control_loop import (
    ConnectorState,
    ControlConfig,
    FailSafe,
    LoopState,
    StepResult,
    beginning,
    step,
)
from actors.energy_inputs import binding_source
from actors.energy_messages import CLOUD_PROFILE as CLOUD
from actors.energy_messages import FAILSAFE_CURRENT
from actors.evolve import evolve
from tests.unit.energy.builders import car, node, phases

CFG = ControlConfig(
    allocation=AllocationConfig(margin_a=1.0, min_current_a=6.0),
    settle_s=7.0,
    increase_step_a=4.0,
    min_pause_s=60.0,
    min_charge_s=60.0,
    stale_no_increase_s=3.0,
    stale_failsafe_s=10.0,
    failsafe=FailSafe(current_a=6.0),
)


def charging(limit_a: float, since_s: float = -1000.0) -> ConnectorState:
    return ConnectorState(limit_a=limit_a, changed_s=since_s, charging_s=since_s)


def site(
    base_a: float, limits: Mapping[str, float], *, limit_a: float = 32.0, read_s: float
) -> list[NodeInput]:
    """A metered site whose cars draw exactly their limits (3-phase)."""
    drawn = base_a + sum(limits.values())
    return [node(limit_a=limit_a, meter_a=phases(drawn), read_s=read_s)]


def cars_following(limits: Mapping[str, float], **extra: ConnectorDemand) -> list[ConnectorDemand]:
    out = [car(cid, measured_a=phases(a), arrived_s=i) for i, (cid, a) in enumerate(limits.items())]
    return out + list(extra.values())


def run(
    state: LoopState,
    base_a: float,
    now_s: float,
    *,
    read_s: float | None = None,
    cfg: ControlConfig = CFG,
    limit_a: float = 32.0,
    demands: list[ConnectorDemand] | None = None,
) -> StepResult:
    limits = {cid: st.limit_a for cid, st in state.connectors.items()}
    nodes = site(base_a, limits, limit_a=limit_a, read_s=now_s if read_s is None else read_s)
    return step(state, nodes, demands or cars_following(limits), now_s=now_s, cfg=cfg)


def two_cars_at(limit_a: float) -> LoopState:
    return LoopState(connectors={"a": charging(limit_a), "b": charging(limit_a)})


def test_overload_decreases_in_the_same_step() -> None:
    result = run(two_cars_at(16.0), base_a=10.0, now_s=100.0)
    assert result.limits == {"a": 10.5, "b": 10.5}
    assert {d.action for d in result.record.decisions} == {"decrease"}
    assert result.state.last_decrease_s == 100.0


@pytest.mark.parametrize(
    ("now_s", "expected"),
    [
        pytest.param(101.0, 10.5, id="1s-after-decrease"),
        pytest.param(106.9, 10.5, id="just-before-settle"),
        pytest.param(107.0, 14.5, id="at-settle-one-bounded-step"),
    ],
)
def test_increase_only_after_settle_and_bounded(now_s: float, expected: float) -> None:
    after_decrease = run(two_cars_at(16.0), base_a=10.0, now_s=100.0).state
    result = run(after_decrease, base_a=0.0, now_s=now_s)  # room for 15.5 each now
    assert result.limits == {"a": expected, "b": expected}


def test_ramp_reaches_target_in_settled_steps() -> None:
    state = run(two_cars_at(16.0), base_a=10.0, now_s=100.0).state
    seen = []
    for now in [107.0, 110.0, 114.0, 121.0]:
        state = run(state, base_a=0.0, now_s=now).state
        seen.append(state.connectors["a"].limit_a)
    assert seen == [14.5, 14.5, 15.5, 15.5]


@pytest.mark.parametrize(
    ("age_s", "expected", "mode"),
    [
        pytest.param(2.9, 14.0, "normal", id="fresh-increases"),
        pytest.param(3.0, 10.0, "no_increase", id="3s-old-holds"),
        pytest.param(9.9, 10.0, "no_increase", id="9.9s-old-holds"),
    ],
)
def test_stale_meter_blocks_increases(age_s: float, expected: float, mode: str) -> None:
    state = LoopState(connectors={"a": charging(10.0)})
    result = run(state, base_a=0.0, now_s=100.0, read_s=100.0 - age_s)
    assert result.limits == {"a": expected}
    assert result.record.mode == mode


def test_stale_meter_still_decreases() -> None:
    state = two_cars_at(16.0)
    result = run(state, base_a=10.0, now_s=100.0, read_s=95.0)
    assert result.record.mode == "no_increase"
    assert result.limits == {"a": 10.5, "b": 10.5}


@pytest.mark.parametrize(
    ("age_s", "expected"),
    [
        pytest.param(9.9, {"a": 15.5, "b": 15.5}, id="just-fresh-enough"),
        pytest.param(10.0, {"a": 6.0, "b": 6.0}, id="10s-fail-safe-6a"),
        pytest.param(600.0, {"a": 6.0, "b": 6.0}, id="long-dead"),
    ],
)
def test_fail_safe_after_10s(age_s: float, expected: dict[str, float]) -> None:
    result = run(two_cars_at(15.5), base_a=0.0, now_s=1000.0, read_s=1000.0 - age_s)
    assert result.limits == expected
    if age_s >= 10:
        assert result.record.mode == "failsafe"


def test_fail_safe_when_meter_never_read() -> None:
    nodes = [node(limit_a=32.0, metered=True)]
    result = step(two_cars_at(16.0), nodes, cars_following({"a": 16, "b": 16}), now_s=5.0, cfg=CFG)
    assert result.record.mode == "failsafe"
    assert result.limits == {"a": 6.0, "b": 6.0}


def test_fail_safe_total_budget_shared_by_priority() -> None:
    cfg = ControlConfig(
        allocation=CFG.allocation, failsafe=FailSafe(current_a=None, total_a=phases(20.0))
    )
    state = LoopState(connectors={cid: charging(16.0) for cid in "abcd"})
    result = run(state, base_a=0.0, now_s=100.0, read_s=0.0, cfg=cfg, limit_a=100.0)
    # 20 A per phase, margin 0: three fit at 6 A and share it (6.6 each), the last arrival pauses.
    assert result.limits == {"a": 6.6, "b": 6.6, "c": 6.6, "d": 0.0}
    assert "fail-safe budget" in result.record.decisions[0].binding.source


def test_fail_safe_names_what_binds_each_maximum() -> None:
    """The fail-safe current caps each connector's maximum: where it binds the decision names it;
    where the cloud's profile sets a lower maximum, the cloud's profile still binds."""
    cfg = ControlConfig(allocation=CFG.allocation, failsafe=FailSafe(current_a=10.0))
    state = two_cars_at(16.0)
    demands = [
        evolve(car(cid, measured_a=phases(16.0), arrived_s=i, max_a=max_a), max_source=CLOUD)
        for i, (cid, max_a) in enumerate([("a", 8.0), ("b", 12.0)])
    ]
    nodes = site(0.0, {"a": 16.0, "b": 16.0}, read_s=0.0)
    result = step(state, nodes, demands, now_s=100.0, cfg=cfg)
    assert result.record.mode == "failsafe"
    assert result.limits == {"a": 8.0, "b": 10.0}
    a, b = result.record.decisions
    assert (a.binding.source, b.binding.source) == (CLOUD, FAILSAFE_CURRENT)
    assert a.reason.endswith("maximum 8.0 A set by the cloud profile")
    assert b.reason.endswith("maximum 10.0 A set by the fail-safe current")
    # As the batch and the audit trail name them:
    assert [binding_source(d, "failsafe") for d in (a, b)] == [CLOUD, "fail-safe"]
    # A connector whose own rating holds it below the fail-safe current: its rating binds, and
    # batch and audit trail say so (they said fail-safe, beside a reason naming its maximum).
    own = run(
        LoopState(connectors={"c": charging(16.0)}),
        base_a=0.0,
        now_s=100.0,
        read_s=0.0,
        cfg=cfg,
        demands=[car("c", measured_a=phases(16.0), max_a=8.0)],
    )
    assert own.record.mode == "failsafe"
    assert own.limits == {"c": 8.0}
    (c,) = own.record.decisions
    assert c.reason.endswith("connector maximum 8.0 A")
    assert binding_source(c, "failsafe") == "car max"


def test_fail_safe_with_a_total_lets_a_stopped_connector_rise_to_the_budget_slowly() -> None:
    cfg = evolve(CFG, failsafe=FailSafe(current_a=6.0, total_a=(20.0, 20.0, 20.0)))
    state = LoopState(connectors={"a": ConnectorState(limit_a=0.0)})
    result = run(state, base_a=0.0, now_s=100.0, read_s=0.0, cfg=cfg, demands=[car("a")])
    assert result.limits == {"a": 6.0}
    assert result.record.mode == "failsafe"


def test_fail_safe_without_a_total_only_lowers_whatever_the_site_limit_leaves() -> None:
    # A 32 A fuse, 20 A of household load: "a" charges at 11 A, "b", "c" and "d" are paused
    # for want of room. The meter dies. The fuse alone is no budget (the household load is
    # unknown without the meter): nobody starts, "a" goes down to the fail-safe current.
    state = LoopState(
        connectors={
            "a": charging(11.0),
            **{k: ConnectorState(limit_a=0.0, changed_s=-1000.0, paused_s=-1000.0) for k in "bcd"},
        }
    )
    demands = [car("a", measured_a=phases(11.0), offered_a=11.0, settled=True)] + [
        car(k, arrived_s=i + 1) for i, k in enumerate("bcd")
    ]
    nodes = [node(limit_a=32.0, meter_a=phases(31.0), read_s=0.0)]
    seen: list[dict[str, float]] = []
    for now_s in (1.0, 11.0, 30.0, 60.0, 120.0, 300.0):
        result = step(state, nodes, demands, now_s=now_s, cfg=CFG)
        state = result.state
        seen.append(result.limits)
    assert result.record.mode == "failsafe"
    assert seen[0] == {"a": 11.0, "b": 0.0, "c": 0.0, "d": 0.0}  # the meter read 1 s ago
    assert all(s == {"a": 6.0, "b": 0.0, "c": 0.0, "d": 0.0} for s in seen[1:])
    (held,) = {d.reason for d in result.record.decisions if d.connector_id != "a"}
    assert "failsafe_total_a" in held


def test_dwell_keeps_a_fresh_start_at_minimum_instead_of_pausing() -> None:
    # "a" started 10 s ago; higher-priority "b" arrives. Headroom (11 - 1) fits only one at 6 A.
    state = LoopState(connectors={"a": charging(6.0, since_s=90.0)})
    demands = [car("a", measured_a=phases(6.0), arrived_s=0), car("b", priority=1, arrived_s=1)]
    result = run(state, base_a=0.0, now_s=100.0, limit_a=11.0, demands=demands)
    assert result.limits == {"a": 6.0, "b": 0.0}
    assert "dwell" in result.record.decisions[0].reason
    # After the dwell the allocation's choice applies: "a" pauses, "b" starts once settled.
    later = run(result.state, base_a=0.0, now_s=150.0, limit_a=11.0, demands=demands)
    assert later.limits == {"a": 0.0, "b": 0.0}
    demands_after = [car("a", arrived_s=0), car("b", priority=1, arrived_s=1)]
    started = run(later.state, base_a=0.0, now_s=157.0, limit_a=11.0, demands=demands_after)
    assert started.limits == {"a": 0.0, "b": 6.0}


def test_dwell_gives_way_when_a_physical_limit_would_be_exceeded() -> None:
    state = LoopState(connectors={"a": charging(6.0, since_s=90.0)})
    demands = [car("a", measured_a=phases(6.0))]
    # Base load 7 A on an 11 A breaker: 6 A more would exceed it even with no margin.
    result = run(state, base_a=7.0, now_s=100.0, limit_a=11.0, demands=demands)
    assert result.limits == {"a": 0.0}
    assert "physical limit" in result.record.decisions[0].reason


def test_paused_connector_waits_min_pause_before_resuming() -> None:
    paused = LoopState(connectors={"a": ConnectorState(limit_a=0.0, changed_s=100, paused_s=100)})
    for now, expected in [(110.0, 0.0), (159.9, 0.0), (160.0, 6.0)]:
        result = run(paused, base_a=0.0, now_s=now, demands=[car("a")])
        assert result.limits == {"a": expected}, now
    assert result.record.decisions[0].reason.startswith("resumed at 6.0 A")


def test_new_car_starts_only_after_the_decrease_it_caused_settled() -> None:
    state = LoopState(connectors={"a": charging(31.0)})
    demands = [car("a", measured_a=phases(31.0), arrived_s=0), car("b", arrived_s=5)]
    first = run(state, base_a=0.0, now_s=100.0, demands=demands)
    assert first.limits == {"a": 15.5, "b": 0.0}  # decrease at once, start deferred
    demands = [car("a", measured_a=phases(15.5), arrived_s=0), car("b", arrived_s=5)]
    assert run(first.state, base_a=0.0, now_s=106.0, demands=demands).limits["b"] == 0.0
    started = run(first.state, base_a=0.0, now_s=107.0, demands=demands)
    assert started.limits["b"] == 6.0
    assert started.record.decisions[1].reason.startswith("started at 6.0 A"), "never paused"


def test_car_leaving_stops_at_once_and_forgets_state() -> None:
    state = LoopState(connectors={"a": charging(16.0)})
    result = run(state, base_a=0.0, now_s=100.0, demands=[car("a", active=False)])
    assert result.limits == {"a": 0.0}
    assert result.record.decisions[0].action == "stop"
    assert result.state.connectors["a"].charging_s is None


def test_record_carries_inputs_binding_and_reason() -> None:
    result = run(two_cars_at(16.0), base_a=10.0, now_s=100.0)
    record = result.record
    assert record.now_s == 100.0
    assert record.meter_age_s == 0.0
    assert [d.connector_id for d in record.demands] == ["a", "b"]
    assert record.demands[0].offered_a == 16.0  # the loop's own knowledge of its offer
    decision = record.decisions[0]
    assert (decision.previous_a, decision.target_a, decision.limit_a) == (16.0, 10.5, 10.5)
    assert decision.binding.source == "fuse"
    assert decision.binding.node == "site"
    assert "decreased at once" in decision.reason
    assert "fuse" in decision.reason
    assert record.changed() == record.decisions
    steady = run(result.state, base_a=10.0, now_s=101.0)
    assert steady.record.changed() == ()


@pytest.mark.parametrize(
    ("car_max_draw_a", "settles_at"),
    [
        pytest.param(8.0, 9.0, id="car-limited-to-8a-settles-at-9"),
        pytest.param(13.6, 14.6, id="car-limited-to-13.6a"),
        pytest.param(40.0, 31.0, id="unlimited-car-takes-the-headroom"),
    ],
)
def test_no_oscillation_with_a_car_that_draws_less_than_offered(
    car_max_draw_a: float, settles_at: float
) -> None:
    """The car draws min(offer, its own limit); the loop runs every 2 s for 5 minutes."""
    state = LoopState()
    history = []
    for i in range(150):
        now = 100.0 + 2.0 * i
        offer = state.connectors["a"].limit_a if "a" in state.connectors else 0.0
        draw = min(offer, car_max_draw_a)
        nodes = [node(limit_a=32.0, meter_a=phases(draw), read_s=now)]
        state = step(state, nodes, [car("a", measured_a=phases(draw))], now_s=now, cfg=CFG).state
        history.append(state.connectors["a"].limit_a)
    assert history[-1] == settles_at
    assert len(set(history[-60:])) == 1, history[-60:]


def test_connectors_without_a_car_change_nothing_for_the_others() -> None:
    """Connectors with no car, no draw and no limit are decided apart from the plans: the cars
    get exactly what they get without them, step after step, and the empty ones stay at 0 A."""
    empty = [car(f"e{i}", active=False) for i in range(3)]
    with_empty, alone = two_cars_at(16.0), two_cars_at(16.0)
    for now, base in [(100.0, 10.0), (101.0, 10.0), (110.0, 2.0), (120.0, 2.0), (130.0, 25.0)]:
        limits = {cid: st.limit_a for cid, st in alone.connectors.items()}
        nodes = site(base, limits, read_s=now)
        a = step(with_empty, nodes, [*cars_following(limits), *empty], now_s=now, cfg=CFG)
        b = step(alone, nodes, cars_following(limits), now_s=now, cfg=CFG)
        assert {k: v for k, v in a.limits.items() if not k.startswith("e")} == b.limits, now
        assert [a.limits[d.connector_id] for d in empty] == [0.0, 0.0, 0.0]
        for dec in a.record.decisions[2:]:
            assert (dec.action, dec.binding.kind) == ("unchanged", "inactive")
            assert dec.reason.startswith("no car wants energy")
        assert [d.connector_id for d in a.record.demands] == ["a", "b", "e0", "e1", "e2"]
        with_empty, alone = a.state, b.state
    assert {"e0", "e1", "e2"} <= set(with_empty.connectors)
    # A car arriving at one of them is planned like any other.
    limits = {cid: st.limit_a for cid, st in alone.connectors.items()}
    arriving = [*cars_following(limits), car("e0", arrived_s=50)]
    result = step(with_empty, site(2.0, limits, read_s=140.0), arriving, now_s=140.0, cfg=CFG)
    assert result.record.decisions[2].binding.kind != "inactive"


def arriving_at(
    a: ConnectorState,
    sampled_a: float,
    *,
    limit_a: float,
    cfg: ControlConfig = CFG,
    base_a: float = 4.0,
    read_s: float = 99.5,
) -> StepResult:
    """Car "a" in state ``a`` (its last sample ``sampled_a``, taken at 90 s; it draws its limit
    now), and car "b" whose session begins at 100 s under the TxDefaultProfile, before its
    first sample and before the meter (read at ``read_s``) shows it: the loop's first step for
    "b"."""
    state = LoopState(connectors={"a": a, "b": beginning(100.0, cfg)})
    meter = base_a + a.limit_a  # what "a" draws; "b" not yet
    nodes = [node(limit_a=limit_a, meter_a=phases(meter), read_s=read_s)]
    demands = [
        evolve(car("a", measured_a=phases(sampled_a), arrived_s=1.0), sampled_s=90.0),
        evolve(car("b", arrived_s=2.0), sampled_s=NEVER_SAMPLED),
    ]
    return step(state, nodes, demands, now_s=100.0, cfg=cfg)


def test_a_beginning_car_that_fits_is_kept_and_the_others_give_way_in_that_step() -> None:
    """The meter does not show "b" yet: it is not taken off the base load (room seen that is not
    there), so "a", above its share, is lowered in the same step and "b" keeps its 6 A."""
    result = arriving_at(charging(20.0), 20.0, limit_a=32.0)
    assert result.limits == {"a": 13.5, "b": 6.0}  # 32 - 1 margin - 4 base = 27: 13.5 each
    a, b = result.record.decisions
    assert (a.action, b.action, b.limit_a) == ("decrease", "hold", 6.0)
    assert b.reason.startswith("its session began under the TxDefaultProfile at 6.0 A; ")
    assert result.state.connectors["b"].charging_s == 100.0, "from now on, its charging dwell"


def test_a_beginning_car_without_room_on_the_low_count_is_paused_and_nobody_gives_way() -> None:
    """ "a" was raised from 6 to 20 A 2 s ago and draws it (the meter shows it), its sample still
    says 6 A: 20 A of room for "b" and "a" if "a" follows its offer, 6 A if it does not (the low
    count, on which starts go). "b" is paused at once, and "a" is not lowered for it."""
    raised = ConnectorState(limit_a=20.0, changed_s=98.0, charging_s=50.0, replaced=((98.0, 6.0),))
    result = arriving_at(raised, 6.0, limit_a=25.0)
    assert result.limits == {"a": 20.0, "b": 0.0}
    b = result.record.decisions[1]
    assert b.action == "pause"
    assert "paused at once: no room at the minimum current" in b.reason
    assert result.state.connectors["b"].charging_s is None


def test_a_connector_held_at_0_a_is_paused_at_once_even_within_its_charging_dwell() -> None:
    """Its maximum fell below the minimum (an energy cap reached, a cloud profile of 0 A): the
    dwell that keeps a car charging at 6 A for ``min_charge_s`` after a start does not hold it."""
    state = LoopState(connectors={"a": charging(10.0, since_s=90.0)})
    nodes = site(4.0, {"a": 10.0}, read_s=100.0)
    capped = evolve(car("a", measured_a=phases(10.0)), max_current_a=0.0, max_source="energy cap")
    result = step(state, nodes, [capped], now_s=100.0, cfg=CFG)
    assert result.limits == {"a": 0.0}
    (decision,) = result.record.decisions
    assert decision.action == "pause"
    assert "maximum 0.0 A (set by the energy cap) is below the minimum" in decision.reason


@pytest.mark.parametrize(
    ("read_s", "mode", "why"),
    [
        pytest.param(95.0, "no_increase", "no new load while meter data is stale", id="stale"),
        pytest.param(80.0, "failsafe", "meter data lost, and no fail-safe total", id="lost"),
    ],
)
def test_a_beginning_car_is_paused_at_once_while_meter_data_is_stale(
    read_s: float, mode: str, why: str
) -> None:
    """Its draw would be load the loop cannot see (as an increase would); nobody gives way to
    it. In the fail-safe mode with a fail-safe total it may keep its default within it."""
    result = arriving_at(charging(20.0), 20.0, limit_a=32.0, read_s=read_s)
    assert result.record.mode == mode
    a, b = result.record.decisions
    assert (b.action, b.limit_a) == ("pause", 0.0)
    assert f"paused at once: {why}" in b.reason
    if mode == "no_increase":
        assert a.limit_a == 20.0, "not lowered for a car that does not start"
    total = replace(CFG, failsafe=FailSafe(current_a=6.0, total_a=phases(31.0)))
    kept = arriving_at(charging(20.0), 20.0, limit_a=32.0, read_s=80.0, cfg=total)
    assert kept.limits["b"] == 6.0, kept.record.decisions[1].reason


@pytest.mark.parametrize(("base_a", "expected"), [(4.0, 8.0), (20.0, 0.0)])
def test_a_default_below_the_sites_minimum_is_raised_to_it_or_paused_at_once(
    base_a: float, expected: float
) -> None:
    """``min_current_a`` 8 A, the TxDefaultProfile 6 A (``failsafe_current_a``): the car draws
    the 6 A (counted there) and its first decision takes it to 8 A or to 0, never leaves it in
    between."""
    cfg = replace(CFG, allocation=AllocationConfig(margin_a=1.0, min_current_a=8.0))
    assert beginning(100.0, cfg).limit_a == 6.0
    result = arriving_at(charging(8.0), 8.0, limit_a=32.0, cfg=cfg, base_a=base_a)
    assert result.limits["b"] == expected, result.record.decisions[1].reason
    load = base_a + sum(result.limits.values())
    assert load <= 32.0 - 1.0, load


def test_a_default_above_the_share_is_lowered_and_the_others_give_way() -> None:
    """A TxDefaultProfile of 16 A (``failsafe_current_a``) where the car's share is 13.5 A: it is
    lowered to its share, not paused, and the others are planned with it (they give way)."""
    cfg = replace(CFG, failsafe=FailSafe(current_a=16.0))
    result = arriving_at(charging(20.0), 20.0, limit_a=32.0, cfg=cfg)
    assert result.limits == {"a": 13.5, "b": 13.5}


def test_a_beginning_car_with_room_goes_up_as_a_start_from_0_a_would() -> None:
    """Nobody has to give way: its first decision is what a start would be (the larger of its
    minimum and ``increase_step_a``, up to its target), not a hold at the default until its
    first sample."""
    cfg = replace(CFG, increase_step_a=32.0)
    result = arriving_at(charging(10.0), 10.0, limit_a=32.0, cfg=cfg)
    assert result.limits == {"a": 13.5, "b": 13.5}
    b = result.record.decisions[1]
    assert (b.action, b.previous_a) == ("increase", 6.0)
    assert "started at 13.5 A" in b.reason
    held = arriving_at(charging(10.0), 10.0, limit_a=32.0)  # increase_step_a 4: a start's 6 A
    assert held.limits["b"] == 6.0
