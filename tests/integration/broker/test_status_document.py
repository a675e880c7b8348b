"""``status --json`` in single-process mode has README's stable document: every node says that it
answered and since when it is up (``up_since_utc``, as in nodes mode)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.integration.broker.edge import start_edge


async def test_each_node_answered_and_is_up_since(tmp_path: Path) -> None:
    edge = await start_edge(tmp_path, cloud_url=None)
    try:
        doc = await edge.site.status()
    finally:
        await edge.stop()
    assert doc["mode"] == "single-process"
    assert doc["stale"] is False
    (node,) = doc["nodes"]
    assert node["answered"] is True
    assert datetime.fromisoformat(node["up_since_utc"].replace("Z", "+00:00"))
