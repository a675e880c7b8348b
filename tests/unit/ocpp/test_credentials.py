"""Which cloud calls rotate a charge point's key, and which key applies (actors/credentials.py)."""

from __future__ import annotations

from typing import Any

import pytest

from actors import credentials
from config.ocpp import Secret

SBP = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}
OTHER = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}


def set_vars(*items: dict[str, Any]) -> dict[str, Any]:
    return {"setVariableData": list(items)}


def results(*items: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return {"setVariableResult": [{**names, "attributeStatus": s} for names, s in items]}


@pytest.mark.parametrize(
    ("action", "payload", "answer", "expected"),
    [
        (
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": "k" * 16},
            {"status": "Accepted"},
            "k" * 16,
        ),
        (
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": "k" * 16},
            {"status": "RebootRequired"},
            "k" * 16,
        ),
        (
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": "k" * 16},
            {"status": "Rejected"},
            None,
        ),
        (
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": "k" * 16},
            {"status": "NotSupported"},
            None,
        ),
        (
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": ""},
            {"status": "Accepted"},
            None,
        ),
        (
            "ChangeConfiguration",
            {"key": "HeartbeatInterval", "value": "60"},
            {"status": "Accepted"},
            None,
        ),
        ("GetConfiguration", {"key": ["AuthorizationKey"]}, {}, None),
        (
            "SetVariables",
            set_vars({**SBP, "attributeValue": "n" * 16}),
            results((SBP, "Accepted")),
            "n" * 16,
        ),
        (
            "SetVariables",
            set_vars({**OTHER, "attributeValue": "60"}, {**SBP, "attributeValue": "n" * 16}),
            results((OTHER, "Accepted"), (SBP, "Accepted")),
            "n" * 16,
        ),
        (
            "SetVariables",
            set_vars({**OTHER, "attributeValue": "60"}, {**SBP, "attributeValue": "n" * 16}),
            results((OTHER, "Accepted"), (SBP, "Rejected")),
            None,
        ),
        (
            "SetVariables",
            set_vars({**SBP, "attributeValue": "n" * 16, "attributeType": "Target"}),
            results((SBP, "Accepted")),
            None,
        ),
        (
            "SetVariables",
            set_vars({**SBP, "attributeValue": 12345678901234567}),
            results((SBP, "Accepted")),
            None,
        ),
        ("SetVariables", {"setVariableData": "garbage"}, {"setVariableResult": None}, None),
    ],
)
def test_a_rotation_is_an_accepted_change_of_the_key(
    action: str, payload: dict[str, Any], answer: dict[str, Any], expected: str | None
) -> None:
    assert credentials.rotation(action, payload, answer) == expected


def test_the_rotated_key_applies_while_the_site_file_holds_the_key_it_replaced() -> None:
    site, cloud = Secret("site-key-0123456789"), Secret("cloud-key-0123456789")
    first = credentials.rotated(
        None,
        "new-key-1-0123456789",
        site_password=site,
        site_cloud_password=cloud,
        action="ChangeConfiguration",
        now_utc="2026-11-29T00:00:00Z",
    )
    assert credentials.listener_passwords(first, site) == ("new-key-1-0123456789", site.reveal())
    assert credentials.cloud_password(first, cloud) == "new-key-1-0123456789"
    second = credentials.rotated(
        first,
        "new-key-2-0123456789",
        site_password=site,
        site_cloud_password=cloud,
        action="ChangeConfiguration",
        now_utc="2026-11-29T01:00:00Z",
    )
    assert credentials.listener_passwords(second, site) == (
        "new-key-2-0123456789",
        "new-key-1-0123456789",
    )
    # Each side of the site file overrides separately.
    other = Secret("operator-key-0123456")
    assert credentials.listener_passwords(second, other) == (other.reveal(), None)
    assert credentials.cloud_password(second, cloud) == "new-key-2-0123456789"
    assert credentials.cloud_password(second, other) == other.reveal()
    # No password in the site file: a key the cloud set still applies on both sides.
    bare = credentials.rotated(
        None,
        "new-key-3-0123456789",
        site_password=None,
        site_cloud_password=None,
        action="SetVariables",
        now_utc="2026-11-29T02:00:00Z",
    )
    assert credentials.listener_passwords(bare, None) == ("new-key-3-0123456789", None)
    assert credentials.cloud_password(bare, None) == "new-key-3-0123456789"
    status = credentials.status(second, site)
    assert status == {
        "rotated_utc": "2026-11-29T01:00:00Z",
        "by": "ChangeConfiguration",
        "in_force": True,
        "previous_accepted": True,
    }
    assert "new-key" not in str(status)
    assert "new-key" not in repr(second)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("k" * 16, True),
        ("k" * 40, True),
        ("k" * 15, False),
        ("k" * 41, False),
        ("0123456789abcdef0123456789abcdef01234567", True),  # 20 bytes as hex
        ("key with spaces ok", True),
        ("tab\there-0123456789", False),
        ("umlaut-ä-0123456789", False),
        (1234567890123456, False),
        (None, False),
    ],
)
def test_which_keys_the_edge_takes_for_itself(value: object, ok: bool) -> None:
    problem = credentials.edge_key_problem(value)
    assert (problem is None) is ok
    if problem is not None and isinstance(value, str):
        assert value not in problem  # the reason never shows the key


def test_the_edges_rotated_key_keeps_the_one_in_use_as_previous() -> None:
    site = Secret("site-file-edge-key-0")
    first = credentials.edge_rotated(
        None, "k" * 16, site_password=site, action="ChangeConfiguration", now_utc="t1"
    )
    assert (first.password, first.previous) == ("k" * 16, "site-file-edge-key-0")
    second = credentials.edge_rotated(
        first, "j" * 16, site_password=site, action="ChangeConfiguration", now_utc="t2"
    )
    assert (second.password, second.previous) == ("j" * 16, "k" * 16)
    again = credentials.edge_rotated(
        second, "j" * 16, site_password=site, action="ChangeConfiguration", now_utc="t3"
    )
    assert again.previous is None
    assert credentials.cloud_password(second, site) == "j" * 16
    # another edge_password in the site file overrides it
    assert (
        credentials.cloud_password(second, Secret("operator-key-000000")) == "operator-key-000000"
    )
    assert credentials.edge_status(second, site) == {
        "rotated_utc": "t2",
        "by": "ChangeConfiguration",
        "in_force": True,
        "previous_kept": True,
    }
    assert "j" * 16 not in repr(second)
