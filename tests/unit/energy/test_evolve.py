"""``evolve`` gives what ``dataclasses.replace`` gives, for every class the control loop copies."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mypy import api as mypy_api

from actors.allocation_types import Binding, ConnectorDemand
from actors.car_learning import CarKnowledge
from actors.compliance import ComplianceConfig, Tracker
from actors.control_types import ConnectorDecision, ConnectorState, FailSafe
from actors.evolve import evolve

DEMAND = ConnectorDemand(connector_id="CP1/1", node="site", active=True, max_current_a=16.0)
DECISION = ConnectorDecision(
    connector_id="CP1/1",
    previous_a=16.0,
    target_a=10.0,
    limit_a=10.0,
    action="decrease",
    binding=Binding(kind="node"),
    reason="decreased at once",
)
VALUES: dict[str, Any] = {
    "offered_a": st.floats(0, 32),
    "measured_a": st.tuples(st.floats(0, 32), st.floats(0, 32), st.floats(0, 32)),
    "settled": st.booleans(),
    "car_phases": st.lists(st.integers(0, 2), max_size=3).map(tuple),
    "idle": st.booleans(),
    "priority": st.integers(-5, 5),
}


@given(
    st.dictionaries(st.sampled_from(sorted(VALUES)), st.none()).flatmap(
        lambda keys: st.fixed_dictionaries({k: VALUES[k] for k in keys})
    )
)
def test_a_demand_evolves_as_replace_makes_it(changes: dict[str, Any]) -> None:
    assert evolve(DEMAND, **changes) == dataclasses.replace(DEMAND, **changes)


@pytest.mark.parametrize(
    ("obj", "changes"),
    [
        (ConnectorState(limit_a=16.0), {"limit_a": 0.0, "paused_s": 3.0, "charging_s": None}),
        (ConnectorState(), {"car": CarKnowledge(phases=(0,)), "replaced": ((1.0, 16.0),)}),
        (CarKnowledge(), {"probed": True, "min_a": 8.0, "idle": True}),
        (Tracker(), {"limits": ((1.0, (6.0, 6.0, 6.0)),)}),
        (DECISION, {"limit_a": 16.0, "action": "hold", "reason": "deferred"}),
        (DEMAND, {}),
    ],
)
def test_each_hot_class_evolves_as_replace_makes_it(obj: Any, changes: dict[str, Any]) -> None:
    got = evolve(obj, **changes)
    assert got == dataclasses.replace(obj, **changes)
    assert type(got) is type(obj)
    assert got is not obj


def test_an_unknown_field_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"ConnectorDemand has no field.*offered_w"):
        evolve(DEMAND, offered_w=3.0)


def test_a_class_with_post_init_still_validates() -> None:
    # FailSafe and ComplianceConfig check their values in __post_init__: evolve must not skip it
    with pytest.raises(ValueError, match="needs current_a, total_a or both"):
        evolve(FailSafe(), current_a=None)
    with pytest.raises(ValueError, match="grace_s must be >= 0"):
        evolve(ComplianceConfig(), grace_s=-1.0)


def test_a_frozen_dataclass_copy_stays_frozen() -> None:
    copy = evolve(FailSafe(current_a=6.0), current_a=8.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.current_a = 10.0  # type: ignore[misc]


def test_values_are_equal_and_hash_equal_as_frozen_ones_do() -> None:
    a = evolve(DEMAND, offered_a=6.0)
    b = ConnectorDemand(
        connector_id="CP1/1", node="site", active=True, max_current_a=16.0, offered_a=6.0
    )
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, DEMAND}) == 2


def test_a_value_is_read_only_to_the_type_checker(tmp_path: Path) -> None:
    """@value classes are frozen where it is checked: mypy --strict (make test) refuses an
    assignment to a field, as for a frozen dataclass."""
    snippet = tmp_path / "assign.py"
    snippet.write_text(
        "from actors.allocation_types import ConnectorDemand\n"
        "from actors.control_types import ConnectorDecision\n"
        "def f(d: ConnectorDemand, e: ConnectorDecision) -> None:\n"
        "    d.offered_a = 8.0\n"
        "    e.limit_a = 0.0\n"
    )
    out, _, status = mypy_api.run(
        [
            "--strict",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(snippet),
        ]
    )
    assert status == 1, out
    assert 'Property "offered_a" defined in "ConnectorDemand" is read-only' in out
    assert 'Property "limit_a" defined in "ConnectorDecision" is read-only' in out
