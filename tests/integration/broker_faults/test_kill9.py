"""kill -9 of the runtime in nodes mode (``python run.py --config FILE``), accounted per message.

The simulated cloud and the ledger charge points run in this process; the runtime (launcher,
Thespian admin, broker and energy nodes) is a subprocess. Each test counts transaction messages
acknowledged to the charge points against what the cloud received: nothing lost, nothing
unexpected, in order, under the cloud's ids; duplicates (at least once) are printed.

(a) the broker node is killed in the middle of an offline transaction: the charge point keeps
    producing MeterValues while the node restarts (its own queue covers the gap), then the cloud
    comes back; (b) the broker node is killed during the replay; (c) the launcher is killed during
    the replay (everything dies) and ``run.py`` is started again on the same storage.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.ports import free_tcp_port
from sim.cloud import SimCloud
from tests.helpers import timeout_s, wait_for
from tests.integration.broker_faults.accounting import Figures, account, cloud_markers
from tests.integration.broker_faults.ledger_cp import LedgerChargePoint
from tests.integration.broker_faults.site import REPO, NodesRuntime, site_toml

pytestmark = [pytest.mark.nodes, pytest.mark.slow]

CPS = ("CP1", "CP2", "CP3")
METER_VALUES_PER_TX = 60  # 3 x (1 + 60 + 1) = 186 messages in the replay backlog
KILLS_DURING_REPLAY = 2


@pytest.fixture
async def runtime(tmp_path: Path, cloud: SimCloud) -> AsyncIterator[NodesRuntime]:
    port = free_tcp_port()
    text = site_toml(tmp_path, mode="nodes", port=port, cloud_url=cloud.url, charge_points=CPS)
    rt = NodesRuntime(tmp_path, text, port)
    await rt.start()
    yield rt
    rt.cleanup()


async def online(rt: NodesRuntime, cps: list[LedgerChargePoint], want: bool) -> bool:
    for cp in cps:
        state = await rt.cloud_state(cp.cp_id)
        if state is None or bool(state["online"]) is not want:
            return False
    return True


async def connect_all(
    rt: NodesRuntime, cloud: SimCloud, ledger_cps: list[LedgerChargePoint], ids: tuple[str, ...]
) -> None:
    for cp_id in ids:
        ledger_cps.append(await LedgerChargePoint(cp_id, rt.url).start())
    try:
        await wait_for(lambda: all(cp.online for cp in ledger_cps), timeout=10, what="connected")
    except AssertionError as exc:
        cps = {
            cp.cp_id: (cp.connects, cp.online, cp.connect_errors[-1:], cp.closes[-1:])
            for cp in ledger_cps
        }
        raise AssertionError(
            f"{exc}: {cps}; broker: {await rt.broker()}; "
            + "; ".join(f"{p.pid} {p.name()} {rt.threads(p.pid)}" for p in rt.processes())
        ) from None
    await wait_for(lambda: online(rt, ledger_cps, True), timeout=10, what="cloud sessions up")


async def outage(rt: NodesRuntime, cloud: SimCloud, cps: list[LedgerChargePoint]) -> None:
    await cloud.stop()
    await wait_for(lambda: online(rt, cps, False), timeout=10, what="the edge sees the outage")


async def settle(rt: NodesRuntime, cps: list[LedgerChargePoint]) -> None:
    await wait_for(lambda: all(cp.drained for cp in cps), timeout=30, what="all acknowledged")

    async def empty() -> bool:
        return await rt.queued() == 0

    await wait_for(empty, timeout=30, what="the edge's queues empty")


def received(cloud: SimCloud, cps: list[LedgerChargePoint]) -> int:
    """Distinct transaction messages the cloud has (copies counted once)."""
    return sum(len(set(cloud_markers(cloud, cp.cp_id))) for cp in cps)


def check(figures: Figures, name: str) -> None:
    print(f"kill -9 {name}:", figures.as_dict())
    assert figures.acked == figures.sent
    assert figures.problems() == {}, figures
    assert figures.at_cloud == figures.sent


async def test_broker_node_killed_during_an_offline_transaction(
    runtime: NodesRuntime, cloud: SimCloud, ledger_cps: list[LedgerChargePoint]
) -> None:
    await connect_all(runtime, cloud, ledger_cps, ("CP1",))
    cp = ledger_cps[0]
    await outage(runtime, cloud, ledger_cps)
    tx = cp.start_transaction()

    async def produce(count: int, interval_s: float) -> None:
        for _ in range(count):
            cp.meter_values(tx)
            await asyncio.sleep(interval_s)  # a meter interval, not a wait for a condition

    producer = asyncio.get_running_loop().create_task(produce(120, 0.03))
    for kill_after in (20, 60):
        await wait_for(lambda k=kill_after: len(cp.acked) >= k, what="transaction progress")  # type: ignore[misc]
        old = await runtime.kill_broker()
        connects = cp.connects
        await runtime.wait_broker_back(old)
        await wait_for(
            lambda c=connects: cp.connects > c and cp.online,  # type: ignore[misc]
            timeout=10,
            what="reconnected",
        )
    await producer
    cp.stop_transaction(tx)
    await wait_for(lambda: cp.drained, timeout=20, what="the charge point's queue delivered")
    assert len(cp.closes) >= 2, "each kill cut the charge point off"
    assert cp.produced_offline >= 2, "meter values produced while the node restarted"

    await cloud.start()
    await settle(runtime, ledger_cps)
    figures = account(ledger_cps, cloud)
    print(f"  {cp.produced_offline} meter values queued by the charge point during the restarts")
    check(figures, "(a) broker node during an offline transaction, 2 kills")
    node = await runtime.broker()
    assert node is not None
    assert node["restarts"] == 2


async def test_broker_node_killed_during_replay(
    runtime: NodesRuntime, cloud: SimCloud, ledger_cps: list[LedgerChargePoint]
) -> None:
    await connect_all(runtime, cloud, ledger_cps, CPS)
    await outage(runtime, cloud, ledger_cps)
    for cp in ledger_cps:
        cp.transaction(METER_VALUES_PER_TX)
    await settle_offline(runtime, ledger_cps)

    total = len(ledger_cps) * (METER_VALUES_PER_TX + 2)
    cloud.inject_fault("MeterValues", delay_s=0.02)  # a slowish cloud: the replay takes a while
    await cloud.start()
    kills = 0
    for _ in range(KILLS_DURING_REPLAY):
        target = received(cloud, ledger_cps) + total // 5
        await replayed(runtime, cloud, ledger_cps, target)
        old = await runtime.kill_broker()
        kills += 1
        assert received(cloud, ledger_cps) < total, "killed while there was still a backlog"
        await runtime.wait_broker_back(old)
    await settle(runtime, ledger_cps)
    check(account(ledger_cps, cloud), f"(b) broker node during replay, {kills} kills")
    node = await runtime.broker()
    assert node is not None
    assert node["restarts"] == kills


async def test_whole_runtime_killed_during_replay_and_started_again(
    runtime: NodesRuntime, cloud: SimCloud, ledger_cps: list[LedgerChargePoint]
) -> None:
    await connect_all(runtime, cloud, ledger_cps, CPS)
    await outage(runtime, cloud, ledger_cps)
    for cp in ledger_cps:
        cp.transaction(METER_VALUES_PER_TX)
    await settle_offline(runtime, ledger_cps)

    cloud.inject_fault("MeterValues", delay_s=0.01)
    await cloud.start()
    total = len(ledger_cps) * (METER_VALUES_PER_TX + 2)
    await wait_for(lambda: received(cloud, ledger_cps) >= total // 3, timeout=20, what="replay")
    await runtime.kill_everything()
    assert received(cloud, ledger_cps) < total, "killed while there was still a backlog"
    await runtime.start()  # the same site file and storage
    await settle(runtime, ledger_cps)
    check(account(ledger_cps, cloud), "(c) launcher during replay, then run.py again")
    doc = await status_json(runtime)
    broker = next(n for n in doc["nodes"] if n["name"] == "broker")
    assert doc["stale"] is False
    assert broker["site"]["queued_for_cloud"] == 0
    for cp_id in CPS:
        link = broker["site"]["charge_points"][cp_id]["cloud"]
        assert link["online"], link
        assert (link["queue_depth"], link["dead_letters"]) == (0, 0), link
        assert link["replayed"] > 0, "the rest of the backlog went after the restart"


async def replayed(
    rt: NodesRuntime, cloud: SimCloud, cps: list[LedgerChargePoint], target: int
) -> None:
    try:
        await wait_for(lambda: received(cloud, cps) >= target, timeout=20, what="replay")
    except AssertionError as exc:
        links = {cp.cp_id: await rt.cloud_state(cp.cp_id) for cp in cps}
        raise AssertionError(
            f"{exc}: cloud has {received(cloud, cps)} of {target}; edge links: {links}"
        ) from None


async def status_json(rt: NodesRuntime) -> dict[str, Any]:
    """What ``python run.py status --json --config FILE`` prints."""
    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "run.py", "status", "--json", "--config", str(rt.config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s(20),
        check=True,
    )
    doc: dict[str, Any] = json.loads(shown.stdout)
    return doc


async def settle_offline(rt: NodesRuntime, cps: list[LedgerChargePoint]) -> None:
    """Every message acknowledged by the edge alone and queued for the cloud."""
    await wait_for(lambda: all(cp.drained for cp in cps), timeout=30, what="backlog acknowledged")

    async def all_queued() -> bool:
        return await rt.queued() == sum(len(cp.sent) for cp in cps)

    await wait_for(all_queued, timeout=10, what="backlog queued at the edge")
