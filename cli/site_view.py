"""The site at a glance, for ``run.py status`` and ``status --watch``: per charge point its state,
offered and drawn current, cloud link and queue; the site's load against its limit."""

from __future__ import annotations

from typing import Any, TextIO

from actors.broker_context import merge_batch_reports
from drivers.ocpp.redact import printable

PHASES = ("L1", "L2", "L3")


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.{digits}f}{unit}"
    return str(value)


def _node(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    node = next((n for n in doc.get("nodes", []) if n.get("kind") == kind), None)
    site = None if node is None else node.get("site")
    return site if isinstance(site, dict) else {}


def _brokers(doc: dict[str, Any]) -> dict[str, Any]:
    """The broker nodes' site parts as one (several with ``[runtime] broker_shards``: each has
    its own charge points); the edge session and listener of the first (the front); the profile
    batches' parts merged (each node writes its charge points' part of a batch)."""
    parts = [
        n["site"]
        for n in doc.get("nodes", [])
        if n.get("kind") == "broker" and isinstance(n.get("site"), dict)
    ]
    if len(parts) <= 1:
        return parts[0] if parts else {}
    merged = dict(parts[0])
    merged["charge_points"] = {
        k: v for p in parts for k, v in (p.get("charge_points") or {}).items()
    }
    for key in ("charge_points_connected", "cloud_sessions_online", "queued_for_cloud"):
        merged[key] = sum(int(p.get(key) or 0) for p in parts)
    profiles = [p.get("profiles") for p in parts]
    if all(isinstance(p, dict) for p in profiles):
        # Only what adds up across nodes; each node's own counters are in its status.
        merged["profiles"] = {
            "recent_batches": merge_batch_reports(
                [list(p.get("recent_batches") or ()) for p in profiles]
            ),
            "profiles_rejected": sum(int(p.get("profiles_rejected") or 0) for p in profiles),
        }
    return merged


def table(rows: list[list[str]], out: TextIO) -> None:
    """Rows as aligned columns; a cell with a control character shown escaped."""
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _last_batch(broker: dict[str, Any]) -> str:
    """How long the latest profile batch took from its meter sample to its last frame written."""
    profiles = broker.get("profiles")
    recent = profiles.get("recent_batches") if isinstance(profiles, dict) else None
    written = [b for b in recent or () if b.get("written")]
    if not written:
        return ""
    b = written[-1]
    return (
        f"; last profile batch: {b['written']} of {b['limits']} limits written, the last "
        f"{_fmt(b.get('last_written_ms'), ' ms', 0)} after its meter sample"
    )


def _limit_line(limit: dict[str, Any]) -> str:
    """A node's limit per phase, its total (a power limit) if any, and what binds each: one
    source named once, else each phase's (and the total's) own."""
    parts = [f"{p} {_fmt((limit.get(p) or {}).get('limit_a'), ' A', 0)}" for p in PHASES]
    keys = list(PHASES)
    total = limit.get("total")
    if isinstance(total, dict):
        parts.append(f"total {_fmt(total.get('limit_a'), ' A')}")
        keys.append("total")
    sources = [(limit.get(k) or {}).get("source") or "-" for k in keys]
    if len(set(sources)) == 1:
        bound = sources[0]
    else:
        bound = ", ".join(f"{k} {s}" for k, s in zip(keys, sources, strict=True))
    return f"{' '.join(parts)}  (bound by {bound})"


def render_site(doc: dict[str, Any], out: TextIO) -> None:
    broker, energy = _brokers(doc), _node(doc, "energy")
    cps: dict[str, Any] = broker.get("charge_points") or {}
    out.write(
        f"Charge points: {broker.get('charge_points_connected', 0)}/{len(cps)} connected; "
        f"cloud sessions online {broker.get('cloud_sessions_online', 0)}; "
        f"queued for the cloud {broker.get('queued_for_cloud', 0)}\n"
    )
    edge = broker.get("edge_session")
    if isinstance(edge, dict):
        unsynced = sum((edge.get("unsynced") or {}).values())
        out.write(
            f"Edge session {edge.get('identity')}: {'online' if edge.get('online') else 'offline'}, "
            f"audit records synced {edge.get('synced_total', 0)}, not yet synced {unsynced}"
            f"{_key_rotation(edge.get('key_rotation'))}\n"
        )
    for name, meter in (energy.get("meters") or {}).items():
        currents = meter.get("current_a") or []
        load = " ".join(f"L{i + 1} {_fmt(a, ' A')}" for i, a in enumerate(currents))
        state = "STALE" if meter.get("stale") else f"{_fmt(meter.get('age_s'), ' s')} old"
        dropped = meter.get("dropped_fields") or []
        refused = f"; refuses {', '.join(dropped)}, read without" if dropped else ""
        out.write(f"Meter {name} ({meter.get('node')}): {load or '-'}  ({state}{refused})\n")
    for node, limit in (energy.get("limits") or {}).items():
        out.write(f"Limit at {node}: {_limit_line(limit)}\n")
    if energy:
        out.write(f"Load management: {energy.get('mode', '-')}{_last_batch(broker)}\n")
    decisions: dict[str, Any] = energy.get("connectors") or {}
    rows = [
        [
            "CHARGE POINT",
            "LINK",
            "STATUS",
            "TX",
            "LIMIT",
            "OFFERED",
            "DRAWN L1/L2/L3",
            "CLOUD",
            "QUEUE",
            "WHY",
        ]
    ]
    for cp_id, cp in sorted(cps.items()):
        connectors = cp.get("connectors") or {}
        status = (
            connectors.get("1") or connectors.get("1:1") or next(iter(connectors.values()), "-")
        )
        txs = cp.get("transactions") or {}
        meter = (cp.get("meter") or {}).get("1") or (cp.get("meter") or {}).get("1:1") or {}
        drawn = "/".join(_fmt(meter.get(f"current_L{i}_a"), "", 1) for i in (1, 2, 3))
        decision = decisions.get(f"{cp_id}/1") or {}
        cloud = cp.get("cloud") or {}
        rows.append(
            [
                cp_id,
                "up" if cp.get("connected") else "down",
                str(status),
                (next(iter(txs)) if txs else "-")[:12],
                _fmt(decision.get("limit_a"), " A"),
                # The last sample stays in the state after a transaction ends: shown only while
                # one runs (an idle charge point read as drawing its last car's 24 A).
                _fmt(meter.get("offered_a"), " A") if txs else "-",
                drawn if meter and txs else "-",
                "online" if cloud.get("online") else "offline",
                str(cloud.get("queue_depth", "-")),
                str(decision.get("binding_source") or "-")[:40],
            ]
        )
    if len(rows) > 1:
        table(rows, out)


def _key_rotation(rotation: object) -> str:
    """The edge's own key as the cloud rotated it (never the key)."""
    if not isinstance(rotation, dict):
        return ""
    if not rotation.get("in_force"):
        return "; key rotated by the cloud, overridden by the site file's edge_password"
    kept = (
        "; the previous key kept until a session opens with the new one"
        if rotation.get("previous_kept")
        else ""
    )
    return f"; key rotated by the cloud {rotation.get('rotated_utc', '-')}{kept}"
