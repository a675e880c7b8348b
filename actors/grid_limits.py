"""Grid limit sources and the effective limit per node. Pure: time is always a parameter.

Each source yields a :class:`GridLimit` (per-phase current and/or total power) or None when it
imposes nothing right now. Sources that must be refreshed (an EMS register with a heartbeat, a
contact input, a cloud push with an expiry) fall back to their configured fail-safe value when
they go stale. The effective limit of a node is the minimum over its sources, with the name of
the source that binds each phase and the total.

Kinds:
- ``static``: a fuse or transformer rating, always in force.
- ``modbus``: a register written by an energy manager, with a heartbeat counter; stale when the
  heartbeat has not changed for ``stale_after_s`` (the register value itself may legitimately
  stay the same for hours).
- ``schedule``: steps by weekday and local time of day (:mod:`actors.grid_limits_schedule`).
- ``contact``: a digital input read from a file, "1" = dimmed (e.g. section 14a: 4.2 kW per
  device), "0" = no limit from this source.
- ``cloud``: a limit pushed by the central platform, valid until its expiry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from actors.allocation_types import UNLIMITED, NodeLimit, PerPhase


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitValue:
    """A limit: per-phase current, total active power, or both (both apply)."""

    current_a: PerPhase | None = None
    power_w: float | None = None

    def __post_init__(self) -> None:
        if self.current_a is None and self.power_w is None:
            raise ValueError("a limit needs current_a, power_w or both")
        # (not (x >= 0) is also true of NaN; a limit of infinity is no limit at all)
        if self.current_a is not None and any(
            not (a >= 0) or a == math.inf for a in self.current_a
        ):
            raise ValueError(f"current_a must be finite numbers >= 0, got {self.current_a!r}")
        if self.power_w is not None and (not (self.power_w >= 0) or self.power_w == math.inf):
            raise ValueError(f"power_w must be a finite number >= 0, got {self.power_w!r}")

    def describe(self) -> str:
        parts = []
        if self.current_a is not None:
            parts.append("/".join(f"{a:g}" for a in self.current_a) + " A")
        if self.power_w is not None:
            parts.append(f"{self.power_w:g} W")
        return " and ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class GridLimit:
    """What one source imposes on one node right now."""

    source: str
    node: str
    value: LimitValue
    stale: bool = False
    expires_utc: datetime | None = None
    detail: str = ""


# --- static -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticSource:
    name: str
    node: str
    value: LimitValue

    def limit(self) -> GridLimit:
        return GridLimit(source=self.name, node=self.node, value=self.value, detail="static")


# --- Modbus register written by an EMS ----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterSource:
    """An EMS writes a limit into a register and increments a heartbeat register.

    ``unit`` says what the value register holds: "a" (per-phase current, same on all phases) or
    "w" (total power). ``scale`` multiplies the raw value.
    """

    name: str
    node: str
    unit: str
    fail_safe: LimitValue
    stale_after_s: float = 10.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.unit not in ("a", "w"):
            raise ValueError(f"register source {self.name!r}: unit must be 'a' or 'w'")


# An EMS register beyond these holds no limit (all ones of a uint16 read as 65535 A, a
# mis-scaled value), nor does one below 0: the source's fail-safe applies, as while the EMS is
# silent.
EMS_LIMIT_MAX = {"a": 10_000.0, "w": 1e8}


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterState:
    value: float | None = None
    heartbeat: int | None = None
    heartbeat_changed_s: float | None = None


def register_update(
    state: RegisterState, *, value: float, heartbeat: int, now_s: float
) -> RegisterState:
    """Fold one successful read into the state; a changed heartbeat proves the EMS is alive."""
    changed = state.heartbeat is None or heartbeat != state.heartbeat
    return RegisterState(
        value=value,
        heartbeat=heartbeat,
        heartbeat_changed_s=now_s if changed else state.heartbeat_changed_s,
    )


def register_limit(source: RegisterSource, state: RegisterState, *, now_s: float) -> GridLimit:
    alive = (
        state.value is not None
        and state.heartbeat_changed_s is not None
        and now_s - state.heartbeat_changed_s < source.stale_after_s
    )
    if not alive or state.value is None:
        age = (
            "never"
            if state.heartbeat_changed_s is None
            else (f"{now_s - state.heartbeat_changed_s:.1f} s ago")
        )
        return _fail_safe(source, f"heartbeat last changed {age}")
    scaled = state.value * source.scale
    bound = EMS_LIMIT_MAX[source.unit]
    unit = "A" if source.unit == "a" else "W"
    if not scaled <= bound:  # (NaN too)
        return _fail_safe(
            source, f"EMS register value {scaled:g} {unit} is no limit (beyond {bound:g} {unit})"
        )
    if scaled < 0:  # e.g. -1 or 0x8000 in an int16: "no limit", or a sign mistake; not 0 A
        return _fail_safe(source, f"EMS register value {scaled:g} {unit} is no limit (below 0)")
    value = (
        LimitValue(current_a=(scaled, scaled, scaled))
        if source.unit == "a"
        else LimitValue(power_w=scaled)
    )
    return GridLimit(source=source.name, node=source.node, value=value, detail="EMS register")


def _fail_safe(source: RegisterSource | ContactSource | CloudSource, why: str) -> GridLimit:
    """The source's fail-safe in force, stale, and why."""
    value = source.fail_safe
    assert value is not None  # (a cloud source without one has no limit then)
    return GridLimit(
        source=source.name,
        node=source.node,
        value=value,
        stale=True,
        detail=f"{why}; fail-safe {value.describe()}",
    )


# --- contact input (file) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactSource:
    """A digital input exposed as a file (e.g. a GPIO sysfs value or a relay daemon's output)."""

    name: str
    node: str
    dimmed: LimitValue
    fail_safe: LimitValue
    stale_after_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactState:
    closed: bool | None = None
    read_s: float | None = None
    error: str = ""


def parse_contact(text: str) -> bool:
    """File content to contact state: "1" is closed (dim), "0" is open; anything else is an error."""
    stripped = text.strip()
    if stripped == "1":
        return True
    if stripped == "0":
        return False
    raise ValueError(f"contact input must read '0' or '1', got {stripped[:20]!r}")


def contact_update(
    state: ContactState, *, text: str | None, now_s: float, error: str = ""
) -> ContactState:
    """Fold one read attempt in; ``text`` None means the file could not be read (``error``: why)."""
    if text is None:
        return replace(state, error=error or "could not read the contact file")
    try:
        closed = parse_contact(text)
    except ValueError as exc:
        return replace(state, error=str(exc))
    return ContactState(closed=closed, read_s=now_s)


def contact_limit(source: ContactSource, state: ContactState, *, now_s: float) -> GridLimit | None:
    if state.read_s is None or now_s - state.read_s >= source.stale_after_s:
        return _fail_safe(source, f"contact not read ({state.error or 'no reading'})")
    if not state.closed:
        return None
    return GridLimit(
        source=source.name,
        node=source.node,
        value=source.dimmed,
        detail=f"contact closed: dimmed to {source.dimmed.describe()}",
    )


# --- cloud push ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudSource:
    """A limit pushed by the platform. Once it expires it no longer applies, unless a fail-safe
    is configured (for sites whose contract makes the cloud limit mandatory)."""

    name: str
    node: str
    fail_safe: LimitValue | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudState:
    value: LimitValue | None = None
    valid_until_utc: datetime | None = None


def cloud_limit(source: CloudSource, state: CloudState, *, now_utc: datetime) -> GridLimit | None:
    live = state.value is not None and (
        state.valid_until_utc is None or now_utc < state.valid_until_utc
    )
    if live and state.value is not None:
        return GridLimit(
            source=source.name,
            node=source.node,
            value=state.value,
            expires_utc=state.valid_until_utc,
            detail="pushed by the cloud",
        )
    if source.fail_safe is None:
        return None
    return _fail_safe(source, "cloud limit expired or absent")


# --- effective limit ----------------------------------------------------------------------


def effective_limits(
    limits: Iterable[GridLimit | None], nodes: Sequence[str], *, nominal_voltage_v: float = 230.0
) -> dict[str, NodeLimit]:
    """Minimum over the limits of each node, naming the binding source per phase and total.

    A power limit becomes a cap on the sum of the three phase currents (P / U_nominal), and also
    caps each single phase, since one phase can never carry more than the whole.
    """
    if nominal_voltage_v <= 0:
        raise ValueError(f"nominal voltage must be > 0, got {nominal_voltage_v!r}")
    current: dict[str, list[float]] = {n: list(UNLIMITED) for n in nodes}
    sources: dict[str, list[str]] = {n: ["", "", ""] for n in nodes}
    total: dict[str, float] = {n: math.inf for n in nodes}
    total_source: dict[str, str] = {n: "" for n in nodes}
    for limit in limits:
        if limit is None:
            continue
        if limit.node not in current:
            raise ValueError(f"limit source {limit.source!r} names unknown node {limit.node!r}")
        name = limit.source + (" (stale: fail-safe)" if limit.stale else "")
        per_phase: list[float] = list(UNLIMITED)
        if limit.value.current_a is not None:
            per_phase = list(limit.value.current_a)
        if limit.value.power_w is not None:
            amps = limit.value.power_w / nominal_voltage_v
            per_phase = [min(a, amps) for a in per_phase]
            if amps < total[limit.node]:
                total[limit.node] = amps
                total_source[limit.node] = name
        for p in range(3):
            if per_phase[p] < current[limit.node][p]:
                current[limit.node][p] = per_phase[p]
                sources[limit.node][p] = name
    return {
        n: NodeLimit(
            current_a=(current[n][0], current[n][1], current[n][2]),
            sources=(sources[n][0], sources[n][1], sources[n][2]),
            total_a=total[n],
            total_source=total_source[n],
        )
        for n in nodes
    }


def describe(limits: Mapping[str, NodeLimit]) -> dict[str, str]:
    """One line per node for status output."""
    out = {}
    for node, lim in limits.items():
        phases = ", ".join(
            f"{name} {a:g} A ({src or 'none'})"
            for name, a, src in zip(("L1", "L2", "L3"), lim.current_a, lim.sources, strict=True)
        )
        total = (
            "" if math.isinf(lim.total_a) else f"; total {lim.total_a:.1f} A ({lim.total_source})"
        )
        out[node] = phases + total
    return out
