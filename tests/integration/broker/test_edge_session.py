"""The edge's own session at the cloud (ocpp-csms again): local list, rules bundles, audit sync,
and what happens when the cloud later rejects an id the edge accepted offline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from ocpp.v16 import call as v16call
from ocpp_csms import AuthorizationStatus, CentralSystem, DataTransferStatus

from actors.audit import AUDIT_TABLE
from actors.audit_records import decode_record
from drivers.store.env import read_other
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, start_edge
from tests.integration.broker.raw_cp import RawChargePoint

EDGE = "SITE-EDGE"


class Cloud:
    def __init__(self) -> None:
        self.port = 0
        self.cs: CentralSystem | None = None
        self.audit: dict[str, dict[str, Any]] = {}  # record uid -> record: the cloud's dedup
        self.audit_deliveries = 0
        self.valid_tags = {"GOOD"}

    async def start(self) -> None:
        async def authorize(charge_point: Any, id_tag: str) -> AuthorizationStatus:
            return (
                AuthorizationStatus.ACCEPTED
                if id_tag in self.valid_tags
                else AuthorizationStatus.INVALID
            )

        async def audit_records(charge_point: Any, message_id: str, data: str | None) -> Any:
            if message_id != "AuditRecords" or charge_point.id != EDGE:
                return DataTransferStatus.UNKNOWN_MESSAGE_ID, None
            doc = orjson.loads(data or "{}")
            for record in doc["records"]:
                self.audit_deliveries += 1
                self.audit[record["uid"]] = record
            return DataTransferStatus.ACCEPTED, None

        self.cs = CentralSystem(host="127.0.0.1", port=self.port, authorize=authorize)
        self.cs.set_data_transfer_handler("site-edge", audit_records)
        await self.cs.async_start()
        self.port = self.cs.port

    async def stop(self) -> None:
        if self.cs is not None:
            await self.cs.async_stop()
            self.cs = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def edge(self) -> Any:
        assert self.cs is not None
        return self.cs.charge_points[EDGE]


@pytest.fixture
async def cloud() -> AsyncIterator[Cloud]:
    c = Cloud()
    await c.start()
    yield c
    await c.stop()


async def make_edge(tmp_path: Path, cloud: Cloud, auth: str = "") -> Edge:
    return await start_edge(
        tmp_path,
        cloud_url=cloud.url,
        cloud_extra=f'edge_identity = "{EDGE}"\nanswer_deadline_s = 2\nretry_backoff_min_s = 0.2',
        extra=auth,
    )


@pytest.fixture
async def edge(tmp_path: Path, cloud: Cloud) -> AsyncIterator[Edge]:
    e = await make_edge(tmp_path, cloud, '[authorization]\nunknown_id_offline = "accept"\n')
    yield e
    await e.stop()


def edge_session(edge: Edge) -> dict[str, Any]:
    actor = edge.system.actor(f"broker/charge_points/{EDGE}")
    report: dict[str, Any] = actor.report()
    return report


def authorizer(edge: Edge) -> dict[str, Any]:
    report: dict[str, Any] = edge.system.actor("broker/authorizer").report()
    return report


def all_records(edge: Edge) -> dict[int, Any]:
    out = {}
    with read_other(edge.tmp_path / "var" / "broker") as store:
        assert store is not None
        for _, raw in store.scan(AUDIT_TABLE):
            record = decode_record(raw)
            assert record.id is not None
            out[record.id] = record
    return out


async def test_the_cloud_manages_the_edges_local_list(edge: Edge, cloud: Cloud) -> None:
    await wait_for(
        lambda: cloud.cs is not None and EDGE in cloud.cs.charge_points, what="edge session"
    )
    await wait_for(lambda: cloud.edge().boot is not None, what="edge booted at the cloud")
    result = await cloud.edge().async_call(
        v16call.SendLocalList(
            list_version=3,
            update_type="Full",
            local_authorization_list=[
                {"idTag": "LISTED", "idTagInfo": {"status": "Accepted"}},
                {"idTag": "BANNED", "idTagInfo": {"status": "Blocked"}},
            ],
        )
    )
    assert result.status == "Accepted"
    version = await cloud.edge().async_call(v16call.GetLocalListVersion())
    assert version.list_version == 3
    stale = await cloud.edge().async_call(
        v16call.SendLocalList(
            list_version=2, update_type="Differential", local_authorization_list=[]
        )
    )
    assert stale.status == "VersionMismatch"
    assert authorizer(edge)["local_list_entries"] == 2

    # Offline, the list decides: a Blocked id is rejected even though unknown ids are accepted.
    cp = await RawChargePoint("CP1").connect(edge.url)
    await cloud.stop()
    await wait_for(lambda: not edge.cloud("CP1")["online"], what="cloud gone")
    banned = await cp.call("Authorize", {"idTag": "BANNED"})
    listed = await cp.call("Authorize", {"idTag": "LISTED"})
    stranger = await cp.call("Authorize", {"idTag": "WHO"})
    assert banned[2]["idTagInfo"]["status"] == "Blocked"
    assert listed[2]["idTagInfo"]["status"] == "Accepted"
    assert stranger[2]["idTagInfo"]["status"] == "Accepted", "the site's fallback: accept"
    await cp.close()


async def test_rules_bundles_are_applied_whole_or_refused_and_can_be_rolled_back(
    edge: Edge, cloud: Cloud
) -> None:
    await wait_for(
        lambda: cloud.cs is not None and EDGE in cloud.cs.charge_points, what="edge session"
    )
    await wait_for(lambda: cloud.edge().boot is not None, what="edge booted at the cloud")
    good = {
        "kind": "edge-rules",
        "version": 5,
        "authorization": {"unknown_id_offline": "reject"},
        "charge_points": {"CP1": {"priority": 50}},
    }
    status, data = await cloud.edge().async_data_transfer(
        "site-edge", "RulesBundle", orjson.dumps(good).decode()
    )
    assert status == DataTransferStatus.ACCEPTED
    assert orjson.loads(data)["version"] == 5
    bad = {
        "kind": "edge-rules",
        "version": 6,
        "authorization": {"unknown_id_offline": "maybe"},
        "charge_points": {"CP1": {"priority": 500}},
    }
    status, data = await cloud.edge().async_data_transfer(
        "site-edge", "RulesBundle", orjson.dumps(bad).decode()
    )
    assert status == DataTransferStatus.REJECTED
    problems = orjson.loads(data)["problems"]
    assert len(problems) == 2, problems
    assert authorizer(edge)["rules_version"] == 5, "nothing of the bad bundle was applied"

    cp = await RawChargePoint("CP1").connect(edge.url)
    await cloud.stop()
    await wait_for(lambda: not edge.cloud("CP1")["online"], what="cloud gone")
    stranger = await cp.call("Authorize", {"idTag": "WHO"})
    assert stranger[2]["idTagInfo"]["status"] == "Invalid", "the rules' fallback: reject"
    await cloud.start()
    await wait_for(lambda: edge_session(edge)["online"], timeout=10, what="edge session back")
    newer = {"kind": "edge-rules", "version": 7, "authorization": {"unknown_id_offline": "accept"}}
    status, _ = await cloud.edge().async_data_transfer(
        "site-edge", "RulesBundle", orjson.dumps(newer).decode()
    )
    assert status == DataTransferStatus.ACCEPTED
    assert authorizer(edge)["rules_version"] == 7
    status, data = await cloud.edge().async_data_transfer("site-edge", "RulesRollback", "")
    assert status == DataTransferStatus.ACCEPTED
    assert orjson.loads(data)["outcome"] == "rolled_back"
    assert authorizer(edge)["rules_version"] == 5, "the previous version, exactly"
    status, _ = await cloud.edge().async_data_transfer("site-edge", "RulesRollback", "")
    assert status == DataTransferStatus.REJECTED, "one level of rollback"
    await cp.close()


async def test_every_offline_decision_is_recorded_and_reaches_the_cloud_once(
    edge: Edge, cloud: Cloud
) -> None:
    cp = await RawChargePoint("CP1").connect(edge.url)
    await cp.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    await wait_for(lambda: edge.cloud("CP1")["online"], what="session")
    await cloud.stop()
    await wait_for(lambda: not edge.cloud("CP1")["online"], what="cloud gone")
    auth = await cp.call("Authorize", {"idTag": "WHO"})
    assert auth[2]["idTagInfo"]["status"] == "Accepted"
    start = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "WHO", "meterStart": 0, "timestamp": "2026-11-28T10:00:00Z"},
    )
    tx = start[2]["transactionId"]
    await cp.call(
        "StopTransaction",
        {"transactionId": tx, "meterStop": 10, "timestamp": "2026-11-28T10:10:00Z"},
    )
    records = list(all_records(edge).values())
    kinds = [r.kind.value for r in records]
    decisions = [
        (r.actor.rsplit("/", 1)[-1], r.decision) for r in records if r.kind.value == "authorization"
    ]
    # The authorizer's two decisions (Authorize, the start's id tag), then the transaction it gave.
    assert decisions == [
        ("authorizer", "Accepted"),
        ("authorizer", "Accepted"),
        ("CP1", "Accepted"),
    ]
    minted = next(r for r in records if r.actor.endswith("CP1") and r.kind.value == "authorization")
    assert minted.inputs["edge_transaction_id"] == tx
    assert "cloud_link" in kinds
    # The buffering records commit with the outbox writes, a moment after the charge point's answer.
    await wait_for(
        lambda: [r.kind.value for r in all_records(edge).values()].count("message_buffered") == 2,
        what="both transaction messages recorded as buffered",
    )

    await cloud.start()
    await wait_for(lambda: edge.cloud("CP1")["queue_depth"] == 0, timeout=15, what="replayed")
    await wait_for(
        lambda: sum(edge_session(edge)["unsynced"].values()) == 0, timeout=15, what="audit synced"
    )
    records = {f"broker:{record_id}": r for record_id, r in all_records(edge).items()}
    assert set(cloud.audit) == set(records), "every record reached the cloud"
    assert "message_replayed" in [r.kind.value for r in records.values()]
    assert len(cloud.audit) == len(records), "deduplicated by record uid: each exactly once"
    for uid, record in records.items():
        assert cloud.audit[uid]["kind"] == record.kind.value
        assert cloud.audit[uid]["node"] == "broker"

    # And the story is told: why CP1 got what it got while the cloud was away.
    from datetime import UTC, datetime

    from cli.audit_query import explain_charge_point, open_stores

    with open_stores(edge.tmp_path / "var") as stores:
        story = explain_charge_point(stores, "CP1", at_utc=datetime.now(UTC), window_s=600)
    text = "\n".join(story.explanation.lines)
    assert "fallback:accept" in text, text
    assert "message_buffered" in text, text
    assert "message_replayed" in text, text
    await cp.close()


async def test_a_later_rejection_stops_an_offline_accepted_transaction(
    tmp_path: Path, cloud: Cloud
) -> None:
    edge = await make_edge(tmp_path, cloud, '[authorization]\nunknown_id_offline = "accept"\n')
    try:
        cp = await RawChargePoint("CP1").connect(edge.url)
        cp.answers["RemoteStopTransaction"] = {"status": "Accepted"}
        await cp.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        await wait_for(lambda: edge.cloud("CP1")["online"], what="session")
        await cloud.stop()
        await wait_for(lambda: not edge.cloud("CP1")["online"], what="cloud gone")
        start = await cp.call(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": "STRANGER",
                "meterStart": 0,
                "timestamp": "2026-11-28T10:00:00Z",
            },
        )
        tx = start[2]["transactionId"]
        assert start[2]["idTagInfo"]["status"] == "Accepted"
        await cloud.start()  # the cloud does not know STRANGER: Invalid
        await wait_for(
            lambda: any(c[2] == "RemoteStopTransaction" for c in cp.received_calls),
            timeout=15,
            what="the edge stops the transaction",
        )
        stop = next(c for c in cp.received_calls if c[2] == "RemoteStopTransaction")
        assert stop[3] == {"transactionId": tx}, "under the id the charge point knows"
        # Its audit record commits with the decision, a moment after the frame went out.
        await wait_for(
            lambda: (
                ("late_authorization", "stop")
                in [(r.kind.value, r.decision) for r in all_records(edge).values()]
            ),
            what="the late authorization's record",
        )
        await cp.close()
    finally:
        await edge.stop()
    await asyncio.sleep(0)


async def test_an_answer_another_broker_node_learned_enters_the_cache_unless_older(
    edge: Edge,
) -> None:
    """Broker shards pass what each node's authorizer learns from the cloud to the others'
    (CloudAuthorized with from_node): here it arrives as broker-1's would. It is stored with the
    time it was learned; an answer learned before the one this node holds does not replace it;
    one with an unreadable time is dropped."""
    from actors.messages import CloudAuthorized
    from actors.utc import format_utc

    actor = edge.system.actor("broker/authorizer")
    assert actor is not None
    now = datetime.now(UTC)

    def learned(tag: str, status: str, at: datetime | str) -> CloudAuthorized:
        return CloudAuthorized(
            charge_point_id="CP1",
            id_token=tag,
            id_tag_info={"status": status},
            from_node="broker-1",
            learned_utc=at if isinstance(at, str) else format_utc(at),
        )

    def status(tag: str) -> str | None:
        entry = actor.cache.entries.get(tag)  # type: ignore[attr-defined]
        return None if entry is None else str(entry.info.status.value)

    system = edge.system
    system.send("broker/authorizer", learned("T1", "Blocked", now))
    await wait_for(lambda: status("T1") == "Blocked", what="T1 learned")
    assert actor.cache.entries["T1"].stored_utc == now  # type: ignore[attr-defined]
    system.send("broker/authorizer", learned("T1", "Accepted", now - timedelta(seconds=5)))
    system.send("broker/authorizer", learned("T1", "Accepted", "not a time"))
    system.send("broker/authorizer", learned("T2", "Accepted", now))  # after those two
    await wait_for(lambda: status("T2") == "Accepted", what="T2 learned")
    assert status("T1") == "Blocked"  # the older answer and the unreadable one: dropped
    system.send("broker/authorizer", learned("T1", "Accepted", now + timedelta(seconds=5)))
    await wait_for(lambda: status("T1") == "Accepted", what="the newer answer")


async def test_a_grid_limit_push_is_answered_only_as_the_energy_node_will_take_it(
    tmp_path: Path, cloud: Cloud
) -> None:
    """DataTransfer GridLimit to the edge's session (a real ocpp-csms cloud): a good push is
    Accepted, a bad one Rejected with the reason, before anything changes (a misspelled key or
    an unreadable expiry was answered Accepted and lifted or ignored the limit)."""
    energy = (
        '[[grid_limits]]\nname = "fuse"\nkind = "static"\nnode = "site"\ncurrent_a = 63\n'
        '[[grid_limits]]\nname = "cloud"\nkind = "cloud"\nnode = "site"\n'
    )
    edge = await make_edge(tmp_path, cloud, energy)
    try:
        await wait_for(lambda: cloud.cs is not None and EDGE in cloud.cs.charge_points, what="up")
        await wait_for(lambda: cloud.edge().boot is not None, what="edge booted at the cloud")

        async def push(data: dict[str, Any]) -> tuple[Any, str]:
            status, answer = await cloud.edge().async_data_transfer(
                "site-edge", "GridLimit", orjson.dumps(data).decode()
            )
            return status, answer or ""

        status, _ = await push({"limit_a": 20, "expires_utc": "2999-01-01T00:00:00Z"})
        assert status == DataTransferStatus.ACCEPTED
        for bad, why in [
            ({"limitA": 10}, "unknown key(s) limitA"),
            ({"limit_a": 10, "expires_utc": "tomorrow"}, "expires_utc"),
            # a time beyond the year 9999 once in UTC: the check raised OverflowError
            ({"limit_a": 10, "expires_utc": "9999-12-31T23:00:00-05:00"}, "expires_utc"),
            ({"limit_a": -10}, ">= 0"),
            ({"limit_a": 10, "node": "Site"}, "limits node 'site'"),
        ]:
            status, answer = await push(bad)
            assert status == DataTransferStatus.REJECTED, bad
            assert why in answer, (bad, answer)
    finally:
        await edge.stop()
