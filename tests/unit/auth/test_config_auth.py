"""The [authorization] section: defaults, every key, and errors that name file, key and value."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.auth_settings import AuthSettings, UnknownIdPolicy, with_overrides
from config.auth import from_table
from config.fields import ConfigError, Table

SOURCE = "/etc/edge/site.toml"


def load(text: str, source: str = SOURCE) -> Table:
    return Table(tomllib.loads(text), source=source, path="authorization")


def test_defaults() -> None:
    config = from_table(load(""))
    assert config.settings == AuthSettings()
    assert config.rules_file is None


def test_every_key(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "site.json").write_text("{}")
    config = from_table(
        load(
            """
            local_authorize_offline = false
            local_pre_authorize = true
            authorization_cache_enabled = false
            cache_ttl_s = 0
            cache_max = 20
            local_list_enabled = false
            local_list_max_entries = 100
            unknown_id_offline = "accept_capped"
            unknown_id_energy_cap_wh = 3000
            stop_transaction_on_invalid_id = false
            max_energy_on_invalid_id_wh = "unlimited"
            rules_file = "rules/site.json"
            """,
            source=str(tmp_path / "site.toml"),
        )
    )
    assert config.settings == AuthSettings(
        local_authorize_offline=False,
        local_pre_authorize=True,
        authorization_cache_enabled=False,
        cache_ttl_s=None,
        cache_max=20,
        local_list_enabled=False,
        local_list_max_entries=100,
        unknown_id_offline=UnknownIdPolicy.ACCEPT_CAPPED,
        unknown_id_energy_cap_wh=3000,
        stop_transaction_on_invalid_id=False,
        max_energy_on_invalid_id_wh=None,
    )
    assert config.rules_file == tmp_path / "rules" / "site.json"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            'unknown_id_offline = "maybe"',
            "/etc/edge/site.toml: authorization.unknown_id_offline: expected one of 'reject', "
            "'accept', 'accept_capped', got 'maybe'",
            id="bad-policy",
        ),
        pytest.param(
            'unknown_id_offline = "accept_capped"',
            "/etc/edge/site.toml: authorization.unknown_id_energy_cap_wh: expected an integer >= 1 "
            "(required by unknown_id_offline = 'accept_capped')",
            id="capped-without-cap",
        ),
        pytest.param(
            "cache_max = 0",
            "/etc/edge/site.toml: authorization.cache_max: expected an integer >= 1, got 0",
            id="cache-max-zero",
        ),
        pytest.param(
            'local_pre_authorize = "yes"',
            "/etc/edge/site.toml: authorization.local_pre_authorize: expected true or false, got 'yes'",
            id="bool-as-string",
        ),
        pytest.param(
            'max_energy_on_invalid_id_wh = "lots"',
            "/etc/edge/site.toml: authorization.max_energy_on_invalid_id_wh: expected an integer >= 0 "
            "or 'unlimited', got 'lots'",
            id="bad-max-energy",
        ),
        pytest.param(
            "allow_offline_tx_for_unknown_id = true",
            "/etc/edge/site.toml: authorization.allow_offline_tx_for_unknown_id: expected no such key "
            "here (misspelt?)",
            id="unknown-key",
        ),
        pytest.param(
            "rules_file = 3",
            "/etc/edge/site.toml: authorization.rules_file: expected a string, got 3",
            id="rules-file-not-a-string",
        ),
        pytest.param(
            'rules_file = "rules/missing.json"',
            "/etc/edge/site.toml: authorization.rules_file: expected a readable file (No such file "
            "or directory), got '/etc/edge/rules/missing.json'",
            id="rules-file-missing",
        ),
    ],
)
def test_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_table(load(text))
    assert str(info.value) == message


def test_rules_file_must_be_a_readable_file(tmp_path: Path) -> None:
    """Read once per start, by nothing but the front's authorizer: missing or unreadable, the
    site ran on its fallbacks with only a log line ("keeping the rules in force")."""
    (tmp_path / "rules").mkdir()
    with pytest.raises(ConfigError) as info:
        from_table(load('rules_file = "rules"', source=str(tmp_path / "site.toml")))
    assert info.value.key == "authorization.rules_file"
    assert info.value.got == str(tmp_path / "rules")
    assert "a readable file (Is a directory)" in str(info.value)


settings_st = st.builds(
    AuthSettings,
    local_authorize_offline=st.booleans(),
    local_pre_authorize=st.booleans(),
    authorization_cache_enabled=st.booleans(),
    cache_ttl_s=st.none() | st.integers(1, 10**8),
    cache_max=st.integers(1, 10**6),
    local_list_max_entries=st.integers(0, 10**6),
    unknown_id_offline=st.just(UnknownIdPolicy.ACCEPT_CAPPED),
    unknown_id_energy_cap_wh=st.integers(1, 10**6),
    stop_transaction_on_invalid_id=st.booleans(),
    max_energy_on_invalid_id_wh=st.none() | st.integers(0, 10**6),
)


@given(settings_st)
def test_plain_form_round_trips(settings: AuthSettings) -> None:
    assert with_overrides(AuthSettings(), settings.to_plain()) == settings
    assert from_table(Table(settings.to_plain(), source=SOURCE)).settings == settings
