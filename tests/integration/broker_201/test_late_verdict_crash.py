"""The cloud's late verdict survives a crash of the broker node between the cloud's answer and the
edge's decision.

A 2.0.1 station starts a transaction with an id the cloud does not know while the cloud is away; the
edge accepts it by its fallback and queues the Started event. When the cloud is back it answers
the event Invalid: the cloud link takes the event out of its outbox (that commit is the cloud's
acknowledgement, the event is never sent again) and the verdict travels on, CloudLink ->
ChargePoint (CloudVerdict) -> authorizer (LateVerdict) -> ChargePoint (LateDecision), to a stop
of the transaction. The node dies (kill -9, then restarted on the same storage) with one of
those messages on its way: what its sender committed is on disk, the message in memory is gone.

1.6 likewise: the replayed StartTransaction's answer (test at the end).

Fault injection: the message never reaches its receiver in the dying node's life (``hold``),
then the node is stopped (an orderly stop: with the message held, what is on disk is what a kill -9
would leave; a kill from outside cannot hit a window of microseconds) and restarted on its LMDB.
Every actor is the project's own, every socket real.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from actors.messages import CloudVerdict, LateDecision, LateVerdict
from sim.cloud import SimCloud
from supervisors.actor import Envelope
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, start_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_cloud_profiles import boot_201, calls
from tests.integration.broker.test_profile_batches import ENERGY
from tests.integration.broker_201.test_late_verdict_201 import (
    STRANGER,
    TX,
    Station,
    kinds,
    transaction,
)
from tests.integration.sim.conftest import GOOD_TAG

CP = "broker/charge_points/CP1"
AUTHORIZER = "broker/authorizer"


def hold(edge: Edge, path: str, kind: type) -> asyncio.Event:
    """A ``kind`` message for ``path`` never reaches it while this node lives, as when the node
    is killed after its sender's unit of work and before ``path`` handled it. Set when one was
    held."""
    held = asyncio.Event()
    mailbox = edge.system.cells[path].mailbox

    class Holding(type(mailbox)):  # type: ignore[misc]
        __slots__ = ()

        def put(self, env: Envelope) -> None:
            if isinstance(env.msg, kind):
                held.set()
                return
            super().put(env)

    mailbox.__class__ = Holding
    return held


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        pytest.param(CP, CloudVerdict, id="cloud-verdict-to-charge-point"),
        pytest.param(AUTHORIZER, LateVerdict, id="late-verdict-to-authorizer"),
        pytest.param(CP, LateDecision, id="late-decision-to-charge-point"),
    ],
)
async def test_a_late_rejection_stops_the_transaction_after_a_crash_on_its_way(
    tmp_path: Path, path: str, kind: type
) -> None:
    cloud = SimCloud(id_tags=[GOOD_TAG], heartbeat_interval_s=300)
    await cloud.start()
    extra = f'{ENERGY}\n[authorization]\nunknown_id_offline = "accept"\n'
    edge: Edge | None = await start_edge(tmp_path, cloud_url=cloud.url, extra=extra)
    assert edge is not None
    cp = RawChargePoint("CP1", version="ocpp2.0.1")
    back = RawChargePoint("CP1", version="ocpp2.0.1")
    try:
        cp.answers["RequestStopTransaction"] = {"status": "Accepted"}
        await boot_201(cp, edge, "Occupied")
        await wait_for(lambda: edge.cloud("CP1")["online"], what="the cloud session")
        await cloud.stop()
        await wait_for(lambda: not edge.cloud("CP1")["online"], what="the cloud gone")
        station = Station(cp)
        started = await station.event(
            "Started", 5000.0, idToken={"idToken": STRANGER, "type": "ISO14443"}
        )
        assert started[2]["idTokenInfo"]["status"] == "Accepted", started
        assert edge.cloud("CP1")["queue_depth"] == 1, "the Started event is queued"

        held = hold(edge, path, kind)
        await cloud.start()  # the replayed Started is answered Invalid
        await wait_for(held.is_set, timeout=15, what=f"{kind.__name__} on its way to {path}")
        await wait_for(lambda: edge.cloud("CP1")["queue_depth"] == 0, what="the answer taken")
        assert station.stops() == [], "no decision yet"
        # The node dies here and is restarted on its storage; the station reconnects.
        await edge.stop()
        edge = None
        await cp.close()
        edge = await start_edge(tmp_path, cloud_url=cloud.url, extra=extra)
        assert transaction(edge)["state"] == "running"
        back.answers["RequestStopTransaction"] = {"status": "Accepted"}
        await boot_201(back, edge, "Occupied")
        await wait_for(
            lambda: bool(calls(back, "RequestStopTransaction")),
            timeout=10,
            what="the late rejection's stop after the restart",
        )
        assert [c[3] for c in calls(back, "RequestStopTransaction")] == [{"transactionId": TX}]
        assert kinds(edge).count(("late_authorization", "stop")) == 1, "decided once"
        assert transaction(edge)["cloud_status"] == "Invalid"
        assert cloud.count("CP1", "TransactionEvent") == 1, "the cloud answered it once"
    finally:
        await back.close()
        await cp.close()
        if edge is not None:
            await edge.stop()
        await cloud.stop()


async def test_a_late_rejection_of_a_16_start_stops_it_after_a_crash_on_its_way(
    tmp_path: Path,
) -> None:
    """1.6: the replayed StartTransaction answered Invalid, the node killed with the verdict
    on its way to the charge point actor: after the restart the transaction is stopped under
    the id the edge minted (the one the charge point knows)."""
    cloud = SimCloud(id_tags=[GOOD_TAG], heartbeat_interval_s=300)
    await cloud.start()
    extra = '[authorization]\nunknown_id_offline = "accept"\n'
    edge: Edge | None = await start_edge(tmp_path, cloud_url=cloud.url, extra=extra)
    assert edge is not None
    boot = {"chargePointVendor": "V", "chargePointModel": "M"}
    cp = await RawChargePoint("CP1").connect(edge.url)
    back = RawChargePoint("CP1")
    try:
        await cp.call("BootNotification", boot)
        await wait_for(lambda: edge.cloud("CP1")["online"], what="the cloud session")
        await cloud.stop()
        await wait_for(lambda: not edge.cloud("CP1")["online"], what="the cloud gone")
        start = await cp.call(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": STRANGER,
                "meterStart": 0,
                "timestamp": "2026-11-30T10:00:00Z",
            },
        )
        assert start[2]["idTagInfo"]["status"] == "Accepted", start
        tx = start[2]["transactionId"]
        held = hold(edge, CP, CloudVerdict)
        await cloud.start()
        await wait_for(held.is_set, timeout=15, what="the verdict on its way")
        await wait_for(lambda: edge.cloud("CP1")["queue_depth"] == 0, what="the answer taken")
        await edge.stop()
        edge = None
        await cp.close()
        edge = await start_edge(tmp_path, cloud_url=cloud.url, extra=extra)
        back.answers["RemoteStopTransaction"] = {"status": "Accepted"}
        await back.connect(edge.url)
        await back.call("BootNotification", boot)
        await wait_for(
            lambda: bool(calls(back, "RemoteStopTransaction")),
            timeout=10,
            what="the late rejection's stop after the restart",
        )
        assert [c[3] for c in calls(back, "RemoteStopTransaction")] == [{"transactionId": tx}]
        assert kinds(edge).count(("late_authorization", "stop")) == 1, "decided once"
        assert cloud.count("CP1", "StartTransaction") == 1, "the cloud answered it once"
    finally:
        await back.close()
        await cp.close()
        if edge is not None:
            await edge.stop()
        await cloud.stop()
