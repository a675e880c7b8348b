"""The site file as a whole: the shipped examples load, and errors name file, key and expectation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from config.fields import ConfigError
from config.schema import load_site, parse_site

REPO = Path(__file__).resolve().parents[3]


def test_the_documented_example_loads(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "CP-001.key").write_text("abcdefghijklmnop1234")
    site = tmp_path / "site.toml"
    site.write_text((REPO / "config" / "example-site.toml").read_text())
    config = load_site(site)
    assert config.name == "depot-north"
    assert config.listener.security_profile == 1
    assert config.cloud is not None
    assert config.cloud.edge_identity == "DEPOT-NORTH-EDGE"
    assert config.energy is not None
    assert [m.name for m in config.energy.meters] == ["grid"]
    assert len(config.energy.grid_limits) == 5
    assert config.charge_points[0].energy.max_current_a == 32
    assert config.runtime.realtime_nodes == ("energy",)  # with the unit's LimitRTPRIO=1


def test_the_demo_template_loads_once_filled(tmp_path: Path) -> None:
    text = (REPO / "config" / "demo-site.toml").read_text()
    for key, value in {
        "listener_port": 9000,
        "meter_port": 1502,
        "cloud_port": 9100,
        "storage_dir": str(tmp_path),
        "mode": "nodes",
    }.items():
        text = text.replace("{" + key + "}", str(value))
    config = parse_site(text, source="demo", base_dir=tmp_path)
    assert len(config.charge_points) == 8
    assert config.auth is not None


BASE = '[site]\nname = "s"\n'


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        pytest.param("", "site", "a value (the key is required)", id="no-site"),
        pytest.param('[site]\nnmae = "s"\n', "site.name", "a value", id="missing-name"),
        pytest.param(
            # A misspelt required key is named beside the missing one (it read as missing only).
            '[site]\nnmae = "s"\n',
            "site.name",
            "the key is required; found 'nmae': misspelt?",
            id="missing-name-names-the-misspelt-key",
        ),
        pytest.param(
            BASE + "[runtime]\nmdoe = 'nodes'\n", "runtime.mdoe", "no such key", id="typo"
        ),
        pytest.param(
            BASE + "[runtime]\nmode = 'threads'\n", "runtime.mode", "one of 'nodes'", id="choice"
        ),
        pytest.param(
            BASE + "[runtime]\ncpu_affinity = 'all'\n",
            "runtime.cpu_affinity",
            "one of 'auto', 'off'",
            id="cpu-affinity",
        ),
        pytest.param(
            BASE + "[runtime]\nrealtime_nodes = 'energy'\n",
            "runtime.realtime_nodes",
            'a list of node names, e.g. ["energy"]',
            id="realtime-nodes-not-a-list",
        ),
        pytest.param(
            BASE + "[runtime]\nrealtime_nodes = ['energy']\nmode = 'single-process'\n",
            "runtime.realtime_nodes",
            "[] with mode single-process",
            id="realtime-nodes-single-process",
        ),
        pytest.param(
            BASE + "[runtime]\nrealtime_nodes = ['energy', 'enrgy']\n",
            "runtime.realtime_nodes",
            "names of this site's nodes: energy, broker",
            id="realtime-nodes-no-such-node",
        ),
        pytest.param(
            BASE + "[runtime]\nrealtime_nodes = ['broker-1']\n",
            "runtime.realtime_nodes",
            "names of this site's nodes: energy, broker",
            id="realtime-nodes-shard-not-configured",
        ),
        pytest.param(BASE + "[listener]\nport = 'x'\n", "listener.port", "an integer", id="type"),
        pytest.param(
            BASE + "[listener]\nport = 70000\n", "listener.port", "a value <= 65535", id="range"
        ),
        pytest.param(
            BASE + "[cloud]\nurl = 'http://x'\n", "cloud.url", "a ws:// or wss:// URL", id="url"
        ),
        pytest.param(
            BASE + "[[charge_points]]\nid = 'A'\n[[charge_points]]\nid = 'a'\n",
            "charge_points[1].id",
            "an id not used before",
            id="duplicate-id",
        ),
        pytest.param(
            BASE
            + "[cloud]\nurl = 'ws://x/o'\nedge_identity = 'CP1'\n[[charge_points]]\nid = 'CP1'\n",
            "cloud.edge_identity",
            "an identity no charge point uses",
            id="edge-identity-clash",
        ),
        pytest.param(
            BASE + "[listener]\nsecurity_profile = 1\n[[charge_points]]\nid = 'CP1'\n",
            "charge_points[0].password",
            "a password",
            id="profile-1-needs-password",
        ),
        pytest.param(
            BASE + "[[charge_points]]\nid = 'CP1'\nprioriti = 3\n",
            "charge_points[0].prioriti",
            "no such key",
            id="cp-typo",
        ),
        pytest.param(
            BASE + "[listener]\nsecurity_profile = 2\n"
            "tls_cert_file = 'missing.crt'\ntls_key_file = 'missing.key'\n",
            "listener.tls_cert_file",
            "a readable file (No such file or directory)",
            id="tls-cert-file-missing",
        ),
        pytest.param(
            BASE + "[cloud]\nurl = 'wss://x/o'\ntls_ca_file = 'missing-ca.pem'\n",
            "cloud.tls_ca_file",
            "a readable file (No such file or directory)",
            id="cloud-ca-file-missing",
        ),
        pytest.param(
            BASE + "[listener]\nhost = ''\n",
            "listener.host",
            'write "0.0.0.0" or "::" to bind every interface',
            id="listener-host-empty",
        ),
        pytest.param(
            BASE + "[authorization]\nrules_file = 'missing-rules.json'\n",
            "authorization.rules_file",
            "a readable file (No such file or directory)",
            id="rules-file-missing",
        ),
        pytest.param("[site\n", "<syntax>", "valid TOML", id="syntax"),
        pytest.param(
            BASE + "[runtime]\nbroker_shards = 0\n",
            "runtime.broker_shards",
            "a value >= 1",
            id="shards-zero",
        ),
        pytest.param(
            BASE + "[runtime]\nbroker_shards = 9\n",
            "runtime.broker_shards",
            "a value <= 8",
            id="shards-too-many",
        ),
        pytest.param(
            BASE + "[runtime]\nbroker_shards = 2\nmode = 'single-process'\n",
            "runtime.broker_shards",
            "1 with mode single-process",
            id="shards-single-process",
        ),
        pytest.param(
            '[site]\nname = "../../x"\n',
            "site.name",
            "a name usable as a directory name",
            id="name-leaves-var",
        ),
        pytest.param('[site]\nname = ""\n', "site.name", "a non-empty name", id="name-empty"),
        pytest.param(
            BASE + '[cloud]\nurl = "wss://c.example/ocpp"\nedge_password = "0123456789abcdef"\n',
            "cloud.edge_password",
            "edge_identity with it",
            id="edge-password-without-identity",
        ),
        pytest.param(
            BASE + '[[charge_points]]\nid = "CP1"\ncloud_password = "0123456789abcdef"\n',
            "charge_points[0].cloud_password",
            "a [cloud] section with it",
            id="cloud-password-without-cloud",
        ),
        pytest.param(
            BASE + '[[feeder]]\nname = "yard"\nlimit_a = 40\n'
            '[[grid_limits]]\nname = "fuse"\nkind = "static"\ncurrent_a = 63\n'
            '[[charge_points]]\nid = "CP1"\nfeeder = "yard"\n',
            "feeder",
            "no such key here (misspelt?)",
            id="misspelt-section-named-before-what-it-left-out",
        ),
        pytest.param(
            '[site]\nname = "s"\nstorage_dir = "/' + "d" * 90 + '"\n[runtime]\nbroker_shards = 2\n',
            "site.storage_dir",
            "a path short enough for the broker nodes' Unix sockets",
            id="shards-socket-path-too-long",
        ),
    ],
)
def test_errors_name_the_file_the_key_and_what_was_expected(
    text: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_site(text, source="/etc/site-edge/site.toml", base_dir=Path("/tmp"))
    assert info.value.source == "/etc/site-edge/site.toml"
    assert info.value.key == key, str(info.value)
    assert expected in info.value.expected, str(info.value)
    assert str(info.value).startswith(f"/etc/site-edge/site.toml: {key}: expected")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            '[listener]\nport = "nine"\n',
            "listener.port: expected an integer, got 'nine'",
            id="port-not-an-integer",
        ),
        pytest.param(
            "[listener]\nsecurity_profile = 2\ntls_cert_file = 'c.pem'\ntls_key_file = 'k.pem'\n",
            "listener.tls_cert_file: expected a readable file (No such file or directory), got '{dir}/c.pem'",
            id="tls-cert-file-missing",
        ),
        pytest.param(
            "[runtime]\nrealtime_nodes = ['enrgy']\n",
            "runtime.realtime_nodes: expected names of this site's nodes: energy, broker, "
            "got ['enrgy']",
            id="realtime-nodes-no-such-node",
        ),
    ],
)
def test_run_py_exits_78_on_a_bad_file(tmp_path: Path, text: str, message: str) -> None:
    import subprocess
    import sys

    bad = tmp_path / "site.toml"
    bad.write_text('[site]\nname = "s"\n' + text)
    result = subprocess.run(
        [sys.executable, "run.py", "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78
    assert f"{bad}: {message.format(dir=tmp_path)}" in result.stderr


def test_broker_shards_make_broker_nodes(tmp_path: Path) -> None:
    from supervisors.launcher import site_nodes

    one = parse_site(BASE, source="s", base_dir=tmp_path)
    assert one.runtime.broker_shards == 1
    assert [n.name for n in site_nodes(one)] == ["energy", "broker"]
    three = parse_site(BASE + "[runtime]\nbroker_shards = 3\n", source="s", base_dir=tmp_path)
    assert [(n.name, n.kind) for n in site_nodes(three)] == [
        ("energy", "energy"),
        ("broker", "broker"),
        ("broker-1", "broker"),
        ("broker-2", "broker"),
    ]
    realtime = parse_site(
        BASE + "[runtime]\nbroker_shards = 3\nrealtime_nodes = ['energy', 'broker-2']\n",
        source="s",
        base_dir=tmp_path,
    )
    assert realtime.runtime.realtime_nodes == ("energy", "broker-2")


def test_broker_shards_with_tls_on_the_listener(tmp_path: Path) -> None:
    """The front ends TLS and relays the other nodes' charge points (drivers/ocpp/handover.py);
    refused before 2026-11-29 evening."""
    text = (
        BASE + "[runtime]\nbroker_shards = 2\n[listener]\nsecurity_profile = 2\n"
        "tls_cert_file = 'c.pem'\ntls_key_file = 'k.pem'\n"
    )
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "k.pem").write_text("key")
    config = parse_site(text, source=str(tmp_path / "site.toml"), base_dir=tmp_path)
    assert (config.runtime.broker_shards, config.listener.security_profile) == (2, 2)


def test_a_site_name_with_a_slash_is_fine_with_its_own_storage_dir(tmp_path: Path) -> None:
    """The name is only the default storage_dir's last part: "Berlin/Mitte" with a storage_dir
    of its own loads (review of 3c2640c)."""
    text = f'[site]\nname = "Berlin/Mitte"\nstorage_dir = "{tmp_path}"\n'
    assert parse_site(text, source="s.toml", base_dir=tmp_path).name == "Berlin/Mitte"


def test_a_cloud_password_file_without_a_cloud_is_named(tmp_path: Path) -> None:
    (tmp_path / "cp1.key").write_text("0123456789abcdef\n")
    text = BASE + '[[charge_points]]\nid = "CP1"\ncloud_password_file = "cp1.key"\n'
    with pytest.raises(ConfigError) as info:
        parse_site(text, source=str(tmp_path / "site.toml"), base_dir=tmp_path)
    assert info.value.key == "charge_points[0].cloud_password_file"
    assert "a [cloud] section with it" in str(info.value)


def test_a_site_without_load_management_says_so_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from supervisors.launcher import warn_unmanaged

    unmanaged = parse_site(
        BASE + '[[charge_points]]\nid = "CP1"\n', source="s.toml", base_dir=tmp_path
    )
    managed = parse_site(
        BASE
        + '[[charge_points]]\nid = "CP1"\n'
        + '[[grid_limits]]\nname = "fuse"\nkind = "static"\ncurrent_a = 63\n',
        source="s.toml",
        base_dir=tmp_path,
    )
    with caplog.at_level(logging.WARNING, logger="supervisors.launcher"):
        warn_unmanaged(managed)
        assert not caplog.records
        warn_unmanaged(unmanaged)
    (record,) = caplog.records
    assert "no load management: s.toml has no [[meters]]" in record.getMessage()


def test_the_sections_checked_first_include_the_load_management_ones() -> None:
    from config.energy import ENERGY_SECTIONS
    from config.schema import SECTIONS

    assert set(ENERGY_SECTIONS) <= set(SECTIONS)


def test_every_section_the_energy_package_reads_is_a_known_section() -> None:
    """config.schema names misspelt sections from its SECTIONS before config.energy reads its
    own (ENERGY_SECTIONS): a section added to one and not the other would be refused."""
    from config.energy import ENERGY_SECTIONS
    from config.schema import SECTIONS

    assert set(ENERGY_SECTIONS) <= set(SECTIONS)
