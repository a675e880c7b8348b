"""A grid limit the cloud pushes (DataTransfer ``GridLimit`` to the edge's session), checked whole
before the edge answers it (pure: ``now_utc`` is a parameter).

The payload's ``data`` is a JSON object: ``limit_a`` (per phase, A) and/or ``power_w`` (the
node's total, W), each a finite number >= 0 or null (null for both: the cloud lifts its limit),
``expires_utc`` (optional, in the future), ``source`` (the site's cloud source, default
``cloud``), ``node`` (optional: the node that source limits). Anything else (an unknown key: a
misspelled ``limitA`` would have lifted the limit; an expiry that is not a time or already past;
NaN; a node or source the site does not have) is refused with the reason, and nothing changes:
the cloud learns at once that its limit is not in force.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from actors.energy_messages import CloudLimitPushed
from actors.utc import parse_utc

KEYS = frozenset({"source", "node", "limit_a", "power_w", "expires_utc"})


class BadCloudLimit(ValueError):
    pass


def cloud_limit_push(
    data: Any, *, now_utc: datetime, sources: Mapping[str, str]
) -> CloudLimitPushed:
    """The push, or :class:`BadCloudLimit` naming what is wrong. ``sources``: the site's cloud
    limit sources, name -> the node each limits (empty: the site has none)."""
    if not isinstance(data, dict):
        raise BadCloudLimit(f"data must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise BadCloudLimit(
            f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}"
        )
    if "limit_a" not in data and "power_w" not in data:
        raise BadCloudLimit("neither limit_a nor power_w (null for both lifts the limit)")
    limit_a = _amount(data, "limit_a")
    power_w = _amount(data, "power_w")
    source = data.get("source", "cloud")
    if not isinstance(source, str) or not source:
        raise BadCloudLimit(f"source must be a non-empty string, got {source!r}")
    if not sources:
        raise BadCloudLimit('this site has no cloud limit source ([[grid_limits]] kind = "cloud")')
    # (The energy node takes a site's only cloud source whatever the push calls it.)
    node_of = sources.get(source) or (next(iter(sources.values())) if len(sources) == 1 else None)
    if node_of is None:
        raise BadCloudLimit(
            f"no cloud limit source {source!r}; the site has {', '.join(sorted(sources))}"
        )
    node = data.get("node")
    if node is not None and node != node_of:
        raise BadCloudLimit(f"node {node!r}: the cloud source {source!r} limits node {node_of!r}")
    expires = data.get("expires_utc")
    if expires is not None:
        if not isinstance(expires, str):
            raise BadCloudLimit(f"expires_utc must be a UTC time as text, got {expires!r}")
        try:
            until = parse_utc(expires, where="expires_utc")
        except ValueError as exc:
            raise BadCloudLimit(str(exc)) from None
        if until <= now_utc:
            raise BadCloudLimit(f"expires_utc {expires!r} is already past")
    return CloudLimitPushed(
        source=source, node=node_of, limit_a=limit_a, power_w=power_w, expires_utc=expires
    )


def _amount(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadCloudLimit(f"{key} must be a number or null, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise BadCloudLimit(f"{key} must be a finite number >= 0, got {value!r}")
    return float(value)
