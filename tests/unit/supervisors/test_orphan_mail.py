"""Which actor paths of the broker keep durable mail with no actor at the node's start: only
those where an auto-registered charge point's actors start when it connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.broker_tree import starts_later
from config.schema import parse_site
from supervisors.system import ActorSystem
from supervisors.trees import NodeContext

SITE = """
[site]
name = "s"
[listener]
auto_register = {auto}
[[charge_points]]
id = "CP-1"
"""
CLOUD = '[cloud]\nurl = "ws://127.0.0.1:1/ocpp"\n'


@pytest.mark.parametrize(
    ("auto", "cloud", "path", "kept"),
    [
        pytest.param("true", True, "broker/charge_points/CP-9", True, id="auto-registered cp"),
        pytest.param("true", True, "broker/cloud/CP-9", True, id="auto-registered cloud link"),
        pytest.param("true", True, "broker/authorizer2", False, id="other path"),
        pytest.param("true", True, "broker-1/charge_points/CP-9", False, id="another node"),
        pytest.param("false", True, "broker/charge_points/CP-9", False, id="no auto_register"),
        pytest.param("true", False, "broker/charge_points/CP-9", False, id="no cloud, no actor"),
    ],
)
def test_only_auto_registered_charge_points_keep_their_mail(
    tmp_path: Path, auto: str, cloud: bool, path: str, kept: bool
) -> None:
    text = SITE.format(auto=auto) + (CLOUD if cloud else "")
    config = parse_site(text, source="s", base_dir=tmp_path)
    ctx = NodeContext(name="broker", config=config, system=ActorSystem("broker"))
    assert starts_later(ctx, path) is kept
