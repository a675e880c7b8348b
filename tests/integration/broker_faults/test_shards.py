"""Broker shards in nodes mode (``python run.py --config FILE`` with ``[runtime] broker_shards =
2``): the charge points connect to one port and each is served by the broker node its id maps to
(actors/shards.py); the front passes the other node's connections on before their handshake
(drivers/ocpp/handover.py). Transaction messages are accounted as in test_kill9.py: nothing lost,
in order, under the cloud's ids; also when the second broker node is killed (kill -9) in the
middle of an offline transaction and its charge points come back through the front."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.exceptions import InvalidStatus

from actors.shards import broker_node, shard_of
from drivers import control
from drivers.ports import free_tcp_port
from sim.cloud import SimCloud
from supervisors.launcher import EXIT_START_FAILED
from tests.helpers import timeout_s, wait_for
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker_faults.accounting import account
from tests.integration.broker_faults.ledger_cp import LedgerChargePoint
from tests.integration.broker_faults.site import REPO, NodesRuntime, runtime_env, site_toml
from tests.integration.broker_faults.test_kill9 import check
from tests.tls_files import TlsFiles, self_signed

pytestmark = [pytest.mark.nodes, pytest.mark.slow]

CPS = ("CP1", "CP2", "CP3", "CP4", "CP5", "CP6")
PASSWORD = "0123456789abcdef0123"  # every charge point's, with security_profile 2
SHARD = {cp: shard_of(cp, 2) for cp in CPS}


def test_both_nodes_have_charge_points() -> None:
    assert set(SHARD.values()) == {0, 1}


async def nodes(rt: NodesRuntime) -> dict[str, dict[str, Any]]:
    """Each running, answering broker node's status by name."""
    try:
        doc = await rt.status()
    except control.ControlUnavailable:
        return {}
    return {
        n["name"]: n
        for n in doc.get("nodes", [])
        if n.get("kind") == "broker" and n.get("answered") and n.get("state") == "running"
    }


async def cloud_online(rt: NodesRuntime, want: bool) -> bool:
    found = await nodes(rt)
    for cp in CPS:
        node = found.get(broker_node(SHARD[cp]))
        state = None if node is None else node["site"]["charge_points"].get(cp)
        if state is None or bool(state["cloud"]["online"]) is not want:
            return False
    return True


def nodes_site(tmp_path: Path, port: int, sim: SimCloud, shards: int, **site: Any) -> str:
    """The site file in nodes mode with ``shards`` broker nodes, the charge points CPS unless
    ``site`` names others (``site``: more of site_toml's tables)."""
    return site_toml(
        tmp_path,
        mode="nodes",
        port=port,
        cloud_url=sim.url,
        charge_points=site.pop("charge_points", CPS),
        runtime={"broker_shards": shards},
        **site,
    )


async def start_two(tmp_path: Path, sim: SimCloud, **site: Any) -> NodesRuntime:
    """The site with two broker nodes, both answering, its cloud ``sim`` (``site``: more of
    site_toml's tables)."""
    port = free_tcp_port()
    text = nodes_site(tmp_path, port, sim, 2, **site)
    rt = NodesRuntime(tmp_path, text, port)

    async def both() -> bool:
        return set(await nodes(rt)) == {"broker", "broker-1"}

    try:
        await rt.start()
        await wait_for(both, timeout=30, what="both broker nodes answering")
    except BaseException:
        rt.cleanup()
        raise
    return rt


async def kill_second_and_wait(rt: NodesRuntime, cps: list[LedgerChargePoint]) -> dict[str, int]:
    """:func:`kill_second`; returns once each of ``cps`` that broker-1 serves has connected
    again (through the front) and is online; the connection counts of ``cps`` before it."""
    theirs = [cp for cp in cps if SHARD[cp.cp_id] == 1]
    connects = {cp.cp_id: cp.connects for cp in cps}
    await kill_second(rt)
    await wait_for(
        lambda: all(cp.connects > connects[cp.cp_id] and cp.online for cp in theirs),
        timeout=20,
        what="broker-1's charge points back through the front",
    )
    return connects


async def kill_second(rt: NodesRuntime, name: str = "broker-1") -> None:
    """kill -9 of broker node ``name``; back once another process of it answers."""
    victim = (await nodes(rt))[name]
    os.kill(int(victim["pid"]), signal.SIGKILL)

    async def back() -> bool:
        node = (await nodes(rt)).get(name)
        return node is not None and node["pid"] != victim["pid"]

    await wait_for(back, timeout=30, what=f"{name} restarted")


@pytest.fixture
async def runtime(tmp_path: Path, cloud: SimCloud) -> AsyncIterator[NodesRuntime]:
    rt = await start_two(tmp_path, cloud)
    yield rt
    rt.cleanup()


async def connect(
    rt: NodesRuntime, ledger_cps: list[LedgerChargePoint], tls: TlsFiles | None = None
) -> None:
    """Every charge point of CPS connected (over TLS with ``tls``: with its password) and its
    cloud session up."""
    for cp_id in CPS:
        if tls is None:
            cp = LedgerChargePoint(cp_id, rt.url)
        else:
            url = rt.url.replace("ws://", "wss://", 1)
            cp = LedgerChargePoint(cp_id, url, password=PASSWORD, ssl=tls.client_context())
        ledger_cps.append(await cp.start())
    await wait_for(lambda: all(cp.online for cp in ledger_cps), timeout=10, what="connected")
    await wait_for(lambda: cloud_online(rt, True), timeout=10, what="cloud sessions up")


async def queued(rt: NodesRuntime) -> int | None:
    found = await nodes(rt)
    if set(found) != {"broker", "broker-1"}:
        return None
    return sum(int(n["site"]["queued_for_cloud"]) for n in found.values())


async def accounted(
    rt: NodesRuntime, cloud: SimCloud, cps: list[LedgerChargePoint], name: str
) -> None:
    """Once the edge's queues are empty: every acknowledged message at the cloud, in order."""

    async def empty() -> bool:
        return await queued(rt) == 0

    await wait_for(empty, timeout=30, what="the edge's queues empty")
    check(account(cps, cloud), name)


async def test_each_charge_point_is_served_by_its_node_and_nothing_is_lost(
    runtime: NodesRuntime, cloud: SimCloud, ledger_cps: list[LedgerChargePoint]
) -> None:
    await connect(runtime, ledger_cps)
    found = await nodes(runtime)
    for name, node in found.items():
        mine = {cp for cp in CPS if broker_node(SHARD[cp]) == name}
        assert set(node["site"]["charge_points"]) == mine, name
        assert node["site"]["charge_points_connected"] == len(mine), name
    front = found["broker"]["site"]["listener"]
    assert front["handed_over"] == sum(1 for s in SHARD.values() if s == 1)
    assert found["broker-1"]["site"]["listener"]["adopted"] == front["handed_over"]
    assert found["broker"]["pid"] != found["broker-1"]["pid"]

    for cp in ledger_cps:
        cp.transaction(meter_values=5)
    await wait_for(lambda: all(cp.drained for cp in ledger_cps), timeout=30, what="acknowledged")
    await accounted(runtime, cloud, ledger_cps, "none: two broker nodes")


async def test_tls_the_front_relays_the_other_nodes_charge_points(
    tmp_path: Path, cloud: SimCloud, ledger_cps: list[LedgerChargePoint]
) -> None:
    """security_profile 2 with two broker nodes: every charge point connects over TLS to the
    one port, each served by its node (broker-1's relayed by the front, which ends TLS); its
    transactions accounted, nothing lost; also across kill -9 of broker-1 (the front's relays
    to it end, its charge points come back through the front) while the front's own charge
    points never notice, and across kill -9 of the front (every charge point comes back)."""
    tls = self_signed(tmp_path)
    rt = await start_two(
        tmp_path,
        cloud,
        listener={"security_profile": 2, "tls_cert_file": tls.cert, "tls_key_file": tls.key},
        charge_points={cp: {"password": PASSWORD} for cp in CPS},
    )
    try:
        await connect(rt, ledger_cps, tls)
        found = await nodes(rt)
        for name, node in found.items():
            mine = {cp for cp in CPS if broker_node(SHARD[cp]) == name}
            assert set(node["site"]["charge_points"]) == mine, name
        theirs = [cp for cp in ledger_cps if SHARD[cp.cp_id] == 1]
        front = found["broker"]["site"]["listener"]
        assert front["relayed"] == front["relays_open"] == len(theirs)
        assert found["broker-1"]["site"]["listener"]["adopted"] == len(theirs)
        for cp in ledger_cps:
            cp.transaction(meter_values=3)
        await wait_for(lambda: all(cp.drained for cp in ledger_cps), timeout=30, what="acked")

        connects = await kill_second_and_wait(rt, ledger_cps)
        for cp in ledger_cps:
            cp.transaction(meter_values=3)
        await wait_for(lambda: all(cp.drained for cp in ledger_cps), timeout=30, what="acked")
        assert all(cp.connects == connects[cp.cp_id] for cp in ledger_cps if cp not in theirs)
        front_node = (await nodes(rt))["broker"]
        assert front_node["restarts"] == 0
        assert front_node["site"]["listener"]["relays_open"] == len(theirs)

        # kill -9 of the front: every charge point's TLS connection was its, all come back.
        connects = {cp.cp_id: cp.connects for cp in ledger_cps}
        await kill_second(rt, "broker")
        await wait_for(
            lambda: all(cp.connects > connects[cp.cp_id] and cp.online for cp in ledger_cps),
            timeout=20,
            what="every charge point back through the restarted front",
        )
        for cp in ledger_cps:
            cp.transaction(meter_values=3)
        await wait_for(lambda: all(cp.drained for cp in ledger_cps), timeout=30, what="acked")
        await wait_for(lambda: cloud_online(rt, True), timeout=20, what="cloud sessions")
        await accounted(rt, cloud, ledger_cps, "TLS, broker-1 killed, then the front")
    finally:
        rt.cleanup()


async def test_the_second_node_killed_during_an_offline_transaction(
    runtime: NodesRuntime, cloud: SimCloud, ledger_cps: list[LedgerChargePoint]
) -> None:
    await connect(runtime, ledger_cps)
    await cloud.stop()
    await wait_for(lambda: cloud_online(runtime, False), timeout=10, what="the outage seen")
    txs = {cp.cp_id: cp.start_transaction() for cp in ledger_cps}
    for cp in ledger_cps:
        cp.meter_values(txs[cp.cp_id], count=5)
    await wait_for(lambda: all(cp.drained for cp in ledger_cps), timeout=20, what="acknowledged")

    await kill_second_and_wait(runtime, ledger_cps)
    for cp in ledger_cps:
        cp.meter_values(txs[cp.cp_id], count=5)
        cp.stop_transaction(txs[cp.cp_id])
    await wait_for(lambda: all(cp.drained for cp in ledger_cps), timeout=20, what="acknowledged")
    front = (await nodes(runtime))["broker"]
    assert front["restarts"] == 0  # the front's own charge points never noticed

    await cloud.start()
    await wait_for(lambda: cloud_online(runtime, True), timeout=20, what="cloud sessions back")
    await accounted(runtime, cloud, ledger_cps, "broker-1 during an offline transaction")


async def test_a_new_shard_count_waits_for_what_would_move(
    tmp_path: Path, cloud: SimCloud, ledger_cps: list[LedgerChargePoint]
) -> None:
    """Queued messages and running transactions stay in the store of the node that served the
    charge point: the runtime refuses a count that would move such a charge point, names it, and
    starts with it once they are delivered and finished."""
    port = free_tcp_port()

    def text(shards: int) -> str:
        return nodes_site(tmp_path, port, cloud, shards)

    rt = NodesRuntime(tmp_path, text(1), port)
    try:
        await rt.start()
        for cp_id in CPS:
            ledger_cps.append(await LedgerChargePoint(cp_id, rt.url).start())
        await wait_for(lambda: all(cp.online for cp in ledger_cps), timeout=10, what="connected")
        await cloud.stop()
        moving = next(cp for cp in ledger_cps if SHARD[cp.cp_id] == 1)
        staying = next(cp for cp in ledger_cps if SHARD[cp.cp_id] == 0)
        for cp in (moving, staying):
            cp.transaction(meter_values=2)  # queued: the cloud is down
        await wait_for(lambda: moving.drained and staying.drained, timeout=20, what="acked")
        assert await rt.terminate() == 0
        for cp in ledger_cps:
            await cp.stop()

        rt.config.write_text(text(2))
        refused = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "run.py", "--config", str(rt.config)],
            cwd=REPO,
            env=runtime_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s(60),
        )
        assert refused.returncode == EXIT_START_FAILED, refused.stdout + refused.stderr
        said = refused.stdout + refused.stderr
        assert f"{moving.cp_id}: 4 messages queued for the cloud in broker" in said, said
        assert f"{staying.cp_id}:" not in said  # stays in broker: no reason to refuse

        # With the previous count, the queue drains to the cloud; then the change is taken.
        rt.config.write_text(text(1))
        await cloud.start()
        await rt.start()

        async def drained() -> bool:
            return await rt.queued() == 0

        await wait_for(drained, timeout=30, what="the queue delivered")
        assert await rt.terminate() == 0
        rt.config.write_text(text(2))
        await rt.start()
        found: dict[str, Any] = {}

        async def both() -> bool:
            found.update(await nodes(rt))
            return set(found) == {"broker", "broker-1"}

        await wait_for(both, timeout=30, what="both broker nodes")
        check(account([moving, staying], cloud), "none: the shard count changed when drained")
    finally:
        rt.cleanup()


EDGE = "SITE-EDGE"
LIST = [
    {"idTag": "LISTED", "idTagInfo": {"status": "Accepted"}},
    {"idTag": "BANNED", "idTagInfo": {"status": "Blocked"}},
]


async def versions(rt: NodesRuntime) -> dict[str, tuple[object, object]]:
    """Each broker node's local list and rules versions."""
    out = {}
    for name, n in (await nodes(rt)).items():
        auth = n["site"].get("authorization") or {}
        out[name] = (auth.get("local_list_version"), auth.get("rules_version"))
    return out


def synced_uids(cloud: SimCloud, node: str) -> set[str]:
    """The audit records of ``node`` the edge session delivered (DataTransfer AuditRecords)."""
    uids: set[str] = set()
    for m in cloud.received(EDGE, "DataTransfer"):
        doc = orjson.loads(m.payload.get("data") or "{}")
        if m.payload.get("messageId") == "AuditRecords" and doc.get("node") == node:
            uids.update(r["uid"] for r in doc["records"])
    return uids


async def test_the_edge_sessions_local_list_decides_on_every_node_and_every_nodes_audit_syncs(
    tmp_path: Path, cloud: SimCloud
) -> None:
    """``[cloud] edge_identity`` with two broker nodes: the session lives in the front, which
    shares the cloud's local list and rules with the other node (the decisions there follow them
    offline, also after that node is killed and restarted); the other node's audit records reach
    the cloud through the session."""
    rt = await start_two(
        tmp_path,
        cloud,
        cloud={"edge_identity": EDGE},
        authorization={"unknown_id_offline": "reject"},
    )
    cp: RawChargePoint | None = None
    try:
        await wait_for(lambda: cloud.connected(EDGE), timeout=20, what="the edge session")
        answer = await cloud.call(
            EDGE,
            "SendLocalList",
            {"listVersion": 3, "updateType": "Full", "localAuthorizationList": LIST},
        )
        assert answer["status"] == "Accepted"
        # The site file rejects unknown ids offline; the cloud's rules accept them.
        rules = {
            "kind": "edge-rules",
            "version": 5,
            "authorization": {"unknown_id_offline": "accept"},
        }
        answer = await cloud.call(
            EDGE,
            "DataTransfer",
            {
                "vendorId": "site-edge",
                "messageId": "RulesBundle",
                "data": orjson.dumps(rules).decode(),
            },
        )
        assert answer["status"] == "Accepted", answer

        async def shared() -> bool:
            return await versions(rt) == {"broker": (3, 5), "broker-1": (3, 5)}

        await wait_for(shared, timeout=10, what="the list and the rules on both nodes")

        theirs = next(c for c in CPS if SHARD[c] == 1)
        cp = await RawChargePoint(theirs).connect(rt.url)
        await cloud.stop()

        async def offline() -> bool:
            node = (await nodes(rt)).get("broker-1")
            state = None if node is None else node["site"]["charge_points"].get(theirs)
            return state is not None and not state["cloud"]["online"]

        await wait_for(offline, timeout=10, what="the outage seen by broker-1")

        async def decisions() -> list[str]:
            assert cp is not None
            out = []
            for tag in ("LISTED", "BANNED", "STRANGER"):
                got = await cp.call("Authorize", {"idTag": tag})
                out.append(got[2]["idTagInfo"]["status"])
            return out

        assert await decisions() == ["Accepted", "Blocked", "Accepted"]

        await kill_second(rt)
        await wait_for(shared, timeout=10, what="the list and the rules on the restarted node")
        await cp.close()
        cp = await RawChargePoint(theirs).connect(rt.url)
        assert await decisions() == ["Accepted", "Blocked", "Accepted"]

        # broker-1's offline decisions are in its own audit trail: the session syncs them.
        await cloud.start()
        await wait_for(
            lambda: len(synced_uids(cloud, "broker-1")) >= 6,
            timeout=30,
            what="broker-1's audit records at the cloud",
        )
        assert synced_uids(cloud, "broker")  # the front's (the list it took) as before
    finally:
        if cp is not None:
            await cp.close()
        rt.cleanup()


async def test_an_id_learned_at_one_node_is_known_offline_at_the_other(
    tmp_path: Path, cloud: SimCloud
) -> None:
    """Each broker node's authorization cache learns what the other's charge points learned
    from the cloud: a driver accepted online at one node's charge point is accepted offline at
    the other's (unknown ids are rejected offline here), both ways, and still after kill -9 of
    broker-1 (it keeps what it was told)."""
    rt = await start_two(tmp_path, cloud, authorization={"unknown_id_offline": "reject"})
    ours = next(c for c in CPS if SHARD[c] == 0)
    theirs = next(c for c in CPS if SHARD[c] == 1)
    cps: list[RawChargePoint] = []
    try:
        for cp_id in (ours, theirs):
            cps.append(await RawChargePoint(cp_id).connect(rt.url))
        front_cp, their_cp = cps

        async def session(cp_id: str, online: bool) -> bool:
            node = (await nodes(rt)).get(broker_node(SHARD[cp_id]))
            state = None if node is None else node["site"]["charge_points"].get(cp_id)
            return state is not None and bool(state["cloud"]["online"]) is online

        for cp_id in (ours, theirs):
            await wait_for(lambda c=cp_id: session(c, True), timeout=10, what="online")
        for cp, tag in ((front_cp, "DRIVER-F"), (their_cp, "DRIVER-1")):
            got = await cp.call("Authorize", {"idTag": tag})
            assert got[2]["idTagInfo"]["status"] == "Accepted"  # the cloud's answer

        async def cached() -> bool:
            found = await nodes(rt)
            return len(found) == 2 and all(
                n["site"]["authorization"]["cache_entries"] == 2 for n in found.values()
            )

        await wait_for(cached, timeout=10, what="both ids in both nodes' caches")
        await cloud.stop()
        for cp_id in (ours, theirs):
            await wait_for(lambda c=cp_id: session(c, False), timeout=10, what="offline")

        async def offline_status(cp: RawChargePoint, tag: str) -> str:
            got = await cp.call("Authorize", {"idTag": tag})
            return str(got[2]["idTagInfo"]["status"])

        assert await offline_status(their_cp, "DRIVER-F") == "Accepted"  # learned at the front
        assert await offline_status(front_cp, "DRIVER-1") == "Accepted"  # learned at broker-1
        assert await offline_status(their_cp, "STRANGER") == "Invalid"

        await kill_second(rt)
        await their_cp.close()
        cps[1] = their_cp = await RawChargePoint(theirs).connect(rt.url)
        assert await offline_status(their_cp, "DRIVER-F") == "Accepted"
    finally:
        for cp in cps:
            await cp.close()
        rt.cleanup()


async def test_a_rotated_key_follows_its_charge_point_to_its_new_node(
    tmp_path: Path, cloud: SimCloud
) -> None:
    """The cloud rotates a charge point's key on a site with one broker node; the site then
    runs with two, where that charge point is broker-1's: it connects with the rotated key (the
    launcher moved it; broker-1 would otherwise ask for the site file's password and refuse
    it), and the key's state came along whole (the site file's password, still accepted
    until the rotated one was used, is refused after it)."""
    port = free_tcp_port()
    moving = next(c for c in CPS if SHARD[c] == 1)
    site_key, new_key = "site-file-key-0123456", "rotated-by-the-cloud-42"

    def text(shards: int) -> str:
        return nodes_site(
            tmp_path,
            port,
            cloud,
            shards,
            listener={"security_profile": 1},
            charge_points={moving: {"password": site_key}},
        )

    async def served(node: str) -> bool:
        found = await nodes(rt)
        state = found.get(node, {}).get("site", {}).get("charge_points", {}).get(moving)
        return state is not None and bool(state["connected"])

    rt = NodesRuntime(tmp_path, text(1), port)
    cp: RawChargePoint | None = None
    try:
        await rt.start()
        cp = await RawChargePoint(moving).connect(rt.url, password=site_key)

        async def online() -> bool:
            state = await rt.cloud_state(moving)
            return state is not None and bool(state["online"])

        await wait_for(online, timeout=10, what="its cloud session")
        cp.answers["ChangeConfiguration"] = {"status": "Accepted"}
        change = {"key": "AuthorizationKey", "value": new_key}
        assert await cloud.call(moving, "ChangeConfiguration", change) == {"status": "Accepted"}

        async def kept() -> bool:
            state = (await nodes(rt))["broker"]["site"]["charge_points"][moving]
            return state.get("key_rotation") is not None

        await wait_for(kept, timeout=10, what="the rotated key kept")
        await cp.close()
        cp = None
        assert await rt.terminate() == 0

        rt.config.write_text(text(2))
        await rt.start()
        assert f"{moving}: its rotated key moved from broker to broker-1" in rt.log_text()
        assert new_key not in rt.log_text()
        cp = await RawChargePoint(moving).connect(rt.url, password=new_key)
        await wait_for(lambda: served("broker-1"), timeout=10, what="served by broker-1")
        await cp.close()
        cp = None
        with pytest.raises(InvalidStatus) as refused:
            await RawChargePoint(moving).connect(rt.url, password=site_key)
        assert refused.value.response.status_code == 401
    finally:
        if cp is not None:
            await cp.close()
        rt.cleanup()
