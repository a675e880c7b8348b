"""A 300-message backlog replayed while the cloud flaps: nothing acknowledged is lost.

Four 1.6 charge points run transactions through the edge while the cloud is down (the edge
answers and queues every message), then the cloud comes back and is stopped and started again at
random moments of the replay (after a random number of further messages arrived). At the end every
message acknowledged to a charge point is at the cloud, first occurrences in each charge point's
order, MeterValues and StopTransaction under the cloud's own transaction ids; copies (at least
once) are counted and printed.
"""

from __future__ import annotations

import random
from pathlib import Path

from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge
from tests.integration.broker_faults.accounting import account, tx_messages
from tests.integration.broker_faults.ledger_cp import LedgerChargePoint
from tests.integration.broker_faults.site import site_toml, start_edge

CPS = ("CP1", "CP2", "CP3", "CP4")
TRANSACTIONS_PER_CP = 3
METER_VALUES_PER_TX = 23  # 4 x 3 x (1 + 23 + 1) = 300 transaction messages
FLAPS = 5
SEED = 20261128


def queued(edge: Edge) -> int:
    return sum(int(edge.cloud(cp)["queue_depth"]) for cp in CPS)


def received(cloud: SimCloud) -> int:
    return sum(len(tx_messages(cloud, cp)) for cp in CPS)


async def test_flapping_cloud_during_replay_loses_nothing(
    tmp_path: Path, cloud: SimCloud, ledger_cps: list[LedgerChargePoint]
) -> None:
    edge = await start_edge(tmp_path, site_toml(tmp_path, cloud_url=cloud.url, charge_points=CPS))
    try:
        for cp_id in CPS:
            ledger_cps.append(await LedgerChargePoint(cp_id, edge.url).start())
        await wait_for(
            lambda: (
                all(cp.online for cp in ledger_cps) and all(edge.cloud(c)["online"] for c in CPS)
            ),
            what="charge points and their cloud sessions up",
        )
        await cloud.stop()
        await wait_for(lambda: not any(edge.cloud(c)["online"] for c in CPS), what="outage seen")

        for cp in ledger_cps:
            for _ in range(TRANSACTIONS_PER_CP):
                cp.transaction(METER_VALUES_PER_TX)
        await wait_for(
            lambda: all(cp.drained for cp in ledger_cps), timeout=30, what="backlog acknowledged"
        )
        assert queued(edge) == 300
        assert received(cloud) == 0

        rng = random.Random(SEED)
        flaps = 0
        await cloud.start()
        for _ in range(FLAPS):
            target = received(cloud) + rng.randint(10, 45)
            await wait_for(
                lambda t=target: received(cloud) >= t or queued(edge) == 0,  # type: ignore[misc]
                timeout=20,
                what="replay progress",
            )
            if queued(edge) == 0:
                break
            await cloud.stop()
            flaps += 1
            await wait_for(
                lambda: not any(edge.cloud(c)["online"] for c in CPS), what="outage seen"
            )
            await cloud.start()
        await wait_for(lambda: queued(edge) == 0, timeout=30, what="backlog replayed")

        figures = account(ledger_cps, cloud)
        print(f"replay with {flaps} flaps:", figures.as_dict())
        assert flaps >= 3, f"the cloud went down only {flaps} times during the replay"
        assert figures.acked == 300
        assert figures.problems() == {}, figures
        assert figures.at_cloud == 300
        assert all(edge.cp(c)["transactions"] == {} for c in CPS), "every transaction stopped"
    finally:
        await edge.stop()
