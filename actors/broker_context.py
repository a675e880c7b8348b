"""What the broker node's actors share: the site configuration, the live charge point links and
the clock. Built once per node start by the broker tree and closed over by the actor factories.

``links`` maps a charge point id to its current websocket. It outlives the ChargePoint actor's
restarts on purpose: a charge point stays connected while its actor is restarted, and the new
instance picks the link up in ``started``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from config.schema import ChargePointConfig, SiteConfig
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import OcppConnection


@dataclass(slots=True)
class Link:
    conn: OcppConnection
    conn_no: int
    version: OcppVersion


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class BrokerContext:
    config: SiteConfig
    node: str = "broker"
    links: dict[str, Link] = field(default_factory=dict)
    conn_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    now: Callable[[], datetime] = utc_now
    listener_port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def energy_managed(self) -> bool:
        """Whether the site has load management (meters or grid limits): only then does the edge
        install charging profiles and report demand."""
        energy = self.config.energy
        return energy is not None and bool(
            getattr(energy, "meters", ()) or getattr(energy, "grid_limits", ())
        )

    def cp_path(self, cp_id: str) -> str:
        return f"{self.node}/charge_points/{cp_id}"

    def cloud_path(self, cp_id: str) -> str:
        return f"{self.node}/cloud/{cp_id}"

    def charge_point(self, cp_id: str) -> ChargePointConfig | None:
        return self.config.charge_point(cp_id)
