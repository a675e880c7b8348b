"""Allocation with what the control loop learned about each car, and the start margin."""

from __future__ import annotations

from dataclasses import replace

import pytest

from actors.allocation import allocate
from actors.allocation_types import AllocationConfig, ConnectorDemand, NodeInput
from tests.unit.energy.builders import car, node

CFG = AllocationConfig(margin_a=1.0, min_current_a=6.0, draw_slack_a=1.0, resolution_a=0.1)


def learned(
    d: ConnectorDemand,
    *,
    car_phases: tuple[int, ...] = (),
    min_a: float = 0.0,
    idle: bool = False,
) -> ConnectorDemand:
    return replace(d, car_phases=car_phases, min_current_a=min_a, idle=idle)


@pytest.mark.parametrize(
    ("nodes", "cars", "start_margin_a", "expected"),
    [
        pytest.param(
            # Headroom 20/26/20 A. Counted on three phases, the 1-phase car leaves no room on
            # L1 and L3 for a fourth connector ...
            [node(limit_a=32, meter_a=(11, 5, 11))],
            [
                car("one", arrived_s=0),
                car("a", arrived_s=1),
                car("b", arrived_s=2),
                car("c", arrived_s=3),
            ],
            0.0,
            {"one": 6.6, "a": 6.6, "b": 6.6, "c": 0.0},
            id="one-phase-car-not-yet-known-holds-three-phases",
        ),
        pytest.param(
            # ... known to draw on L2 only, it leaves L1 and L3 to the others: all four fit.
            [node(limit_a=32, meter_a=(11, 5, 11))],
            [
                learned(car("one", arrived_s=0), car_phases=(1,)),
                car("a", arrived_s=1),
                car("b", arrived_s=2),
                car("c", arrived_s=3),
            ],
            0.0,
            {"one": 6.5, "a": 6.5, "b": 6.5, "c": 6.5},
            id="one-phase-car-known-holds-its-phase-only",
        ),
        pytest.param(
            # A rotated charge point: its car's L1 is the grid's L2.
            [node(limit_a=(32, 12, 32), meter_a=(0, 0, 0))],
            [learned(car("rot", rotation="STR", phases=3), car_phases=(0,))],
            0.0,
            {"rot": 11.0},
            id="learned-phase-follows-the-rotation",
        ),
        pytest.param(
            # 14 A: a car learned to need 8 A is admitted at 8 A, the other one gets 6 A.
            [node(limit_a=15)],
            [learned(car("zoe", arrived_s=1), min_a=8.0), car("b", arrived_s=2)],
            0.0,
            {"zoe": 8.0, "b": 6.0},
            id="learned-minimum-admitted-first-by-arrival",
        ),
        pytest.param(
            [node(limit_a=13)],
            [learned(car("zoe", arrived_s=1), min_a=8.0), car("b", arrived_s=2)],
            0.0,
            {"zoe": 12.0, "b": 0.0},
            id="learned-minimum-served-by-arrival",
        ),
        pytest.param(
            [node(limit_a=13)],
            [learned(car("zoe", arrived_s=2), min_a=8.0), car("b", arrived_s=1)],
            0.0,
            {"zoe": 0.0, "b": 12.0},
            id="learned-minimum-that-does-not-fit-pauses",
        ),
        pytest.param(
            [node(limit_a=13)],
            [
                learned(car("idle", arrived_s=1, offered_a=6.0), idle=True),
                car("draws", arrived_s=2, offered_a=6.0),
            ],
            0.0,
            {"idle": 6.0, "draws": 6.0},
            id="idle-kept-when-both-fit",
        ),
        pytest.param(
            [node(limit_a=12)],
            [
                learned(car("idle", arrived_s=1, offered_a=6.0), idle=True),
                car("draws", arrived_s=2, offered_a=6.0),
            ],
            0.0,
            {"idle": 0.0, "draws": 11.0},
            id="idle-served-after-a-later-car-that-draws",
        ),
        pytest.param(
            [node(limit_a=12)],
            [
                learned(car("idle", arrived_s=1, priority=1, offered_a=6.0), idle=True),
                car("draws", arrived_s=2, offered_a=6.0),
            ],
            0.0,
            {"idle": 11.0, "draws": 0.0},
            id="idle-keeps-its-priority",
        ),
        pytest.param(
            [node(limit_a=13.5)],
            [car("a", arrived_s=1, offered_a=6.0), car("b", arrived_s=2)],
            1.0,
            {"a": 12.5, "b": 0.0},
            id="start-needs-the-margin-6.5-left",
        ),
        pytest.param(
            [node(limit_a=14)],
            [car("a", arrived_s=1, offered_a=6.0), car("b", arrived_s=2)],
            1.0,
            {"a": 6.5, "b": 6.5},
            id="start-with-the-margin-7-left",
        ),
        pytest.param(
            [node(limit_a=13.5)],
            [car("a", arrived_s=1, offered_a=6.0), car("b", arrived_s=2, offered_a=6.0)],
            1.0,
            {"a": 6.2, "b": 6.2},
            id="running-connector-needs-no-start-margin",
        ),
    ],
)
def test_learned_figures_and_start_margin(
    nodes: list[NodeInput],
    cars: list[ConnectorDemand],
    start_margin_a: float,
    expected: dict[str, float],
) -> None:
    result = allocate(nodes, cars, CFG, start_margin_a=start_margin_a)
    assert result.limits() == pytest.approx(expected, abs=1e-9)


def test_a_paused_reason_says_why() -> None:
    nodes = [node(limit_a=12)]
    cars = [
        learned(car("idle", arrived_s=1, offered_a=6.0), idle=True),
        car("draws", arrived_s=2, offered_a=6.0),
        car("new", arrived_s=3),
    ]
    result = allocate(nodes, cars, CFG, start_margin_a=1.0)
    assert "it does not draw, so the cars that draw are served first" in result.of("idle").reason
    assert "did not fit at 6.0 A (+1.0 A to start)" in result.of("new").reason
    assert result.of("draws").grid_phases == ("L1", "L2", "L3")
    one = allocate(nodes, [learned(car("one", rotation="SRT"), car_phases=(0,))], CFG)
    assert one.of("one").grid_phases == ("L2",)
