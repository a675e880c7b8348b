"""The control loop counts each car once, whatever the age of its last sample.

The meter is read every second, a charge point reports its draw every 10-60 s. These tests put
the two out of step the way a site does: a car's limit changes, the meter shows its new draw at
once, its own sample still shows the old one.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from actors.allocation_types import ConnectorDemand
from actors.car_learning import NEVER_SAMPLED
from actors.control_loop import ConnectorState, LoopState, StepResult, step
from tests.unit.energy.builders import car, node, phases
from tests.unit.energy.test_control_loop import CFG

BASE_A = 8.0  # headroom on a 32 A site: 32 - 1 margin - 8 = 23 A


def charging(limit_a: float, since_s: float = -1000.0) -> ConnectorState:
    return ConnectorState(limit_a=limit_a, changed_s=since_s, charging_s=since_s)


def demand(
    cid: str,
    draw_a: float,
    sampled_s: float | None,
    *,
    max_a: float = 32.0,
    arrived_s: float = 0,
    priority: int = 0,
) -> ConnectorDemand:
    d = car(cid, measured_a=phases(draw_a), max_a=max_a, arrived_s=arrived_s, priority=priority)
    return replace(d, sampled_s=sampled_s)


def at(
    state: LoopState, now_s: float, meter_a: float, demands: list[ConnectorDemand]
) -> StepResult:
    nodes = [node(limit_a=32.0, meter_a=phases(meter_a), read_s=now_s)]
    return step(state, nodes, demands, now_s=now_s, cfg=CFG)


@pytest.mark.parametrize(
    ("b_sample", "seconds_after_resume"),
    [
        pytest.param((95.0, 0.0), 2.0, id="sample-before-resume-2s"),
        pytest.param((95.0, 0.0), 30.0, id="sample-before-resume-30s"),
        pytest.param((101.0, 0.0), 4.0, id="sample-while-ramping"),
        pytest.param((101.5, 6.0), 4.0, id="sample-shows-it-followed"),
        pytest.param((NEVER_SAMPLED, 0.0), 2.0, id="never-sampled"),
    ],
)
def test_a_resumed_car_is_not_paused_when_the_meter_shows_its_draw_before_its_sample(
    b_sample: tuple[float, float], seconds_after_resume: float
) -> None:
    # "a" (served first) is capped by its car at 16 A, "b" was paused long ago: 23 - 16 = 7 A
    # fits b at 6 A plus the 1 A a resume needs.
    paused = ConnectorState(limit_a=0.0, changed_s=0.0, paused_s=0.0)
    state = LoopState(connectors={"a": charging(16.0), "b": paused})
    a = demand("a", 16.0, 90.0, max_a=16.0, priority=1)
    first = at(state, 100.0, BASE_A + 16.0, [a, demand("b", 0.0, 95.0, arrived_s=1)])
    assert first.limits == {"a": 16.0, "b": 6.0}
    assert first.record.decisions[1].action == "resume"
    # b draws its 6 A now; the meter shows it, b's own sample does not (yet).
    sample_s, drawn = b_sample
    b = demand("b", drawn, sample_s, arrived_s=1)
    later = at(first.state, 100.0 + seconds_after_resume, BASE_A + 16.0 + 6.0, [a, b])
    assert later.limits == {"a": 16.0, "b": 6.0}, later.record.decisions[1].reason


def test_room_a_car_holds_but_does_not_draw_is_not_given_to_others() -> None:
    # "b" (its connector takes 6 A at most) was resumed at 6 A and does not draw (a car that
    # will not start at 6 A); its sample is older than the resume. "a" follows its offer.
    state = LoopState(
        connectors={"a": charging(10.0), "b": charging(6.0, since_s=100.0)},
        last_change_s=100.0,
    )
    for now in (110.0, 120.0, 130.0, 140.0):
        a_limit = state.connectors["a"].limit_a
        b = demand("b", 0.0, 95.0, arrived_s=1, max_a=6.0)
        demands = [demand("a", a_limit, now - 1.0), b]
        result = at(state, now, BASE_A + a_limit, demands)
        state = result.state
        # What the site can carry: 23 A, of which b's limit holds 6 whether it draws or not.
        assert result.limits["a"] + result.limits["b"] <= 23.0 + 1e-9, (now, result.limits)
    assert state.connectors["a"].limit_a == 17.0


@pytest.mark.parametrize(
    ("sample_s", "draw_a", "now_s", "expected"),
    [
        pytest.param(101.0, 7.0, 110.0, 10.0, id="sample-while-ramping-holds"),
        pytest.param(101.5, 9.5, 110.0, 14.0, id="sample-shows-it-followed"),
        pytest.param(107.5, 9.8, 110.0, 14.0, id="sample-after-settle"),
        pytest.param(99.0, 6.0, 110.0, 10.0, id="sample-before-the-change-holds"),
        pytest.param(99.0, 6.0, 130.0, 14.0, id="no-sample-for-sample-wait-increases"),
    ],
)
def test_an_increase_waits_for_a_sample_showing_the_draw_since_the_change(
    sample_s: float, draw_a: float, now_s: float, expected: float
) -> None:
    # Raised from 6 to 10 A at t=100.
    state = LoopState(connectors={"a": charging(10.0, since_s=100.0)}, last_change_s=100.0)
    result = at(state, now_s, BASE_A + 10.0, [demand("a", draw_a, sample_s)])
    assert result.limits == {"a": expected}


@pytest.mark.parametrize(
    ("headroom_a", "resumes"),
    [
        pytest.param(12.5, False, id="6.5A-left-stays-paused"),
        pytest.param(13.0, True, id="7A-left-resumes"),
    ],
)
def test_a_paused_connector_resumes_only_with_room_to_spare(
    headroom_a: float, resumes: bool
) -> None:
    # "a" (served first, its car takes 6 A at most) runs; "b" was paused long ago.
    paused = ConnectorState(limit_a=0.0, changed_s=0.0, paused_s=0.0)
    state = LoopState(connectors={"a": charging(6.0), "b": paused})
    a = demand("a", 6.0, 90.0, max_a=6.0, priority=1)
    meter = 32.0 - 1.0 - headroom_a + 6.0
    result = at(state, 100.0, meter, [a, demand("b", 0.0, 95.0, arrived_s=1)])
    assert result.limits == {"a": 6.0, "b": 6.0 if resumes else 0.0}
    if not resumes:
        assert "did not fit at 6.0 A (+1.0 A to start)" in result.record.decisions[1].reason


def test_a_running_connector_keeps_charging_with_less_room_than_a_resume_needs() -> None:
    # The hysteresis the other way: with 6.5 A left, b keeps running.
    state = LoopState(connectors={"a": charging(6.0), "b": charging(6.0)})
    demands = [
        demand("a", 6.0, 90.0, max_a=6.0, priority=1),
        demand("b", 6.0, 90.0, arrived_s=1),
    ]
    result = at(state, 100.0, 32.0 - 1.0 - 12.5 + 12.0, demands)
    assert result.limits["b"] >= 6.0


def test_others_give_way_to_a_paused_connector_only_when_it_can_start() -> None:
    # b (priority 1, its car takes 7 A at most) was paused 20 s ago; its 60 s pause dwell still
    # runs. a fills the site.
    paused = ConnectorState(limit_a=0.0, changed_s=80.0, paused_s=80.0)
    state = LoopState(connectors={"a": charging(23.0), "b": paused})

    def demands(a_a: float) -> list[ConnectorDemand]:
        b = demand("b", 0.0, 99.0, arrived_s=1, priority=1, max_a=7.0)
        return [demand("a", a_a, 99.0), b]

    waiting = at(state, 100.0, BASE_A + 23.0, demands(23.0))
    assert waiting.limits == {"a": 23.0, "b": 0.0}, "a is not lowered for a start that waits"
    assert "stays paused" in waiting.record.decisions[1].reason
    # The dwell is over: a gives way at once, b starts once that settled.
    give_way = at(waiting.state, 140.0, BASE_A + 23.0, demands(23.0))
    assert give_way.limits["b"] == 0.0
    assert give_way.limits["a"] == 23.0 - 7.0
    started = at(give_way.state, 148.0, BASE_A + 16.0, demands(16.0))
    assert started.limits == {"a": 16.0, "b": 6.0}
