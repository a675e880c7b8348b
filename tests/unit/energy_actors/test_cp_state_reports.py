"""What a charge point's MeterValues make of its connectors' measured current
(ChargePointState.connector_reports): the energy node counts a car by it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actors.cp_state import ChargePointState, read_sampled_values
from actors.ocpp_rules import start_dedup_key

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
    values.append({"measurand": "Energy.Active.Import.Register", "unit": "Wh", "value": "1000"})
    payload = {
        "connectorId": 1,
        "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": values}],
    }
    state.on_call("MeterValues", payload, NOW)
    return state


def three_phases(state: ChargePointState, amps: float, **where: int) -> None:
    """MeterValues of ``amps`` on L1, L2 and L3 (``where``: connectorId, or 2.0.1's evseId)."""
    values = [
        {"measurand": "Current.Import", "phase": p, "value": amps} for p in ("L1", "L2", "L3")
    ]
    sample = {"timestamp": "2026-01-01T00:00:05Z", "sampledValue": values}
    state.on_call("MeterValues", {**where, "meterValue": [sample]}, NOW)


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


def test_a_new_transaction_forgets_what_the_last_car_drew() -> None:
    """1.6: the last car's current is not the next one's (the energy node would count it, and
    learn the new car's phases from it, until the new session's first sample). Forgotten as the
    charge point asks to start, not when the answer comes; a retried start keeps what the new
    session sampled since."""
    state = state_with(("L1", 16.0), ("L2", 0.0), ("L3", 0.0))
    assert measured(state, phases=3) == (16.0, 0.0, 0.0)
    start = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"}
    state.on_call("StartTransaction", start, NOW)
    assert measured(state, phases=3) is None
    assert state.meter["1"]["energy_wh"] == 1000.0  # the register is the meter's, kept
    three_phases(state, 7.0, connectorId=1)
    state.start_transaction(
        transaction_id=2,
        payload=start,
        message_id="m",
        edge_minted=False,
        id_tag_info={"status": "Accepted"},
        start_key=start_dedup_key(start).text(),
        now=NOW,
    )
    assert measured(state, phases=3) == (7.0, 7.0, 7.0), "the answer keeps the new sample"
    state.on_call("StartTransaction", start, NOW)  # the charge point retries it
    assert measured(state, phases=3) == (7.0, 7.0, 7.0)


def test_a_201_transaction_started_forgets_the_last_car_and_takes_its_own_sample() -> None:
    state = ChargePointState("CP1")
    state.on_call(
        "StatusNotification", {"evseId": 1, "connectorId": 1, "connectorStatus": "Occupied"}, NOW
    )

    def event(kind: str, amps: float | None, tx: str) -> None:
        values = (
            []
            if amps is None
            else [
                {"measurand": "Current.Import", "phase": p, "value": amps}
                for p in ("L1", "L2", "L3")
            ]
        )
        payload: dict[str, object] = {
            "eventType": kind,
            "timestamp": "2026-01-01T00:00:00Z",
            "transactionInfo": {"transactionId": tx},
            "evse": {"id": 1, "connectorId": 1},
        }
        if values:
            payload["meterValue"] = [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": values}]
        state.on_call("TransactionEvent", payload, NOW)

    event("Started", 16.0, "a")
    event("Ended", None, "a")
    assert state.meter["1:1"]["current_L1_a"] == 16.0
    event("Started", None, "b")
    assert "current_L1_a" not in state.meter["1:1"]
    event("Started", 7.0, "c")
    assert state.meter["1:1"]["current_L1_a"] == 7.0


def test_201_updated_events_without_their_evse_sample_the_transactions_connector() -> None:
    """A station names the EVSE in the first TransactionEvent after the EV is known and may leave
    it out of the Updated events that carry the transaction's periodic meter values: those count
    for the transaction's connector (they were dropped: no draw seen, no energy counted)."""
    state = ChargePointState("CP1")
    started: dict[str, object] = {
        "eventType": "Started",
        "timestamp": "2026-01-01T00:00:00Z",
        "transactionInfo": {"transactionId": "t"},
        "evse": {"id": 2, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": "2026-01-01T00:00:00Z",
                "sampledValue": [
                    {"measurand": "Energy.Active.Import.Register", "value": 1000.0},
                ],
            }
        ],
    }
    state.on_call("TransactionEvent", started, NOW)
    updated = {
        "eventType": "Updated",
        "timestamp": "2026-01-01T00:01:00Z",
        "transactionInfo": {"transactionId": "t"},
        "meterValue": [
            {
                "timestamp": "2026-01-01T00:01:00Z",
                "sampledValue": [
                    {"measurand": "Current.Import", "phase": p, "value": 9.5}
                    for p in ("L1", "L2", "L3")
                ]
                + [{"measurand": "Energy.Active.Import.Register", "value": 1500.0}],
            }
        ],
    }
    state.on_call("TransactionEvent", updated, NOW)
    assert state.meter["2:1"]["current_L1_a"] == 9.5
    assert state.meter["2:1"]["energy_wh"] == 1500.0
    assert state.transactions["t"]["meter_start_wh"] == 1000.0


def test_201_meter_values_count_for_the_connector_of_their_evse() -> None:
    """2.0.1 MeterValues name the EVSE; the connector is known as "evse:connector"."""
    state = ChargePointState("CP1")
    for evse in (1, 2):
        state.on_call(
            "StatusNotification",
            {"evseId": evse, "connectorId": 1, "connectorStatus": "Occupied"},
            NOW,
        )
    state.on_call(
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": "2026-01-01T00:00:00Z",
            "transactionInfo": {"transactionId": "t"},
            "evse": {"id": 2, "connectorId": 1},
        },
        NOW,
    )
    three_phases(state, 9.5, evseId=2)
    reports = {
        r.connector_id: r.measured_a
        for r in state.connector_reports(connected=True, now=NOW, phases=3)
    }
    assert reports == {1: None, 2: (9.5, 9.5, 9.5)}
    assert "2" not in state.meter, "kept under the EVSE's connector, not the EVSE"


@pytest.mark.parametrize(
    ("unit", "value", "key", "expected"),
    [
        pytest.param({"unit": "A", "multiplier": -3}, 16000, "current_L1_a", 16.0, id="A e-3"),
        pytest.param({"unit": "A", "multiplier": -1}, 160, "current_L1_a", 16.0, id="A e-1"),
        pytest.param({"unit": "mA"}, 16000, "current_L1_a", 16.0, id="mA"),
        pytest.param({"unit": "A"}, 16, "current_L1_a", 16.0, id="A"),
        pytest.param({"unit": "Wh", "multiplier": 3}, 12.5, "energy_wh", 12500.0, id="Wh e3"),
        pytest.param({"unit": "kWh"}, 12.5, "energy_wh", 12500.0, id="kWh"),
        pytest.param({"unit": "kW", "multiplier": 0}, 11, "power_w", 11000.0, id="kW"),
        pytest.param({"unit": "W", "multiplier": 3}, 11, "power_w", 11000.0, id="W e3"),
    ],
)
def test_a_201_value_is_read_in_its_unit_and_multiplier(
    unit: dict[str, object], value: float, key: str, expected: float
) -> None:
    """2.0.1's unitOfMeasure has a ``multiplier``, the power of ten the value is to be
    multiplied by (2.0.1 part 2, UnitOfMeasureType), and a free unit text. A station that
    sends its current in milliamperes (16000 with multiplier -3, or "mA") was read as 16000 A:
    the energy node counted the car at 16000 A (every other car paused for it) and flagged it
    as ignoring its profile; its energy in kWh by multiplier 3 read as a thousandth of it."""
    measurand = {
        "current_L1_a": "Current.Import",
        "energy_wh": "Energy.Active.Import.Register",
        "power_w": "Power.Active.Import",
    }[key]
    sampled = {"measurand": measurand, "value": value, "unitOfMeasure": unit}
    if key == "current_L1_a":
        sampled["phase"] = "L1"
    out = read_sampled_values([{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [sampled]}])
    assert out[key] == pytest.approx(expected)


@pytest.mark.parametrize("multiplier", [99, -99])
def test_a_201_multiplier_that_makes_no_sense_leaves_the_value_out(multiplier: object) -> None:
    sampled = {
        "measurand": "Current.Import",
        "phase": "L1",
        "value": 16,
        "unitOfMeasure": {"unit": "A", "multiplier": multiplier},
    }
    out = read_sampled_values([{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [sampled]}])
    assert "current_L1_a" not in out
    assert out["unusable_values"] == 1


@pytest.mark.parametrize("text", ["Infinity", "NaN", "1e309", "-inf", "ten"])
def test_a_value_that_is_no_finite_number_is_left_out_and_counted(text: str) -> None:
    """An infinite current once crash-looped the allocator (its audit record refused it); NaN
    counted as 0 A and hid a charge point that ignores its profile."""
    values = [
        {"measurand": "Current.Import", "phase": "L1", "value": text},
        {"measurand": "Current.Import", "phase": "L2", "value": "7.5"},
    ]
    out = read_sampled_values([{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": values}])
    assert "current_L1_a" not in out
    assert out["current_L2_a"] == 7.5
    assert out["unusable_values"] == 1


def test_a_connector_reports_its_newest_running_transaction() -> None:
    """A 2.0.1 station that restarted without ending its transaction (its Ended never came)
    starts another on the same connector: both are "running" here, and the report names the
    newest (the energy node's limits go to it; the old one's TxProfiles were refused and taught
    the broker stack level 0 and watts)."""
    state = ChargePointState("CP1")
    state.on_call(
        "StatusNotification", {"evseId": 1, "connectorId": 1, "connectorStatus": "Occupied"}, NOW
    )
    for tx in ("old", "new"):
        started = {
            "eventType": "Started",
            "timestamp": "2026-01-01T00:00:00Z",
            "transactionInfo": {"transactionId": tx},
            "evse": {"id": 1, "connectorId": 1},
        }
        state.on_call("TransactionEvent", started, NOW)
    (report,) = state.connector_reports(connected=True, now=NOW)
    assert report.transaction_id == "new"


def two_connector_evse(used: int, tx: str, evse: dict[str, int]) -> ChargePointState:
    """EVSE 1 with connectors 1 and 2, the car on ``used`` (Occupied), the other Available;
    transaction ``tx`` started, its event naming ``evse``; 16 A sampled for the EVSE."""
    state = ChargePointState("CP1")
    for connector in (1, 2):
        status = "Occupied" if connector == used else "Available"
        payload = {"evseId": 1, "connectorId": connector, "connectorStatus": status}
        state.on_call("StatusNotification", payload, NOW)
    started = {
        "eventType": "Started",
        "timestamp": "2026-01-01T00:00:00Z",
        "transactionInfo": {"transactionId": tx},
        "evse": evse,
    }
    state.on_call("TransactionEvent", started, NOW)
    three_phases(state, 16.0, evseId=1)
    return state


@pytest.mark.parametrize("used", [1, 2])
def test_a_201_evse_with_two_connectors_reports_once_for_the_one_in_use(used: int) -> None:
    """A 2.0.1 EVSE with two connectors (a Type 2 socket and a cable, or CCS and CHAdeMO): the
    edge manages the EVSE (its TxProfiles name the EVSE), so it gives one report, of the
    connector in use. With one report per connector the energy node kept the later one: with
    the car on connector 1, the idle connector 2's, and the car counted as no car (0 A)."""
    state = two_connector_evse(used, "T", {"id": 1, "connectorId": used})
    (report,) = state.connector_reports(connected=True, now=NOW)
    assert (report.connector_id, report.transaction_id, report.charging) == (1, "T", True)
    assert (report.status, report.plugged, report.measured_a) == ("Occupied", True, (16.0,) * 3)

    # No transaction: the plugged one, else the first.
    ended = {
        "eventType": "Ended",
        "timestamp": "2026-01-01T00:01:00Z",
        "transactionInfo": {"transactionId": "T"},
        "evse": {"id": 1, "connectorId": used},
    }
    state.on_call("TransactionEvent", ended, NOW)
    (report,) = state.connector_reports(connected=True, now=NOW)
    assert (report.charging, report.status) == (False, "Occupied")
    payload = {"evseId": 1, "connectorId": used, "connectorStatus": "Available"}
    state.on_call("StatusNotification", payload, NOW)
    (report,) = state.connector_reports(connected=True, now=NOW)
    assert (report.connector_id, report.status) == (1, "Available")


def test_a_201_transaction_naming_only_its_evse_counts_the_plugged_connector() -> None:
    """TransactionEvent names the EVSE alone (connectorId left out: kept as connector 1) while
    the car is on connector 2: the EVSE is plugged and charging (second review: its report was
    connector 1's, Available, and the car was not counted)."""
    state = two_connector_evse(2, "B", {"id": 1})
    (report,) = state.connector_reports(connected=True, now=NOW)
    assert (report.transaction_id, report.plugged, report.charging) == ("B", True, True)
    assert (report.status, report.measured_a) == ("Occupied", (16.0,) * 3)


def test_a_201_evse_reports_its_newest_running_transaction_whichever_connector() -> None:
    """A state persisted before superseding may hold two running on one EVSE, on different
    connectors: the report names the newest, as the broker's limits do (cp_cloud_caps)."""
    state = ChargePointState("CP1")
    for connector in (1, 2):
        payload = {"evseId": 1, "connectorId": connector, "connectorStatus": "Occupied"}
        state.on_call("StatusNotification", payload, NOW)
    state.transactions["A"] = {"state": "running", "connector": "1:1", "edge_minted": False}
    state.transactions["B"] = {"state": "running", "connector": "1:2", "edge_minted": False}
    (report,) = state.connector_reports(connected=True, now=NOW)
    assert report.transaction_id == "B"


def register_only(state: ChargePointState, stamp: str, **where: object) -> None:
    """A clock-aligned MeterValues: the energy register and nothing else."""
    sample = {
        "timestamp": stamp,
        "sampledValue": [{"measurand": "Energy.Active.Import.Register", "value": "2000"}],
    }
    state.on_call("MeterValues", {**where, "meterValue": [sample]}, NOW)


def report(state: ChargePointState) -> tuple[tuple[float, float, float] | None, str | None]:
    (r,) = state.connector_reports(connected=True, now=NOW, phases=3)
    return r.measured_a, r.sampled_utc


def test_a_sample_without_a_current_does_not_redate_the_last_currents() -> None:
    """1.6: the energy node judges ``measured_a`` as taken at ``sampled_utc``. A clock-aligned
    register reading moved it to its own time: the car's old current, re-dated, counted as a
    new sample each time (a car that drew 16 A under a 16 A limit, lowered to 6 A, judged over
    and flagged as ignoring its profile), and the loop took it as a sample since its change."""
    state = ChargePointState("CP1")
    state.on_call("StatusNotification", {"connectorId": 1, "status": "Charging"}, NOW)
    three_phases(state, 16.0, connectorId=1)  # sampled 00:00:05
    register_only(state, "2026-01-01T00:15:00Z", connectorId=1)
    assert report(state) == ((16.0, 16.0, 16.0), "2026-01-01T00:00:05Z")
    assert state.meter["1"]["energy_wh"] == 2000.0, "the register is taken"
    assert state.meter["1"]["sampled_utc"] == "2026-01-01T00:15:00Z", "the newest sample's"
    three_phases(state, 6.0, connectorId=1)  # a sample with currents dates them
    assert report(state) == ((6.0, 6.0, 6.0), "2026-01-01T00:00:05Z")


def test_a_201_sample_without_a_current_does_not_redate_the_last_currents() -> None:
    """2.0.1: the same, from MeterValues and from a TransactionEvent's meter values; and within
    one message, the currents keep their own entry's time."""
    state = ChargePointState("CP1")
    state.on_call(
        "StatusNotification", {"evseId": 1, "connectorId": 1, "connectorStatus": "Occupied"}, NOW
    )
    started = {
        "eventType": "Started",
        "timestamp": "2026-01-01T00:00:00Z",
        "transactionInfo": {"transactionId": "t"},
        "evse": {"id": 1, "connectorId": 1},
    }
    state.on_call("TransactionEvent", started, NOW)
    three_phases(state, 16.0, evseId=1)
    register_only(state, "2026-01-01T00:15:00Z", evseId=1)
    assert report(state) == ((16.0, 16.0, 16.0), "2026-01-01T00:00:05Z")
    updated = {
        "eventType": "Updated",
        "timestamp": "2026-01-01T00:30:00Z",
        "transactionInfo": {"transactionId": "t"},
        "meterValue": [
            {
                "timestamp": "2026-01-01T00:20:00Z",
                "sampledValue": [
                    {"measurand": "Current.Import", "phase": p, "value": 7.0}
                    for p in ("L1", "L2", "L3")
                ],
            },
            {
                "timestamp": "2026-01-01T00:30:00Z",
                "sampledValue": [{"measurand": "Energy.Active.Import.Register", "value": 3000}],
            },
        ],
    }
    state.on_call("TransactionEvent", updated, NOW)
    assert report(state) == ((7.0, 7.0, 7.0), "2026-01-01T00:20:00Z")
    assert state.meter["1:1"]["energy_wh"] == 3000.0


def test_a_version_2_documents_currents_keep_their_sample_time() -> None:
    """Before RECORD_VERSION 3 the record's ``sampled_utc`` dated its currents: a register
    reading that comes after the upgrade does not re-date them."""
    state = ChargePointState("CP1")
    state.on_call("StatusNotification", {"connectorId": 1, "status": "Charging"}, NOW)
    three_phases(state, 16.0, connectorId=1)
    doc = state.to_dict()
    doc["v"] = 2
    for m in doc["meter"].values():
        del m["currents_utc"]
    loaded = ChargePointState("CP1", doc)
    register_only(loaded, "2026-01-01T00:15:00Z", connectorId=1)
    assert report(loaded) == ((16.0, 16.0, 16.0), "2026-01-01T00:00:05Z")
