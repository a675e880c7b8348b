"""The cloud's TxProfile and the edge's (actors.cp_cloud_caps): whatever the cloud sets for a
transaction, the charge point ends up at the lower of the cloud's limit and the site's.

At the edge's stack level the cloud's profile replaces the edge's in the charge point (the car
would follow the cloud's limit, the site's ignored); below it, the edge's shadows the cloud's (the
cloud's lower limit ignored). Either way the edge sends its own again at min(its limit, the
cloud's now), follows the cloud's schedule as it changes, and lets go when the cloud clears it.
Real edge (broker node with the energy side), simulated cloud and charge point over websockets;
each case for 1.6 and 2.0.1 (the ``charging`` fixture: CP1 charging at 10 A from one batch); and
once with a third-party 1.6 CSMS (PyPI ocpp-csms) as the cloud."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from ocpp.v16 import call as v16_call

from actors.audit import AUDIT_TABLE
from actors.audit_records import decode_record
from actors.profiles import ChargePointCapabilities, tx_default_profile_id
from actors.utc import format_utc
from sim.car import CarSpec
from sim.charge_point import SimChargePoint
from sim.cloud import SimCloud
from sim.cp_config import Behaviour
from sim.profile_payloads import profile_for
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, cloud_and_edge, start_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_profile_batches import ENERGY, batch, charge
from tests.integration.broker.test_profiles_again import Charging, charging, restart_cp_actor
from tests.integration.broker.test_with_ocpp_csms import Cloud
from tests.integration.sim.conftest import GOOD_TAG, fast_config

__all__ = ["charging"]

EDGE_LEVEL = 20  # the simulated charge point's ChargeProfileMaxStackLevel: the edge's level


def tx_profile(c: Charging, limit: float, **kwargs: Any) -> dict[str, Any]:
    return profile_for(c.cp.config.protocol, limit=limit, profile_id=42, **kwargs)


async def cloud_sets(c: Charging, profile: dict[str, Any]) -> None:
    answer = await c.cloud.set_charging_profile("CP1", 1, profile)
    assert answer["status"] == "Accepted"


def tx_profiles(c: Charging) -> list[tuple[int, int]]:
    """The TxProfiles the charge point holds: (id, stack level)."""
    return sorted(
        (p.profile_id, p.stack_level)
        for p in c.cp.profiles.profiles
        if p.purpose.value == "TxProfile"
    )


async def test_a_cloud_profile_at_the_edges_level_cannot_lift_the_site_limit(
    charging: Charging,
) -> None:
    """The cloud's 32 A replaces the edge's 10 A in the charge point; the edge's goes in again
    at once, and the cloud's lower limit later holds the car below the site's."""
    c = charging
    await cloud_sets(c, tx_profile(c, 32.0, stack_level=EDGE_LEVEL))
    await wait_for(
        lambda: c.cp.offered_a(1) == 10.0 and len(tx_profiles(c)) == 1,
        timeout=3,
        what="the edge's TxProfile back at 10 A, replacing the cloud's",
    )
    assert tx_profiles(c)[0][0] != 42, "the edge's own id"
    assert c.accepted() == {"1": 10.0}

    await cloud_sets(c, tx_profile(c, 7.0, stack_level=EDGE_LEVEL))
    await wait_for(
        lambda: c.accepted() == {"1": 7.0} and tx_profiles(c)[0][0] != 42,
        timeout=3,
        what="the edge's TxProfile at the cloud's 7 A",
    )
    assert c.cp.offered_a(1) == 7.0
    assert c.energy()["cloud_caps_a"] == {"1": 7.0}
    # The energy node raises the limit: the cloud's still holds.
    c.edge.system.send("broker/profiles", batch(c.edge, 12.0, sent_ns=2_000))
    c.edge.system.send("broker/profiles", batch(c.edge, 5.0, sent_ns=3_000))
    await wait_for(lambda: c.accepted() == {"1": 5.0}, what="the site's 5 A, below the cloud's")
    c.edge.system.send("broker/profiles", batch(c.edge, 12.0, sent_ns=4_000))
    await wait_for(lambda: c.accepted() == {"1": 7.0}, what="back at the cloud's 7 A")
    assert c.cp.offered_a(1) == 7.0

    records = [
        r
        for r in (decode_record(v) for _, v in c.edge.system.store.scan(AUDIT_TABLE))
        if r.charge_point_id == "CP1" and (r.inputs or {}).get("binding_source") == "cloud profile"
    ]
    assert [r.decision for r in records] == ["at most 32.0 A", "at most 7.0 A"]
    assert "TxProfile 42" in records[-1].reason


async def test_a_cloud_profile_below_the_edges_level_is_followed_where_it_is_lower(
    charging: Charging,
) -> None:
    c = charging
    await cloud_sets(c, tx_profile(c, 8.0, stack_level=1))
    await wait_for(
        lambda: c.accepted() == {"1": 8.0} and c.cp.offered_a(1) == 8.0,
        timeout=3,
        what="the edge's TxProfile at the cloud's 8 A",
    )
    assert len(tx_profiles(c)) == 2, "the cloud's, shadowed, and the edge's"
    # The cloud clears its own by id: the edge's limit alone again.
    by_id = {"id": 42} if c.cp.config.protocol == "ocpp1.6" else {"chargingProfileId": 42}
    assert (await c.cloud.call("CP1", "ClearChargingProfile", by_id))["status"] == "Accepted"
    await wait_for(lambda: c.accepted() == {"1": 10.0}, timeout=3, what="the edge's 10 A again")
    assert c.cp.offered_a(1) == 10.0
    assert c.energy()["cloud_caps_a"] == {}


async def test_a_cleared_cloud_profile_the_edges_replaced_lets_go_too(charging: Charging) -> None:
    """At the edge's level the charge point no longer knows the cloud's profile (Unknown), yet
    the cloud wants it gone: the edge's limit alone again."""
    c = charging
    await cloud_sets(c, tx_profile(c, 8.0, stack_level=EDGE_LEVEL))
    await wait_for(lambda: c.accepted() == {"1": 8.0}, timeout=3, what="capped at 8 A")
    by_id = {"id": 42} if c.cp.config.protocol == "ocpp1.6" else {"chargingProfileId": 42}
    await c.cloud.call("CP1", "ClearChargingProfile", by_id)
    await wait_for(lambda: c.accepted() == {"1": 10.0}, timeout=3, what="the edge's 10 A again")
    assert c.cp.offered_a(1) == 10.0


async def test_the_edge_follows_the_cloud_schedule_as_it_changes(charging: Charging) -> None:
    """An Absolute schedule from now: 7 A for 2 s, then 16 A (above the site's 10 A)."""
    c = charging
    profile = tx_profile(
        c, 0.0, stack_level=EDGE_LEVEL, kind="Absolute", periods=[(0, 7.0), (2, 16.0)]
    )
    start = format_utc(datetime.now(UTC) - timedelta(seconds=0.2))
    schedule = profile["chargingSchedule"]
    (schedule if isinstance(schedule, dict) else schedule[0])["startSchedule"] = start
    await cloud_sets(c, profile)
    await wait_for(lambda: c.accepted() == {"1": 7.0}, timeout=3, what="7 A while the first lasts")
    await wait_for(
        lambda: c.accepted() == {"1": 10.0}, timeout=5, what="the site's 10 A once 16 A begins"
    )
    assert c.cp.offered_a(1) == 10.0


async def test_the_cap_survives_a_restart_of_the_charge_points_actor(charging: Charging) -> None:
    c = charging
    await cloud_sets(c, tx_profile(c, 8.0, stack_level=1))
    await wait_for(lambda: c.accepted() == {"1": 8.0}, timeout=3, what="capped at 8 A")
    await restart_cp_actor(c.edge)
    assert c.energy()["cloud_caps_a"] == {"1": 8.0}, "the cloud's cap back with it"
    c.edge.system.send("broker/profiles", batch(c.edge, 12.0, sent_ns=5_000))
    await wait_for(lambda: c.accepted() == {"1": 8.0}, timeout=3, what="12 A capped at 8 A")
    assert c.cp.offered_a(1) == 8.0


async def test_the_next_transaction_is_not_held_by_the_last_ones_cloud_profile(
    charging: Charging,
) -> None:
    c = charging
    await cloud_sets(c, tx_profile(c, 8.0, stack_level=1))
    await wait_for(lambda: c.accepted() == {"1": 8.0}, timeout=3, what="capped at 8 A")
    await c.cp.stop_transaction(1)
    await wait_for(lambda: not c.edge.cp("CP1")["transactions"], what="the transaction ended")
    await c.cp.start_transaction(1, GOOD_TAG)
    await wait_for(lambda: bool(c.edge.cp("CP1")["transactions"]), what="the new transaction")
    c.edge.system.send("broker/profiles", batch(c.edge, 10.0, sent_ns=2_000))  # its first limit
    await wait_for(
        lambda: c.accepted() == {"1": 10.0} and "TxProfile" in c.held(),
        timeout=3,
        what="the new transaction at the site's 10 A",
    )
    assert c.energy()["cloud_caps_a"] == {}


async def test_a_remote_starts_profile_caps_the_transaction_it_starts(charging: Charging) -> None:
    c = charging
    await c.cp.stop_transaction(1)
    await wait_for(lambda: not c.edge.cp("CP1")["transactions"], what="the transaction ended")
    profile = tx_profile(c, 7.0, stack_level=EDGE_LEVEL)
    answer = await c.cloud.remote_start("CP1", GOOD_TAG, connector_id=1, charging_profile=profile)
    assert answer["status"] == "Accepted"
    await wait_for(lambda: bool(c.edge.cp("CP1")["transactions"]), what="the new transaction")
    c.edge.system.send("broker/profiles", batch(c.edge, 10.0, sent_ns=2_000))  # its first limit
    await wait_for(
        lambda: c.accepted() == {"1": 7.0} and c.cp.offered_a(1) == 7.0,
        timeout=3,
        what="the remote start's transaction at the cloud's 7 A",
    )
    assert c.energy()["cloud_caps_a"] == {"1": 7.0}


async def test_a_third_party_csms_tx_profile_caps_the_edges(tmp_path: Path) -> None:
    """The cloud is ocpp-csms (PyPI), its SetChargingProfile built and sent by the mobilityhouse
    library: the 1.6 payload as a real CSMS writes it is read, and the edge's TxProfile follows."""
    cloud = Cloud()
    await cloud.start()
    edge = await start_edge(tmp_path, cloud_url=cloud.url, extra=ENERGY)
    cp = SimChargePoint(fast_config(edge.url, "ocpp1.6", meter_interval_s=60.0))

    def accepted() -> object:
        return edge.cp("CP1")["energy"]["sent_a"]

    try:
        await charge(edge, cp)
        edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=1_000))
        await wait_for(lambda: accepted() == {"1": 10.0}, what="the edge's 10 A")
        assert cloud.cs is not None
        csms_cp = cloud.cs.charge_points["CP1"]
        answer = await csms_cp.async_call(
            v16_call.SetChargingProfile(
                connector_id=1,
                cs_charging_profiles={
                    "charging_profile_id": 42,
                    "stack_level": EDGE_LEVEL,
                    "charging_profile_purpose": "TxProfile",
                    "charging_profile_kind": "Relative",
                    "charging_schedule": {
                        "charging_rate_unit": "W",
                        "charging_schedule_period": [{"start_period": 0, "limit": 4830.0}],
                    },
                },
            )
        )
        assert answer.status == "Accepted"
        # 4830 W over three phases at 230 V: 7 A.
        await wait_for(
            lambda: accepted() == {"1": 7.0} and cp.offered_a(1) == 7.0,
            timeout=3,
            what="the edge's TxProfile at the cloud's 7 A",
        )
    finally:
        await cp.stop()
        await edge.stop()
        await cloud.stop()


async def test_a_remote_start_answered_after_its_transaction_began_keeps_its_cap(
    tmp_path: Path,
) -> None:
    """2.0.1, frames in the order a charge point may send them: the TransactionEvent that
    starts the transaction, then its answer to the cloud's RequestStartTransaction (whose
    profile says 7 A), the cloud's answer to the TransactionEvent coming after both. The
    TxProfile of the transaction carries the 7 A (the start once dropped the cap its own
    remote start had just set: the transaction went on at the site's 10 A)."""
    async with cloud_and_edge(tmp_path, extra=ENERGY) as (cloud, edge):
        cp = RawChargePoint("CP1", version="ocpp2.0.1")
        now = format_utc(datetime.now(UTC))
        try:
            await boot_201(cp, edge, "Occupied")
            edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=1_000))
            await wait_for(lambda: edge.cp("CP1")["energy"]["limits_a"] == {"1": 10.0}, what="10 A")

            profile = profile_for("ocpp2.0.1", limit=7.0, profile_id=42, stack_level=0)
            start = asyncio.create_task(
                cloud.remote_start("CP1", GOOD_TAG, connector_id=1, charging_profile=profile)
            )
            await wait_for(lambda: bool(calls(cp, "RequestStartTransaction")), what="the request")
            request_id = calls(cp, "RequestStartTransaction")[0][1]
            started = {
                "eventType": "Started",
                "timestamp": now,
                "triggerReason": "RemoteStart",
                "seqNo": 0,
                "transactionInfo": {"transactionId": "T1", "remoteStartId": 1},
                "evse": {"id": 1, "connectorId": 1},
                "idToken": {"idToken": GOOD_TAG, "type": "ISO14443"},
            }
            assert cp.ws is not None
            await cp.ws.send(orjson.dumps([2, "te-1", "TransactionEvent", started]).decode())
            await cp.ws.send(orjson.dumps([3, request_id, {"status": "Accepted"}]).decode())
            assert (await start)["status"] == "Accepted"
            # The energy node's first limit for the transaction (the 10 A above was for no car).
            await wait_for(lambda: bool(edge.cp("CP1")["transactions"]), what="the transaction")
            edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=2_000))
            await wait_for(
                lambda: bool(tx_limits(cp)) and tx_limits(cp)[-1] == 7.0,
                what="the transaction's TxProfile at the cloud's 7 A",
            )
            # Before the energy node's limit, one may go at the edge's default for a new car
            # (6 A: the remote start's answer reaches the cloud after the edge's commit, and the
            # edge may have taken the transaction's start by then); never above the cloud's.
            assert all(limit <= 7.0 for limit in tx_limits(cp)), tx_limits(cp)
            assert edge.cp("CP1")["energy"]["cloud_caps_a"] == {"1": 7.0}
        finally:
            await cp.close()


async def boot_201(cp: RawChargePoint, edge: Edge, connector_status: str) -> None:
    """``cp`` (2.0.1) connected to ``edge`` and booted, its connector 1 in ``connector_status``;
    it answers GetVariables with nothing (the safe defaults) and takes every profile."""
    cp.answers["GetVariables"] = {"getVariableResult": []}
    cp.answers["SetChargingProfile"] = {"status": "Accepted"}
    await cp.connect(edge.url)
    boot = {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}
    assert (await cp.call("BootNotification", boot))[2]["status"] == "Accepted"
    now = format_utc(datetime.now(UTC))
    status = {"timestamp": now, "connectorStatus": connector_status, "evseId": 1, "connectorId": 1}
    await cp.call("StatusNotification", status)


def calls(cp: RawChargePoint, action: str) -> list[list[Any]]:
    return [c for c in cp.received_calls if c[2] == action]


def tx_limits(cp: RawChargePoint) -> list[float]:
    """The limits of the TxProfiles the charge point got, in order."""
    return [
        c[3]["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"]
        for c in calls(cp, "SetChargingProfile")
        if c[3]["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
    ]


def defaults(c: Charging) -> list[tuple[int, float]]:
    """The TxDefaultProfiles the charge point holds: (id, limit of the first period)."""
    return sorted(
        (p.profile_id, p.periods[0].limit)
        for p in c.cp.profiles.profiles
        if p.purpose.value == "TxDefaultProfile"
    )


async def test_a_cloud_default_caps_the_edges_default_and_the_transactions_without_its_own(
    charging: Charging,
) -> None:
    """The cloud's TxDefaultProfile on the station: at the edge's level it replaces the edge's
    safe default (6 A until the energy node speaks), which goes in again at once, at the lower
    of the two; a running transaction without a TxProfile of the cloud's is held at it too; one
    the cloud gives a TxProfile follows that instead."""
    c = charging
    edge_default = tx_default_profile_id(ChargePointCapabilities())
    station = profile_for(
        c.cp.config.protocol, limit=32.0, profile_id=43, purpose="TxDefaultProfile"
    )
    station["stackLevel"] = EDGE_LEVEL
    answer = await c.cloud.set_charging_profile("CP1", 0, station)
    assert answer["status"] == "Accepted"
    await wait_for(
        lambda: defaults(c) == [(edge_default, 6.0)],
        timeout=3,
        what="the edge's 6 A default back in place of the cloud's 32 A",
    )
    assert c.accepted() == {"1": 10.0}

    station["chargingSchedule"] = profile_for(
        c.cp.config.protocol, limit=4.0, purpose="TxDefaultProfile"
    )["chargingSchedule"]
    assert (await c.cloud.set_charging_profile("CP1", 0, station))["status"] == "Accepted"
    await wait_for(
        lambda: defaults(c) == [(edge_default, 4.0)] and c.accepted() == {"1": 4.0},
        timeout=3,
        what="the edge's default and the running transaction at the cloud's 4 A",
    )
    assert c.energy()["cloud_default_a"] == 4.0

    await cloud_sets(c, tx_profile(c, 9.0, stack_level=1))
    await wait_for(
        lambda: c.accepted() == {"1": 9.0}, timeout=3, what="the cloud's TxProfile (9 A) first"
    )
    if c.cp.config.protocol == "ocpp1.6":
        by_purpose: dict[str, object] = {"chargingProfilePurpose": "TxDefaultProfile"}
    else:
        by_purpose = {"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}}
    await c.cloud.call("CP1", "ClearChargingProfile", by_purpose)
    await wait_for(
        lambda: defaults(c) == [(edge_default, 6.0)] and c.energy()["cloud_default_a"] is None,
        timeout=3,
        what="the edge's own 6 A default again",
    )
    # The clear took the edge's TxDefaultProfile too: the edge's profiles went in again.
    await wait_for(lambda: c.accepted() == {"1": 9.0}, what="the TxProfile's cap stays")
    assert c.cp.offered_a(1) == 9.0


async def test_a_201_transaction_that_names_its_evse_later_gets_its_tx_profile(
    tmp_path: Path,
) -> None:
    """2.0.1 with the transaction starting at authorization (TxStartPoint): its Started event
    names no EVSE, the Updated one at the plug-in does. The edge's TxProfile at the safe default
    goes then, for the transaction (it went only for a Started event naming its EVSE: such a
    transaction kept the last TxProfile value sent as if it were installed)."""
    async with cloud_and_edge(tmp_path, extra=ENERGY) as (_, edge):
        cp = RawChargePoint("CP1", version="ocpp2.0.1")
        now = format_utc(datetime.now(UTC))
        try:
            await boot_201(cp, edge, "Available")
            await wait_for(
                lambda: len(calls(cp, "SetChargingProfile")) >= 2, what="the station's profiles"
            )
            event = {
                "timestamp": now,
                "seqNo": 0,
                "transactionInfo": {"transactionId": "T1"},
                "idToken": {"idToken": GOOD_TAG, "type": "ISO14443"},
            }
            started = {**event, "eventType": "Started", "triggerReason": "Authorized"}
            await cp.call("TransactionEvent", started)
            assert tx_limits(cp) == [], "no EVSE named yet"
            plugged = {
                **event,
                "eventType": "Updated",
                "triggerReason": "CablePluggedIn",
                "seqNo": 1,
                "evse": {"id": 1, "connectorId": 1},
            }
            await cp.call("TransactionEvent", plugged)
            await wait_for(lambda: bool(tx_limits(cp)), what="the transaction's TxProfile")
            assert tx_limits(cp) == [6.0]
            (profile,) = [
                c[3]
                for c in calls(cp, "SetChargingProfile")
                if c[3]["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
            ]
            assert (profile["evseId"], profile["chargingProfile"]["transactionId"]) == (1, "T1")
            await cp.call(
                "TransactionEvent", {**plugged, "seqNo": 2, "triggerReason": "MeterValuePeriodic"}
            )
            await cp.call("Heartbeat", {})  # answered after whatever that event made it send
            assert edge.cp("CP1")["transactions"]["T1"]["connector"] == "1:1"
            assert len(tx_limits(cp)) == 1, "taken in once"
        finally:
            await cp.close()


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_cloud_profile_above_the_edges_level_cannot_lift_the_site_limit(
    tmp_path: Path, protocol: str
) -> None:
    """The edge's level is the highest it knows the charge point takes (here it reports 0 and
    takes up to 20; likewise where the edge learned 0 from a refusal). The cloud's TxProfile at
    a higher level, accepted, overrides the edge's in the charge point: the car would follow the
    cloud's 32 A, the site's 10 A ignored. The charge point took that level, above what it
    reports: the edge's profiles go again one above it (at it, a 2.0.1 station may refuse a
    second id, K01.FR.39), capped."""
    cloud = SimCloud(id_tags=[GOOD_TAG], heartbeat_interval_s=300)
    await cloud.start()
    edge = await start_edge(tmp_path, cloud_url=cloud.url, extra=ENERGY)
    quirk = Behaviour(reported_max_stack_level=0)
    config = fast_config(edge.url, protocol, behaviour=quirk, meter_interval_s=60.0)
    c = Charging(cloud, edge, SimChargePoint(config))
    try:
        await charge(edge, c.cp)
        edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=1_000))
        await wait_for(
            lambda: c.accepted() == {"1": 10.0} and c.cp.offered_a(1) == 10.0,
            what="the edge's TxProfile at 10 A, at stack level 0",
        )
        await cloud_sets(c, tx_profile(c, 32.0, stack_level=3))
        await wait_for(
            lambda: c.energy()["cloud_caps_a"] == {"1": 32.0} and edge.cp("CP1")["down_queue"] == 0,
            timeout=3,
            what="the cloud's profile taken in",
        )
        await wait_for(
            lambda: c.cp.offered_a(1) == 10.0,
            timeout=3,
            what="the car back at the site's 10 A, not the cloud's 32 A",
        )
        assert c.energy()["caps"]["max_stack_level"] == 4
        # The edge's TxDefaultProfile too, not left below a level the cloud's may use.
        assert sorted(
            (p.purpose.value, p.stack_level, p.profile_id == 42)
            for p in c.cp.profiles.profiles
            if p.purpose.value != "ChargePointMaxProfile"
        ) == [("TxDefaultProfile", 4, False), ("TxProfile", 3, True), ("TxProfile", 4, False)]
    finally:
        await c.cp.stop()
        await edge.stop()
        await cloud.stop()


async def test_a_cloud_profile_with_an_edge_profiles_id_does_not_leave_the_station_without_it(
    charging: Charging,
) -> None:
    """Nothing keeps the cloud from using the ids the edge's profiles take (900000 up): the
    cloud's TxDefaultProfile with the id of the edge's, at a level below it, replaces the edge's
    in the charge point (same id), and a new car would get the cloud's 32 A, not the safe 6 A.
    The edge's goes in again at once, at the lower of the two."""
    c = charging
    edge_default = tx_default_profile_id(ChargePointCapabilities())
    station = profile_for(
        c.cp.config.protocol, limit=32.0, profile_id=edge_default, purpose="TxDefaultProfile"
    )
    station["stackLevel"] = 1
    answer = await c.cloud.set_charging_profile("CP1", 0, station)
    assert answer["status"] == "Accepted"
    await wait_for(
        lambda: (
            c.edge.cp("CP1")["down_queue"] == 0
            and [
                (p.profile_id, p.stack_level, p.periods[0].limit)
                for p in c.cp.profiles.profiles
                if p.purpose.value == "TxDefaultProfile"
            ]
            == [(edge_default, EDGE_LEVEL, 6.0)]
        ),
        timeout=3,
        what="the edge's safe 6 A TxDefaultProfile back in the charge point",
    )
    assert c.accepted() == {"1": 10.0}


async def test_a_remote_starts_profile_survives_a_restart_before_its_transaction(
    charging: Charging,
) -> None:
    """The remote start's TxProfile waits for its transaction (the driver plugs in later): the
    broker's actor restarting meanwhile lost it (kept in memory only), and the transaction's
    TxProfile at the site's 10 A replaced the cloud's 7 A in the charge point (same level)."""
    c = charging
    await c.cp.stop_transaction(1)
    await wait_for(lambda: not c.edge.cp("CP1")["transactions"], what="the transaction ended")
    await c.cp.unplug(1)
    profile = tx_profile(c, 7.0, stack_level=EDGE_LEVEL)
    answer = await c.cloud.remote_start("CP1", GOOD_TAG, connector_id=1, charging_profile=profile)
    assert answer["status"] == "Accepted"
    await wait_for(lambda: c.edge.cp("CP1")["down_queue"] == 0, what="the remote start answered")
    await restart_cp_actor(c.edge)
    await c.cp.plug_in(1, CarSpec(max_current_a=32.0, energy_need_wh=1e9))
    await wait_for(lambda: bool(c.edge.cp("CP1")["transactions"]), what="the new transaction")
    c.edge.system.send("broker/profiles", batch(c.edge, 10.0, sent_ns=2_000))  # its first limit
    await wait_for(
        lambda: c.accepted() == {"1": 7.0} and c.cp.offered_a(1) == 7.0,
        timeout=3,
        what="the remote start's transaction at the cloud's 7 A",
    )
