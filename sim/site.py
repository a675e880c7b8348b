"""A whole simulated site for the demo and end-to-end tests.

Charge points (any mix of OCPP 1.6 and 2.0.1) connect to one URL (the edge, or the simulated cloud
directly), each with a car from a cycle of typical and quirky cars, and a grid meter on Modbus/TCP
that sees the site's base load plus whatever the cars draw, per phase.

    async with SimSite(SiteSpec(charge_points=4), url=edge_url) as site:
        await site.arrive_all()
        ... site.meter.port, site.charge_points[0].drawn_a(1) ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sim.base_load import BaseLoad
from sim.car import CarSpec
from sim.charge_point import SimChargePoint
from sim.clock import Clock, SystemClock
from sim.cp_config import Behaviour, ChargePointConfig
from sim.meter import SimMeter
from sim.register_maps import meter_model

DEFAULT_CARS: tuple[CarSpec, ...] = (
    CarSpec(name="sedan-3ph-16a", max_current_a=16.0, energy_need_wh=40_000.0),
    CarSpec(name="suv-3ph-32a", max_current_a=32.0, energy_need_wh=60_000.0),
    CarSpec(name="compact-1ph-l2", max_current_a=32.0, phases=1, single_phase=2),
    CarSpec(name="zoe-no-start-at-6a", max_current_a=32.0, min_start_a=8.0),
    CarSpec(name="van-pauses-below-8a", max_current_a=16.0, pause_below_a=8.0),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteSpec:
    charge_points: int = 4
    connectors_per_cp: int = 1
    # Cycled over the charge points.
    protocols: tuple[str, ...] = ("ocpp1.6",)
    behaviours: tuple[Behaviour, ...] = (Behaviour(),)
    cars: tuple[CarSpec, ...] = DEFAULT_CARS
    id_prefix: str = "SIM-CP-"
    password: str | None = None
    meter_model: str = "eastron_sdm630"
    base_load: BaseLoad = field(default_factory=BaseLoad)
    # Extra ChargePointConfig fields for every charge point (timers in tests, for instance).
    charge_point_options: tuple[tuple[str, Any], ...] = ()


class SimSite:
    def __init__(self, spec: SiteSpec, *, url: str, clock: Clock | None = None) -> None:
        self.spec = spec
        self.clock: Clock = clock if clock is not None else SystemClock()
        options = dict(spec.charge_point_options)
        self.charge_points = [
            SimChargePoint(
                ChargePointConfig(
                    charge_point_id=f"{spec.id_prefix}{i + 1:03d}",
                    url=url,
                    protocol=spec.protocols[i % len(spec.protocols)],
                    password=spec.password,
                    connectors=spec.connectors_per_cp,
                    behaviour=spec.behaviours[i % len(spec.behaviours)],
                    serial_number=f"SIM-{i + 1:04d}",
                    **options,
                ),
                clock=self.clock,
            )
            for i in range(spec.charge_points)
        ]
        self.meter = SimMeter(
            model=meter_model(spec.meter_model),
            base_load=spec.base_load,
            sources=self.charge_points,
            clock=self.clock,
        )

    async def start(self) -> None:
        await self.meter.start()
        for cp in self.charge_points:
            await cp.start()

    async def stop(self) -> None:
        for cp in self.charge_points:
            await cp.stop()
        await self.meter.stop()

    async def __aenter__(self) -> SimSite:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def car_for(self, index: int, connector_id: int = 1) -> CarSpec:
        spec = self.spec.cars[(index + connector_id - 1) % len(self.spec.cars)]
        return dataclasses.replace(spec, name=f"{spec.name}@{index + 1}.{connector_id}")

    async def arrive_all(self, id_tag: str = "DEMO-TAG") -> None:
        """Plug a car into every connector and start charging with ``id_tag``."""
        for i, cp in enumerate(self.charge_points):
            for connector_id in cp.connectors:
                await cp.plug_in(connector_id, self.car_for(i, connector_id))
                await cp.start_transaction(connector_id, id_tag)

    async def leave_all(self) -> None:
        for cp in self.charge_points:
            for connector_id, c in cp.connectors.items():
                if c.car is not None:
                    await cp.unplug(connector_id)

    def phase_currents_a(self) -> tuple[float, float, float]:
        """What all the site's cars draw per phase now (without the base load)."""
        total = [0.0, 0.0, 0.0]
        for cp in self.charge_points:
            for i, amps in enumerate(cp.phase_currents_a()):
                total[i] += amps
        return (total[0], total[1], total[2])

    @property
    def errors(self) -> list[str]:
        return [f"{cp.id}: {e}" for cp in self.charge_points for e in cp.errors]


__all__ = ["DEFAULT_CARS", "SimSite", "SiteSpec"]
