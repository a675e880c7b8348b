"""The status document: what ``run.py status --json`` prints (stable; documented in README).

``schema`` names the layout version; fields are only ever added. A stale document (the runtime did
not answer) is built from the snapshots each node persists every few seconds, with ``stale: true``
and ``age_s``: how old the newest snapshot is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SCHEMA = "edge-status/1"


def status_document(
    *,
    config: Any,
    mode: str,
    nodes: list[dict[str, Any]],
    launcher: dict[str, Any] | None,
    stale: bool = False,
    age_s: float | None = None,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "site": config.name,
        "mode": mode,
        "stale": stale,
        "age_s": None if age_s is None else round(age_s, 1),
        "generated_utc": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "launcher": launcher,
        "nodes": nodes,
    }
