"""One connector of a simulated charge point: the car on it, its transaction and what it reports.

Pure state, no I/O; the charge point calls it with ``now_s`` from its clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sim.car import IEC_MIN_CURRENT_A, Car


@dataclass(slots=True, kw_only=True)
class Transaction:
    local_id: int
    id_tag: str
    start_utc: datetime
    meter_start_wh: int
    started_offline: bool
    remote_start_id: int | None = None
    # 1.6: the cloud's id (as text) once StartTransaction was answered; 2.0.1: the id we minted.
    transaction_id: str | None = None
    seq_no: int = 0
    charging_state: str | None = None
    # A TxProfile that came with a remote start, installed once the transaction exists.
    pending_profile: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One meter sample of a connector, version-neutral."""

    timestamp_utc: datetime
    energy_wh: int
    currents_a: tuple[float, float, float]
    offered_a: float
    power_w: float


class Connector:
    __slots__ = (
        "_car_start_wh",
        "car",
        "connector_id",
        "energy_base_wh",
        "finishing",
        "last_sample_s",
        "max_a",
        "offered_a",
        "pending_remote",
        "status_sent",
        "tx",
        "voltage_v",
    )

    def __init__(self, connector_id: int, *, max_a: float, voltage_v: float) -> None:
        self.connector_id = connector_id
        self.max_a = max_a
        self.voltage_v = voltage_v
        self.car: Car | None = None
        self._car_start_wh = 0.0
        self.tx: Transaction | None = None
        # Energy delivered by cars that have left; the register is this plus the current car's.
        self.energy_base_wh = 0.0
        self.offered_a = 0.0
        self.status_sent: str | None = None
        self.finishing = False
        self.last_sample_s = 0.0
        # (id_tag, remote_start_id, profile) of a remote start waiting for a car.
        self.pending_remote: tuple[str, int | None, Any] | None = None

    def plug(self, car: Car, now_s: float) -> None:
        if self.car is not None:
            raise ValueError(f"connector {self.connector_id} already has a car plugged in")
        self.car = car
        self._car_start_wh = car.energy_wh(now_s)
        car.offer(self.offered_a, now_s)

    def unplug(self, now_s: float) -> Car | None:
        car = self.car
        if car is not None:
            car.offer(0.0, now_s)
            self.energy_base_wh += car.energy_wh(now_s) - self._car_start_wh
            self.car = None
        self.finishing = False
        return car

    def energy_wh(self, now_s: float) -> float:
        if self.car is None:
            return self.energy_base_wh
        return self.energy_base_wh + self.car.energy_wh(now_s) - self._car_start_wh

    def register_wh(self, now_s: float) -> int:
        """The Energy.Active.Import.Register value: whole Wh, never decreasing."""
        return int(self.energy_wh(now_s))

    def set_offered(self, offered_a: float, now_s: float) -> None:
        offered = 0.0 if offered_a < IEC_MIN_CURRENT_A else offered_a
        self.offered_a = offered
        if self.car is not None:
            self.car.offer(offered, now_s)

    def drawn_a(self, now_s: float) -> tuple[float, float, float]:
        if self.car is None:
            return (0.0, 0.0, 0.0)
        return self.car.phase_currents_a(now_s)

    def power_w(self, now_s: float) -> float:
        return sum(self.drawn_a(now_s)) * self.voltage_v

    def _car_wants(self, now_s: float) -> bool:
        return self.car is not None and self.car.target_a(now_s) > 0.0

    def status_v16(self, now_s: float) -> str:
        if self.tx is None:
            if self.car is None:
                return "Available"
            return "Finishing" if self.finishing else "Preparing"
        if self.car is None:
            return "Preparing"
        if self.offered_a < IEC_MIN_CURRENT_A:
            return "SuspendedEVSE"
        return "Charging" if self._car_wants(now_s) else "SuspendedEV"

    def status_v201(self) -> str:
        return "Available" if self.car is None else "Occupied"

    def charging_state_v201(self, now_s: float) -> str:
        if self.car is None:
            return "Idle"
        if self.tx is None:
            return "EVConnected"
        if self.offered_a < IEC_MIN_CURRENT_A:
            return "SuspendedEVSE"
        return "Charging" if self._car_wants(now_s) else "SuspendedEV"

    def sample(self, now_s: float, now_utc: datetime) -> Sample:
        return Sample(
            timestamp_utc=now_utc,
            energy_wh=self.register_wh(now_s),
            currents_a=self.drawn_a(now_s),
            offered_a=self.offered_a,
            power_w=self.power_w(now_s),
        )
