"""The cloud's ClearCache to a charge point clears the edge's authorization cache too.

The edge answers a charge point's Authorize and StartTransaction from its own cache while the
cloud is away, so the charge point's cache is, in effect, the edge's: a CSMS that revokes a tag and
sends ClearCache (OCPP 1.6 5.4, 2.0.1 C11) must not see that tag accepted offline afterwards. A
charge point that rejects the ClearCache keeps its cache, and the cloud is told so: the edge
keeps its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.audit import AUDIT_TABLE
from actors.audit_records import AuditRecord, decode_record
from drivers.store.env import read_other
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, cloud_and_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.sim.conftest import GOOD_TAG

AUTHORIZER = "broker/authorizer"
BOOT = {
    "ocpp1.6": {"chargePointVendor": "V", "chargePointModel": "M"},
    "ocpp2.0.1": {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"},
}


def cache_entries(edge: Edge) -> int:
    entries: int = edge.system.actor(AUTHORIZER).report()["cache_entries"]
    return entries


def records(edge: Edge) -> list[AuditRecord]:
    with read_other(edge.tmp_path / "var" / "broker") as store:
        assert store is not None
        return [decode_record(raw) for _, raw in store.scan(AUDIT_TABLE)]


async def authorize(cp: RawChargePoint, version: str) -> str:
    if version == "ocpp1.6":
        answer = await cp.call("Authorize", {"idTag": GOOD_TAG})
        status: str = answer[2]["idTagInfo"]["status"]
    else:
        token = {"idToken": GOOD_TAG, "type": "ISO14443"}
        answer = await cp.call("Authorize", {"idToken": token})
        status = answer[2]["idTokenInfo"]["status"]
    return status


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
@pytest.mark.parametrize("status", ["Accepted", "Rejected"])
async def test_a_tag_revoked_and_cleared_is_not_accepted_offline(
    tmp_path: Path, status: str, version: str
) -> None:
    async with cloud_and_edge(tmp_path) as (cloud, edge):
        cp = await RawChargePoint("CP1", version=version).connect(edge.url)
        try:
            cp.answers["ClearCache"] = {"status": status}
            await cp.call("BootNotification", BOOT[version])
            assert await authorize(cp, version) == "Accepted"
            await wait_for(lambda: cache_entries(edge) == 1, what="the tag cached")

            assert cloud.id_tags is not None
            cloud.id_tags.discard(GOOD_TAG)  # revoked; the cloud makes the charge point forget it
            assert await cloud.call("CP1", "ClearCache", {}) == {"status": status}
            await cloud.stop()
            await wait_for(lambda: not edge.cloud("CP1")["online"], what="the cloud gone")

            offline = await authorize(cp, version)
            cleared = [r for r in records(edge) if r.kind.value == "cache_cleared"]
            if status == "Accepted":
                assert offline != "Accepted", "a revoked tag accepted offline after ClearCache"
                assert cache_entries(edge) == 0
                assert [(r.decision, r.charge_point_id) for r in cleared] == [("cleared", "CP1")]
                assert cleared[0].inputs["entries_removed"] == 1
            else:
                assert offline == "Accepted"
                assert cache_entries(edge) == 1
                assert cleared == []
        finally:
            await cp.close()
