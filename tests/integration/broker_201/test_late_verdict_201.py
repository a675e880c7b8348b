"""2.0.1: the cloud's later verdict on a transaction the edge authorized while it was away.

The station starts a transaction with an id the edge does not know; the cloud is away, so the
edge accepts it by its fallback and queues the TransactionEvent. When the cloud is back it gets
the Started event and answers with its own idTokenInfo: a rejection stops the transaction
(RequestStopTransaction under the station's transactionId) or caps its energy, as the site's
settings say (as for 1.6, tests/integration/broker/test_edge_session.py); an acceptance changes
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.audit import AUDIT_TABLE
from actors.audit_records import AuditRecord, decode_record
from actors.utc import format_utc
from drivers.store.env import read_other
from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, cloud_and_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_cloud_profiles import boot_201, calls
from tests.integration.broker.test_profile_batches import ENERGY
from tests.integration.broker.test_profiles_again import restart_cp_actor

TX = "tx-late-1"
STRANGER = "STRANGER"  # not among the cloud's id tags: Invalid there


def records(edge: Edge) -> list[AuditRecord]:
    with read_other(edge.tmp_path / "var" / "broker") as store:
        assert store is not None
        return [decode_record(raw) for _, raw in store.scan(AUDIT_TABLE)]


def kinds(edge: Edge) -> list[tuple[str, str]]:
    return [(r.kind.value, r.decision) for r in records(edge)]


def transaction(edge: Edge, tx: str = TX) -> dict[str, Any]:
    found: dict[str, Any] = edge.system.actor("broker/charge_points/CP1").state.transactions[tx]
    return found


def energy(wh: float) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": format_utc(datetime.now(UTC)),
            "sampledValue": [
                {
                    "value": wh,
                    "measurand": "Energy.Active.Import.Register",
                    "unitOfMeasure": {"unit": "Wh"},
                }
            ],
        }
    ]


class Station:
    def __init__(self, cp: RawChargePoint) -> None:
        self.cp = cp
        self.seq = 0

    async def event(self, kind: str, meter_wh: float | None = None, **extra: Any) -> list[Any]:
        payload: dict[str, Any] = {
            "eventType": kind,
            "timestamp": format_utc(datetime.now(UTC)),
            "seqNo": self.seq,
            "triggerReason": "Authorized" if kind == "Started" else "MeterValuePeriodic",
            "transactionInfo": {"transactionId": TX},
            "evse": {"id": 1, "connectorId": 1},
            **extra,
        }
        self.seq += 1
        if meter_wh is not None:
            payload["meterValue"] = energy(meter_wh)
        return await self.cp.call("TransactionEvent", payload)

    def stops(self) -> list[list[Any]]:
        return calls(self.cp, "RequestStopTransaction")


@contextlib.asynccontextmanager
async def offline(tmp_path: Path, auth: str) -> AsyncIterator[tuple[SimCloud, Edge, Station]]:
    """A 2.0.1 station booted on the edge (the site's fallback ``auth``), then the cloud gone."""
    async with cloud_and_edge(tmp_path, extra=f"{ENERGY}\n[authorization]\n{auth}\n") as (
        cloud,
        edge,
    ):
        cp = RawChargePoint("CP1", version="ocpp2.0.1")
        try:
            cp.answers["RequestStopTransaction"] = {"status": "Accepted"}
            await boot_201(cp, edge, "Occupied")
            await wait_for(lambda: edge.cloud("CP1")["online"], what="the cloud session")
            await cloud.stop()
            await wait_for(lambda: not edge.cloud("CP1")["online"], what="the cloud gone")
            yield cloud, edge, Station(cp)
        finally:
            await cp.close()


@contextlib.asynccontextmanager
async def started_offline(
    tmp_path: Path, auth: str, token: str = STRANGER, meter_wh: float = 5000.0
) -> AsyncIterator[tuple[SimCloud, Edge, Station]]:
    """:func:`offline`, and a transaction started with ``token`` and accepted by the edge."""
    async with offline(tmp_path, auth) as (cloud, edge, station):
        started = await station.event(
            "Started", meter_wh, idToken={"idToken": token, "type": "ISO14443"}
        )
        assert started[2]["idTokenInfo"]["status"] == "Accepted", started
        assert edge.cloud("CP1")["queue_depth"] >= 1, "the Started event is queued"
        yield cloud, edge, station


async def test_a_later_rejection_stops_an_offline_accepted_201_transaction(
    tmp_path: Path,
) -> None:
    async with started_offline(tmp_path, 'unknown_id_offline = "accept"') as (
        cloud,
        edge,
        station,
    ):
        tx = transaction(edge)
        assert tx["local_path"] == "fallback:accept", "how the edge authorized it, recorded"
        await wait_for(
            lambda: any(
                r.kind.value == "authorization" and r.inputs.get("transaction_id") == TX
                for r in records(edge)
            ),
            what="the edge's authorization of the transaction, recorded with its id",
        )
        assert cloud.id_tag_status(STRANGER) == "Invalid"
        await cloud.start()  # the replayed Started is answered Invalid
        await wait_for(lambda: bool(station.stops()), timeout=15, what="the edge stops it")
        assert [c[3] for c in station.stops()] == [{"transactionId": TX}], "the station's id"
        assert tx["cloud_status"] == "Invalid"
        await wait_for(
            lambda: ("late_authorization", "stop") in kinds(edge),
            what="the late authorization's record",
        )
        late = next(r for r in records(edge) if r.kind.value == "late_authorization")
        assert late.charge_point_id == "CP1"
        assert late.inputs["transaction_id"] == TX
        assert late.inputs["cloud_status"] == "Invalid"
        assert late.inputs["local_path"] == "fallback:accept"


async def test_a_later_acceptance_changes_nothing(tmp_path: Path) -> None:
    async with started_offline(tmp_path, 'unknown_id_offline = "accept"') as (
        cloud,
        edge,
        station,
    ):
        cloud.id_tags = None  # every id Accepted
        await cloud.start()
        await wait_for(
            lambda: transaction(edge).get("cloud_status") == "Accepted",
            timeout=15,
            what="the cloud's verdict reaches the transaction",
        )
        await wait_for(lambda: edge.cloud("CP1")["queue_depth"] == 0, what="the queue drained")
        # Its meter values still come, and it runs on: no stop, no cap, no late decision.
        await station.event("Updated", 5400.0)
        assert station.stops() == []
        assert transaction(edge)["state"] == "running"
        assert "energy_cap_wh" not in transaction(edge)
        assert not transaction(edge).get("energy_blocked")
        assert "late_authorization" not in [k for k, _ in kinds(edge)]


async def test_a_later_rejection_caps_the_201_transactions_energy_from_its_meter_start(
    tmp_path: Path,
) -> None:
    """Not stopped (StopTransactionOnInvalidId off): it may take MaxEnergyOnInvalidId more
    (below the fallback's own cap), counted from the Started event's meter reading."""
    auth = (
        'unknown_id_offline = "accept_capped"\nunknown_id_energy_cap_wh = 2000\n'
        "stop_transaction_on_invalid_id = false\nmax_energy_on_invalid_id_wh = 500"
    )
    async with started_offline(tmp_path, auth, meter_wh=5000.0) as (cloud, edge, station):
        tx = transaction(edge)
        assert tx["local_path"] == "fallback:accept_capped"
        assert tx["energy_cap_wh"] == 2000, "the fallback's cap, on the transaction"
        assert tx["meter_start_wh"] == 5000.0
        await station.event("Updated", 5200.0)
        await cloud.start()
        await wait_for(
            lambda: ("late_authorization", "cap_energy") in kinds(edge),
            timeout=15,
            what="the late decision: a cap",
        )
        await wait_for(lambda: tx.get("energy_cap_wh") == 500, what="the cap on the transaction")
        assert not tx.get("energy_blocked"), "200 Wh of 500 delivered"
        await station.event("Updated", 5450.0)
        assert not tx.get("energy_blocked")
        await station.event("Updated", 5510.0)
        assert tx.get("energy_blocked"), "510 Wh delivered: no more"
        await wait_for(
            lambda: any(
                (r.kind.value, r.decision) == ("limit", "0 A")
                and r.inputs.get("transaction_id") == TX
                for r in records(edge)
            ),
            what="the energy cap's record",
        )
        assert station.stops() == []


async def test_the_fallbacks_cap_pauses_an_offline_accepted_201_transaction(
    tmp_path: Path,
) -> None:
    """The cloud stays away: the cap of the fallback that accepted the id holds, counted from
    the Started event's meter reading."""
    auth = 'unknown_id_offline = "accept_capped"\nunknown_id_energy_cap_wh = 1000'
    async with started_offline(tmp_path, auth, meter_wh=5000.0) as (_, edge, station):
        await station.event("Updated", 5900.0)
        assert not transaction(edge).get("energy_blocked"), "900 Wh of 1000"
        await station.event("Updated", 6000.0)
        assert transaction(edge).get("energy_blocked"), "1000 Wh delivered: no more"
        await wait_for(
            lambda: any(
                (r.kind.value, r.decision) == ("limit", "0 A")
                and r.inputs.get("transaction_id") == TX
                for r in records(edge)
            ),
            what="the energy cap's record",
        )
        capped = [r for r in records(edge) if r.inputs.get("binding_source") == "energy cap"]
        # Its connector, as the energy node's limit records name it: explain tells the limit in
        # force per connector.
        assert [r.inputs.get("connector_id") for r in capped] == [1], capped


async def test_an_id_presented_after_the_start_is_authorized_and_judged_the_same(
    tmp_path: Path,
) -> None:
    """TxStartPoint EVConnected: the transaction starts without an id, the id comes in an
    Updated event (triggerReason Authorized). The edge answers it with its idTokenInfo and
    records how it decided; the cloud's later Invalid stops it."""
    async with offline(tmp_path, 'unknown_id_offline = "accept"') as (cloud, edge, station):
        await station.event("Started", 5000.0, triggerReason="CablePluggedIn")
        authorized = await station.event(
            "Updated",
            triggerReason="Authorized",
            idToken={"idToken": STRANGER, "type": "ISO14443"},
        )
        assert authorized[2].get("idTokenInfo") == {"status": "Accepted"}, authorized
        assert transaction(edge)["local_path"] == "fallback:accept"
        await cloud.start()
        await wait_for(lambda: bool(station.stops()), timeout=15, what="the edge stops it")
        assert [c[3] for c in station.stops()] == [{"transactionId": TX}]


async def test_a_later_rejection_reaches_a_station_away_when_the_cloud_answered(
    tmp_path: Path,
) -> None:
    """The cloud's Invalid comes while the station is away (its link fell with the cloud's):
    the stop cannot go then, and goes when it is back, its transaction still running."""
    async with started_offline(tmp_path, 'unknown_id_offline = "accept"') as (
        cloud,
        edge,
        station,
    ):
        await station.cp.close()
        await wait_for(lambda: not edge.cp("CP1")["connected"], what="the station gone")
        await cloud.start()  # the replayed Started is answered Invalid
        await wait_for(
            lambda: ("late_authorization", "stop") in kinds(edge),
            timeout=15,
            what="the late decision: stop",
        )
        assert station.stops() == []
        back = RawChargePoint("CP1", version="ocpp2.0.1")
        back.answers["RequestStopTransaction"] = {"status": "Accepted"}
        try:
            await boot_201(back, edge, "Occupied")
            await wait_for(
                lambda: bool(calls(back, "RequestStopTransaction")),
                what="the stop, once the station is back",
            )
            assert [c[3] for c in calls(back, "RequestStopTransaction")] == [{"transactionId": TX}]
        finally:
            await back.close()


async def test_a_later_acceptance_does_not_lift_the_cap_of_a_refused_transaction(
    tmp_path: Path,
) -> None:
    """The cloud refused the transaction's id (its answer to the Started event): capped at
    MaxEnergyOnInvalidId. Offline again, the station carries the same id in a later event,
    which the cloud, back, answers Accepted. A transaction the cloud refused stays refused for
    its lifetime, as a 1.6 one judged on its StartTransaction's answer alone: the cap holds
    (the acceptance was judged again and lifted it: the Invalid id charged without limit)."""
    auth = (
        'unknown_id_offline = "accept_capped"\nunknown_id_energy_cap_wh = 2000\n'
        "stop_transaction_on_invalid_id = false\nmax_energy_on_invalid_id_wh = 500"
    )
    token = {"idToken": STRANGER, "type": "ISO14443"}
    async with started_offline(tmp_path, auth, meter_wh=5000.0) as (cloud, edge, station):
        tx = transaction(edge)
        await cloud.start()  # Invalid
        await wait_for(lambda: tx.get("energy_cap_wh") == 500, timeout=15, what="the late cap")
        await cloud.stop()
        await wait_for(lambda: not edge.cloud("CP1")["online"], what="the cloud gone again")
        again = await station.event("Updated", 5200.0, triggerReason="Authorized", idToken=token)
        assert again[2]["idTokenInfo"]["status"] == "Accepted", again
        cloud.id_tags = None  # every id Accepted now
        await cloud.start()
        await wait_for(lambda: edge.cloud("CP1")["queue_depth"] == 0, what="the event answered")
        await wait_for(
            lambda: (
                [d for k, d in kinds(edge) if k == "late_authorization"] == ["cap_energy", "none"]
            ),
            what="the acceptance recorded, changing nothing",
        )
        late = [r for r in records(edge) if r.kind.value == "late_authorization"]
        assert late[1].inputs["cloud_status"] == "Accepted"
        assert "refused it before (Invalid)" in late[1].reason, late[1].reason
        assert tx["cloud_status"] == "Invalid", "the refusal stands"
        assert tx.get("energy_cap_wh") == 500
        await station.event("Updated", 5510.0)
        assert tx.get("energy_blocked"), "510 Wh delivered: no more"
        assert station.stops() == []


async def test_a_late_stop_waiting_behind_another_call_survives_a_restart_of_the_actor(
    tmp_path: Path,
) -> None:
    """The stop is decided (and kept with the transaction) while a call of the cloud's waits
    for the station's answer, so it waits in the actor's queue of calls; the actor is killed
    then and restarts under the live connection: the stop goes (it went only on the next
    connection, and the Invalid id charged on until then)."""
    async with started_offline(tmp_path, 'unknown_id_offline = "accept"') as (
        cloud,
        edge,
        station,
    ):
        cloud.inject_fault("TransactionEvent", delay_s=3.0, times=1)  # its answer comes later
        await cloud.start()
        await wait_for(lambda: cloud.count("CP1", "TransactionEvent") == 1, what="replayed")
        # The station never answers DataTransfer: the call stays outstanding.
        pending = asyncio.ensure_future(cloud.call("CP1", "DataTransfer", {"vendorId": "X"}))
        try:
            await wait_for(
                lambda: bool(calls(station.cp, "DataTransfer")), what="the cloud's call sent"
            )
            await wait_for(
                lambda: transaction(edge).get("late_stop") is True,
                timeout=15,
                what="the late stop decided",
            )
            cell = edge.system.cells["broker/charge_points/CP1"]
            await wait_for(lambda: cell.pending_durable() == 0, what="the decision committed")
            assert station.stops() == [], "the stop waits behind the cloud's call"
            await restart_cp_actor(edge)
            await wait_for(lambda: bool(station.stops()), what="the stop, after the restart")
            assert [c[3] for c in station.stops()] == [{"transactionId": TX}]
        finally:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
