"""The energy node in-process: its real tree on a real LMDB, a real pymodbus SDM630, and a fake
broker node that records every message sent to it (``system.remote``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.allocation_types import PerPhase
from actors.audit_records import AuditKind, AuditRecord, decode_record
from actors.energy_messages import ConnectorReport, DemandBatch, ProfileBatch
from actors.energy_tree import charge_point_energy, energy_spec
from actors.grid_limit import Clock
from actors.site_allocator import AllocatorSettings, SiteAllocator
from actors.utc import format_utc
from config.schema import SiteConfig, parse_site
from drivers.modbus import load_model
from drivers.store.env import Store, open_store
from supervisors.actor import ActorRef
from supervisors.intensity import Backoff
from supervisors.system import ActorSystem
from tests.helpers import wait_for
from tests.integration.modbus.meter_server import MeterServer, encode_field, registers_for

SDM630 = load_model("sdm630")[0]
VOLTAGE_V = 230.0


def meter_truth(current_a: PerPhase) -> dict[str, float]:
    truth = {"power_w": sum(current_a) * VOLTAGE_V, "energy_import_wh": 1.0e6}
    truth["energy_export_wh"] = 0.0
    for i, a in enumerate(current_a, start=1):
        truth[f"voltage_l{i}_v"] = VOLTAGE_V
        truth[f"current_l{i}_a"] = abs(a)
        truth[f"power_l{i}_w"] = a * VOLTAGE_V
    return truth


def sdm630_server(current_a: PerPhase) -> MeterServer:
    return MeterServer(registers_for(SDM630, meter_truth(current_a)))


async def set_meter(server: MeterServer, current_a: PerPhase) -> None:
    for name, value in meter_truth(current_a).items():
        spec = SDM630.field(name)
        assert spec is not None
        await server.set(spec.table, spec.address, encode_field(spec, value))


def site_config(
    tmp_path: Path, body: str, *, charge_points: tuple[str, ...] = ("CP1", "CP2")
) -> SiteConfig:
    cps = "".join(f'\n[[charge_points]]\nid = "{cp}"\n' for cp in charge_points)
    text = f'[site]\nname = "energy-test"\nstorage_dir = "{tmp_path / "var"}"\n{cps}\n{body}'
    return parse_site(text, source=str(tmp_path / "site.toml"), base_dir=tmp_path)


def report(
    cp: str,
    *,
    connector_id: int = 1,
    charging: bool = True,
    measured_a: float | PerPhase | None = 0.0,
    arrived_utc: str = "2025-01-01T08:00:00Z",
    sampled_utc: str | None = None,
) -> ConnectorReport:
    measured = (
        (measured_a, measured_a, measured_a) if isinstance(measured_a, int | float) else measured_a
    )
    return ConnectorReport(
        charge_point_id=cp,
        connector_id=connector_id,
        connected=True,
        plugged=charging,
        charging=charging,
        transaction_id="1" if charging else None,
        arrived_utc=arrived_utc,
        status="Charging" if charging else "Available",
        measured_a=measured,
        offered_a=None,
        power_w=None,
        energy_wh=None,
        sampled_utc=sampled_utc or format_utc(datetime.now(UTC)),
    )


def demand(*reports: ConnectorReport) -> DemandBatch:
    return DemandBatch(reports=reports, sent_utc=format_utc(datetime.now(UTC)))


@dataclass
class Received:
    at_s: float
    batch: ProfileBatch
    # (charge point, limit) of every limit record committed when the batch left the node.
    committed: frozenset[tuple[str | None, object]] = frozenset()

    def limits(self) -> dict[str, float]:
        return {f"{x.charge_point_id}/{x.connector_id}": x.limit_a for x in self.batch.limits}


@dataclass
class EnergyNode:
    tmp_path: Path
    config: SiteConfig
    settings: AllocatorSettings
    server: MeterServer | None = None
    store: Store | None = None
    system: ActorSystem | None = None
    batches: list[Received] = field(default_factory=list)
    other: list[tuple[str, object]] = field(default_factory=list)

    async def start(self, *, clock: Clock | None = None, heartbeat_s: float = 1.0) -> ActorSystem:
        self.store = open_store(self.tmp_path / "lmdb")
        system = ActorSystem("energy", store=self.store)
        system.remote = self._remote
        spec = energy_spec(
            self.config.energy,
            charge_point_energy(self.config),
            node="energy",
            settings=self.settings,
            heartbeat_s=heartbeat_s,
            backoff=Backoff(min_s=0.05, max_s=0.2, jitter=0.0, reset_after_s=1.0),
            clock=clock,
        )
        await system.start(spec)
        self.system = system
        return system

    def _remote(self, path: str, msg: object) -> None:
        if path == "broker/profiles" and isinstance(msg, ProfileBatch):
            committed = frozenset(
                (r.charge_point_id, r.inputs.get("limit_a"))
                for r in self.audit()
                if r.kind is AuditKind.LIMIT
            )
            self.batches.append(Received(at_s=time.monotonic(), batch=msg, committed=committed))
        else:
            self.other.append((path, msg))

    async def stop(self) -> None:
        if self.system is not None:
            await self.system.stop(5.0)
            self.system = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def meter(self) -> MeterServer:
        assert self.server is not None
        return self.server

    @property
    def allocator_ref(self) -> ActorRef:
        assert self.system is not None
        ref = self.system.lookup("energy/allocator")
        assert ref is not None
        return ref

    def allocator(self) -> SiteAllocator:
        assert self.system is not None
        actor = self.system.actor("energy/allocator")
        assert isinstance(actor, SiteAllocator)
        return actor

    def summary(self) -> dict[str, Any]:
        return self.allocator().summary()

    def send(self, msg: object) -> None:
        self.allocator_ref.tell(msg)

    async def wait_meter_read(self, meter: str = "grid") -> None:
        def read() -> bool:
            m = self.summary().get("meters", {}).get(meter)
            return m is not None and m.get("current_a") is not None and not m["stale"]

        await wait_for(read, what=f"meter {meter!r} read")

    async def wait_batch(
        self,
        ok: Callable[[Received], bool],
        *,
        after: int = 0,
        what: str = "a batch",
        timeout: float = 5.0,  # noqa: ASYNC109  (scaled units, see tests.helpers)
    ) -> Received:
        found: list[Received] = []

        def seen() -> bool:
            found[:] = [b for b in self.batches[after:] if ok(b)]
            return bool(found)

        try:
            await wait_for(seen, timeout, what=what)
        except AssertionError as exc:
            recent = [(round(b.at_s, 3), b.limits()) for b in self.batches[-5:]]
            state = {k: self.summary().get(k) for k in ("mode", "limits", "connectors")}
            raise AssertionError(f"{exc}; last batches {recent}; allocator {state}") from None
        return found[0]

    def audit(self) -> list[AuditRecord]:
        assert self.store is not None
        return [decode_record(v) for _, v in self.store.scan("audit")]


@dataclass
class CarSim:
    """Cars that draw what they are offered (three phases), and a meter that shows the base load
    plus their draw. ``stubborn`` cars draw a fixed current whatever they are offered."""

    node: EnergyNode
    server: MeterServer
    base_a: float
    charge_points: tuple[str, ...]
    stubborn: dict[str, float] = field(default_factory=dict)
    applied: int = 0
    meter_a: PerPhase = (0.0, 0.0, 0.0)
    draws: dict[str, float] = field(default_factory=dict)  # what each car draws now

    async def start(self) -> None:
        await self.apply({})

    async def apply(self, limits: dict[str, float]) -> None:
        draws = {cp: self.stubborn.get(cp, limits.get(f"{cp}/1", 0.0)) for cp in self.charge_points}
        self.draws = draws
        total = self.base_a + sum(draws.values())
        self.meter_a = (total, total, total)
        await set_meter(self.server, self.meter_a)
        self.send_samples()

    def send_samples(self) -> None:
        """A DemandBatch with each car's draw, sampled now."""
        draws = self.draws
        self.node.send(demand(*(report(cp, measured_a=draws[cp]) for cp in self.charge_points)))

    async def report_every(self, every_s: float) -> None:
        """Send the cars' samples every ``every_s``, as the broker sends every connector every
        second whether or not a batch came (run as a task; cancelled by the test)."""
        while True:
            await asyncio.sleep(every_s)
            if self.draws:
                self.send_samples()

    async def follow(self) -> None:
        """Apply every new batch (run as a task; cancelled by the test)."""
        while True:
            await wait_for(lambda: len(self.node.batches) > self.applied, 60.0, what="batch")
            received = self.node.batches[len(self.node.batches) - 1]
            self.applied = len(self.node.batches)
            await self.apply(received.limits())
