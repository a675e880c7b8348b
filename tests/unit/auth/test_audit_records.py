"""Audit records: exact round trip, version migration, and redaction that never leaks a secret."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from actors import audit_records as ar
from actors.audit_records import (
    REDACTED,
    AuditKind,
    AuditRecord,
    decode_record,
    encode_record,
    new_record,
    redact,
    secret_name,
    with_id,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
records = st.builds(
    AuditRecord,
    id=st.none() | st.integers(0, 2**63 - 1),
    time_utc=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    actor=st.text(max_size=40),
    charge_point_id=st.none() | st.text(max_size=36),
    kind=st.sampled_from(list(AuditKind)),
    decision=st.text(max_size=40),
    inputs=st.dictionaries(st.text(max_size=12), json_values, max_size=5),
    reason=st.text(max_size=80),
)


@given(records)
def test_records_round_trip_exactly(record: AuditRecord) -> None:
    assert decode_record(encode_record(record)) == record


def test_encoding_carries_the_record_version() -> None:
    record = with_id(
        new_record(time_utc=NOW, actor="a", kind=AuditKind.RESTART, decision="d", reason="r"), 7
    )
    doc = orjson.loads(encode_record(record))
    assert doc["rv"] == ar.RECORD_VERSION
    assert doc["id"] == 7


def test_old_versions_migrate_and_newer_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    record = new_record(time_utc=NOW, actor="a", kind=AuditKind.RESTART, decision="d", reason="r")
    v1 = encode_record(record)

    def v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "reason": doc["reason"] + " (migrated)"}

    monkeypatch.setattr(ar, "RECORD_VERSION", 2)
    monkeypatch.setitem(ar.MIGRATIONS, 1, v1_to_v2)
    assert decode_record(v1).reason == "r (migrated)"
    monkeypatch.setattr(ar, "RECORD_VERSION", 1)
    newer = orjson.dumps({**orjson.loads(v1), "rv": 2})
    with pytest.raises(ValueError, match="newer"):
        decode_record(newer)


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        pytest.param({"t": NOW}, "inputs.t: datetime", id="datetime-not-plain"),
        pytest.param({"n": float("nan")}, "inputs.n: nan", id="nan"),
        pytest.param({"deep": [{"x": 2**70}]}, r"inputs.deep\[0\].x", id="int-too-big"),
        pytest.param({"s": {1, 2}}, "inputs.s: set", id="set"),
        pytest.param({"d": {1: "x"}}, "inputs.d: key 1", id="non-string-key"),
    ],
)
def test_inputs_must_be_plain_json(inputs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        new_record(
            time_utc=NOW, actor="a", kind=AuditKind.LIMIT, decision="d", reason="r", inputs=inputs
        )


def test_naive_time_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        new_record(
            time_utc=datetime(2025, 1, 1), actor="a", kind=AuditKind.LIMIT, decision="d", reason="r"
        )


# --- redaction -------------------------------------------------------------------------------

SECRET = "hunter2-SECRET-VALUE"


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        pytest.param({"password": SECRET}, {"password": REDACTED}, id="password"),
        pytest.param(
            {"AuthorizationKey": SECRET}, {"AuthorizationKey": REDACTED}, id="authorization-key"
        ),
        pytest.param(
            {"headers": {"Authorization": SECRET, "Host": "x"}},
            {"headers": {"Authorization": REDACTED, "Host": "x"}},
            id="authorization-header",
        ),
        pytest.param(
            {"headers": [["Authorization", SECRET], ["Host", "x"]]},
            {"headers": [["Authorization", REDACTED], ["Host", "x"]]},
            id="header-pairs",
        ),
        pytest.param(
            {"payload": {"key": "AuthorizationKey", "value": SECRET}},
            {"payload": {"key": "AuthorizationKey", "value": REDACTED}},
            id="ocpp16-change-configuration",
        ),
        pytest.param(
            {"key": "AuthorizationKey", "value": SECRET, "n": 1},
            {"key": "AuthorizationKey", "value": REDACTED, "n": 1},
            id="flat-key-value-pair",
        ),
        pytest.param(
            {
                "setVariableData": [
                    {"attributeValue": SECRET, "variable": {"name": "BasicAuthPassword"}}
                ]
            },
            {
                "setVariableData": [
                    {"attributeValue": REDACTED, "variable": {"name": "BasicAuthPassword"}}
                ]
            },
            id="ocpp201-set-variables",
        ),
        pytest.param(
            {"seen": "Basic aHVudGVyMjpwYXNz"}, {"seen": REDACTED}, id="basic-credential-value"
        ),
        pytest.param(
            {"api_token": SECRET, "x-secret": SECRET},
            {"api_token": REDACTED, "x-secret": REDACTED},
            id="token-and-secret",
        ),
        pytest.param(
            {"idToken": {"idToken": "04A1", "type": "ISO14443"}, "id_tag": "04A1"},
            {"idToken": {"idToken": "04A1", "type": "ISO14443"}, "id_tag": "04A1"},
            id="ocpp-identities-are-kept",
        ),
        pytest.param(
            {"authorization_cache_enabled": True, "key": "HeartbeatInterval", "value": "60"},
            {"authorization_cache_enabled": True, "key": "HeartbeatInterval", "value": "60"},
            id="settings-and-other-config-kept",
        ),
    ],
)
def test_redaction_cases(inputs: dict[str, Any], expected: dict[str, Any]) -> None:
    record = new_record(
        time_utc=NOW,
        actor="a",
        kind=AuditKind.FRAME_REJECTED,
        decision="d",
        reason="r",
        inputs=inputs,
    )
    assert record.inputs == expected
    assert SECRET not in encode_record(record).decode()


secret_words = st.sampled_from(
    [
        "password",
        "Passwd",
        "PASSPHRASE",
        "secret",
        "client_secret",
        "AuthorizationKey",
        "authorization_key",
        "token",
        "access_token",
        "refreshToken",
        "apiKey",
        "api-key",
        "private_key",
        "credentials",
        "Cookie",
    ]
)
secret_keys = st.builds(
    lambda pre, word, post: pre + word + post,
    st.sampled_from(["", "x_", "my", "cloud-", "Basic"]),
    secret_words,
    st.sampled_from(["", "_2", "Value", "-old"]),
)
plain_keys = st.text(
    alphabet="abcdefghjklmnqruvwxyz_", min_size=1, max_size=8
)  # no secret word fits
plain_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(alphabet="abc xyz", max_size=10)
)


def nested(depth: int) -> st.SearchStrategy[Any]:
    leaf = plain_values | st.just(SECRET)  # SECRET only ever sits under a secret key or pair
    if depth == 0:
        return plain_values
    child = nested(depth - 1)
    return st.one_of(
        plain_values,
        st.lists(child, max_size=3),
        st.dictionaries(plain_keys, child, max_size=3),
        st.dictionaries(secret_keys, leaf | child, min_size=1, max_size=3),
        st.builds(lambda k, v: {"key": k, "value": v}, secret_keys, leaf),
        st.builds(lambda k, v: [k, v], secret_keys, leaf),
    )


@given(st.dictionaries(plain_keys | secret_keys, nested(3), max_size=4), st.data())
def test_redaction_never_leaks_a_secret(inputs: dict[str, Any], data: st.DataObject) -> None:
    inputs[data.draw(secret_keys)] = SECRET
    out = redact(inputs)
    assert SECRET not in orjson.dumps(out).decode()
    assert redact(out) == out  # idempotent


@given(secret_keys)
def test_every_secret_looking_key_is_secret(key: str) -> None:
    assume(key.lower() not in ("idtoken", "groupidtoken"))
    assert secret_name(key)


flat_values = (
    plain_values
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([SECRET, "Basic aHVudGVyMjpwYXNz", "Bearer abcdefgh"])
)


@given(st.dictionaries(plain_keys | secret_keys | st.just("key"), flat_values, max_size=6))
def test_flat_inputs_take_the_fast_path_to_the_same_record(inputs: dict[str, Any]) -> None:
    """new_record's one-pass path for flat inputs gives what the general redaction gives."""
    record = new_record(
        time_utc=NOW, actor="a", kind=AuditKind.LIMIT, decision="d", reason="r", inputs=inputs
    )
    assert record.inputs == redact(inputs)
