"""The energy node's supervision tree, and its site summary for ``run.py status``.

::

    energy (rest_for_one)
    ├── store        the node's group-commit writer: everything after it writes through it
    ├── allocator    the site allocator
    ├── limits       one_for_one: one actor per [[grid_limits]] source
    └── meters       one_for_one: one actor per [[meters]], restarted with backoff

Why the allocator comes before its sources (not last): under rest_for_one a restart of the
allocator restarts every source after it, and a restarted source reports its state at once, so a
fresh allocator knows the limits and meters within milliseconds instead of waiting for a
heartbeat; and a source never reports to an allocator that does not exist yet. The sources sit in
one_for_one sub-supervisors so a flapping meter restarts only itself; meters and Modbus limit
sources restart with backoff so a dead meter does not burn the node's restart budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from actors.grid_limit import Clock, child_id, limit_actor_factory, network_facing
from actors.meter import MeterActor
from actors.shards import edge_endpoint_path
from actors.site_allocator import AllocatorSettings, SiteAllocator
from config.energy import ChargePointEnergy, EnergyConfig, MeterConfig
from config.energy_limits import CloudLimitConfig
from supervisors.actor import Actor, ActorContext
from supervisors.intensity import Backoff
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem
from supervisors.trees import NodeContext, store_writer_spec

ALLOCATOR = "allocator"
NETWORK_BACKOFF = Backoff(min_s=0.5, max_s=30.0, factor=2.0, jitter=0.2, reset_after_s=30.0)


def charge_point_energy(config: Any) -> dict[str, ChargePointEnergy]:
    """Each configured charge point's energy keys, by id (defaults where none were given)."""
    out: dict[str, ChargePointEnergy] = {}
    for cp in getattr(config, "charge_points", ()):
        energy = cp.energy if isinstance(cp.energy, ChargePointEnergy) else ChargePointEnergy()
        out[cp.id] = energy
    return out


def energy_spec(
    energy: EnergyConfig | None,
    charge_points: Mapping[str, ChargePointEnergy],
    *,
    node: str,
    settings: AllocatorSettings | None = None,
    heartbeat_s: float = 10.0,
    backoff: Backoff = NETWORK_BACKOFF,
    clock: Clock | None = None,
    cloud_kept_at: str | None = None,
) -> SupervisorSpec:
    """The tree for one energy node. ``settings``, ``heartbeat_s``, ``backoff`` and ``clock``
    (the limit sources' time) are for tests and benchmarks; a site runs the defaults.
    ``cloud_kept_at``: the broker's actor that keeps the cloud limits the edge accepted (the
    edge session's endpoint; None: the site has none)."""
    allocator_path = f"{node}/{ALLOCATOR}"
    limits = () if energy is None else energy.grid_limits
    meters = () if energy is None else energy.meters
    cloud_paths = {
        g.source.name: f"{node}/limits/{child_id(g.source.name)}"
        for g in limits
        if isinstance(g, CloudLimitConfig)
    }
    limit_children = tuple(
        ChildSpec(
            id=child_id(g.source.name),
            start=limit_actor_factory(
                g,
                allocator_path=allocator_path,
                heartbeat_s=heartbeat_s,
                clock=clock,
                cloud_kept_at=cloud_kept_at,
            ),
            backoff=backoff if network_facing(g) else None,
        )
        for g in limits
    )
    meter_children = tuple(
        ChildSpec(
            id=child_id(m.name),
            start=_meter_factory(m, allocator_path),
            backoff=backoff,
            shutdown_timeout_s=max(2.0, m.timeout_s * 3),
        )
        for m in meters
    )
    return SupervisorSpec(
        strategy="rest_for_one",
        max_restarts=5,
        period_s=30,
        children=(
            store_writer_spec(),
            ChildSpec(
                id=ALLOCATOR,
                start=lambda ctx: SiteAllocator(
                    ctx,
                    energy=energy,
                    charge_points=charge_points,
                    cloud_paths=cloud_paths,
                    settings=settings,
                ),
            ),
            ChildSpec(
                id="limits",
                start=SupervisorSpec(
                    strategy="one_for_one", max_restarts=10, period_s=30, children=limit_children
                ),
            ),
            ChildSpec(
                id="meters",
                start=SupervisorSpec(
                    strategy="one_for_one", max_restarts=10, period_s=30, children=meter_children
                ),
            ),
        ),
    )


def _meter_factory(m: MeterConfig, allocator_path: str) -> Callable[[ActorContext], Actor]:
    return lambda ctx: MeterActor(ctx, config=m, allocator_path=allocator_path)


def build_energy(ctx: NodeContext) -> SupervisorSpec:
    config = ctx.config
    energy = getattr(config, "energy", None)
    cloud = getattr(config, "cloud", None)
    identity = None if cloud is None else cloud.edge_identity
    return energy_spec(
        energy if isinstance(energy, EnergyConfig) else None,
        charge_point_energy(config),
        node=ctx.name,
        settings=allocator_settings(config),
        cloud_kept_at=None if identity is None else edge_endpoint_path(identity),
    )


def allocator_settings(config: Any) -> AllocatorSettings:
    """The site file's settings of the allocator actor (the broker shards it sends to, the
    compliance check's tolerance and times from ``[allocation]``)."""
    energy = getattr(config, "energy", None)
    settings = AllocatorSettings(broker_shards=config.runtime.broker_shards)
    if isinstance(energy, EnergyConfig):
        settings = replace(settings, compliance=energy.allocation.compliance)
    return settings


def energy_summary(system: ActorSystem) -> dict[str, Any]:
    allocator = system.actor(f"{system.name}/{ALLOCATOR}")
    if not isinstance(allocator, SiteAllocator):
        return {"mode": "allocator not running"}
    return allocator.summary()
