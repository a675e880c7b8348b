"""The listener's pure handshake rules: the identity in the path and HTTP Basic."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ocpp.identity import identity_problem
from drivers.ocpp.server import InvalidIdentity, basic_auth_ok, charge_point_id_from_path
from drivers.ocpp.upstream import basic_authorization, upstream_url

KEY_HEX = "0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF"  # OCPP-J 1.6 section 6.2.2's example


@pytest.mark.parametrize(
    ("path", "identity"),
    [
        pytest.param("/ocpp/CS001", "CS001", id="plain"),
        pytest.param("/ocpp/RDAM%20123", "RDAM 123", id="percent-space"),
        pytest.param("/ocpp/CP-1_a.b*c=d+e|f@g", "CP-1_a.b*c=d+e|f@g", id="identifier-string"),
        pytest.param("/ocpp/CP1?token=x", "CP1", id="query-ignored"),
        pytest.param("/ocpp/" + "x" * 48, "x" * 48, id="48-chars"),
    ],
)
def test_identity_from_path(path: str, identity: str) -> None:
    assert charge_point_id_from_path(path) == identity


@pytest.mark.parametrize(
    ("path", "why"),
    [
        pytest.param("/other/CP1", "does not start", id="wrong-prefix"),
        pytest.param("/ocpp/", "empty", id="no-id"),
        pytest.param("/ocpp/a/b", "one path segment", id="two-segments"),
        pytest.param("/ocpp/a%2Fb", "'/'", id="encoded-slash"),
        pytest.param("/ocpp/CP%3A1", "':'", id="colon"),
        pytest.param("/ocpp/CP%0A1", "'\\n'", id="newline"),
        pytest.param("/ocpp/%FF", "UTF-8", id="bad-utf8"),
        pytest.param("/ocpp/caf%C3%A9", "'é'", id="non-ascii"),
        pytest.param("/ocpp/%20CP1", "space", id="leading-space"),
        pytest.param("/ocpp/" + "x" * 49, "48", id="49-chars"),
        # A dot-segment: relayed as <cloud url>/.. a CSMS that normalises paths would see its
        # base URL's parent (with auto_register, any charge point may name itself so).
        pytest.param("/ocpp/..", "dot-segment", id="dot-dot"),
        pytest.param("/ocpp/%2E%2E", "dot-segment", id="encoded-dot-dot"),
        pytest.param("/ocpp/.", "dot-segment", id="dot"),
    ],
)
def test_bad_identity_in_path(path: str, why: str) -> None:
    with pytest.raises(InvalidIdentity, match=why.replace("\\", "\\\\")):
        charge_point_id_from_path(path)


@given(
    identity=st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=48
    )
)
def test_any_valid_identity_survives_the_url(identity: str) -> None:
    url = upstream_url("ws://csms.example.com/ocpp/", identity)
    path = url.removeprefix("ws://csms.example.com")
    if identity_problem(identity) is None:
        assert charge_point_id_from_path(path) == identity
    else:
        with pytest.raises(InvalidIdentity):
            charge_point_id_from_path(path)


def _basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


@pytest.mark.parametrize(
    ("header", "password", "ok"),
    [
        pytest.param(
            basic_authorization("CP1", "secret-secret-16"), "secret-secret-16", True, id="right"
        ),
        pytest.param(
            basic_authorization("CP1", "secret-secret-17"),
            "secret-secret-16",
            False,
            id="wrong-password",
        ),
        pytest.param(
            basic_authorization("CP2", "secret-secret-16"),
            "secret-secret-16",
            False,
            id="user-is-not-the-identity",
        ),
        pytest.param(None, "secret-secret-16", False, id="no-header"),
        pytest.param(
            basic_authorization("CP1", "secret-secret-16"), None, False, id="no-password-configured"
        ),
        pytest.param("Bearer abc", "secret-secret-16", False, id="other-scheme"),
        pytest.param("Basic !!!", "secret-secret-16", False, id="not-base64"),
        pytest.param(
            "Basic " + base64.b64encode(b"CP1").decode(), "secret-secret-16", False, id="no-colon"
        ),
        pytest.param(
            "basic " + base64.b64encode(b"CP1:a:b-c-d-e-f-g-h-i").decode(),
            "a:b-c-d-e-f-g-h-i",
            True,
            id="colon-in-password-lowercase-scheme",
        ),
        pytest.param(_basic(b"CP1", bytes.fromhex(KEY_HEX)), KEY_HEX, True, id="raw-20-byte-key"),
        pytest.param(basic_authorization("CP1", KEY_HEX), KEY_HEX, True, id="hex-text-key"),
        pytest.param(
            _basic(b"CP1", bytes.fromhex(KEY_HEX)[:-1]), KEY_HEX, False, id="raw-key-short"
        ),
    ],
)
def test_basic_auth(header: str | None, password: str | None, ok: bool) -> None:
    assert basic_auth_ok(header, "CP1", password) is ok


def test_upstream_url_encodes_the_identity() -> None:
    assert upstream_url("wss://c.example/ocpp/", "RDAM 123") == "wss://c.example/ocpp/RDAM%20123"
    assert upstream_url("ws://c.example/ocpp", "a/b") == "ws://c.example/ocpp/a%2Fb"
