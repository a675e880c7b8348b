"""What one meter read yields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PhaseValues = tuple[float | None, float | None, float | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterReading:
    """One complete read of a meter.

    Currents are per grid phase and signed: import positive, export negative (the sign comes
    from the phase power when the meter reports current unsigned). ``read_s`` is the monotonic
    time the last answer arrived, ``read_utc`` the same instant on the wall clock.
    """

    meter: str
    current_a: tuple[float, float, float]
    voltage_v: PhaseValues
    power_w: PhaseValues
    total_power_w: float | None
    energy_import_wh: float | None
    energy_export_wh: float | None
    read_s: float
    read_utc: datetime
    duration_s: float
    requests: int
