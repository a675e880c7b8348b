"""The meter actor: one per ``[[meters]]``, polls a Modbus/TCP meter and tells the allocator.

Each poll is a message to itself (``send_after``), so the actor never sleeps in a loop and its
supervisor can stop it between two reads. The Modbus client is made inside the running loop (by
the driver, on the first read), with a short timeout and no library retries: a dead meter shows
within one timeout, and the allocator's control loop owns what staleness means (no increases
after 3 s, fail-safe after 10 s). On every good read the allocator gets a :class:`MeterRead`
with the monotonic time of the sample; on every failed one a :class:`MeterFailed`. Failures are
logged once when they start, then at most once a minute with a count, and once on recovery.

pymodbus logs an ERROR (with a frame dump) for every request without an answer and a WARNING
for every refused connect. We report each of those ourselves, rate-limited, so
:func:`quiet_pymodbus` drops exactly those records from its logger and counts them; anything
else pymodbus says still gets through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actors.allocation_types import PerPhase
from config.energy import MeterConfig
from drivers.modbus import MeterError, MeterReading, ModbusMeter
from supervisors.actor import Actor, ActorContext

log = logging.getLogger(__name__)

PYMODBUS_LOGGER = "pymodbus.logging"
LOG_EVERY_S = 60.0
_PER_REQUEST_NOISE = (
    "No response received",  # one request timed out (retries=0): our MeterTimeout says it
    "Failed to connect",  # connect refused: our MeterConnectionError says it
    "Not connected, trying to connect",
    "Cancel send, because not connected",
    "ERROR: request ask for id=",  # an answer from another unit id: our MeterBadResponse says it
)


class _PerRequestNoise(logging.Filter):
    def __init__(self) -> None:
        super().__init__("pymodbus-per-request-noise")
        self.dropped = 0
        self._last_dropped = False

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage().lstrip()
        # pymodbus writes "Repeating...." once for a message logged twice in a row.
        repeat = text.startswith("Repeating....")
        drop = (repeat and self._last_dropped) or any(
            text.startswith(prefix) for prefix in _PER_REQUEST_NOISE
        )
        if not repeat:
            self._last_dropped = drop
        if drop:
            self.dropped += 1
        return not drop


_noise_filter = _PerRequestNoise()


def quiet_pymodbus() -> _PerRequestNoise:
    """Install (once) the filter on pymodbus's logger; returns it (``dropped`` counts)."""
    logger = logging.getLogger(PYMODBUS_LOGGER)
    if _noise_filter not in logger.filters:
        logger.addFilter(_noise_filter)
    return _noise_filter


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterRead:
    """One good reading: signed current per grid phase, taken at ``read_monotonic_s`` (when
    the read started: the meter answered at some point after it)."""

    meter: str
    node: str
    current_a: PerPhase
    total_power_w: float | None
    read_monotonic_s: float
    read_utc: datetime
    duration_s: float
    # the fields the meter refuses (exception 2/3), read without: None in every reading
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterFailed:
    """One failed read; ``failures`` counts them since the last good one."""

    meter: str
    node: str
    error: str
    failures: int
    last_read_monotonic_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Poll:
    """Time for the next read (sent to itself)."""


class MeterActor(Actor):
    def __init__(
        self,
        ctx: ActorContext,
        *,
        config: MeterConfig,
        allocator_path: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ctx)
        self.config = config
        self.allocator_path = allocator_path
        self.monotonic = monotonic
        self.meter: ModbusMeter | None = None
        self.last: MeterReading | None = None
        self.reads = 0
        self.failures = 0  # consecutive
        self.failures_total = 0
        self.last_error = ""
        self._failing_since_log_s: float | None = None
        self._suppressed = 0

    async def started(self) -> None:
        quiet_pymodbus()
        c = self.config
        self.meter = ModbusMeter(
            name=c.name,
            host=c.host,
            port=c.port,
            unit_id=c.unit_id,
            framer=c.framer,
            register_maps=c.register_maps,
            timeout_s=c.timeout_s,
            monotonic=self.monotonic,
        )
        self.ref.tell(Poll())

    async def terminate(self, reason: object) -> None:
        if self.meter is not None:
            await self.meter.close()

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, Poll):
            await self._poll()
            return None
        return await super().receive(msg)

    async def _poll(self) -> None:
        assert self.meter is not None
        started = self.monotonic()
        try:
            reading = await self.meter.read()
        except MeterError as exc:
            self._failed(exc)
        else:
            self._read(reading)
        elapsed = self.monotonic() - started
        self.send_after(max(0.0, self.config.poll_interval_s - elapsed), Poll())

    def _read(self, reading: MeterReading) -> None:
        if self.failures:
            log.info(
                "meter %r answers again after %d failed read(s)", self.config.name, self.failures
            )
        self.last = reading
        self.reads += 1
        self.failures = 0
        self._failing_since_log_s = None
        self._suppressed = 0
        self.ctx.system.send(
            self.allocator_path,
            MeterRead(
                meter=self.config.name,
                node=self.config.node,
                current_a=reading.current_a,
                total_power_w=reading.total_power_w,
                # The values are from somewhere within the read; its start is the older, safe
                # end: the allocator matches connector samples to it (base load never too low)
                # and ages it for staleness.
                read_monotonic_s=reading.read_s - reading.duration_s,
                read_utc=reading.read_utc,
                duration_s=reading.duration_s,
                dropped=tuple(d.name for d in self.meter.dropped) if self.meter else (),
            ),
        )

    def _failed(self, exc: MeterError) -> None:
        self.failures += 1
        self.failures_total += 1
        self.last_error = str(exc)
        now = self.monotonic()
        if self._failing_since_log_s is None:
            log.warning("meter %r: read failed: %s", self.config.name, exc)
            self._failing_since_log_s = now
        elif now - self._failing_since_log_s >= LOG_EVERY_S:
            log.warning(
                "meter %r: still failing (%d more failed reads): %s",
                self.config.name,
                self._suppressed + 1,
                exc,
            )
            self._failing_since_log_s = now
            self._suppressed = 0
        else:
            self._suppressed += 1
        self.ctx.system.send(
            self.allocator_path,
            MeterFailed(
                meter=self.config.name,
                node=self.config.node,
                error=str(exc),
                failures=self.failures,
                last_read_monotonic_s=None if self.last is None else self.last.read_s,
            ),
        )

    def report(self) -> dict[str, Any]:
        last = self.last
        age = None if last is None else round(self.monotonic() - last.read_s, 3)
        return {
            "meter": self.config.name,
            "node": self.config.node,
            "endpoint": f"{self.config.host}:{self.config.port}/{self.config.unit_id}",
            "model": self.config.model,
            "reads": self.reads,
            "failures": self.failures,
            "failures_total": self.failures_total,
            "last_error": self.last_error or None,
            "current_a": None if last is None else list(last.current_a),
            "age_s": age,
            "pymodbus_lines_dropped": _noise_filter.dropped,
            # fields the meter refuses (exception 2/3), read without: None in every reading
            "dropped_fields": {
                d.name: f"{d.registers} refused (exception {d.exception_code})"
                for d in (() if self.meter is None else self.meter.dropped)
            },
        }
