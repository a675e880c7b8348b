"""Schema validation: error mapping, and parity with the ocpp package's own jsonschema path."""

from __future__ import annotations

import copy
from typing import Any

import ocpp.exceptions  # type: ignore[import-untyped]
import ocpp.messages  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ocpp.codes import ErrorKind, OcppVersion, error_codes
from drivers.ocpp.framing import PayloadViolation, UnknownAction
from drivers.ocpp.validation import actions, load_schema, preload, validate_payload
from tests.unit.ocpp.payloads import JSON_VALUES, SCHEMAS, mutated, valid

V16, V201 = OcppVersion.V16, OcppVersion.V201


def ocpp_accepts(version: OcppVersion, action: str, payload: Any, *, response: bool) -> bool:
    """The ocpp package's verdict: its Draft-4 jsonschema validators, Decimal handling included."""
    body = copy.deepcopy(payload)
    message = (
        ocpp.messages.CallResult("1", body, action=action)
        if response
        else ocpp.messages.Call("1", action, body)
    )
    try:
        ocpp.messages._validate_payload(message, version.value)
    except ocpp.exceptions.OCPPError:
        return False
    return True


def ours_accepts(version: OcppVersion, action: str, payload: Any, *, response: bool) -> bool:
    try:
        validate_payload(version, action, payload, response=response, message_id="1")
    except PayloadViolation:
        return False
    return True


def test_every_schema_compiles() -> None:
    assert preload() == len(SCHEMAS) == 206


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        pytest.param(
            V16, {"BootNotification", "StartTransaction", "SignedUpdateFirmware"}, id="1.6"
        ),
        pytest.param(V201, {"BootNotification", "TransactionEvent", "NotifyEvent"}, id="2.0.1"),
    ],
)
def test_actions_include(version: OcppVersion, expected: set[str]) -> None:
    assert expected <= actions(version)
    assert "TransactionEvent" not in actions(V16)
    assert "StartTransaction" not in actions(V201)


BOOT_16 = {"chargePointVendor": "V", "chargePointModel": "M"}
PROFILE_16: dict[str, Any] = {
    "connectorId": 1,
    "csChargingProfiles": {
        "chargingProfileId": 7,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "transactionId": 5,
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 21.4}],
        },
    },
}


def _profile_limit(limit: object) -> dict[str, Any]:
    p = copy.deepcopy(PROFILE_16)
    p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] = limit
    return p


@pytest.mark.parametrize(
    ("version", "action", "payload", "kind", "field"),
    [
        pytest.param(V16, "Authorize", {}, ErrorKind.OCCURRENCE, "idTag", id="missing-required"),
        pytest.param(V16, "Authorize", {"idTag": 5}, ErrorKind.TYPE, "idTag", id="wrong-type"),
        pytest.param(
            V16, "Authorize", {"idTag": "x" * 21}, ErrorKind.TYPE, "idTag", id="string-too-long"
        ),
        pytest.param(
            V16, "Authorize", {"idTag": "a", "extra": 1}, ErrorKind.FORMAT, "extra", id="extra-key"
        ),
        pytest.param(
            V16,
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Dancing"},
            ErrorKind.PROPERTY,
            "status",
            id="not-in-enum",
        ),
        pytest.param(
            V16,
            "SetChargingProfile",
            _profile_limit(4.11),
            ErrorKind.PROPERTY,
            "csChargingProfiles.chargingSchedule.chargingSchedulePeriod.0.limit",
            id="multipleOf",
        ),
        pytest.param(
            V16,
            "BootNotification",
            {**BOOT_16, "chargePointModel": True},
            ErrorKind.TYPE,
            "chargePointModel",
            id="bool-for-string",
        ),
        pytest.param(
            V16,
            "MeterValues",
            {"connectorId": 1.0, "meterValue": []},
            ErrorKind.TYPE,
            "connectorId",
            id="float-for-integer",
        ),
        pytest.param(
            V16,
            "MeterValues",
            {"connectorId": 1, "meterValue": []},
            ErrorKind.OCCURRENCE,
            "meterValue",
            id="minItems",
        ),
        pytest.param(
            V201,
            "Heartbeat",
            {"x": 1},
            ErrorKind.FORMAT,
            "x",
            id="201-extra-key",
        ),
        pytest.param(
            V201,
            "BootNotification",
            {"reason": "PowerUp"},
            ErrorKind.OCCURRENCE,
            "chargingStation",
            id="201-missing-required",
        ),
        pytest.param(
            V201,
            "StatusNotification",
            {
                "timestamp": "2024-01-01T00:00:00Z",
                "connectorStatus": "Available",
                "evseId": 1.0,
                "connectorId": 1,
            },
            ErrorKind.TYPE,
            "evseId",
            id="201-draft4-integer",
        ),
    ],
)
def test_violation_kind_and_field(
    version: OcppVersion, action: str, payload: dict[str, Any], kind: ErrorKind, field: str
) -> None:
    with pytest.raises(PayloadViolation) as caught:
        validate_payload(version, action, payload, response=False, message_id="m1")
    assert (caught.value.kind, caught.value.field) == (kind, field)
    assert caught.value.code(version) in error_codes(version)
    assert not ocpp_accepts(version, action, payload, response=False)


@pytest.mark.parametrize(
    ("version", "code"),
    [
        pytest.param(V16, "OccurenceConstraintViolation", id="1.6-spelling"),
        pytest.param(V201, "OccurrenceConstraintViolation", id="2.0.1-spelling"),
    ],
)
def test_occurrence_spelling(version: OcppVersion, code: str) -> None:
    with pytest.raises(PayloadViolation) as caught:
        validate_payload(version, "Authorize", {}, response=False, message_id="m1")
    assert caught.value.code(version) == code
    assert caught.value.reply(version) == f'[4,"m1","{code}",' + (
        '"Authorize: idTag: required field missing",{"field":"idTag"}]'
        if version is V16
        else '"Authorize: idToken: required field missing",{"field":"idToken"}]'
    )


def test_multiple_of_decimal_agrees_with_ocpp() -> None:
    """21.4 is a multiple of 0.1 only in decimal; both validators must say yes."""
    for limit, ok in [(21.4, True), (16, True), (0.3, True), (4.11, False), (0.1 + 0.2, False)]:
        payload = _profile_limit(limit)
        assert ours_accepts(V16, "SetChargingProfile", payload, response=False) is ok, limit
        assert ocpp_accepts(V16, "SetChargingProfile", payload, response=False) is ok, limit


def test_unknown_action_is_not_implemented() -> None:
    with pytest.raises(UnknownAction) as caught:
        validate_payload(V16, "TransactionEvent", {}, response=False, message_id="m9")
    assert caught.value.reply(V16) == (
        '[4,"m9","NotImplemented","action \'TransactionEvent\' is not known in OCPP 1.6",{}]'
    )


def test_a_violating_result_is_not_answered() -> None:
    with pytest.raises(PayloadViolation) as caught:
        validate_payload(V16, "Heartbeat", {}, response=True, message_id="m1")
    assert caught.value.reply(V16) is None
    with pytest.raises(UnknownAction) as unknown:
        validate_payload(V16, "Nonsense", {}, response=True, message_id="m1")
    assert unknown.value.reply(V16) is None


def test_validation_does_not_touch_the_payload() -> None:
    """fastjsonschema would write schema defaults into the payload unless told not to."""
    payload = {"requestId": 1, "report": [], "chargingLimitSource": "EMS"}
    before = copy.deepcopy(payload)
    ours_accepts(V201, "ReportChargingProfiles", payload, response=False)
    assert payload == before


@pytest.mark.parametrize(("version", "action", "response"), SCHEMAS, ids=str)
def test_minimal_valid_payload_accepted_by_both(
    version: OcppVersion, action: str, response: bool
) -> None:
    schema = load_schema(version, action, response=response)
    payload = _minimal(schema, schema)
    assert ours_accepts(version, action, payload, response=response)
    assert ocpp_accepts(version, action, payload, response=response)


def _minimal(node: dict[str, Any], root: dict[str, Any]) -> Any:
    while "$ref" in node:
        node = root["definitions"][node["$ref"].removeprefix("#/definitions/")]
    if "enum" in node:
        return node["enum"][0]
    kind = str(node.get("type"))
    if kind == "object":
        props = node.get("properties", {})
        return {k: _minimal(props[k], root) for k in node.get("required", ())}
    if kind == "array":
        return [_minimal(node["items"], root) for _ in range(node.get("minItems", 0))]
    return {"string": "x", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


_PARITY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PARITY
@given(data=st.data(), which=st.sampled_from(SCHEMAS))
def test_parity_on_schema_made_payloads(
    data: st.DataObject, which: tuple[OcppVersion, str, bool]
) -> None:
    version, action, response = which
    payload = data.draw(valid(load_schema(version, action, response=response)))
    assert ours_accepts(version, action, payload, response=response) == ocpp_accepts(
        version, action, payload, response=response
    )


@_PARITY
@given(data=st.data(), which=st.sampled_from(SCHEMAS))
def test_parity_on_near_misses(data: st.DataObject, which: tuple[OcppVersion, str, bool]) -> None:
    version, action, response = which
    payload = data.draw(valid(load_schema(version, action, response=response)))
    payload = data.draw(mutated(payload))
    assert ours_accepts(version, action, payload, response=response) == ocpp_accepts(
        version, action, payload, response=response
    )


@settings(max_examples=200, deadline=None)
@given(which=st.sampled_from(SCHEMAS), payload=JSON_VALUES)
def test_parity_on_arbitrary_json(which: tuple[OcppVersion, str, bool], payload: Any) -> None:
    version, action, response = which
    assert ours_accepts(version, action, payload, response=response) == ocpp_accepts(
        version, action, payload, response=response
    )
