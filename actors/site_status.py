"""The allocator's state as ``run.py status`` shows it."""

from __future__ import annotations

import math
from typing import Any

from actors.energy_inputs import finite, limit_json
from actors.site_state import SiteState


def site_summary(state: SiteState, now_s: float) -> dict[str, Any]:
    """The site as ``run.py status`` shows it (JSON-able): meters (last reading, age, stale),
    effective limits per node with the binding source, each source, each connector's limit,
    reason and what the charge point answered, and the mode (normal / stale / fail-safe)."""
    stale_after = state.model.control.stale_no_increase_s
    meters = {}
    for name, info in state.meters.items():
        read_s = info.get("read_s")
        age = math.inf if read_s is None else now_s - read_s
        meters[name] = {
            "node": info.get("node"),
            "current_a": info.get("current_a"),
            "power_w": info.get("power_w"),
            "read_utc": info.get("read_utc"),
            "age_s": finite(age),
            "stale": age >= stale_after,
            "error": info.get("error"),
            "failures": info.get("failures", 0),
            "dropped_fields": info.get("dropped_fields") or [],
        }
    connectors = {}
    for key, d in state.decisions.items():
        outcome = state.outcomes.get(key)
        tracker = state.trackers.get(key)
        connectors[key] = {
            **d,
            "sent_a": state.sent.get(key),
            "outcome": None if outcome is None else outcome.status,
            "non_compliant": bool(tracker and tracker.flagged),
        }
    return {
        "mode": state.mode,
        "meters": meters,
        "limits": {node: limit_json(lim) for node, lim in state.effective.items()},
        "sources": {
            name: {
                "node": rep.node,
                "limit": None if rep.limit is None else rep.limit.value.describe(),
                "stale": None if rep.limit is None else rep.limit.stale,
                "detail": None if rep.limit is None else rep.limit.detail,
                "age_s": finite(now_s - rep.reported_monotonic_s),
            }
            for name, rep in state.sources.items()
        },
        "connectors": connectors,
        "nodes_over_limit": sorted(n for n, t in state.node_trackers.items() if t.flagged),
        "demand_batches_overtaken": state.demand_overtaken,
    }
