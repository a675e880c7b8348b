"""Load management end to end: a real Modbus meter (the simulator's SDM630), the energy node's
allocator, the broker's profiles, and simulated charge points whose cars follow what they are
offered. The site stays under its grid limit; a limit step down lowers the profiles within one loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sim.base_load import BaseLoad
from sim.car import CarSpec
from sim.charge_point import SimChargePoint
from sim.cp_config import Behaviour, quirk
from sim.profile_payloads import profile_for
from sim.site import SiteSpec
from sim.smart_charging import ChargingProfile, Purpose, period_limit_a
from tests.helpers import wait_for
from tests.integration.site.full_site import FullSite, start_full_site

CAR = CarSpec(
    name="3ph-32a",
    max_current_a=32.0,
    energy_need_wh=500_000.0,
    ramp_up_a_per_s=20.0,
    ramp_down_a_per_s=40.0,
)
ENERGY = """
[[grid_limits]]
name = "fuse"
kind = "static"
node = "site"
current_a = 50
[[grid_limits]]
name = "dimmer"
kind = "contact"
node = "site"
path = "{contact}"
dimmed = {{ current_a = 30 }}
poll_interval_s = 0.2
[allocation]
margin_a = 2.0
settle_s = 1.0
increase_step_a = 32.0
min_charge_s = 0.0
min_pause_s = 0.0
stale_no_increase_s = 3.0
stale_failsafe_s = 10.0
"""
BASE = BaseLoad(mean_a=(4.0, 4.0, 4.0), noise_a=0.0, daily_swing=0.0)


def offered(site: FullSite) -> list[float]:
    return [cp.offered_a(1) or 0.0 for cp in site.sim.charge_points]


def site_current(site: FullSite) -> float:
    reading = site.sim.meter.reading()
    return max(reading.currents_a)


async def fair_shares(site: FullSite) -> None:
    """Every charge point connected, a car charging at each, at its share of the headroom."""
    await wait_for(lambda: all(cp.connected for cp in site.sim.charge_points), what="connected")
    await site.sim.arrive_all()
    # 50 A fuse - 2 A margin - 4 A base = 44 A for three cars: about 14.6 A each.
    await wait_for(
        lambda: all(8 <= a <= 15 for a in offered(site)),
        timeout=15,
        what=f"fair shares under the fuse, offered {offered(site)}",
    )


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[FullSite]:
    contact = tmp_path / "dim"
    contact.write_text("0")
    spec = SiteSpec(charge_points=3, cars=(CAR,), base_load=BASE, behaviours=(Behaviour(),))
    s = await start_full_site(tmp_path, spec, energy=ENERGY.format(contact=contact))
    yield s
    await s.stop()


async def test_cars_share_the_headroom_and_a_limit_step_down_lowers_them_within_a_loop(
    site: FullSite, tmp_path: Path
) -> None:
    await fair_shares(site)
    assert sum(offered(site)) <= 44.0 + 1e-6
    await wait_for(
        lambda: site_current(site) <= 48.0 and site_current(site) > 30,
        timeout=10,
        what="the cars drawing their share",
    )

    (tmp_path / "dim").write_text("1")  # the dimming contact: 30 A at the site
    await wait_for(
        lambda: sum(offered(site)) <= 30 - 2 - 4 + 1e-6,
        timeout=4,
        what=f"profiles lowered within a loop, offered {offered(site)}",
    )
    await wait_for(
        lambda: site_current(site) <= 30.0, timeout=10, what="the site under the new limit"
    )
    for cp in site.sim.charge_points:
        sent = site.broker_actor(f"charge_points/{cp.id}").report()["energy"]["sent_a"]
        assert "1" in sent, f"{cp.id}: a TxProfile accepted ({sent})"
    profiles = site.broker_actor("profiles").report()
    assert profiles["batches_received"] >= 2
    assert profiles["profiles_rejected"] == 0, profiles["last_rejection"]
    # Each recent batch: when its profiles were written, counted from its meter sample.
    recent = profiles["recent_batches"]
    written = [b for b in recent if b["written"]]
    assert written, recent
    for b in written:
        assert b["written"] <= b["limits"], b
        assert 0 < b["first_written_ms"] <= b["last_written_ms"] < 5000, b
        # the stages in order: the allocator sent it, the broker received it, then wrote it
        assert 0 < b["step_ms"] <= b["sent_ms"] <= b["received_ms"] <= b["first_written_ms"], b
        # the broker's own CPU meanwhile (once all of them are written): no more than the wall
        # time from receipt to the last
        if b["written"] < b["limits"]:
            assert b["cpu_ms"] is None, b
        else:
            assert 0 <= b["cpu_ms"] <= b["last_written_ms"] - b["received_ms"] + 1.0, b
    assert any(b["written"] == b["limits"] for b in written), recent


async def test_a_car_at_a_charge_point_used_before_charges_from_its_start(site: FullSite) -> None:
    """CP1's car leaves, the others take its room; the next car at CP1 charges under the
    TxDefaultProfile from its start and is kept there, then at its share as the others give way:
    no TxProfile of its transaction says 0 A (the "no car" 0 A of the last session once went to
    it at its start, and some cars do not resume after a pause)."""
    await fair_shares(site)
    cp1 = site.sim.charge_points[0]
    await cp1.unplug(1)
    await wait_for(
        lambda: all(a > 16 for a in offered(site)[1:]),
        timeout=15,
        what=f"the others at CP1's room too, offered {offered(site)}",
    )
    tx_limits: list[float] = []
    install = cp1.install_profile

    def recording(profile: ChargingProfile) -> str:  # what the simulated charge point is sent
        status = install(profile)
        if profile.purpose is Purpose.TX and status == "Accepted":
            tx_limits.append(period_limit_a(profile.periods[0], profile.rate_unit, cp1.electrical))
        return status

    cp1.install_profile = recording  # type: ignore[method-assign]
    await cp1.plug_in(1, CAR)
    await cp1.start_transaction(1, "DEMO-TAG")
    await wait_for(
        lambda: all(8 <= a <= 15 for a in offered(site)) and bool(tx_limits),
        timeout=15,
        what=f"fair shares again, offered {offered(site)}, CP1's TxProfiles {tx_limits}",
    )
    assert min(tx_limits) >= 6.0, tx_limits
    assert sum(offered(site)) <= 44.0 + 1e-6


async def test_a_charge_point_that_ignores_its_profile_makes_the_others_give_way(
    tmp_path: Path,
) -> None:
    contact = tmp_path / "dim"
    contact.write_text("0")
    spec = SiteSpec(
        charge_points=3,
        cars=(CAR,),
        base_load=BASE,
        behaviours=(quirk("ignores_profiles"), Behaviour(), Behaviour()),
    )
    site = await start_full_site(tmp_path, spec, energy=ENERGY.format(contact=contact))
    try:
        await wait_for(lambda: all(cp.connected for cp in site.sim.charge_points), what="connected")
        await site.sim.arrive_all()
        rogue = site.sim.charge_points[0]
        await wait_for(
            lambda: max(rogue.drawn_a(1)) >= 30, timeout=10, what="the rogue draws its car's max"
        )
        # The others get what is left: 44 A of headroom minus the rogue's 32 A.
        await wait_for(
            lambda: site_current(site) <= 48.0,
            timeout=20,
            what=f"the site under the fuse despite the rogue (offered {offered(site)})",
        )
        summary = site.allocator().report()
        assert summary, "the allocator reports"
    finally:
        await site.stop()


async def test_charge_points_that_refuse_stack_levels_or_amperes_are_adapted_to(
    tmp_path: Path,
) -> None:
    contact = tmp_path / "dim"
    contact.write_text("0")
    spec = SiteSpec(
        charge_points=3,
        cars=(CAR,),
        base_load=BASE,
        behaviours=(quirk("max_stack_level_0"), quirk("watts_only"), Behaviour()),
    )
    site = await start_full_site(tmp_path, spec, energy=ENERGY.format(contact=contact))
    try:
        await wait_for(lambda: all(cp.connected for cp in site.sim.charge_points), what="connected")
        await site.sim.arrive_all()

        def accepted() -> list[str]:
            return [
                cp.id
                for cp in site.sim.charge_points
                if "1" in site.broker_actor(f"charge_points/{cp.id}").report()["energy"]["sent_a"]
            ]

        await wait_for(
            lambda: len(accepted()) == 3, timeout=15, what=f"every TxProfile taken ({accepted()})"
        )
        caps = [
            site.broker_actor(f"charge_points/{cp.id}").report()["energy"]["caps"]
            for cp in site.sim.charge_points
        ]
        assert caps[0]["max_stack_level"] == 0
        assert caps[1]["rate_units"] == ["W"]
        # The watts it takes are the amperes decided (times phases and voltage, which the charge
        # point divides back out): what it offers its car is the broker's limit in A.
        watts_cp = site.sim.charge_points[1]

        def off_by_a() -> float:
            report = site.broker_actor(f"charge_points/{watts_cp.id}").report()["energy"]
            return abs(watts_cp.offered_a(1) - float(report["sent_a"]["1"]))

        await wait_for(lambda: off_by_a() <= 0.5, what="the car offered the limit, via watts")
        await wait_for(
            lambda: site_current(site) <= 48.0, timeout=10, what="the site under the fuse"
        )
    finally:
        await site.stop()


def purposes(cp: SimChargePoint) -> dict[str, list[int]]:
    """The charge point's installed profiles: connector ids by purpose."""
    held: dict[str, list[int]] = {}
    for p in cp.profiles.profiles:
        held.setdefault(p.purpose.value, []).append(p.connector_id)
    return held


async def test_a_charge_point_that_lost_its_profiles_gets_them_again_when_it_reconnects(
    site: FullSite,
) -> None:
    await fair_shares(site)
    cp = site.sim.charge_points[0]
    share = cp.offered_a(1)
    # At boot the edge installed its safe default on the station, the station maximum where the
    # charge point takes one, and the transaction's own profile.
    held = purposes(cp)
    assert held.get("TxDefaultProfile") == [0], held
    assert held.get("ChargePointMaxProfile") == [0], held
    assert held.get("TxProfile") == [1], held

    # The charge point's controller restarts with the car still charging: it lost its profiles
    # (it would give the car its full 32 A) and its link, and it reconnects without a boot.
    cp.lose_profiles()
    assert cp.offered_a(1) == 32.0
    await cp.drop_connection()
    # Back at once: not at its first message (its next meter values, 10 s away) nor at the
    # allocator's periodic full batch (60 s): the station's profiles and the transaction's, at
    # the share it had or below (should a meter read have caught the car at 32 A meanwhile, the
    # allocator lowers every car at once and raises them only once that has settled).
    await wait_for(
        lambda: (
            sorted(purposes(cp)) == ["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"]
            and cp.offered_a(1) <= share + 1.0
        ),
        timeout=3,
        what="the profiles installed again after the reconnect",
    )


async def test_a_cloud_profile_below_a_cars_share_gives_the_rest_to_the_others(
    site: FullSite,
) -> None:
    """The cloud holds CP1's transaction at 8 A (a TxProfile below the edge's stack level): the
    broker caps the edge's TxProfile and tells the energy node, which counts 8 A as that
    connector's maximum, names the cloud's profile as what binds it, and shares the rest."""
    await fair_shares(site)
    first = site.sim.charge_points[0]
    profile = profile_for(first.config.protocol, limit=8.0, profile_id=42, stack_level=1)
    answer = await site.cloud.set_charging_profile(first.id, 1, profile)
    assert answer["status"] == "Accepted"
    key = f"{first.id}/1"

    def decision() -> dict[str, object]:
        found: dict[str, object] = site.allocator().summary()["connectors"].get(key, {})
        return found

    # 44 A of headroom: 8 A for CP1, 18 A for each of the others.
    await wait_for(
        lambda: (
            first.offered_a(1) == 8.0
            and decision().get("binding_source") == "cloud profile"
            and all(a >= 17.0 for a in offered(site)[1:])
        ),
        timeout=10,
        what=f"CP1 at the cloud's 8 A, the rest shared (offered {offered(site)}, {decision()})",
    )
    assert decision()["limit_a"] == 8.0
    assert "set by the cloud profile" in str(decision()["reason"])
    assert site_current(site) <= 48.0
