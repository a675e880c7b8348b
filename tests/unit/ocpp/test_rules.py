"""The broker's pure OCPP rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.ocpp_rules import (
    CHARGE_POINT_ACTIONS,
    EMPTY_ANSWER_ACTIONS,
    INT32_MAX,
    TRANSACTION_ID_PATHS_DOWN,
    TRANSACTION_ID_PATHS_UP,
    Delivery,
    EdgeIdRange,
    EdgeIdsExhausted,
    IdTokenVerdict,
    authorize_answer,
    boot_notification_answer,
    data_transfer_answer,
    edge_message_id,
    empty_answer,
    heartbeat_answer,
    is_edge_message_id,
    is_transaction_related,
    kept_across_links,
    may_thin,
    next_edge_transaction_id,
    offline_policy,
    retry_key,
    rewrite_down,
    rewrite_up,
    start_dedup_key,
    start_transaction_answer,
    transaction_id_of,
    utc_text,
)
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.framing import Call, parse_frame
from drivers.ocpp.validation import actions, load_schema, validate_payload

V16, V201 = OcppVersion.V16, OcppVersion.V201
NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("version", "action", "payload", "delivery", "key"),
    [
        pytest.param(V16, "StartTransaction", {}, Delivery.TRANSACTION, (), id="start"),
        pytest.param(V16, "StopTransaction", {}, Delivery.TRANSACTION, (), id="stop"),
        pytest.param(
            V16,
            "MeterValues",
            {"connectorId": 1, "transactionId": 3},
            Delivery.TRANSACTION,
            (),
            id="tx-meter-values",
        ),
        pytest.param(
            V16, "MeterValues", {"connectorId": 1}, Delivery.QUEUE, (), id="clock-meter-values"
        ),
        pytest.param(
            V16, "SecurityEventNotification", {}, Delivery.TRANSACTION, (), id="security-event"
        ),
        pytest.param(V201, "TransactionEvent", {}, Delivery.TRANSACTION, (), id="201-tx-event"),
        pytest.param(
            V201, "SecurityEventNotification", {}, Delivery.TRANSACTION, (), id="201-security-event"
        ),
        pytest.param(
            V16,
            "StatusNotification",
            {"connectorId": 2},
            Delivery.LATEST,
            ("StatusNotification", 2),
            id="status-per-connector",
        ),
        pytest.param(
            V201,
            "StatusNotification",
            {"evseId": 1, "connectorId": 2},
            Delivery.LATEST,
            ("StatusNotification", 1, 2),
            id="201-status-per-connector",
        ),
        pytest.param(
            V16, "BootNotification", {}, Delivery.LATEST, ("BootNotification",), id="boot"
        ),
        pytest.param(
            V16,
            "FirmwareStatusNotification",
            {},
            Delivery.LATEST,
            ("FirmwareStatusNotification",),
            id="firmware-status",
        ),
        pytest.param(V16, "Heartbeat", {}, Delivery.DROP, (), id="heartbeat"),
        pytest.param(V201, "Heartbeat", {}, Delivery.DROP, (), id="201-heartbeat"),
        pytest.param(V16, "Authorize", {}, Delivery.DROP, (), id="authorize"),
        pytest.param(V16, "DataTransfer", {}, Delivery.QUEUE, (), id="data-transfer"),
        pytest.param(V201, "MeterValues", {"evseId": 1}, Delivery.QUEUE, (), id="201-meter-values"),
        pytest.param(V201, "NotifyEvent", {}, Delivery.QUEUE, (), id="201-notify-event"),
    ],
)
def test_offline_policy(
    version: OcppVersion,
    action: str,
    payload: dict[str, Any],
    delivery: Delivery,
    key: tuple[Any, ...],
) -> None:
    policy = offline_policy(version, action, payload)
    assert (policy.delivery, policy.coalesce_key) == (delivery, key)
    assert is_transaction_related(version, action, payload) is (delivery is Delivery.TRANSACTION)


@pytest.mark.parametrize(
    ("version", "event_type", "thin"),
    [
        pytest.param(V201, "Updated", True, id="updated"),
        pytest.param(V201, "Started", False, id="started"),
        pytest.param(V201, "Ended", False, id="ended"),
        pytest.param(V16, "Updated", False, id="1.6"),
    ],
)
def test_only_intermediate_updates_may_be_thinned(
    version: OcppVersion, event_type: str, thin: bool
) -> None:
    assert may_thin(version, "TransactionEvent", {"eventType": event_type}) is thin


@pytest.mark.parametrize("version", list(OcppVersion), ids=str)
def test_action_tables_name_real_actions(version: OcppVersion) -> None:
    assert CHARGE_POINT_ACTIONS[version] <= actions(version)
    assert EMPTY_ANSWER_ACTIONS[version] <= CHARGE_POINT_ACTIONS[version]
    for action in EMPTY_ANSWER_ACTIONS[version]:
        validate_payload(version, action, empty_answer(), response=True)


def test_every_charge_point_action_has_a_policy_and_nothing_else_is_transactional() -> None:
    transactional = {
        (v, a)
        for v in OcppVersion
        for a in CHARGE_POINT_ACTIONS[v]
        if is_transaction_related(v, a, {"transactionId": 1})
    }
    assert transactional == {
        (V16, "StartTransaction"),
        (V16, "StopTransaction"),
        (V16, "MeterValues"),
        (V16, "SecurityEventNotification"),
        (V201, "TransactionEvent"),
        (V201, "SecurityEventNotification"),
    }


@pytest.mark.parametrize(
    ("now", "text"),
    [
        pytest.param(NOW, "2024-05-01T12:00:00.123Z", id="utc"),
        pytest.param(
            datetime(2024, 5, 1, 14, 0, 0, 5000, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-01T12:00:00.005Z",
            id="offset",
        ),
        pytest.param(
            datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            "2024-12-31T23:59:59.999Z",
            id="milliseconds-truncated",
        ),
        pytest.param(
            datetime(2025, 1, 1, 0, 30, 0, 1000, tzinfo=timezone(timedelta(hours=1))),
            "2024-12-31T23:30:00.001Z",
            id="offset-across-the-year",
        ),
    ],
)
def test_utc_text(now: datetime, text: str) -> None:
    assert utc_text(now) == text


def test_utc_text_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        utc_text(datetime(2024, 5, 1))


ACCEPTED = IdTokenVerdict(status="Accepted", expiry_utc=NOW, parent_id_tag="GROUP1")


@pytest.mark.parametrize(
    ("version", "action", "payload"),
    [
        pytest.param(
            V16, "BootNotification", boot_notification_answer(NOW, interval_s=300), id="boot"
        ),
        pytest.param(
            V201, "BootNotification", boot_notification_answer(NOW, interval_s=60), id="201-boot"
        ),
        pytest.param(V16, "Heartbeat", heartbeat_answer(NOW), id="heartbeat"),
        pytest.param(V201, "Heartbeat", heartbeat_answer(NOW), id="201-heartbeat"),
        pytest.param(V16, "StatusNotification", empty_answer(), id="status"),
        pytest.param(V16, "DataTransfer", data_transfer_answer(), id="data-transfer"),
        pytest.param(
            V201, "DataTransfer", data_transfer_answer("Rejected"), id="201-data-transfer"
        ),
        pytest.param(V16, "Authorize", authorize_answer(V16, ACCEPTED), id="authorize"),
        pytest.param(V201, "Authorize", authorize_answer(V201, ACCEPTED), id="201-authorize"),
        pytest.param(
            V201,
            "Authorize",
            authorize_answer(V201, IdTokenVerdict(status="NotAtThisTime")),
            id="201-authorize-201-status",
        ),
        pytest.param(
            V16, "StartTransaction", start_transaction_answer(2_000_000_001, ACCEPTED), id="start"
        ),
    ],
)
def test_local_answers_follow_the_schemas(
    version: OcppVersion, action: str, payload: dict[str, Any]
) -> None:
    validate_payload(version, action, payload, response=True)


def test_local_answer_contents() -> None:
    assert boot_notification_answer(NOW, interval_s=300) == {
        "status": "Accepted",
        "currentTime": "2024-05-01T12:00:00.123Z",
        "interval": 300,
    }
    assert start_transaction_answer(2_000_000_001, ACCEPTED) == {
        "transactionId": 2_000_000_001,
        "idTagInfo": {
            "status": "Accepted",
            "expiryDate": "2024-05-01T12:00:00.123Z",
            "parentIdTag": "GROUP1",
        },
    }


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(
            lambda: authorize_answer(V16, IdTokenVerdict(status="NoCredit")),
            "not an OCPP 1.6 authorization status",
            id="201-status-in-1.6",
        ),
        pytest.param(
            lambda: start_transaction_answer(0, ACCEPTED), "positive int32", id="tx-id-zero"
        ),
        pytest.param(
            lambda: start_transaction_answer(-1, ACCEPTED), "positive int32", id="tx-id-minus-one"
        ),
        pytest.param(
            lambda: start_transaction_answer(INT32_MAX + 1, ACCEPTED),
            "positive int32",
            id="tx-id-int64",
        ),
        pytest.param(
            lambda: boot_notification_answer(NOW, interval_s=1, status="Fine"),
            "BootNotification status",
            id="boot-status",
        ),
        pytest.param(
            lambda: data_transfer_answer("Maybe"), "DataTransferStatus", id="data-transfer-status"
        ),
    ],
)
def test_answer_builders_refuse_bad_values(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# ---- transaction id rewriting on raw frames ----

UP = {2_000_000_001: 4711}
DOWN = {4711: 2_000_000_001}


def _call(text: str) -> Call:
    frame = parse_frame(text)
    assert isinstance(frame, Call)
    return frame


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[2, "m1", "MeterValues", {"connectorId": 1, "transactionId": 2000000001, '
            '"meterValue": [{"timestamp": "2024-05-01T12:00:00Z", '
            '"sampledValue": [{"value": "1234.50"}]}]}]',
            '[2, "m1", "MeterValues", {"connectorId": 1, "transactionId": 4711, '
            '"meterValue": [{"timestamp": "2024-05-01T12:00:00Z", '
            '"sampledValue": [{"value": "1234.50"}]}]}]',
            id="meter-values-spliced-byte-for-byte",
        ),
        pytest.param(
            '[2,"m2","StopTransaction",{"transactionId":2000000001,"meterStop":5000,'
            '"timestamp":"2024-05-01T13:00:00Z","reason":"Local"}]',
            '[2,"m2","StopTransaction",{"transactionId":4711,"meterStop":5000,'
            '"timestamp":"2024-05-01T13:00:00Z","reason":"Local"}]',
            id="stop",
        ),
        pytest.param(
            '[2,"m3","StopTransaction",{"transactionId":7,"meterStop":5000,'
            '"timestamp":"2024-05-01T13:00:00Z"}]',
            None,
            id="stop-of-a-cloud-id-untouched",
        ),
        pytest.param(
            '[2,"m4","Heartbeat",{}]',
            None,
            id="no-transaction-id",
        ),
        pytest.param(
            '[2,"m5","DataTransfer",{"vendorId":"v","data":"{\\"transactionId\\":2000000001}"}]',
            None,
            id="id-inside-a-string-untouched",
        ),
    ],
)
def test_rewrite_up(text: str, expected: str | None) -> None:
    assert rewrite_up(_call(text), UP) == (text if expected is None else expected)


SET_PROFILE = (
    '[2,"c1","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{'
    '"chargingProfileId":10,"transactionId":4711,"stackLevel":1,'
    '"chargingProfilePurpose":"TxProfile","chargingProfileKind":"Relative",'
    '"chargingSchedule":{"chargingRateUnit":"A","chargingSchedulePeriod":'
    '[{"startPeriod":0,"limit":16.0}]}}}]'
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[2,"c0","RemoteStopTransaction",{"transactionId":4711}]',
            '[2,"c0","RemoteStopTransaction",{"transactionId":2000000001}]',
            id="remote-stop",
        ),
        pytest.param(
            SET_PROFILE, SET_PROFILE.replace("4711", "2000000001"), id="tx-profile-keeps-16.0"
        ),
        pytest.param(
            '[2,"c2","RemoteStopTransaction",{"transactionId":99}]',
            None,
            id="unmapped-untouched",
        ),
        pytest.param(
            '[2,"c3","GetCompositeSchedule",{"connectorId":1,"duration":3600}]',
            None,
            id="composite-schedule-has-no-id",
        ),
        pytest.param(
            '[2,"c4","MeterValues",{"connectorId":1,"transactionId":4711,"meterValue":[]}]',
            None,
            id="up-action-not-rewritten-down",
        ),
    ],
)
def test_rewrite_down(text: str, expected: str | None) -> None:
    assert rewrite_down(_call(text), DOWN) == (text if expected is None else expected)


def test_rewrite_falls_back_to_reserialising_when_the_text_is_ambiguous() -> None:
    # An escaped key hides the real field from the text search; the result must still be right.
    text = '[2,"m1","RemoteStopTransaction",{"transaction\\u0049d":4711}]'
    out = rewrite_down(_call(text), DOWN)
    assert orjson.loads(out) == [2, "m1", "RemoteStopTransaction", {"transactionId": 2_000_000_001}]


def test_rewrite_leaves_the_parsed_frame_alone() -> None:
    call = _call(SET_PROFILE)
    rewrite_down(call, DOWN)
    assert call.payload["csChargingProfiles"]["transactionId"] == 4711
    assert transaction_id_of(call) == 4711


@pytest.mark.parametrize(
    ("action", "paths"),
    [*TRANSACTION_ID_PATHS_UP.items(), *TRANSACTION_ID_PATHS_DOWN.items()],
)
def test_rewrite_paths_exist_in_the_schemas(action: str, paths: tuple[str, ...]) -> None:
    node: Any = load_schema(V16, action, response=False)
    for key in paths:
        node = node["properties"][key]
    assert node["type"] == "integer"


def test_every_1_6_request_with_a_transaction_id_is_covered() -> None:
    covered = set(TRANSACTION_ID_PATHS_UP) | set(TRANSACTION_ID_PATHS_DOWN)
    with_tx = {
        a
        for a in actions(V16)
        if "transactionId" in orjson.dumps(load_schema(V16, a, response=False)).decode()
    }
    assert with_tx == covered


# ---- edge ids ----


@pytest.mark.parametrize(
    ("first", "last"),
    [
        pytest.param(0, 10, id="zero"),
        pytest.param(-1, 10, id="minus-one"),
        pytest.param(10, 9, id="empty"),
        pytest.param(1, INT32_MAX + 1, id="past-int32"),
    ],
)
def test_edge_range_refuses(first: int, last: int) -> None:
    with pytest.raises(ValueError, match="edge transaction id range"):
        EdgeIdRange(first=first, last=last)


@pytest.mark.parametrize(
    ("previous", "in_use", "expected"),
    [
        pytest.param(None, set(), 100, id="first"),
        pytest.param(100, set(), 101, id="next"),
        pytest.param(103, set(), 100, id="wraps"),
        pytest.param(5, set(), 100, id="previous-outside-range"),
        pytest.param(100, {101, 102}, 103, id="skips-in-use"),
        pytest.param(102, {103, 100}, 101, id="wraps-and-skips"),
    ],
)
def test_next_edge_transaction_id(previous: int | None, in_use: set[int], expected: int) -> None:
    assert next_edge_transaction_id(previous, EdgeIdRange(first=100, last=103), in_use) == expected


def test_edge_ids_exhausted() -> None:
    with pytest.raises(EdgeIdsExhausted):
        next_edge_transaction_id(100, EdgeIdRange(first=100, last=101), {100, 101})


@given(
    first=st.integers(1, INT32_MAX),
    span=st.integers(0, 50),
    previous=st.none() | st.integers(-5, INT32_MAX),
    in_use=st.sets(st.integers(1, INT32_MAX), max_size=5),
)
def test_minted_ids_are_positive_int32_in_range_and_free(
    first: int, span: int, previous: int | None, in_use: set[int]
) -> None:
    id_range = EdgeIdRange(first=first, last=min(first + span, INT32_MAX))
    try:
        minted = next_edge_transaction_id(previous, id_range, in_use)
    except EdgeIdsExhausted:
        assert all(i in in_use for i in range(id_range.first, id_range.last + 1))
        return
    assert 1 <= minted <= INT32_MAX
    assert minted in id_range
    assert minted not in in_use


def test_start_dedup_key_matches_a_retry_with_another_timestamp_spelling() -> None:
    start = {
        "connectorId": 1,
        "idTag": "TAG",
        "meterStart": 1000,
        "timestamp": "2024-05-01T14:00:00.000+02:00",
    }
    retry = {**start, "timestamp": "2024-05-01T12:00:00Z"}
    other = {**start, "meterStart": 1001}
    assert start_dedup_key(start) == start_dedup_key(retry)
    assert start_dedup_key(start) != start_dedup_key(other)
    assert start_dedup_key(start).text() == '[1,"TAG",1000,"2024-05-01T12:00:00.000Z"]'
    odd = {**start, "timestamp": "yesterday"}
    assert start_dedup_key(odd).timestamp_utc == "yesterday"


_STOP = {"transactionId": 7, "meterStop": 1500, "timestamp": "2024-05-01T12:30:00Z"}
_MV = {
    "connectorId": 1,
    "transactionId": 7,
    "meterValue": [{"timestamp": "2024-05-01T12:10:00Z", "sampledValue": [{"value": "1200"}]}],
}
_EVENT = {
    "eventType": "Updated",
    "timestamp": "2024-05-01T12:10:00Z",
    "triggerReason": "MeterValuePeriodic",
    "seqNo": 3,
    "transactionInfo": {"transactionId": "tx-1"},
}
_START = {"connectorId": 1, "idTag": "TAG", "meterStart": 1000, "timestamp": "2024-05-01T12:00:00Z"}


@pytest.mark.parametrize(
    ("version", "action", "first", "again", "same"),
    [
        pytest.param(V16, "StopTransaction", _STOP, dict(reversed(_STOP.items())), True, id="stop"),
        pytest.param(
            V16, "StopTransaction", _STOP, {**_STOP, "meterStop": 1501}, False, id="stop-other"
        ),
        pytest.param(V16, "MeterValues", _MV, {**_MV}, True, id="meter-values"),
        pytest.param(
            V16,
            "MeterValues",
            _MV,
            {**_MV, "meterValue": [{**_MV["meterValue"][0], "sampledValue": [{"value": "1201"}]}]},
            False,
            id="meter-values-next-value",
        ),
        pytest.param(V201, "TransactionEvent", _EVENT, {**_EVENT}, True, id="event"),
        pytest.param(
            V201, "TransactionEvent", _EVENT, {**_EVENT, "seqNo": 4}, False, id="event-next"
        ),
        pytest.param(
            V201,
            "TransactionEvent",
            _EVENT,
            {**_EVENT, "triggerReason": "ChargingStateChanged"},
            False,
            id="event-same-seq-no-other-content",
        ),
        pytest.param(
            V16,
            "StartTransaction",
            _START,
            {**_START, "timestamp": "2024-05-01T14:00:00+02:00"},
            True,
            id="start-another-timestamp-spelling",
        ),
    ],
)
def test_retry_key_takes_only_the_same_message_for_a_retry(
    version: OcppVersion, action: str, first: dict[str, Any], again: dict[str, Any], same: bool
) -> None:
    key = retry_key(version, action, first)
    assert key is not None
    assert (retry_key(version, action, again) == key) is same


@pytest.mark.parametrize(
    ("version", "action", "payload"),
    [
        pytest.param(V16, "MeterValues", {"connectorId": 1, "meterValue": []}, id="no-transaction"),
        pytest.param(V16, "Heartbeat", {}, id="heartbeat"),
        pytest.param(V201, "MeterValues", {"evseId": 1, "meterValue": []}, id="201-meter-values"),
    ],
)
def test_a_message_outside_transactions_is_never_a_retry(
    version: OcppVersion, action: str, payload: dict[str, Any]
) -> None:
    assert retry_key(version, action, payload) is None


@pytest.mark.parametrize(
    ("version", "action", "payload", "kept"),
    [
        pytest.param(V16, "StartTransaction", _START, True, id="start"),
        pytest.param(V16, "StopTransaction", _STOP, True, id="stop"),
        pytest.param(V16, "MeterValues", _MV, False, id="transaction-meter-values"),
        pytest.param(
            V201, "TransactionEvent", {**_EVENT, "eventType": "Started"}, True, id="started"
        ),
        pytest.param(V201, "TransactionEvent", {**_EVENT, "eventType": "Ended"}, True, id="ended"),
        pytest.param(
            V201, "TransactionEvent", {**_EVENT, "eventType": "Updated"}, False, id="updated"
        ),
    ],
)
def test_what_opens_or_closes_a_transaction_is_kept_across_links_a_sample_is_not(
    version: OcppVersion, action: str, payload: dict[str, Any], kept: bool
) -> None:
    """Kept with the charge point's state, a sample rewrote it at every sample (bench/broker.py:
    transaction MeterValues 1262-1274 -> 1059-1135 msg/s); a start or stop sent again on a later link must
    not reach the cloud twice (billing)."""
    assert retry_key(version, action, payload) is not None
    assert kept_across_links(version, action, payload) is kept


@given(epoch=st.integers(0, 2**64), counter=st.integers(0, 2**64))
def test_edge_message_ids_fit_and_are_recognised(epoch: int, counter: int) -> None:
    message_id = edge_message_id(epoch, counter)
    assert len(message_id) <= 36
    assert is_edge_message_id(message_id)


@given(
    a=st.tuples(st.integers(0, 10**6), st.integers(0, 10**9)),
    b=st.tuples(st.integers(0, 10**6), st.integers(0, 10**9)),
)
def test_edge_message_ids_are_distinct(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert (edge_message_id(*a) == edge_message_id(*b)) is (a == b)


def test_cloud_ids_are_not_edge_ids() -> None:
    assert not is_edge_message_id("19223201")
    assert not is_edge_message_id("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
