"""A raw 2.0.1 station booted on the real broker (single-process, its SimCloud), for the broker's
tests of transactions and profiles: :func:`station_on_broker`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.utc import format_utc
from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, cloud_and_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_cloud_profiles import boot_201, calls
from tests.integration.broker.test_profile_batches import ENERGY, batch
from tests.integration.sim.conftest import GOOD_TAG


@dataclass
class Station:
    cloud: SimCloud
    edge: Edge
    cp: RawChargePoint
    seq: int = 0

    async def event(
        self, tx: str, kind: str, evse: int = 1, token_type: str = "ISO14443"
    ) -> list[Any]:
        self.seq += 1
        payload: dict[str, Any] = {
            "eventType": kind,
            "timestamp": format_utc(datetime.now(UTC)),
            "seqNo": self.seq,
            "triggerReason": "Authorized" if kind == "Started" else "MeterValuePeriodic",
            "transactionInfo": {"transactionId": tx},
            "evse": {"id": evse, "connectorId": 1},
        }
        if kind == "Started":
            payload["idToken"] = {"idToken": GOOD_TAG, "type": token_type}
        return await self.cp.call("TransactionEvent", payload)

    def states(self) -> dict[str, str]:
        actor = self.edge.system.actor("broker/charge_points/CP1")
        return {k: str(t["state"]) for k, t in actor.state.transactions.items()}

    def running(self) -> list[str]:
        return sorted(self.edge.cp("CP1")["transactions"])

    def tx_profiles_for(self, tx: str) -> int:
        return sum(
            1
            for c in calls(self.cp, "SetChargingProfile")
            if c[3]["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
            and c[3]["chargingProfile"].get("transactionId") == tx
        )

    async def limits_go_to(self, running: str, stale: str) -> None:
        """A batch's 8 A for connector 1 goes to ``running``'s TxProfile, none to ``stale``."""
        before, stale_before = self.tx_profiles_for(running), self.tx_profiles_for(stale)
        self.edge.system.send("broker/profiles", batch(self.edge, 8.0, sent_ns=1_000))
        await wait_for(
            lambda: self.tx_profiles_for(running) > before, what=f"{running}'s TxProfile at 8 A"
        )
        assert self.tx_profiles_for(stale) == stale_before


@contextlib.asynccontextmanager
async def station_on_broker(tmp_path: Path) -> AsyncIterator[Station]:
    """ "CP1", a 2.0.1 station, booted on a broker with a static 100 A fuse, its EVSE 1
    Occupied; it takes every profile until a test sets ``cp.answers``."""
    async with cloud_and_edge(tmp_path, extra=ENERGY) as (cloud, edge):
        cp = RawChargePoint("CP1", version="ocpp2.0.1")
        try:
            await boot_201(cp, edge, "Occupied")
            yield Station(cloud=cloud, edge=edge, cp=cp)
        finally:
            await cp.close()
