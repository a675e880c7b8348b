"""A whole site in one process: both nodes (single-process mode), a simulated cloud, meter and
charge points, on loopback ports chosen by the OS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.schema import parse_site
from sim.cloud import SimCloud
from sim.site import SimSite, SiteSpec
from supervisors.single import SingleProcessSite


@dataclass
class FullSite:
    edge: SingleProcessSite
    sim: SimSite
    cloud: SimCloud

    def node(self, name: str) -> Any:
        return self.edge.runtimes[name].system

    def broker_actor(self, path: str) -> Any:
        return self.node("broker").actor(f"broker/{path}")

    def allocator(self) -> Any:
        return self.node("energy").actor("energy/allocator")

    async def stop(self) -> None:
        await self.sim.stop()
        await self.edge.stop()
        await self.cloud.stop()


def site_file(
    tmp_path: Path,
    *,
    meter_port: int,
    cloud_url: str,
    cps: list[str],
    energy: str,
    cloud_extra: str = "",
) -> str:
    cp_tables = "".join(f'[[charge_points]]\nid = "{cp}"\nmax_current_a = 32\n' for cp in cps)
    return f"""
[site]
name = "e2e"
storage_dir = "{tmp_path / "var"}"
[runtime]
mode = "single-process"
log_level = "WARNING"
[listener]
port = 0
[cloud]
url = "{cloud_url}"
reconnect_min_s = 0.1
reconnect_max_s = 0.5
{cloud_extra}
[[meters]]
name = "grid"
model = "sdm630"
host = "127.0.0.1"
port = {meter_port}
poll_interval_s = 0.5
timeout_s = 0.5
{energy}
{cp_tables}
"""


async def start_full_site(
    tmp_path: Path,
    spec: SiteSpec,
    *,
    energy: str,
    cloud_tags: tuple[str, ...] = ("DEMO-TAG",),
    cloud_extra: str = "",
) -> FullSite:
    cloud = SimCloud(id_tags=list(cloud_tags))
    await cloud.start()
    # The charge points need the edge's port and the edge needs the meter's: start the meter first.
    probe = SimSite(spec, url="ws://127.0.0.1:1/ocpp")
    await probe.meter.start()
    ids = [cp.id for cp in probe.charge_points]
    text = site_file(
        tmp_path,
        meter_port=probe.meter.port,
        cloud_url=cloud.url,
        cps=ids,
        energy=energy,
        cloud_extra=cloud_extra,
    )
    config = parse_site(text, source="e2e site", base_dir=tmp_path)
    edge = SingleProcessSite(config)
    await edge.start()
    port = edge.runtimes["broker"].system.actor("broker/listener").broker.listener_port
    sim = SimSite(spec, url=f"ws://127.0.0.1:{port}/ocpp")
    sim.meter = probe.meter  # keep the meter the edge was configured with
    sim.meter.sources = sim.charge_points
    for cp in sim.charge_points:
        await cp.start()
    return FullSite(edge=edge, sim=sim, cloud=cloud)
