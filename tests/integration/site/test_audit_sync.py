"""The audit trail of both nodes reaches the cloud through the edge's own session, each record
once and none hidden by another node's: ids are counted per node, so the cloud tells records
apart by ``uid`` (node and id)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from actors.audit_records import decode_record
from drivers.store.audit_log import AUDIT_TABLE
from drivers.store.env import read_other
from sim.car import CarSpec
from sim.cp_config import Behaviour
from sim.site import SiteSpec
from tests.helpers import wait_for
from tests.integration.site.full_site import FullSite, start_full_site

EDGE = "SITE-EDGE"
ENERGY = """
[[grid_limits]]
name = "fuse"
kind = "static"
node = "site"
current_a = 50
[allocation]
settle_s = 1.0
min_charge_s = 0.0
min_pause_s = 0.0
"""
CAR = CarSpec(name="3ph-16a", max_current_a=16.0, energy_need_wh=500_000.0)


def stored(site: FullSite, node: str) -> dict[str, Any]:
    """The node's audit records by uid, read from its store."""
    out: dict[str, Any] = {}
    with read_other(site.edge.config.storage_dir / node) as store:
        assert store is not None
        for _, raw in store.scan(AUDIT_TABLE):
            record = decode_record(raw)
            out[f"{node}:{record.id}"] = record
    return out


def synced(site: FullSite) -> list[dict[str, Any]]:
    """Every record the cloud received in the edge's AuditRecords, in order, copies included."""
    out = []
    for m in site.cloud.received(EDGE, "DataTransfer"):
        if m.payload.get("messageId") == "AuditRecords":
            doc = orjson.loads(m.payload["data"])
            out.extend({**r, "batch_node": doc["node"]} for r in doc["records"])
    return out


def edge_session(site: FullSite) -> dict[str, Any]:
    report: dict[str, Any] = site.broker_actor(f"charge_points/{EDGE}").report()
    return report


async def test_both_nodes_audit_trails_reach_the_cloud_apart(tmp_path: Path) -> None:
    spec = SiteSpec(charge_points=2, cars=(CAR,), behaviours=(Behaviour(),))
    site = await start_full_site(
        tmp_path, spec, energy=ENERGY, cloud_extra=f'edge_identity = "{EDGE}"'
    )
    try:
        await wait_for(lambda: all(cp.connected for cp in site.sim.charge_points), what="up")
        await site.sim.arrive_all()
        # Both nodes record: the broker its cloud sessions, the energy node the cars' limits.
        await wait_for(
            lambda: len(stored(site, "energy")) >= 2 and len(stored(site, "broker")) >= 2,
            timeout=15,
            what="records in both nodes",
        )
        await wait_for(
            lambda: sum(edge_session(site)["unsynced"].values()) == 0,
            timeout=15,
            what="both trails synced",
        )
        records = {**stored(site, "broker"), **stored(site, "energy")}
        got = synced(site)
        by_uid = {r["uid"]: r for r in got}
        # Every record of both nodes, told apart: the same id in both nodes is two records.
        assert set(records) <= set(by_uid)
        ids = {node: {r["id"] for r in got if r["node"] == node} for node in ("broker", "energy")}
        assert ids["broker"] & ids["energy"], "the nodes count ids each on their own"
        for uid, record in records.items():
            doc = by_uid[uid]
            assert doc["node"] == doc["batch_node"] == uid.split(":", 1)[0]
            assert (doc["id"], doc["kind"]) == (record.id, record.kind.value)
    finally:
        await site.stop()
