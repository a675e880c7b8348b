"""The energy sections of a whole site file, through config.schema.parse_site."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.energy_tree import charge_point_energy
from config.energy import ChargePointEnergy, EnergyConfig
from config.energy_limits import ContactLimitConfig
from config.fields import ConfigError
from config.schema import SiteConfig, parse_site
from supervisors.spec import SupervisorSpec, validate
from supervisors.system import ActorSystem
from supervisors.trees import NODE_KINDS, NodeContext

HEAD = '[site]\nname = "s"\n'


def parse(text: str, tmp_path: Path) -> SiteConfig:
    return parse_site(HEAD + text, source=str(tmp_path / "site.toml"), base_dir=tmp_path)


def test_site_without_energy_sections_has_no_load_management(tmp_path: Path) -> None:
    site = parse('[[charge_points]]\nid = "CP1"\npriority = 2\n', tmp_path)
    assert site.energy is None
    assert site.charge_points[0].energy == ChargePointEnergy(priority=2)


def test_site_with_energy_sections(tmp_path: Path) -> None:
    site = parse(
        """
[[charge_points]]
id = "CP1"
max_current_a = 16
feeder = "garage"

[[feeders]]
name = "garage"
limit_a = 25

[[grid_limits]]
name = "fuse"
kind = "static"
current_a = 63

[[grid_limits]]
name = "14a"
kind = "contact"
node = "CP1"
path = "gpio/dim"
dimmed = { power_w = 4200 }
""",
        tmp_path,
    )
    assert isinstance(site.energy, EnergyConfig)
    assert site.charge_points[0].energy == ChargePointEnergy(max_current_a=16.0, feeder="garage")
    contact = site.energy.grid_limits[1]
    assert isinstance(contact, ContactLimitConfig)
    assert contact.path == str(tmp_path / "gpio" / "dim"), "relative to the site file"
    assert charge_point_energy(site) == {"CP1": site.charge_points[0].energy}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param(
            '[[charge_points]]\nid = "CP1"\nfeeder = "garage"\n',
            "charge_points[0].feeder",
            id="feeder-without-feeders",
        ),
        pytest.param(
            '[[charge_points]]\nid = "CP1"\npriorty = 1\n', "charge_points[0].priorty", id="typo"
        ),
        pytest.param(
            '[[meters]]\nname = "m"\nmodel = "sdm630"\nhost = "h"\n',
            "grid_limits",
            id="energy-without-site-limit",
        ),
        pytest.param(
            '[[grid_limits]]\nname = "f"\nkind = "static"\ncurrent_a = 40\n'
            '[[charge_points]]\nid = "CP1"\nphases = 2\n',
            "charge_points[0].phases",
            id="two-phases",
        ),
    ],
)
def test_bad_energy_config_names_the_key(text: str, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, tmp_path)
    assert info.value.key == key
    assert info.value.source == str(tmp_path / "site.toml")


def test_energy_node_kind_builds_a_valid_tree(tmp_path: Path) -> None:
    site = parse(
        """
[[charge_points]]
id = "CP1"
[[meters]]
name = "grid/main"
model = "sdm630"
host = "127.0.0.1"
[[grid_limits]]
name = "fuse"
kind = "static"
current_a = 63
[[grid_limits]]
name = "ems"
kind = "modbus"
host = "127.0.0.1"
value_address = 1
heartbeat_address = 2
unit = "a"
fail_safe = { current_a = 16 }
""",
        tmp_path,
    )
    spec = NODE_KINDS["energy"].build(
        NodeContext(name="energy", config=site, system=ActorSystem("energy"))
    )
    validate(spec)
    assert [c.id for c in spec.children] == ["store", "allocator", "limits", "meters"]
    assert spec.strategy == "rest_for_one"
    limits, meters = spec.children[2].start, spec.children[3].start
    assert isinstance(limits, SupervisorSpec)
    assert isinstance(meters, SupervisorSpec)
    assert [c.id for c in limits.children] == ["fuse", "ems"]
    assert [c.backoff is not None for c in limits.children] == [False, True], "network-facing"
    assert [c.id for c in meters.children] == ["grid_main"], "no '/' in a child id"
    assert meters.children[0].backoff is not None
