"""2.0.1: a transaction the edge authorized while the cloud was away.

The station starts a transaction with an id the edge does not know; the cloud is away, so the
edge accepts it by its fallback and queues the TransactionEvent; the fallback's energy cap holds.
"""

from __future__ import annotations

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
async def started_offline(
    tmp_path: Path, auth: str, token: str = STRANGER, meter_wh: float = 5000.0
) -> AsyncIterator[tuple[SimCloud, Edge, Station]]:
    """A 2.0.1 station on the edge, the cloud gone, a transaction started with ``token`` and
    accepted by the edge (the site's fallback ``auth``)."""
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
            station = Station(cp)
            started = await station.event(
                "Started", meter_wh, idToken={"idToken": token, "type": "ISO14443"}
            )
            assert started[2]["idTokenInfo"]["status"] == "Accepted", started
            assert edge.cloud("CP1")["queue_depth"] >= 1, "the Started event is queued"
            yield cloud, edge, station
        finally:
            await cp.close()


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
