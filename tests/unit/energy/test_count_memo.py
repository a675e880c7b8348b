"""CountMemo: a step's count is always what count() makes of the step's inputs without it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from actors.allocation_types import ConnectorDemand
from actors.control_loop import finish, stepping
from actors.control_plan import Counted, CountMemo, count
from actors.control_types import ConnectorState, ControlConfig, LoopState
from tests.unit.energy.builders import car, node, phases
from tests.unit.energy.test_control_loop import CFG


def demand(
    cid: str = "a", *, draw_a: float = 8.0, sampled_s: float | None = 90.0
) -> ConnectorDemand:
    return replace(car(cid, measured_a=phases(draw_a), max_a=32.0), sampled_s=sampled_s)


def state(limit_a: float = 12.0, changed_s: float = 100.0, **kw: object) -> ConnectorState:
    return ConnectorState(limit_a=limit_a, changed_s=changed_s, charging_s=0.0, **kw)  # type: ignore[arg-type]


def fresh(
    demands: list[ConnectorDemand],
    known: dict[str, ConnectorState],
    now_s: float,
    cfg: ControlConfig = CFG,
) -> Counted:
    return count(demands, known, now_s=now_s, cfg=cfg)


def test_the_same_inputs_give_the_same_counts() -> None:
    memo, demands, known = CountMemo(), [demand()], {"a": state()}
    first = count(demands, known, now_s=120.0, cfg=CFG, memo=memo)
    assert first == fresh(demands, known, 120.0)
    again = count(demands, known, now_s=120.2, cfg=CFG, memo=memo)
    assert again == fresh(demands, known, 120.2)
    assert again.high[0] is first.high[0]  # reused, not made again
    assert again.low[0] is first.low[0]
    assert again.cars["a"] is first.cars["a"]


@pytest.mark.parametrize(
    ("st", "d", "times"),
    [
        # The car may still draw the limits it had within settle_s (7 s): 16 A (replaced at 98)
        # until 105, 13 A (replaced at 100) until 107; its sample (14 A) is older than the
        # change: it counts high at the largest of those, its sample and its offer (12 A).
        pytest.param(
            state(replaced=((98.0, 16.0), (100.0, 13.0))),
            demand(draw_a=14.0),
            [104.5, 105.5, 106.0],
            id="limits-it-may-still-draw",
        ),
        # The change settles at 107: the car counts at its offer (12 A), not at its sample.
        pytest.param(state(), demand(draw_a=14.0), [106.5, 107.5], id="change-settles"),
        # Without a sample time the sample is as fresh as the step: it reflects the offer from
        # 28.3 + 7 on, a step (35.3) where the settle time, in floating point, has not passed.
        pytest.param(
            state(changed_s=28.3), demand(draw_a=8.0, sampled_s=None), [35.2, 35.3], id="reflects"
        ),
    ],
)
def test_the_time_of_the_step_gives_counts_answer(
    st: ConnectorState, d: ConnectorDemand, times: list[float]
) -> None:
    memo, known = CountMemo(), {"a": st}
    answers = []
    for now_s in times:
        got = count([d], known, now_s=now_s, cfg=CFG, memo=memo)
        assert got == fresh([d], known, now_s), now_s
        answers.append(got)
    assert len({(c.high, c.low) for c in answers}) > 1  # the case does change the count


def test_each_changed_input_gives_counts_answer() -> None:
    memo, d, st = CountMemo(), demand(draw_a=14.0), state()
    count([d], {"a": st}, now_s=120.0, cfg=CFG, memo=memo)
    newer_demand = demand(draw_a=9.0)
    assert count([newer_demand], {"a": st}, now_s=120.2, cfg=CFG, memo=memo) == fresh(
        [newer_demand], {"a": st}, 120.2
    )
    newer_state = state(limit_a=20.0)
    got = count([newer_demand], {"a": newer_state}, now_s=120.4, cfg=CFG, memo=memo)
    assert got == fresh([newer_demand], {"a": newer_state}, 120.4)


def test_a_changed_config_gives_counts_answer() -> None:
    # A car offered the minimum that draws nothing gets a probe above it: probe_step_a more.
    memo, d, known = CountMemo(), demand(draw_a=0.0, sampled_s=110.0), {"a": state(limit_a=6.0)}
    first = count([d], known, now_s=120.0, cfg=CFG, memo=memo)
    probing = replace(CFG, probe_step_a=CFG.probe_step_a + 2.0)
    got = count([d], known, now_s=120.2, cfg=probing, memo=memo)
    assert got == fresh([d], known, 120.2, probing)
    assert got.high[0].min_current_a != first.high[0].min_current_a


def test_an_equal_but_new_demand_is_counted_again() -> None:
    """Identity, not equality: reports are immutable, so a new object is a new report."""
    memo, known = CountMemo(), {"a": state()}
    first = count([demand()], known, now_s=120.0, cfg=CFG, memo=memo)
    again = count([demand()], known, now_s=120.2, cfg=CFG, memo=memo)
    assert again == first
    assert again.high[0] is not first.high[0]


def test_the_memo_holds_the_last_counts_connectors_only() -> None:
    memo = CountMemo()
    count([demand("a"), demand("b")], {"a": state(), "b": state()}, now_s=120, cfg=CFG, memo=memo)
    assert len(memo) == 2
    count([demand("b")], {"b": state()}, now_s=121, cfg=CFG, memo=memo)
    assert len(memo) == 1


def test_a_connector_without_a_car_keeps_its_decision_object_with_a_memo() -> None:
    """The decision of a connector without a car is the same object from step to step while it
    stays so (SiteState keeps the status made of it); equal to the one made without a memo."""
    memo = CountMemo()
    nodes = [node(limit_a=32.0, meter_a=phases(2.0), read_s=100.0)]
    idle = [replace(car(f"e{i}"), active=False) for i in range(2)]
    state = LoopState()
    seen = []
    for now in (100.0, 101.0, 102.0):
        run = stepping(state, nodes, idle, now_s=now, cfg=CFG, memo=memo)
        decisions, _ = next(run)
        plain, _ = next(stepping(state, nodes, idle, now_s=now, cfg=CFG))
        assert decisions == plain
        seen.append(decisions)
        state = finish(run).state
    # the first step makes them; from the second on (the state parked) they are kept
    assert all(a is b for a, b in zip(seen[1], seen[2], strict=True))
    assert set(memo.parked) == {"e0", "e1"}
    # a car arrives at e0: planned like any other, its decision made anew
    arrived = [car("e0"), idle[1]]
    run = stepping(state, nodes, arrived, now_s=103.0, cfg=CFG, memo=memo)
    decisions, _ = next(run)
    assert decisions[0].binding.kind != "inactive"
    assert decisions[1] is seen[2][1]
    assert set(memo.parked) == {"e1"}
