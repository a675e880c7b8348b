"""Start the broker node in-process (single-process mode) on a site file written by the test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.schema import parse_site
from sim.cloud import SimCloud
from supervisors.node_messages import NodeSpec
from supervisors.single import SingleProcessSite
from tests.integration.sim.conftest import GOOD_TAG


@dataclass
class Edge:
    site: SingleProcessSite
    tmp_path: Path

    @property
    def system(self) -> Any:
        return self.site.runtimes["broker"].system

    @property
    def port(self) -> int:
        listener = self.system.actor("broker/listener")
        port: int = listener.broker.listener_port
        return port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def cp(self, cp_id: str) -> dict[str, Any]:
        actor = self.system.actor(f"broker/charge_points/{cp_id}")
        report: dict[str, Any] = actor.report()
        return report

    def cloud(self, cp_id: str) -> dict[str, Any]:
        actor = self.system.actor(f"broker/cloud/{cp_id}")
        report: dict[str, Any] = actor.report()
        return report

    async def stop(self) -> None:
        await self.site.stop()


def site_text(
    tmp_path: Path,
    *,
    cloud_url: str | None,
    charge_points: tuple[str, ...] = ("CP1",),
    cloud_extra: str = "",
    listener_extra: str = "",
    cp_extra: str = "",
    extra: str = "",
) -> str:
    cloud = ""
    if cloud_url is not None:
        cloud = f'[cloud]\nurl = "{cloud_url}"\nreconnect_min_s = 0.1\nreconnect_max_s = 0.5\n{cloud_extra}\n'
    cps = "".join(f'[[charge_points]]\nid = "{c}"\n{cp_extra}\n' for c in charge_points)
    return (
        f'[site]\nname = "test"\nstorage_dir = "{tmp_path / "var"}"\n'
        f'[runtime]\nmode = "single-process"\nlog_level = "WARNING"\n'
        f"[listener]\nport = 0\n{listener_extra}\n{cloud}{cps}{extra}"
    )


async def start_edge(tmp_path: Path, **kwargs: Any) -> Edge:
    config = parse_site(site_text(tmp_path, **kwargs), source="test site", base_dir=tmp_path)
    site = SingleProcessSite(config, (NodeSpec(name="broker", kind="broker"),))
    await site.start()
    return Edge(site=site, tmp_path=tmp_path)


@contextlib.asynccontextmanager
async def cloud_and_edge(tmp_path: Path, **kwargs: Any) -> AsyncIterator[tuple[SimCloud, Edge]]:
    """A SimCloud that takes the tests' id tag, silent between messages (its heartbeat interval
    300 s), and the broker on it (``kwargs``: :func:`start_edge`'s); both stopped after."""
    cloud = SimCloud(id_tags=[GOOD_TAG], heartbeat_interval_s=300)
    await cloud.start()
    try:
        edge = await start_edge(tmp_path, cloud_url=cloud.url, **kwargs)
        try:
            yield cloud, edge
        finally:
            await edge.stop()
    finally:
        await cloud.stop()
