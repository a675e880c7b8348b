"""The ``[[grid_limits]]`` sections: where a node's limit comes from.

```toml
[[grid_limits]]            # the site's main fuse
name = "main fuse"         # required, unique; named in every decision it binds
kind = "static"            # "static", "modbus", "schedule", "contact" or "cloud"
node = "site"              # "site" or a feeder name (or a charge point id used as a node)
current_a = 63             # per phase: one number or [L1, L2, L3]
# power_w = 43000          # total active power; becomes (power / nominal voltage) A summed
                           # over the phases. current_a, power_w or both.

[[grid_limits]]            # an energy manager writes a limit and a heartbeat counter
name = "ems"
kind = "modbus"
node = "site"
host = "192.168.1.20"
port = 502                 # default 502
unit_id = 1                # default 1
framer = "tcp"             # "tcp" or "rtu" (RTU framing over TCP, RS-485 gateways)
timeout_s = 1.0            # default 1.0
poll_interval_s = 1.0      # default 1.0
table = "holding"          # "holding" (default) or "input"
value_address = 100        # register with the limit
value_type = "uint16"      # default uint16; any register type of the meter maps
value_scale = 1.0          # raw x scale = limit in the unit below
unit = "a"                 # "a": per-phase current; "w": total power
heartbeat_address = 101    # register the EMS increments; stale when it stops changing
heartbeat_type = "uint16"
stale_after_s = 10.0       # default 10
fail_safe = { current_a = 16 }   # required: what applies while stale

[[grid_limits]]            # time-of-day steps, local time
name = "evening peak"
kind = "schedule"
node = "site"
timezone = "Europe/Berlin" # IANA name; default "UTC"
[[grid_limits.steps]]
days = ["mon", "tue", "wed", "thu", "fri"]   # default: every day
from = "17:00"             # inclusive, HH:MM
to = "20:00"               # exclusive; "24:00" = midnight; to < from runs past midnight;
                           # from "00:00" to "24:00": the whole day
current_a = 40             # and/or power_w

[[grid_limits]]            # a dimming contact (German section 14a EnWG), as a file "1"/"0"
name = "14a"
kind = "contact"
node = "site"
path = "/run/gpio/dim"     # content "1": dimmed, "0": no limit from this source
dimmed = { power_w = 4200 }
poll_interval_s = 1.0
stale_after_s = 10.0       # unreadable this long: fail-safe
fail_safe = { power_w = 4200 }   # default: the dimmed value

[[grid_limits]]            # limits pushed by the platform, each with its own expiry
name = "cloud"
kind = "cloud"
node = "site"
# fail_safe = { current_a = 32 }  # optional: what applies once the pushed limit expired
```
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import time
from typing import Any, Literal

from actors.allocation_types import PerPhase
from actors.grid_limits import (
    CloudSource,
    ContactSource,
    LimitValue,
    RegisterSource,
    StaticSource,
)
from actors.grid_limits_schedule import DAYS, ScheduleSource, ScheduleStep
from config.fields import ConfigError, Table
from drivers.modbus.registers import TABLES, TYPES, FieldSpec, RegisterMap

KINDS = ("static", "modbus", "schedule", "contact", "cloud")
FRAMERS = ("tcp", "rtu")
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusEndpoint:
    host: str
    port: int = 502
    unit_id: int = 1
    framer: Literal["tcp", "rtu"] = "tcp"
    timeout_s: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticLimitConfig:
    source: StaticSource


@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusLimitConfig:
    source: RegisterSource
    endpoint: ModbusEndpoint
    register_map: RegisterMap  # fields "limit" and "heartbeat"
    poll_interval_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleLimitConfig:
    source: ScheduleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactLimitConfig:
    source: ContactSource
    path: str
    poll_interval_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudLimitConfig:
    source: CloudSource


GridLimitConfig = (
    StaticLimitConfig
    | ModbusLimitConfig
    | ScheduleLimitConfig
    | ContactLimitConfig
    | CloudLimitConfig
)


def per_phase(t: Table, key: str, *, required: bool = True) -> PerPhase | None:
    """One number for all three phases, or a list [L1, L2, L3]; amperes, >= 0."""
    if not t.has(key):
        t.raw(key, None)
        if required:
            raise t.error(key, "a current in A (a number or [L1, L2, L3])")
        return None
    value = t.raw(key)
    expected = "a current >= 0 in A: a number or a list of three numbers [L1, L2, L3]"
    items = value if isinstance(value, list) else [value, value, value]
    if len(items) != 3 or not all(_number(v) and 0 <= v < math.inf for v in items):
        raise t.error(key, expected, value)
    return (float(items[0]), float(items[1]), float(items[2]))


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def limit_value(t: Table, what: str) -> LimitValue:
    """``current_a`` and/or ``power_w`` of a table (a limit, a fail-safe, a dimmed value)."""
    current = per_phase(t, "current_a", required=False)
    power = t.number("power_w", None, min=0)
    if current is None and power is None:
        t.reject_unknown()  # a misspelt current_a / power_w: name it
        raise ConfigError(t.source, t.path or what, f"{what}: current_a, power_w or both")
    return LimitValue(current_a=current, power_w=power)


def _limit_table(t: Table, key: str, *, required: bool) -> LimitValue | None:
    if not t.has(key):
        t.raw(key, None)
        if required:
            raise t.error(key, "a table such as { current_a = 16 } or { power_w = 4200 }")
        return None
    sub = t.table(key)
    value = limit_value(sub, key)
    sub.reject_unknown()
    return value


def from_table(t: Table) -> GridLimitConfig:
    name = t.string("name")
    if not name:
        raise t.error("name", "a non-empty name")
    kind = t.string("kind", choices=KINDS)
    node = t.string("node", "site")
    result: GridLimitConfig
    if kind == "static":
        result = StaticLimitConfig(
            source=StaticSource(name=name, node=node, value=limit_value(t, "limit"))
        )
    elif kind == "modbus":
        result = _modbus(t, name, node)
    elif kind == "schedule":
        result = _schedule(t, name, node)
    elif kind == "contact":
        dimmed = _limit_table(t, "dimmed", required=True)
        assert dimmed is not None
        fail_safe = _limit_table(t, "fail_safe", required=False) or dimmed
        poll_s = t.number("poll_interval_s", 1.0, min=0.05)
        result = ContactLimitConfig(
            source=ContactSource(
                name=name,
                node=node,
                dimmed=dimmed,
                fail_safe=fail_safe,
                stale_after_s=_stale_after(t, poll_s),
            ),
            path=t.string("path", nonempty="the contact file's path"),
            poll_interval_s=poll_s,
        )
    else:
        result = CloudLimitConfig(
            source=CloudSource(
                name=name, node=node, fail_safe=_limit_table(t, "fail_safe", required=False)
            )
        )
    t.reject_unknown()
    return result


def _modbus(t: Table, name: str, node: str) -> ModbusLimitConfig:
    endpoint = ModbusEndpoint(
        host=t.string("host", nonempty="a host name or address"),
        port=t.integer("port", 502, min=1, max=65535),
        unit_id=t.integer("unit_id", 1, min=0, max=255),
        framer=t.string("framer", "tcp", choices=FRAMERS),
        timeout_s=t.number("timeout_s", 1.0, min=0.05, max=30),
    )
    table = t.string("table", "holding", choices=TABLES)
    limit = FieldSpec(
        name="limit",
        address=t.integer("value_address", min=0, max=65535),
        table=table,
        type=t.string("value_type", "uint16", choices=TYPES),
        word_order="big",
        scale=1.0,
    )
    heartbeat = FieldSpec(
        name="heartbeat",
        address=t.integer("heartbeat_address", min=0, max=65535),
        table=table,
        type=t.string("heartbeat_type", "uint16", choices=TYPES),
        word_order="big",
        # (a counter passes through the "no value" pattern: that read is skipped)
        optional=True,
    )
    value_regs = range(limit.address, limit.address + limit.count)
    if set(value_regs) & set(range(heartbeat.address, heartbeat.address + heartbeat.count)):
        # the limit held steady would read as a silent EMS: stale, its fail-safe for good
        raise t.error(
            "heartbeat_address",
            f"registers apart from the limit's ({value_regs.start}..{value_regs.stop - 1})",
            heartbeat.address,
        )
    fields = (limit, heartbeat)
    # What the EMS writes for "no value" (all ones of a uint16 would read as 65535 A or W):
    # such a read fails, and the fail-safe applies once the source is stale.
    undefined = t.string("value_undefined", "none", choices=("none", "all_ones", "sunspec"))
    fail_safe = _limit_table(t, "fail_safe", required=True)
    assert fail_safe is not None
    scale = t.number("value_scale", 1.0)
    if scale <= 0:  # every limit read would be 0 (clamped): every car paused
        raise t.error("value_scale", "a number > 0 (raw x scale = the limit)", scale)
    poll_s = t.number("poll_interval_s", 1.0, min=0.05)
    source = RegisterSource(
        name=name,
        node=node,
        unit=t.string("unit", choices=("a", "w")),
        fail_safe=fail_safe,
        stale_after_s=_stale_after(t, poll_s),
        scale=scale,
    )
    register_map = RegisterMap(
        name=f"grid limit {name}",
        description=f"EMS limit register of {name!r}",
        fields=fields,
        undefined=undefined,
        current_sign="as_read",
        source=t.source,
    )
    return ModbusLimitConfig(
        source=source,
        endpoint=endpoint,
        register_map=register_map,
        poll_interval_s=poll_s,
    )


def _stale_after(t: Table, poll_s: float) -> float:
    """``stale_after_s``, longer than ``poll_s`` (``poll_interval_s``): shorter, the source would
    be stale between two good reads, its fail-safe in force most of the time."""
    stale_s = float(t.number("stale_after_s", 10.0, min=0.1))
    if stale_s <= poll_s:
        raise t.error("stale_after_s", f"more than poll_interval_s ({poll_s:g})", stale_s)
    return stale_s


def _schedule(t: Table, name: str, node: str) -> ScheduleLimitConfig:
    zone = t.string("timezone", "UTC")
    steps: list[ScheduleStep] = []
    for st in t.tables("steps"):
        days = st.items("days", _day, "day names (mon..sun)", list(DAYS))
        start = _clock(st, "from")
        end = _clock(st, "to")
        if start == end and not (start == time(0, 0) and st.raw("to") == "24:00"):
            raise st.error(
                "to", "a time different from 'from' (from 00:00 to 24:00: all day)", st.raw("to")
            )
        try:
            steps.append(
                ScheduleStep(
                    days=frozenset(days), start=start, end=end, value=limit_value(st, "step")
                )
            )
        except ConfigError:
            raise  # names its own key
        except ValueError as exc:
            raise ConfigError(st.source, st.path, f"a valid step ({exc})") from None
        st.reject_unknown()
    if not steps:
        raise t.error("steps", "at least one [[grid_limits.steps]] table")
    try:
        source = ScheduleSource(name=name, node=node, timezone=zone, steps=tuple(steps))
    except (ValueError, KeyError) as exc:
        raise t.error("timezone", "an IANA time zone name such as 'Europe/Berlin'", zone) from exc
    return ScheduleLimitConfig(source=source)


def _day(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in DAYS:
        raise ValueError(value)
    return value.lower()


def _clock(t: Table, key: str) -> time:
    text = t.string(key)
    match = _HHMM.match(text)
    if match is None or (match.group(1) == "24" and match.group(2) != "00"):
        raise t.error(key, "a time of day HH:MM (00:00..24:00)", text)
    hour = int(match.group(1))
    return time(0, 0) if hour == 24 else time(hour, int(match.group(2)))
