"""Charging profile payloads against the official schemas, for each capability combination."""

from __future__ import annotations

import dataclasses
import math
import pickle
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.energy_messages import ConnectorLimit, ProfileBatch
from actors.profiles import (
    ACTION,
    ChargePointCapabilities,
    boot_profiles,
    capabilities_from_v16,
    capabilities_from_v201,
    round_limit_a,
    tx_profile_id,
    tx_profile_request,
    tx_profile_template,
    worth_sending,
)
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.framing import PayloadViolation, call_text, call_text_json
from drivers.ocpp.validation import validate_payload

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
V16, V201 = OcppVersion.V16, OcppVersion.V201


def limit(
    limit_a: float = 16.37, *, connector_id: int = 2, phases: int = 3, car_phases: int = 0
) -> ConnectorLimit:
    return ConnectorLimit(
        charge_point_id="CP1",
        connector_id=connector_id,
        limit_a=limit_a,
        phases=phases,
        binding_source="grid_limit:main fuse/L1",
        reason="test",
        car_phases=car_phases,
    )


CAPS = [
    pytest.param(ChargePointCapabilities(), id="defaults-A-level0"),
    pytest.param(ChargePointCapabilities(max_stack_level=8), id="A-level8"),
    pytest.param(ChargePointCapabilities(rate_units=("W",)), id="W-only"),
    pytest.param(ChargePointCapabilities(rate_units=("W", "A")), id="W-and-A-prefers-A"),
    pytest.param(
        ChargePointCapabilities(supports_max_profile=False, max_stack_level=3),
        id="no-max-profile",
    ),
]


def schedule(payload: dict[str, Any], version: OcppVersion) -> dict[str, Any]:
    if version is V16:
        sched: dict[str, Any] = payload["csChargingProfiles"]["chargingSchedule"]
        return sched
    first: dict[str, Any] = payload["chargingProfile"]["chargingSchedule"][0]
    return first


def profile(payload: dict[str, Any], version: OcppVersion) -> dict[str, Any]:
    key = "csChargingProfiles" if version is V16 else "chargingProfile"
    p: dict[str, Any] = payload[key]
    return p


@pytest.mark.parametrize("caps", CAPS)
@pytest.mark.parametrize("version", [V16, V201], ids=["1.6", "2.0.1"])
@pytest.mark.parametrize("phases", [1, 3], ids=["1-phase", "3-phase"])
def test_tx_profile_is_valid_and_replaces(
    caps: ChargePointCapabilities, version: OcppVersion, phases: int
) -> None:
    payload = tx_profile_request(
        limit(phases=phases), version=version, caps=caps, transaction_id="4711"
    )
    validate_payload(version, ACTION, payload, response=False)
    p = profile(payload, version)
    assert p["chargingProfilePurpose"] == "TxProfile"
    assert p["stackLevel"] == caps.max_stack_level
    assert p["id" if version is V201 else "chargingProfileId"] == tx_profile_id(caps, 2)
    sched = schedule(payload, version)
    (period,) = sched["chargingSchedulePeriod"]
    assert period["startPeriod"] == 0
    assert period["numberPhases"] == phases
    if caps.unit == "A":
        assert sched["chargingRateUnit"] == "A"
        assert period["limit"] == 16.3, "rounded down, never up"
    else:
        assert sched["chargingRateUnit"] == "W"
        assert period["limit"] == float(int(16.3 * phases * 230))
    if version is V16:
        assert payload["connectorId"] == 2
        assert p["transactionId"] == 4711
    else:
        assert payload["evseId"] == 2
        assert p["transactionId"] == "4711"


@pytest.mark.parametrize("version", [V16, V201])
def test_watts_over_the_phases_the_car_draws_on_at_the_site_voltage(version: OcppVersion) -> None:
    """A charge point that takes only W: 10 A per phase at the site's 220 V. A 3-phase charge
    point's 1-phase car gets the watts of one phase with numberPhases 1: 10 A whether the charge
    point divides by numberPhases (OCPP) or by the phases the car uses (the watts of three
    would let it draw 30 A on its one). In amperes numberPhases stays the wired count."""
    caps = ChargePointCapabilities(rate_units=("W",), nominal_voltage_v=220.0)

    def period(car_phases: int, caps: ChargePointCapabilities = caps) -> tuple[str, Any, Any]:
        payload = tx_profile_request(
            limit(10.0, car_phases=car_phases), version=version, caps=caps, transaction_id="7"
        )
        validate_payload(version, ACTION, payload, response=False)
        sched = schedule(payload, version)
        (p,) = sched["chargingSchedulePeriod"]
        return sched["chargingRateUnit"], p["limit"], p["numberPhases"]

    assert period(0) == ("W", 6600.0, 3)  # not known: the wired phases
    assert period(1) == ("W", 2200.0, 1)
    assert period(2) == ("W", 4400.0, 2)
    assert period(3) == ("W", 6600.0, 3)
    assert period(1, ChargePointCapabilities()) == ("A", 10.0, 3)


def test_same_connector_same_id_other_connector_other_id() -> None:
    caps = ChargePointCapabilities()
    a = tx_profile_request(limit(10, connector_id=1), version=V16, caps=caps, transaction_id="1")
    b = tx_profile_request(limit(20, connector_id=1), version=V16, caps=caps, transaction_id="2")
    c = tx_profile_request(limit(20, connector_id=2), version=V16, caps=caps, transaction_id="3")
    ids = [profile(x, V16)["chargingProfileId"] for x in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]


def test_v16_transaction_id_that_is_not_an_integer_is_left_out() -> None:
    payload = tx_profile_request(
        limit(), version=V16, caps=ChargePointCapabilities(), transaction_id="edge-7"
    )
    validate_payload(V16, ACTION, payload, response=False)
    assert "transactionId" not in profile(payload, V16)


def test_v201_tx_profile_requires_the_transaction_id() -> None:
    with pytest.raises(ValueError, match="transaction id"):
        tx_profile_request(
            limit(), version=V201, caps=ChargePointCapabilities(), transaction_id=None
        )


@pytest.mark.parametrize("caps", CAPS)
@pytest.mark.parametrize("version", [V16, V201], ids=["1.6", "2.0.1"])
def test_boot_profiles_are_valid(caps: ChargePointCapabilities, version: OcppVersion) -> None:
    payloads = boot_profiles(
        version=version,
        caps=caps,
        default_limit_a=6.0,
        max_limit_a=32.0,
        phases=3,
        now_utc=NOW,
    )
    for payload in payloads:
        validate_payload(version, ACTION, payload, response=False)
    purposes = [profile(p, version)["chargingProfilePurpose"] for p in payloads]
    max_name = "ChargePointMaxProfile" if version is V16 else "ChargingStationMaxProfile"
    expected = ["TxDefaultProfile", max_name] if caps.supports_max_profile else ["TxDefaultProfile"]
    assert purposes == expected
    for p in payloads:
        assert p["connectorId" if version is V16 else "evseId"] == 0
    if caps.supports_max_profile:
        max_profile = profile(payloads[1], version)
        assert max_profile["chargingProfileKind"] == "Absolute", "a max profile may not be Relative"
        assert schedule(payloads[1], version)["startSchedule"] == "2025-03-01T12:00:00Z"


def test_a_broken_payload_fails_validation() -> None:
    """The validation in these tests can fail: a limit that is not a multiple of 0.1 is refused."""
    payload = tx_profile_request(
        limit(), version=V16, caps=ChargePointCapabilities(), transaction_id="1"
    )
    schedule(payload, V16)["chargingSchedulePeriod"][0]["limit"] = 16.37
    with pytest.raises(PayloadViolation):
        validate_payload(V16, ACTION, payload, response=False)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        pytest.param([], ChargePointCapabilities(), id="nothing-reported"),
        pytest.param(
            [
                {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "20"},
                {"key": "ChargingScheduleAllowedChargingRateUnit", "value": "Power"},
            ],
            ChargePointCapabilities(max_stack_level=20, rate_units=("W",)),
            id="level20-power-only",
        ),
        pytest.param(
            [{"key": "ChargingScheduleAllowedChargingRateUnit", "value": "Power,Current"}],
            ChargePointCapabilities(rate_units=("A", "W")),
            id="both-units-current-first",
        ),
        pytest.param(
            [{"key": "ChargeProfileMaxStackLevel", "value": "-1"}],
            ChargePointCapabilities(max_stack_level=0),
            id="negative-level-reads-as-0",
        ),
    ],
)
def test_capabilities_from_v16(
    keys: list[dict[str, Any]], expected: ChargePointCapabilities
) -> None:
    assert capabilities_from_v16(keys) == (expected, ())


def test_capabilities_from_v201() -> None:
    caps = capabilities_from_v201(
        {"SmartChargingCtrlr.ProfileStackLevel": "5", "SmartChargingCtrlr.RateUnit": "W"},
        supports_max_profile=False,
    )
    assert caps == (
        ChargePointCapabilities(max_stack_level=5, rate_units=("W",), supports_max_profile=False),
        (),
    )


@pytest.mark.parametrize(
    ("level", "units", "expected", "unread"),
    [
        pytest.param(
            "20",
            "Current Power",
            ChargePointCapabilities(max_stack_level=20),
            "Current Power",
            id="units-with-a-space",
        ),
        pytest.param(
            "20", "Amps", ChargePointCapabilities(max_stack_level=20), "Amps", id="units-amps"
        ),
        pytest.param("20", "kW", ChargePointCapabilities(max_stack_level=20), "kW", id="units-kw"),
        pytest.param(
            "20",
            "",
            ChargePointCapabilities(max_stack_level=20),
            "no charging rate unit",
            id="units-empty",
        ),
        pytest.param(
            "twenty",
            "Power",
            ChargePointCapabilities(rate_units=("W",)),
            "twenty",
            id="level-no-integer",
        ),
    ],
)
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_key_that_cannot_be_read_keeps_its_default_and_the_others_as_read(
    version: str, level: str, units: str, expected: ChargePointCapabilities, unread: str
) -> None:
    """A rate unit not understood reset the stack level read beside it to 0 (and the reverse):
    the edge's profiles went at level 0, below the cloud's, which then overrode the edge's
    limits within their purpose; nothing said why. The key's own default is taken and named."""
    if version == "1.6":
        caps, notes = capabilities_from_v16(
            [
                {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": level},
                {"key": "ChargingScheduleAllowedChargingRateUnit", "value": units},
            ]
        )
        key = "ChargeProfileMaxStackLevel" if unread == level else "ChargingScheduleAllowed"
    else:
        caps, notes = capabilities_from_v201(
            {"SmartChargingCtrlr.ProfileStackLevel": level, "SmartChargingCtrlr.RateUnit": units}
        )
        key = "ProfileStackLevel" if unread == level else "RateUnit"
    assert caps == expected
    (note,) = notes
    assert key in note
    assert unread in note


@pytest.mark.parametrize(
    ("new", "last", "send"),
    [
        pytest.param(16.0, None, True, id="first-always"),
        pytest.param(15.9, 16.0, True, id="small-decrease-goes"),
        pytest.param(0.0, 16.0, True, id="pause-goes"),
        pytest.param(16.4, 16.0, False, id="small-increase-held"),
        pytest.param(16.5, 16.0, True, id="increase-at-hysteresis"),
        pytest.param(6.0, 0.0, True, id="resume-goes"),
        pytest.param(16.04, 16.0, False, id="same-after-rounding"),
        pytest.param(0.0, 0.0, False, id="still-paused"),
    ],
)
def test_worth_sending(new: float, last: float | None, send: bool) -> None:
    assert worth_sending(new, last, hysteresis_a=0.5) is send


@given(
    last=st.floats(min_value=0, max_value=80, allow_nan=False),
    new=st.floats(min_value=0, max_value=80, allow_nan=False),
)
def test_every_decrease_goes_and_no_small_increase_does(last: float, new: float) -> None:
    result = worth_sending(new, last, hysteresis_a=0.5)
    if round_limit_a(new) < round_limit_a(last):
        assert result
    elif round_limit_a(last) > 0 and round_limit_a(new) - round_limit_a(last) < 0.49:
        assert not result


@given(st.floats(min_value=0, max_value=200, allow_nan=False))
def test_rounded_limits_never_exceed_and_pass_the_16_schema(value: float) -> None:
    rounded = round_limit_a(value)
    # Down to 0.1 A; a value a rounding error below a step (16.299999999) counts as that step.
    assert 0 <= rounded <= value + 1e-6
    assert value - rounded < 0.1 + 1e-9
    payload = tx_profile_request(
        limit(value), version=V16, caps=ChargePointCapabilities(), transaction_id="1"
    )
    validate_payload(V16, ACTION, payload, response=False)


@given(
    st.one_of(
        st.floats(min_value=0, max_value=1e9),
        st.integers(min_value=0, max_value=10**7).map(lambda k: k / 10),
        st.integers(min_value=0, max_value=10**7).map(lambda k: k / 100),
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, -1.0, 1e-300]),
    )
)
def test_rounding_is_the_decimal_one_to_the_last_bit(value: float) -> None:
    """The same float as rounding the tenths to one decimal (the former, slower formula)."""
    expected = (
        round(math.floor(value / 0.1 + 1e-6) * 0.1, 1)
        if math.isfinite(value) and value > 0
        else 0.0
    )
    assert round_limit_a(value) == expected
    assert repr(round_limit_a(value)) == repr(expected)


# -- the TxProfile template the broker writes from ---------------------------------------------


@given(
    version=st.sampled_from([V16, V201]),
    caps=st.builds(
        ChargePointCapabilities,
        max_stack_level=st.integers(0, 9),
        rate_units=st.sampled_from([("A",), ("W",), ("A", "W"), ("W", "A")]),
        nominal_voltage_v=st.floats(100.0, 400.0),
        profile_id_base=st.integers(1, 10**9),
    ),
    connector_id=st.integers(1, 40),
    phases=st.integers(1, 3),
    car_phases=st.integers(0, 3),
    transaction_id=st.one_of(st.from_regex(r"[0-9]{1,10}", fullmatch=True), st.text(max_size=40)),
    first_a=st.one_of(st.floats(-1e9, 1e9), st.sampled_from([math.nan, math.inf, -math.inf])),
    limits_a=st.lists(
        st.one_of(st.floats(-1e9, 1e9), st.sampled_from([math.nan, math.inf, -math.inf])),
        min_size=1,
        max_size=5,
    ),
)
def test_a_template_writes_exactly_the_payload_of_each_limit(
    version: OcppVersion,
    caps: ChargePointCapabilities,
    connector_id: int,
    phases: int,
    car_phases: int,
    transaction_id: str,
    first_a: float,
    limits_a: list[float],
) -> None:
    if version is V201 and not transaction_id:
        with pytest.raises(ValueError, match="transaction id"):
            tx_profile_template(
                limit(first_a, connector_id=connector_id, phases=phases, car_phases=car_phases),
                version=version,
                caps=caps,
                transaction_id=transaction_id,
            )
        return
    template = tx_profile_template(
        limit(first_a, connector_id=connector_id, phases=phases, car_phases=car_phases),
        version=version,
        caps=caps,
        transaction_id=transaction_id,
    )
    assert template is not None
    for a in limits_a:
        payload = tx_profile_request(
            limit(a, connector_id=connector_id, phases=phases, car_phases=car_phases),
            version=version,
            caps=caps,
            transaction_id=transaction_id,
        )
        assert template.json(a) == orjson.dumps(payload).decode()


def test_a_transaction_id_that_holds_the_hole_gets_no_template() -> None:
    hole = "\u0000 the limit \u0000"
    assert (
        tx_profile_template(
            limit(), version=V201, caps=ChargePointCapabilities(), transaction_id=hole
        )
        is None
    )
    # 1.6 takes only an integer transaction id: such a text is left out, the template stands
    template = tx_profile_template(
        limit(), version=V16, caps=ChargePointCapabilities(), transaction_id=hole
    )
    assert template is not None
    assert (
        template.json(10.0)
        == orjson.dumps(
            tx_profile_request(
                limit(10.0), version=V16, caps=ChargePointCapabilities(), transaction_id=hole
            )
        ).decode()
    )


def test_the_frame_of_a_prepared_payload_is_the_frame_of_the_payload() -> None:
    payload = tx_profile_request(
        limit(), version=V16, caps=ChargePointCapabilities(), transaction_id="17"
    )
    assert call_text_json("edge-1f", ACTION, orjson.dumps(payload).decode()) == call_text(
        "edge-1f", ACTION, payload
    )
    with pytest.raises(ValueError, match="message id"):
        call_text_json("", ACTION, "{}")


def test_a_batch_crosses_the_node_link_whole() -> None:
    """ConnectorLimit pickles as its fields in order (ConnectorLimit.__reduce__): every field,
    each set to a value no other has, comes back (a field added to the class but not to its
    __reduce__ would come back as its default, or not at all)."""
    values: dict[str, object] = {}
    for i, f in enumerate(dataclasses.fields(ConnectorLimit)):
        values[f.name] = {
            "str": f"v{i} é",
            "str | None": f"v{i} é",
            "int": 10 + i,
            "float": 10.5 + i,
        }[str(f.type)]
    limit = ConnectorLimit(**values)  # type: ignore[arg-type]
    batch = ProfileBatch(
        limits=(limit, dataclasses.replace(limit, connector_id=2)),
        default_limit_a=6.0,
        computed_utc="2026-01-01T00:00:00.000Z",
        trigger_monotonic_ns=7,
        full=False,
    )
    back = pickle.loads(pickle.dumps(("broker/profiles", batch), pickle.HIGHEST_PROTOCOL))
    assert back == ("broker/profiles", batch)
    assert [dataclasses.asdict(x) for x in back[1].limits] == [
        dataclasses.asdict(x) for x in batch.limits
    ]
