"""The OCPP sections of a site file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.ocpp_rules import EdgeIdRange
from config.fields import ConfigError, Table
from config.ocpp import (
    ChargePointOcpp,
    CloudConfig,
    ListenerConfig,
    Secret,
    charge_point_ocpp_from_table,
    check_unique_ids,
    cloud_from_table,
    listener_from_table,
)
from drivers.ocpp.codes import OcppVersion

PASSWORD = "0123456789abcdef0123"


def table(data: dict[str, Any], source: str = "/site/site.toml", path: str = "x") -> Table:
    return Table(data, source=source, path=path)


def test_listener_defaults_bind_loopback() -> None:
    assert listener_from_table(table({})) == ListenerConfig()
    assert ListenerConfig().host == "127.0.0.1"
    assert ListenerConfig().compression == "off"


def test_listener_full(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "edge.crt").write_text("cert")
    (tmp_path / "edge.key").write_text("key")
    got = listener_from_table(
        table(
            {
                "host": "0.0.0.0",
                "port": 9100,
                "security_profile": 2,
                "tls_cert_file": "tls/edge.crt",
                "tls_key_file": str(tmp_path / "edge.key"),
                "max_frame_bytes": 65536,
                "ping_interval_s": 0,
                "ping_timeout_s": 10,
                "compression": "deflate",
            },
            source=str(tmp_path / "site.toml"),
        )
    )
    assert got == ListenerConfig(
        host="0.0.0.0",
        port=9100,
        security_profile=2,
        tls_cert_file=str(tmp_path / "tls" / "edge.crt"),
        tls_key_file=str(tmp_path / "edge.key"),
        max_frame_bytes=65536,
        ping_interval_s=None,
        ping_timeout_s=10.0,
        compression="deflate",
    )


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        pytest.param({"security_profile": 3}, "x.security_profile", "<= 2", id="profile-3"),
        pytest.param({"security_profile": 2}, "x.tls_cert_file", "certificate", id="tls-missing"),
        pytest.param(
            {"tls_cert_file": "a.crt"}, "x.tls_cert_file", "profile = 2", id="tls-without-profile-2"
        ),
        pytest.param(
            {"security_profile": 1, "auto_register": True},
            "x.auto_register",
            "security_profile 1 or 2",
            id="auto-register-with-auth",
        ),
        pytest.param({"max_frame_bytes": 100}, "x.max_frame_bytes", ">= 4096", id="tiny-frames"),
        pytest.param({"port": "9000"}, "x.port", "an integer", id="port-string"),
        pytest.param({"compression": "gzip"}, "x.compression", "'deflate'", id="compression"),
        pytest.param({"prot": 9000}, "x.prot", "misspelt", id="unknown-key"),
    ],
)
def test_listener_errors_name_the_key(data: dict[str, Any], key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        listener_from_table(table(data))
    assert caught.value.key == key
    assert expected in str(caught.value)
    assert caught.value.source == "/site/site.toml"


@pytest.mark.parametrize(
    ("data", "key", "got"),
    [
        pytest.param(
            {"tls_cert_file": "missing.crt", "tls_key_file": "edge.key"},
            "listener.tls_cert_file",
            "missing.crt",
            id="cert-missing",
        ),
        pytest.param(
            {"tls_cert_file": "edge.crt", "tls_key_file": "missing.key"},
            "listener.tls_key_file",
            "missing.key",
            id="key-missing",
        ),
        pytest.param(
            {"tls_cert_file": "tls", "tls_key_file": "edge.key"},
            "listener.tls_cert_file",
            "tls",
            id="cert-a-directory",
        ),
    ],
)
def test_listener_tls_files_must_be_readable(
    tmp_path: Path, data: dict[str, Any], key: str, got: str
) -> None:
    """Found at start, a missing file was a bare FileNotFoundError (exit 1: systemd restarts)."""
    (tmp_path / "edge.crt").write_text("cert")
    (tmp_path / "edge.key").write_text("key")
    (tmp_path / "tls").mkdir()
    source = str(tmp_path / "site.toml")
    with pytest.raises(ConfigError) as caught:
        listener_from_table(table({"security_profile": 2, **data}, source, path="listener"))
    assert (caught.value.source, caught.value.key) == (source, key)
    assert caught.value.got == str(tmp_path / got)
    assert "a readable file" in str(caught.value)


def test_listener_host_must_not_be_empty() -> None:
    """An empty host bound every interface; the listener binds 127.0.0.1 unless told."""
    with pytest.raises(ConfigError) as caught:
        listener_from_table(table({"host": ""}, path="listener"))
    assert caught.value.key == "listener.host"
    assert caught.value.got == ""
    assert '"0.0.0.0" or "::"' in str(caught.value)


def test_cloud_defaults() -> None:
    got = cloud_from_table(table({"url": "wss://csms.example.com/ocpp/"}))
    assert got == CloudConfig(url="wss://csms.example.com/ocpp/")
    assert got.mode == "autonomous"
    assert got.edge_transaction_ids == EdgeIdRange()


def test_cloud_full(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca")
    got = cloud_from_table(
        table(
            {
                "url": "wss://csms.example.com/ocpp",
                "mode": "strict",
                "tls_ca_file": "ca.pem",
                "open_timeout_s": 5,
                "call_timeout_s": 20,
                "retry_backoff_min_s": 2,
                "retry_backoff_max_s": 60,
                "max_attempts": 3,
                "reconnect_min_s": 0.5,
                "reconnect_max_s": 30,
                "edge_transaction_id_first": 1_000_000,
                "edge_transaction_id_last": 1_999_999,
            },
            source=str(tmp_path / "site.toml"),
        )
    )
    assert got.mode == "strict"
    assert got.tls_ca_file == str(tmp_path / "ca.pem")
    assert got.edge_transaction_ids == EdgeIdRange(first=1_000_000, last=1_999_999)
    assert (got.max_attempts, got.retry_backoff_max_s, got.call_timeout_s) == (3, 60.0, 20.0)


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        pytest.param({}, "x.url", "required", id="url-missing"),
        pytest.param({"url": "http://csms/ocpp"}, "x.url", "ws:// or wss://", id="http-url"),
        pytest.param(
            {"url": "ws://user:pw@csms/ocpp"},
            "x.url",
            "without user:password",
            id="credentials-in-url",
        ),
        pytest.param({"url": "ws://csms/ocpp?x=1"}, "x.url", "?query", id="query"),
        pytest.param(
            {"url": "ws://csms/ocpp", "tls_ca_file": "ca.pem"},
            "x.tls_ca_file",
            "not TLS",
            id="ca-without-tls",
        ),
        pytest.param({"url": "ws://csms/ocpp", "mode": "lenient"}, "x.mode", "'strict'", id="mode"),
        pytest.param(
            {"url": "ws://csms/ocpp", "retry_backoff_min_s": 10, "retry_backoff_max_s": 5},
            "x.retry_backoff_max_s",
            ">= retry_backoff_min_s",
            id="backoff-order",
        ),
        pytest.param(
            {"url": "ws://csms/ocpp", "edge_transaction_id_first": 0},
            "x.edge_transaction_id_first",
            ">= 1",
            id="edge-range-zero",
        ),
        pytest.param(
            {"url": "ws://csms/ocpp", "edge_transaction_id_last": 2**31},
            "x.edge_transaction_id_last",
            "<= 2147483647",
            id="edge-range-int32",
        ),
        pytest.param(
            {
                "url": "ws://csms/ocpp",
                "edge_transaction_id_first": 10,
                "edge_transaction_id_last": 9,
            },
            "x.edge_transaction_id_last",
            ">= edge_transaction_id_first",
            id="edge-range-order",
        ),
        pytest.param(
            {"url": "ws://csms/ocpp", "max_attempts": 0}, "x.max_attempts", ">= 1", id="attempts"
        ),
    ],
)
def test_cloud_errors_name_the_key(data: dict[str, Any], key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cloud_from_table(table(data))
    assert caught.value.key == key
    assert expected in str(caught.value)


def test_cloud_ca_file_must_be_readable(tmp_path: Path) -> None:
    """A missing CA file crash-looped every cloud session while status said live."""
    source = str(tmp_path / "site.toml")
    data = {"url": "wss://csms/ocpp", "tls_ca_file": "cloud-ca.pem"}
    with pytest.raises(ConfigError) as caught:
        cloud_from_table(table(data, source, path="cloud"))
    assert (caught.value.source, caught.value.key) == (source, "cloud.tls_ca_file")
    assert caught.value.got == str(tmp_path / "cloud-ca.pem")
    assert "No such file" in str(caught.value)
    (tmp_path / "cloud-ca.pem").write_text("ca")
    assert cloud_from_table(table(data, source)).tls_ca_file == str(tmp_path / "cloud-ca.pem")


def test_cloud_url_error_does_not_echo_credentials() -> None:
    with pytest.raises(ConfigError) as caught:
        cloud_from_table(table({"url": "ws://user:s3cr3t-s3cr3t-s3cr3t@csms/ocpp"}))
    assert "s3cr3t" not in str(caught.value)


def test_charge_point_with_password_file(tmp_path: Path) -> None:
    (tmp_path / "cp1.key").write_text(PASSWORD + "\n")
    t = table(
        {
            "id": "CP 1",
            "password_file": "cp1.key",
            "cloud_password": "x" * 16,
            "ocpp_version": "2.0.1",
            "meter": "m1",
        },
        source=str(tmp_path / "site.toml"),
        path="charge_points[0]",
    )
    got = charge_point_ocpp_from_table(t, security_profile=1)
    assert got == ChargePointOcpp(
        id="CP 1",
        password=Secret(PASSWORD),
        cloud_password=Secret("x" * 16),
        ocpp_version=OcppVersion.V201,
    )
    assert PASSWORD not in repr(got)
    assert "x" * 16 not in repr(got)
    assert PASSWORD not in str(got)
    assert got.password is not None
    assert got.password.reveal() == PASSWORD
    # Other sections' keys are left for the caller's reject_unknown.
    with pytest.raises(ConfigError, match="meter"):
        t.reject_unknown()


def test_charge_point_minimal() -> None:
    got = charge_point_ocpp_from_table(table({"id": "CP1"}), security_profile=0)
    assert got == ChargePointOcpp(id="CP1")


@pytest.mark.parametrize(
    ("data", "profile", "key", "expected"),
    [
        pytest.param({"id": "CP:1"}, 0, "x.id", "':'", id="colon-in-id"),
        pytest.param({"id": "x" * 49}, 0, "x.id", "48", id="id-too-long"),
        pytest.param({"id": " CP1"}, 0, "x.id", "space", id="id-leading-space"),
        pytest.param({"id": "CP1"}, 1, "x.password", "security profile 1", id="password-needed"),
        pytest.param(
            {"id": "CP1", "password": "short"}, 1, "x.password", "16 to 40", id="password-short"
        ),
        pytest.param(
            {"id": "CP1", "password": "p" * 41}, 1, "x.password", "16 to 40", id="password-long"
        ),
        pytest.param(
            {"id": "CP1", "password": "pässwörd-pässwörd"},
            1,
            "x.password",
            "printable ASCII",
            id="password-non-ascii",
        ),
        pytest.param(
            {"id": "CP1", "password": PASSWORD, "password_file": "f"},
            1,
            "x.password_file",
            "not both",
            id="password-twice",
        ),
        pytest.param(
            {"id": "CP1", "password_file": "missing.key"},
            1,
            "x.password_file",
            "readable",
            id="password-file-missing",
        ),
        pytest.param(
            {"id": "CP1", "ocpp_version": "2.1"}, 0, "x.ocpp_version", "'1.6'", id="version"
        ),
    ],
)
def test_charge_point_errors(data: dict[str, Any], profile: int, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        charge_point_ocpp_from_table(table(data), security_profile=profile)
    assert caught.value.key == key
    assert expected in str(caught.value)
    if "password" in data:
        assert str(data["password"]) not in str(caught.value)


def test_duplicate_ids_are_refused_case_insensitively() -> None:
    cps = [ChargePointOcpp(id="CP1"), ChargePointOcpp(id="cp2"), ChargePointOcpp(id="Cp1")]
    with pytest.raises(ConfigError) as caught:
        check_unique_ids(cps, source="site.toml")
    assert caught.value.key == "charge_points[2].id"
    check_unique_ids(cps[:2], source="site.toml")


NUMERIC_KEY = 12345678901234567890  # a key written without quotes: TOML reads an integer


@pytest.mark.parametrize("value", [NUMERIC_KEY, [PASSWORD], {"k": PASSWORD}])
@pytest.mark.parametrize("name", ["password", "cloud_password", "edge_password"])
def test_a_password_that_is_not_a_string_is_not_echoed(name: str, value: object) -> None:
    shown = str(NUMERIC_KEY) if value == NUMERIC_KEY else PASSWORD

    def load() -> object:
        if name == "edge_password":
            data = {"url": "wss://csms.example.com/ocpp", "edge_identity": "EDGE", name: value}
            return cloud_from_table(table(data))
        return charge_point_ocpp_from_table(table({"id": "CP1", name: value}), security_profile=0)

    with pytest.raises(ConfigError) as caught:
        load()
    assert caught.value.key == f"x.{name}"
    assert "a string" in str(caught.value)
    assert shown not in str(caught.value)
    assert shown not in repr(caught.value.got)
