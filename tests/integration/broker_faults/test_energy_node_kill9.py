"""kill -9 of the energy node around what the cloud sent the edge: a grid limit (DataTransfer
``GridLimit``) and central rules (DataTransfer ``RulesBundle``), both answered Accepted by the
broker node as it hands them on to the energy node.

The runtime is ``python run.py --config FILE`` in nodes mode (launcher, Thespian root, broker and
energy node processes) with ``[cloud] edge_identity``; the simulated cloud runs in this process.
The energy node is stopped (SIGSTOP) before the cloud's call, so the call reaches a node that
cannot act on it, and killed (SIGKILL) once the broker has answered: the Thespian root restarts
it. What the site applies after that restart must be what the edge accepted.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from actors.utc import format_utc
from drivers import control
from drivers.ports import free_tcp_port
from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker_faults.site import NodesRuntime, site_toml

pytestmark = [pytest.mark.nodes, pytest.mark.slow]

EDGE = "SITE-EDGE"
FUSE_A = 40.0
# A static fuse and the cloud's source on the site; no meter (the limit in force is what the
# allocator takes from its sources, whatever the meters say).
ENERGY = f"""
[[grid_limits]]
name = "fuse"
kind = "static"
node = "site"
current_a = {FUSE_A}

[[grid_limits]]
name = "cloud"
kind = "cloud"
node = "site"
"""


@pytest.fixture
async def runtime(tmp_path: Path, cloud: SimCloud) -> AsyncIterator[NodesRuntime]:
    port = free_tcp_port()
    text = site_toml(
        tmp_path,
        mode="nodes",
        port=port,
        cloud_url=cloud.url,
        cloud={"edge_identity": EDGE},
        charge_points=("CP1",),
    )
    rt = NodesRuntime(tmp_path, text + ENERGY, port)
    await rt.start()
    yield rt
    rt.cleanup()


async def node(rt: NodesRuntime, name: str) -> dict[str, Any] | None:
    """Node ``name``'s status, None while it does not answer."""
    try:
        doc = await rt.status()
    except control.ControlUnavailable:
        return None
    found = next((n for n in doc.get("nodes", []) if n.get("name") == name), None)
    if found is None or not found.get("answered") or found.get("state") != "running":
        return None
    return dict(found)


async def site_limit(rt: NodesRuntime) -> dict[str, Any] | None:
    """The energy node's limit in force on phase L1 of the site, with its binding source."""
    energy = await node(rt, "energy")
    limits = None if energy is None else (energy.get("site") or {}).get("limits")
    return None if not limits else limits.get("site", {}).get("L1")


async def linked(rt: NodesRuntime) -> bool:
    """The broker writes to the energy node over their direct link (what it sends the energy
    node is not held by the Thespian root)."""
    broker = await node(rt, "broker")
    return broker is not None and "energy" in ((broker.get("links") or {}).get("peers") or [])


async def ready(rt: NodesRuntime, cloud: SimCloud) -> None:
    await wait_for(lambda: cloud.connected(EDGE), timeout=20, what="the edge session")

    async def fuse() -> bool:
        return await site_limit(rt) == {"limit_a": FUSE_A, "source": "fuse"}

    await wait_for(fuse, timeout=20, what="the fuse in force")
    await wait_for(lambda: linked(rt), timeout=20, what="the broker's link to the energy node")


async def stop_energy(rt: NodesRuntime) -> int:
    """SIGSTOP the energy node: it takes nothing in until it is killed."""
    energy = await node(rt, "energy")
    assert energy is not None
    pid = int(energy["pid"])
    os.kill(pid, signal.SIGSTOP)
    return pid


async def kill_energy(rt: NodesRuntime, pid: int) -> None:
    """SIGKILL the (stopped) energy node; back once another process of it answers."""
    os.kill(pid, signal.SIGKILL)

    async def back() -> bool:
        energy = await node(rt, "energy")
        return energy is not None and energy.get("pid") not in (None, pid)

    await wait_for(back, timeout=30, what="the energy node restarted")


async def push(cloud: SimCloud, data: dict[str, Any]) -> dict[str, Any]:
    answer = await cloud.data_transfer(
        EDGE, "site-edge", message_id="GridLimit", data=orjson.dumps(data).decode()
    )
    return dict(answer)


async def test_a_cloud_limit_the_edge_accepted_is_in_force_after_the_energy_node_is_killed(
    runtime: NodesRuntime, cloud: SimCloud
) -> None:
    """The cloud pushes 16 A while the energy node cannot take it in; the broker answers
    Accepted; the energy node is killed -9 and restarted. The site must run at the cloud's
    16 A, not the fuse's 40 A. Then a second push, 12 A for 3 s, meets the same fate, and the
    energy node comes back only after it expired: neither it (expired) nor the 16 A it
    replaced may be in force, the fuse is."""
    await ready(runtime, cloud)
    pid = await stop_energy(runtime)
    in_an_hour = format_utc(datetime.now(UTC) + timedelta(hours=1))
    answer = await push(cloud, {"limit_a": 16, "expires_utc": in_an_hour})
    assert answer["status"] == "Accepted", answer
    await kill_energy(runtime, pid)

    async def cloud_limit_in_force() -> bool:
        return await site_limit(runtime) == {"limit_a": 16.0, "source": "cloud"}

    try:
        await wait_for(cloud_limit_in_force, timeout=15, what="the cloud's 16 A in force")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: the limit in force is {await site_limit(runtime)}") from None

    pid = await stop_energy(runtime)
    expires = datetime.now(UTC) + timedelta(seconds=3)
    answer = await push(cloud, {"limit_a": 12, "expires_utc": format_utc(expires)})
    assert answer["status"] == "Accepted", answer
    await wait_for(lambda: datetime.now(UTC) > expires, timeout=10, what="the 12 A expired")
    await kill_energy(runtime, pid)

    async def fuse() -> bool:
        return await site_limit(runtime) == {"limit_a": FUSE_A, "source": "fuse"}

    await wait_for(fuse, timeout=15, what="the fuse in force")
    energy = await node(runtime, "energy")
    assert energy is not None
    assert energy["site"]["sources"]["cloud"]["limit"] is None, energy["site"]["sources"]
    assert runtime.proc is not None
    assert runtime.proc.poll() is None, runtime.log_text()


async def test_central_rules_the_edge_accepted_are_in_force_after_the_energy_node_is_killed(
    runtime: NodesRuntime, cloud: SimCloud
) -> None:
    """A rules bundle lowering the site's maximum to 30 A comes while the energy node cannot
    take it in; the broker applies it and answers Accepted; the energy node is killed -9 and
    restarted. The site must run at the rules' 30 A, not the fuse's 40 A."""
    await ready(runtime, cloud)
    pid = await stop_energy(runtime)
    rules = {"kind": "edge-rules", "version": 5, "site": {"max_current_a": 30.0}}
    answer = await cloud.data_transfer(
        EDGE, "site-edge", message_id="RulesBundle", data=orjson.dumps(rules).decode()
    )
    assert answer["status"] == "Accepted", answer
    await kill_energy(runtime, pid)

    async def rules_in_force() -> bool:
        return await site_limit(runtime) == {"limit_a": 30.0, "source": "central rules"}

    try:
        await wait_for(rules_in_force, timeout=15, what="the rules' 30 A in force")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: the limit in force is {await site_limit(runtime)}") from None
