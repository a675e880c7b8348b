"""The site's own consumption (everything but the cars): a daily shape plus seeded noise.

Pure and deterministic: the same seed and the same second give the same value, so a test that
fixes both can predict what the meter reports.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

from sim.car import NOMINAL_VOLTAGE_V


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseLoad:
    # Mean current per phase over a day.
    mean_a: tuple[float, float, float] = (10.0, 8.0, 12.0)
    # 0 is flat; 0.4 swings +-40 % around the mean, peaking at 18:00 UTC, lowest at 06:00.
    daily_swing: float = 0.4
    # Uniform noise in +-noise_a, fixed for each whole second.
    noise_a: float = 0.5
    seed: int = 1
    voltage_v: float = NOMINAL_VOLTAGE_V

    def currents_a(self, at_utc: datetime) -> tuple[float, float, float]:
        hours = at_utc.hour + at_utc.minute / 60 + at_utc.second / 3600
        shape = 1.0 + self.daily_swing * math.cos(2 * math.pi * (hours - 18.0) / 24.0)
        second = int(at_utc.timestamp())
        values = []
        for phase, mean in enumerate(self.mean_a):
            noise = 0.0
            if self.noise_a > 0:
                rng = random.Random(self.seed * 1_000_003 + phase * 7_919 + second)
                noise = rng.uniform(-self.noise_a, self.noise_a)
            values.append(max(0.0, mean * shape + noise))
        return (values[0], values[1], values[2])


FLAT_ZERO = BaseLoad(mean_a=(0.0, 0.0, 0.0), daily_swing=0.0, noise_a=0.0)
