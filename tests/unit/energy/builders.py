"""Small builders for load-management tests."""

from __future__ import annotations

import math

from actors.allocation_types import (
    ConnectorDemand,
    MeterSample,
    NodeInput,
    NodeLimit,
    PerPhase,
)


def phases(a: float) -> PerPhase:
    return (a, a, a)


def node(
    name: str = "site",
    *,
    parent: str | None = None,
    limit_a: float | PerPhase = 32.0,
    total_a: float = math.inf,
    meter_a: PerPhase | None = None,
    metered: bool | None = None,
    read_s: float = 0.0,
    source: str = "fuse",
) -> NodeInput:
    limit = phases(limit_a) if isinstance(limit_a, int | float) else limit_a
    return NodeInput(
        name=name,
        parent=parent,
        limit=NodeLimit(
            current_a=limit,
            sources=(source, source, source),
            total_a=total_a,
            total_source=f"{source} power" if math.isfinite(total_a) else "",
        ),
        metered=(meter_a is not None) if metered is None else metered,
        meter=None if meter_a is None else MeterSample(current_a=meter_a, read_s=read_s),
    )


def car(
    cid: str,
    *,
    node: str = "site",
    max_a: float = 32.0,
    phases: int = 3,
    rotation: str = "RST",
    priority: int = 0,
    arrived_s: float = 0.0,
    offered_a: float = 0.0,
    measured_a: PerPhase = (0.0, 0.0, 0.0),
    settled: bool = False,
    active: bool = True,
) -> ConnectorDemand:
    return ConnectorDemand(
        connector_id=cid,
        node=node,
        active=active,
        max_current_a=max_a,
        phases=phases,
        phase_rotation=rotation,
        priority=priority,
        arrived_s=arrived_s,
        offered_a=offered_a,
        measured_a=measured_a,
        settled=settled,
    )
