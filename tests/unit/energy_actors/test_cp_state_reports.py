"""What a charge point's MeterValues make of its connectors' measured current
(ChargePointState.connector_reports): the energy node counts a car by it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actors.cp_state import ChargePointState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def state_with(*sampled: tuple[str, float]) -> ChargePointState:
    """A charge point whose connector 1 is charging and sent these Current.Import values
    (phase, A; "" for none)."""
    state = ChargePointState("CP1")
    state.on_call("StatusNotification", {"connectorId": 1, "status": "Charging"}, NOW)
    values = [
        {"measurand": "Current.Import", "unit": "A", "value": str(a), **({"phase": p} if p else {})}
        for p, a in sampled
    ]
    payload = {
        "connectorId": 1,
        "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": values}],
    }
    state.on_call("MeterValues", payload, NOW)
    return state


def measured(state: ChargePointState, phases: int) -> tuple[float, float, float] | None:
    (report,) = state.connector_reports(connected=True, now=NOW, phases=phases)
    return report.measured_a


@pytest.mark.parametrize("phase", ["L1", "L1-N"])
def test_a_1_phase_charge_point_that_names_its_phase_is_measured(phase: str) -> None:
    assert measured(state_with((phase, 15.5)), phases=1) == (15.5, 0.0, 0.0)


def test_a_3_phase_charge_point_with_one_phase_reported_is_not_taken_as_a_1_phase_car() -> None:
    # Its car may draw on three: counting it on one would hand its other phases to others.
    assert measured(state_with(("L1", 15.5)), phases=3) is None
    # Nor with a current that names no phase (one phase's, their mean or their sum?).
    assert measured(state_with(("L1", 15.5), ("", 16.0)), phases=3) is None
    assert measured(state_with(("", 16.0)), phases=3) is None


def test_every_phase_reported() -> None:
    state = state_with(("L1", 10.0), ("L2", 9.5), ("L3", 0.0))
    assert measured(state, phases=3) == (10.0, 9.5, 0.0)
    assert measured(state, phases=1) == (10.0, 9.5, 0.0)


def test_a_current_without_a_phase() -> None:
    assert measured(state_with(("", 12.0)), phases=1) == (12.0, 0.0, 0.0)
    assert measured(state_with(), phases=1) is None
