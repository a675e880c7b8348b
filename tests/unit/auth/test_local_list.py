"""SendLocalList Full / Differential, version rules, GetLocalListVersion, persistence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import local_list as ll
from actors.id_tags import AuthStatus, IdTagInfo
from actors.local_list import (
    ListUpdate,
    LocalList,
    UpdateStatus,
    UpdateType,
    apply_update,
    handle_send_local_list,
    local_list_version,
)

ACC = IdTagInfo(status=AuthStatus.ACCEPTED)
BLK = IdTagInfo(status=AuthStatus.BLOCKED)
CURRENT = LocalList(version=5, entries={"A": ACC, "B": ACC, "C": BLK})


def tag(id_tag: str, status: str | None = "Accepted", **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"idTag": id_tag}
    if status is not None:
        item["idTagInfo"] = {"status": status, **extra}
    return item


def req16(version: int, kind: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"listVersion": version, "updateType": kind, "localAuthorizationList": list(items)}


CASES = [
    # payload, status, resulting version, resulting {id: status}
    pytest.param(
        req16(6, "Full", tag("X"), tag("Y", "Blocked")),
        UpdateStatus.ACCEPTED,
        6,
        {"X": "Accepted", "Y": "Blocked"},
        id="full-replaces",
    ),
    pytest.param(
        req16(2, "Full", tag("X")),
        UpdateStatus.ACCEPTED,
        2,
        {"X": "Accepted"},
        id="full-with-lower-version-accepted-cloud-owns-version",
    ),
    pytest.param(
        req16(9, "Full"), UpdateStatus.ACCEPTED, 0, {}, id="full-empty-clears-version-reads-0"
    ),
    pytest.param(
        {"listVersion": 9, "updateType": "Full"},
        UpdateStatus.ACCEPTED,
        0,
        {},
        id="full-without-list-clears",
    ),
    pytest.param(
        req16(6, "Differential", tag("D"), tag("A", "Expired"), tag("C", None)),
        UpdateStatus.ACCEPTED,
        6,
        {"A": "Expired", "B": "Accepted", "D": "Accepted"},
        id="differential-add-update-remove",
    ),
    pytest.param(
        req16(6, "Differential", tag("NOPE", None)),
        UpdateStatus.ACCEPTED,
        6,
        {"A": "Accepted", "B": "Accepted", "C": "Blocked"},
        id="differential-remove-absent-is-noop",
    ),
    pytest.param(
        req16(7, "Differential"),
        UpdateStatus.ACCEPTED,
        7,
        {"A": "Accepted", "B": "Accepted", "C": "Blocked"},
        id="differential-empty-takes-version-only",
    ),
    pytest.param(
        req16(6, "Differential", tag("A", None), tag("B", None), tag("C", None)),
        UpdateStatus.ACCEPTED,
        0,
        {},
        id="differential-removing-all-reads-0",
    ),
    pytest.param(
        req16(5, "Differential", tag("D")),
        UpdateStatus.VERSION_MISMATCH,
        5,
        {"A": "Accepted", "B": "Accepted", "C": "Blocked"},
        id="differential-equal-version-mismatch",
    ),
    pytest.param(
        req16(4, "Differential", tag("D")),
        UpdateStatus.VERSION_MISMATCH,
        5,
        {"A": "Accepted", "B": "Accepted", "C": "Blocked"},
        id="differential-lower-version-mismatch",
    ),
    pytest.param(
        req16(6, "Full", tag("X"), tag("X", "Blocked")),
        UpdateStatus.FAILED,
        5,
        {"A": "Accepted", "B": "Accepted", "C": "Blocked"},
        id="duplicate-ids-failed",
    ),
    pytest.param(
        req16(6, "Full", tag("X"), tag("Y", None)),
        UpdateStatus.FAILED,
        5,
        {"A": "Accepted", "B": "Accepted", "C": "Blocked"},
        id="full-entry-without-info-failed",
    ),
    pytest.param(
        req16(0, "Full", tag("X")),
        UpdateStatus.FAILED,
        5,
        {"A": "Accepted", "B": "Accepted", "C": "Blocked"},
        id="full-with-entries-version-0-failed",
    ),
    pytest.param(
        req16(6, "Full", tag("X", expiryDate="yesterday")),
        UpdateStatus.FAILED,
        5,
        {"A": "Accepted", "B": "Accepted", "C": "Blocked"},
        id="unreadable-expiry-failed",
    ),
    pytest.param(
        req16(6, "Sideways", tag("X")),
        UpdateStatus.FAILED,
        5,
        {"A": "Accepted", "B": "Accepted", "C": "Blocked"},
        id="unknown-update-type-failed",
    ),
    pytest.param(
        req16(6, "Full", tag("X", "NoCredit")),
        UpdateStatus.FAILED,
        5,
        {"A": "Accepted", "B": "Accepted", "C": "Blocked"},
        id="2.0.1-status-in-1.6-failed",
    ),
]


@pytest.mark.parametrize(("payload", "status", "version", "entries"), CASES)
def test_send_local_list_16(
    payload: dict[str, Any], status: UpdateStatus, version: int, entries: dict[str, str]
) -> None:
    result = handle_send_local_list(CURRENT, payload, protocol="ocpp1.6")
    assert result.status is status, result.reason
    assert result.local_list.version == local_list_version(result.local_list) == version
    assert {k: v.status.value for k, v in result.local_list.entries.items()} == entries
    if status is not UpdateStatus.ACCEPTED:
        assert result.local_list is CURRENT


def test_after_clearing_any_positive_differential_applies() -> None:
    cleared = handle_send_local_list(CURRENT, req16(9, "Full"), protocol="ocpp1.6").local_list
    result = handle_send_local_list(cleared, req16(3, "Differential", tag("X")), protocol="ocpp1.6")
    assert result.status is UpdateStatus.ACCEPTED
    assert local_list_version(result.local_list) == 3


def test_differential_reports_what_changed() -> None:
    result = handle_send_local_list(
        CURRENT,
        req16(6, "Differential", tag("D"), tag("A", "Expired"), tag("C", None)),
        protocol="ocpp1.6",
    )
    assert (result.added, result.updated, result.removed) == (("D",), ("A",), ("C",))
    assert result.audit_inputs()["version"] == 6


def test_expiry_and_parent_are_kept() -> None:
    payload = req16(6, "Full", tag("X", expiryDate="2030-01-01T00:00:00Z", parentIdTag="FLEET"))
    got = handle_send_local_list(CURRENT, payload, protocol="ocpp1.6").local_list.entries["X"]
    assert got == IdTagInfo(
        status=AuthStatus.ACCEPTED, expiry_utc=datetime(2030, 1, 1, tzinfo=UTC), parent_id="FLEET"
    )


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        pytest.param({"supported": False}, UpdateStatus.NOT_SUPPORTED, id="list-disabled"),
        pytest.param({"max_per_message": 1}, UpdateStatus.FAILED, id="too-many-in-one-request"),
        pytest.param({"max_entries": 3}, UpdateStatus.FAILED, id="list-would-be-too-long"),
        pytest.param(
            {"max_entries": 4, "max_per_message": 2}, UpdateStatus.ACCEPTED, id="limits-just-met"
        ),
    ],
)
def test_limits(kwargs: dict[str, Any], status: UpdateStatus) -> None:
    update = ListUpdate(
        version=6, update_type=UpdateType.DIFFERENTIAL, entries=(("D", ACC), ("C", BLK))
    )
    result = apply_update(CURRENT, update, **kwargs)
    assert result.status is status
    assert len(result.local_list) == (4 if status is UpdateStatus.ACCEPTED else 3)


def test_get_local_list_version() -> None:
    assert local_list_version(LocalList()) == 0
    assert local_list_version(CURRENT) == 5
    assert local_list_version(CURRENT, supported=False) == -1


def test_send_local_list_201() -> None:
    payload = {
        "versionNumber": 3,
        "updateType": "Full",
        "localAuthorizationList": [
            {
                "idToken": {"idToken": "04A1", "type": "ISO14443"},
                "idTokenInfo": {
                    "status": "NotAtThisTime",
                    "cacheExpiryDateTime": "2030-01-01T00:00:00+02:00",
                    "groupIdToken": {"idToken": "FLEET", "type": "Central"},
                },
            },
            {
                "idToken": {"idToken": "04A1", "type": "KeyCode"},
                "idTokenInfo": {"status": "Accepted"},
            },
        ],
    }
    result = handle_send_local_list(LocalList(), payload, protocol="ocpp2.0.1")
    assert result.status is UpdateStatus.ACCEPTED
    got = result.local_list.entries
    assert set(got) == {"ISO14443:04A1", "KeyCode:04A1"}  # same value, two types: two identities
    first = got["ISO14443:04A1"]
    assert first.expiry_utc == datetime(2029, 12, 31, 22, tzinfo=UTC)
    assert first.to_ocpp201()["groupIdToken"] == {"idToken": "FLEET", "type": "Central"}
    assert first.to_ocpp16()["status"] == "Invalid"  # 2.0.1-only refusals stay refusals in 1.6


# --- persistence -----------------------------------------------------------------------------

infos = st.builds(
    IdTagInfo,
    status=st.sampled_from(list(AuthStatus)),
    expiry_utc=st.none()
    | st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    parent_id=st.none() | st.text(max_size=20),
)
lists = st.builds(
    LocalList,
    version=st.integers(0, 2**31 - 1),
    entries=st.dictionaries(st.text(min_size=1, max_size=36), infos, max_size=20),
)


@given(lists)
def test_list_round_trips_through_json(local_list: LocalList) -> None:
    data = orjson.dumps(ll.to_dict(local_list))
    assert ll.from_dict(orjson.loads(data)) == local_list


def test_old_record_versions_migrate(monkeypatch: pytest.MonkeyPatch) -> None:
    # A pretend v2 that renamed "entries" to "ids": the v1 record must come through the hook.
    v1 = ll.to_dict(CURRENT)

    def v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            **doc,
            "rv": 2,
            "entries": {k: {**v, "migrated": True} for k, v in doc["entries"].items()},
        }

    monkeypatch.setattr(ll, "RECORD_VERSION", 2)
    monkeypatch.setitem(ll.MIGRATIONS, 1, v1_to_v2)
    assert ll.from_dict(v1) == CURRENT
    monkeypatch.delitem(ll.MIGRATIONS, 1)
    with pytest.raises(ValueError, match="no migration"):
        ll.from_dict(v1)


def test_newer_record_is_refused() -> None:
    with pytest.raises(ValueError, match="newer"):
        ll.from_dict({**ll.to_dict(CURRENT), "rv": ll.RECORD_VERSION + 1})
