"""DemandCache: the demand a step gets is always demand_of's for the step's inputs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from actors.allocation_types import ConnectorDemand, PerPhase
from actors.car_learning import NEVER_SAMPLED
from actors.energy_inputs import DemandCache, SiteModel, demand_of, site_model, with_rules
from actors.energy_messages import ConnectorReport, SiteRulesChanged
from actors.energy_tree import charge_point_energy
from config.schema import parse_site

SITE = """
[site]
name = "unit"
[[charge_points]]
id = "CP1"
max_current_a = 32
[[grid_limits]]
name = "fuse"
kind = "static"
current_a = 40
"""


def model() -> SiteModel:
    config = parse_site(SITE, source="<unit>", base_dir=Path("."))
    assert config.energy is not None
    return site_model(config.energy, charge_point_energy(config))


def report(*, arrived: str | None = "2025-01-06T12:00:00Z", a: float = 10.0) -> ConnectorReport:
    return ConnectorReport(
        charge_point_id="CP1",
        connector_id=1,
        connected=True,
        plugged=True,
        charging=arrived is not None,
        transaction_id="1" if arrived else None,
        arrived_utc=arrived,
        status="Charging",
        measured_a=(a, a, a),
        offered_a=None,
        power_w=None,
        energy_wh=None,
        sampled_utc=None,
    )


def fresh(
    m: SiteModel, r: ConnectorReport, sample: tuple[float, PerPhase] | None, now: float
) -> ConnectorDemand:
    return demand_of(
        m,
        r,
        default_arrival_s=now,
        measured_a=None if sample is None else sample[1],
        sampled_s=NEVER_SAMPLED if sample is None else sample[0],
    )


def test_the_same_inputs_give_the_same_demand_object() -> None:
    cache, m, r = DemandCache(), model(), report()
    sample = (5.0, (9.0, 9.0, 9.0))
    first = cache.demand("CP1/1", m, r, sample, now_s=10.0)
    assert first == fresh(m, r, sample, 10.0)
    assert cache.demand("CP1/1", m, r, sample, now_s=10.2) is first  # reused, not rebuilt


def test_each_changed_input_gives_demand_ofs_answer() -> None:
    cache, m, r = DemandCache(), model(), report()
    sample = (5.0, (9.0, 9.0, 9.0))
    cache.demand("CP1/1", m, r, sample, now_s=10.0)
    newer_report = report(a=12.0)
    assert cache.demand("CP1/1", m, newer_report, sample, now_s=10.2) == fresh(
        m, newer_report, sample, 10.2
    )
    newer_sample = (6.0, (11.0, 11.0, 11.0))
    got = cache.demand("CP1/1", m, newer_report, newer_sample, now_s=10.4)
    assert got == fresh(m, newer_report, newer_sample, 10.4)
    assert got.measured_a == (11.0, 11.0, 11.0)
    # An equal sample that is another object: made again (identity, never equality, is trusted).
    equal_sample = (6.0, tuple([11.0] * 3))  # not the constant above: another object
    assert equal_sample == newer_sample
    assert equal_sample is not newer_sample
    assert cache.demand("CP1/1", m, newer_report, equal_sample, now_s=10.6) is not got
    assert cache.demand("CP1/1", m, newer_report, None, now_s=10.8) == fresh(
        m, newer_report, None, 10.8
    )
    ruled = with_rules(
        m, SiteRulesChanged(version=2, priorities={"CP1": 3}, max_current_a={"CP1": 20.0}, site={})
    )
    got = cache.demand("CP1/1", ruled, newer_report, None, now_s=11.0)
    assert (got.priority, got.max_current_a) == (3, 20.0)
    assert got == fresh(ruled, newer_report, None, 11.0)


def test_a_charging_connector_without_arrival_arrives_at_each_step() -> None:
    cache, m = DemandCache(), model()
    charging = replace(report(), arrived_utc=None)
    for r in (charging, replace(report(), arrived_utc="not a time")):
        assert r.plugged
        assert r.charging
        for now in (10.0, 10.2, 10.4):
            got = cache.demand(r.charge_point_id + "/1", m, r, None, now_s=now)
            assert got == fresh(m, r, None, now)
            assert got.arrived_s == now


def test_an_idle_connector_keeps_its_demand_object() -> None:
    """Without a car there is nothing to rank: its arrival stays that of the step that made the
    demand, and the next steps get the very same object (the loop's work for it stays the same
    objects too, actors.control_loop)."""
    cache, m = DemandCache(), model()
    idle = report(arrived=None)
    assert not idle.charging
    first = cache.demand("CP1/1", m, idle, None, now_s=10.0)
    assert first == fresh(m, idle, None, 10.0)
    assert not first.active
    assert cache.demand("CP1/1", m, idle, None, now_s=10.2) is first
    assert cache.demand("CP1/1", m, idle, None, now_s=10.4) is first


def test_forget_drops_connectors_that_are_gone() -> None:
    cache, m, r = DemandCache(), model(), report()
    first = cache.demand("CP1/1", m, r, None, now_s=10.0)
    cache.forget(["CP9/1"])
    again = cache.demand("CP1/1", m, r, None, now_s=10.2)
    assert again == first
    assert again is not first


def test_the_clouds_cap_below_the_rating_is_the_connectors_maximum() -> None:
    m = model()
    capped = fresh(m, replace(report(), cloud_cap_a=8.0), None, 10.0)
    assert (capped.max_current_a, capped.max_source) == (8.0, "cloud profile")
    above = fresh(m, replace(report(), cloud_cap_a=40.0), None, 10.0)
    assert (above.max_current_a, above.max_source) == (32.0, ""), "the rating binds"
    assert fresh(m, report(), None, 10.0).max_source == ""
