"""Cloud outages: the charge point queues transaction messages and delivers them in order."""

from __future__ import annotations

import itertools

import pytest

from sim.car import CarSpec
from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.sim.conftest import GOOD_TAG, PROTOCOLS, StartCp, fast_config

TX_ACTIONS = {"StartTransaction", "StopTransaction", "MeterValues", "TransactionEvent"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_outage_queues_transaction_messages_and_replays_them_in_order(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    cp = await start_cp(fast_config(cloud.url, protocol, connectors=2))
    await cp.plug_in(1, CarSpec(energy_need_wh=1e9))
    await cp.plug_in(2, CarSpec(energy_need_wh=1e9))
    await cp.start_transaction(1, GOOD_TAG)
    await wait_for(lambda: len(cp.outbox) == 0 and len(cp.transaction_ids) == 1, what="tx 1 on")
    before = len(cloud.received("CP1"))

    await cloud.stop()
    await wait_for(lambda: not cp.connected, what="charge point sees the outage")
    await cp.stop_transaction(1, reason="Local")
    await cp.start_transaction(2, "TAG-OFFLINE")  # unknown id, allowed offline
    await wait_for(lambda: len(cp.outbox) >= 8, what="meter values queued while offline")
    await cp.stop_transaction(2, reason="EVDisconnected")
    queued = [(item.action, item.seq) for item in cp.outbox.items()]
    queued_per_tx: dict[str, int] = {}
    for item in cp.outbox.items():
        info = item.payload.get("transaction_info")
        if info is not None:
            queued_per_tx[info["transaction_id"]] = queued_per_tx.get(info["transaction_id"], 0) + 1
    assert all(item.queued_offline for item in cp.outbox.items())

    await cloud.start()
    await wait_for(lambda: cp.connected and len(cp.outbox) == 0, timeout=10, what="replay done")

    after = [m for m in cloud.received("CP1")[before:] if m.action in TX_ACTIONS]
    assert len(after) == len(queued), "none missing, none doubled"
    assert [m.action for m in after] == [action for action, _ in queued]
    assert cp.outbox.dropped == []
    txs = cloud.charge_points["CP1"].transactions
    assert len(txs) == 2
    assert all(tx.ended for tx in txs.values())
    if protocol == "ocpp1.6":
        # The offline transaction got the cloud's id on replay and every later message used it.
        assert cp.transaction_ids == ["1", "2"]
        stops = [m.payload["transactionId"] for m in after if m.action == "StopTransaction"]
        assert stops == [1, 2]
        assert {m.payload["transactionId"] for m in after if m.action == "MeterValues"} <= {1, 2}
    else:
        offline_tx = txs[cp.transaction_ids[1]]
        assert offline_tx.seq_nos == list(range(len(offline_tx.seq_nos)))
        assert offline_tx.offline_events == len(offline_tx.seq_nos), "all flagged offline"
        first = cp.transaction_ids[0]
        assert txs[first].offline_events == queued_per_tx[first] >= 1, "Ended and any Updated"
    await wait_for(
        lambda: cloud.charge_points["CP1"].statuses.get(2) in ("Finishing", "Occupied"),
        what="status after reconnect",
    )


async def test_a_refused_message_is_retried_then_the_queue_moves_on(
    cloud: SimCloud, start_cp: StartCp
) -> None:
    cp = await start_cp(fast_config(cloud.url, "ocpp1.6", meter_interval_s=60))
    cloud.inject_fault("StartTransaction", call_error="InternalError", times=1)
    await cp.plug_in(1, CarSpec())
    await cp.start_transaction(1, GOOD_TAG)
    await wait_for(lambda: len(cp.transaction_ids) == 1, what="start delivered on retry")
    assert cp.stats.call_errors["StartTransaction"] == 1
    assert cloud.count("CP1", "StartTransaction") == 2

    cloud.inject_fault("StopTransaction", call_error="InternalError")
    await cp.stop_transaction(1)
    await wait_for(lambda: len(cp.outbox) == 0, what="stop given up")
    attempts = int(cp.configuration["TransactionMessageAttempts"].value)
    assert cloud.count("CP1", "StopTransaction") == attempts
    assert [(d.action, d.reason) for d in cp.outbox.dropped] == [
        ("StopTransaction", "InternalError: injected by the simulated cloud")
    ]


async def test_a_slow_cloud_delays_answers_but_loses_nothing(
    cloud: SimCloud, start_cp: StartCp
) -> None:
    cp = await start_cp(fast_config(cloud.url, "ocpp1.6"))
    cloud.inject_fault("MeterValues", delay_s=0.15)
    await cp.plug_in(1, CarSpec())
    await cp.start_transaction(1, GOOD_TAG)
    await wait_for(lambda: cloud.count("CP1", "MeterValues") >= 3, what="slow meter values")
    await cp.stop_transaction(1)
    await wait_for(lambda: len(cp.outbox) == 0, what="drained")
    meter = cloud.received("CP1", "MeterValues")
    gaps = [b.received_s - a.received_s for a, b in itertools.pairwise(meter)]
    assert min(gaps) >= 0.15 * 0.9, "each answer waited for the injected delay"
    assert cp.stats.timeouts == {}
    assert cloud.received("CP1")[-1].action == "StopTransaction"
