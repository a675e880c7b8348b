"""The allocator's state machine without the actor: explicit times, no sockets, no store."""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from actors.allocation_types import PerPhase
from actors.audit_records import AuditKind, AuditRecord
from actors.compliance import ComplianceConfig
from actors.control_loop import finish
from actors.cp_state import ChargePointState
from actors.energy_inputs import measured_as_of, site_model
from actors.energy_messages import ConnectorReport, DemandBatch, ProfileBatch, SiteRulesChanged
from actors.energy_tree import charge_point_energy
from actors.grid_limit import GridLimitReported
from actors.grid_limits import GridLimit, LimitValue
from actors.meter import MeterRead
from actors.ocpp_rules import start_dedup_key
from actors.site_state import Policy, SiteState
from actors.site_status import site_summary
from actors.utc import format_utc
from config.schema import parse_site

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)

SITE = """
[site]
name = "unit"
[[charge_points]]
id = "CP1"
[[charge_points]]
id = "CP2"
priority = 1
[[charge_points]]
id = "CP3"
feeder = "garage"
[[meters]]
name = "grid"
model = "sdm630"
host = "127.0.0.1"
[[feeders]]
name = "garage"
limit_a = 16
[[grid_limits]]
name = "main fuse"
kind = "static"
current_a = 40
[[grid_limits]]
name = "ems"
kind = "cloud"
[allocation]
settle_s = 1.0
increase_step_a = 8.0
min_charge_s = 0.0
min_pause_s = 0.0
"""


class Site:
    """A SiteState on a fake clock: ``at(s)`` moves both clocks."""

    def __init__(self, policy: Policy | None = None) -> None:
        config = parse_site(SITE, source="<unit>", base_dir=Path("."))
        assert config.energy is not None
        self.state = SiteState(
            site_model(config.energy, charge_point_energy(config)),
            actor="energy/allocator",
            started_s=100.0,
            policy=policy or Policy(compliance=ComplianceConfig(grace_s=5.0, react_s=2.0)),
        )
        self.now_s = 100.0
        self.batches: list[ProfileBatch] = []
        self.records: list[object] = []

    @property
    def utc(self) -> datetime:
        return T0 + timedelta(seconds=self.now_s - 100.0)

    def at(self, s: float) -> None:
        self.now_s = s

    def limits(
        self, name: str = "main fuse", value: LimitValue | None = None, *, heartbeat_s: float = 600
    ) -> str | None:
        limit = None
        if value is not None or name == "main fuse":
            v = value or LimitValue(current_a=(40.0, 40.0, 40.0))
            limit = GridLimit(source=name, node="site", value=v)
        return self.state.limit_reported(
            GridLimitReported(
                source=name,
                node="site",
                limit=limit,
                fallback=LimitValue(current_a=(16.0, 16.0, 16.0)) if name == "ems" else None,
                heartbeat_s=heartbeat_s,
                reported_monotonic_s=self.now_s,
            ),
            self.now_s,
            self.utc,
        )

    def meter(self, a: float | PerPhase, dropped: tuple[str, ...] = ()) -> str | None:
        current = (a, a, a) if isinstance(a, int | float) else a
        why, records = self.state.meter_read(
            MeterRead(
                meter="grid",
                node="site",
                current_a=current,
                total_power_w=None,
                read_monotonic_s=self.now_s,
                read_utc=self.utc,
                duration_s=0.001,
                dropped=dropped,
            ),
            self.utc,
        )
        self.records.extend(records)
        return why

    def demand(
        self, draws: dict[str, float], *, complete: bool = False, sent_ns: int = 0, shard: int = 0
    ) -> str | None:
        reports = tuple(self.report(cp, (a, a, a)) for cp, a in draws.items())
        return self.reports(*reports, complete=complete, sent_ns=sent_ns, shard=shard)

    def report(
        self, cp: str, measured: PerPhase | None, *, tx: str | None = "1"
    ) -> ConnectorReport:
        """Connector 1 of ``cp``: charging in transaction ``tx`` (None: no car), sampled now."""
        return ConnectorReport(
            charge_point_id=cp,
            connector_id=1,
            connected=True,
            plugged=tx is not None,
            charging=tx is not None,
            transaction_id=tx,
            arrived_utc=None if tx is None else format_utc(T0),
            status="Available" if tx is None else "Charging",
            measured_a=measured,
            offered_a=None,
            power_w=None,
            energy_wh=None,
            sampled_utc=None if measured is None else format_utc(self.utc),
        )

    def reports(
        self, *reports: ConnectorReport, complete: bool = True, sent_ns: int = 0, shard: int = 0
    ) -> str | None:
        why, records = self.state.demand(
            DemandBatch(
                reports=reports,
                sent_utc=format_utc(self.utc),
                complete=complete,
                sent_monotonic_ns=sent_ns,
                shard=shard,
            ),
            self.now_s,
            self.utc,
        )
        self.records.extend(records)
        return why

    def step(self) -> ProfileBatch | None:
        out = self.state.step(now_s=self.now_s, now_utc=self.utc)
        assert out is not None
        self.records.extend(out.records)
        if out.batch is not None:
            self.batches.append(out.batch)
        return out.batch


def limits_of(batch: ProfileBatch | None) -> dict[str, float]:
    assert batch is not None
    return {f"{x.charge_point_id}/{x.connector_id}": x.limit_a for x in batch.limits}


def test_no_step_until_every_source_reported() -> None:
    site = Site()
    assert site.limits("main fuse") is None
    assert site.state.step(now_s=site.now_s, now_utc=site.utc) is None
    assert site.state.mode == "waiting for limits"
    assert site.limits("ems") == "every limit source reported"


def test_no_step_before_the_first_meter_reading_until_the_fail_safe_time() -> None:
    """A (re)started allocator steps once every meter has read (the charge points keep their
    limits until then, as under a stale meter), or once stale_failsafe_s (10 s) are over: a
    meter that never answers brings the fail-safe then, as one that stops does."""
    site = Site()
    site.limits("main fuse")
    assert site.limits("ems") == "every limit source reported"
    site.demand({"CP1": 16.0})
    assert site.state.step(now_s=site.now_s, now_utc=site.utc) is None
    assert site.state.mode == "waiting for meters"
    site.at(109.9)
    assert site.state.step(now_s=site.now_s, now_utc=site.utc) is None
    site.at(110.0)
    # The fail-safe, knowing nothing of the car: without failsafe_total_a nothing rises from
    # 0 A (README: the EV load only goes down), so it is paused, 10 s after the start.
    assert limits_of(site.step()) == {"CP1/1": 0.0}
    assert site.state.mode == "fail-safe"
    # With the reading, the first step: the last meter's first reading says so.
    fresh = Site()
    fresh.limits("main fuse")
    fresh.limits("ems")
    fresh.demand({"CP1": 16.0})
    fresh.at(101.0)
    assert fresh.meter(18.0) == "every meter read"
    assert limits_of(fresh.step())["CP1/1"] >= 6.0
    assert fresh.state.mode == "normal"
    assert fresh.meter(18.0) is None, "not again (a sample no newer)"
    fresh.at(102.0)
    assert fresh.meter(18.0) is None, "nor for the next reading"


def test_a_source_that_never_reports_counts_with_its_fail_safe_after_the_grace() -> None:
    site = Site(Policy(source_grace_s=10.0))
    site.limits("main fuse")
    site.meter(2.0)
    site.demand({"CP1": 0.0})
    site.at(109.0)
    assert site.state.step(now_s=site.now_s, now_utc=site.utc) is None
    site.at(110.0)
    site.meter(2.0)
    assert limits_of(site.step()) == {"CP1/1": 8.0}
    # The cloud source "ems" has no fail-safe configured: it imposes nothing.
    assert site.state.effective["site"].sources == ("main fuse",) * 3


@pytest.mark.parametrize(
    ("event", "why"),
    [
        pytest.param("overload", "meter shows overload", id="meter-over-limit-less-margin"),
        pytest.param("fine", None, id="meter-within"),
        pytest.param("limit-down", "limit from 'ems' went down", id="limit-down"),
        pytest.param("limit-up", None, id="limit-up-waits-for-tick"),
        pytest.param("new-car", "a new car", id="new-car"),
        pytest.param("same-cars", None, id="same-cars"),
    ],
)
def test_events_that_can_require_a_decrease_step_at_once(event: str, why: str | None) -> None:
    site = Site()
    site.limits()
    site.limits("ems", LimitValue(current_a=(32.0, 32.0, 32.0)))
    site.meter(5.0)
    site.demand({"CP1": 0.0})
    site.step()
    site.at(101.0)
    got = {
        "overload": lambda: site.meter(31.5),  # 32 - 1 margin
        "fine": lambda: site.meter(30.0),
        "limit-down": lambda: site.limits("ems", LimitValue(current_a=(20.0, 20.0, 20.0))),
        "limit-up": lambda: site.limits("ems", LimitValue(current_a=(35.0, 35.0, 35.0))),
        "new-car": lambda: site.demand({"CP1": 0.0, "CP2": 0.0}),
        "same-cars": lambda: site.demand({"CP1": 6.0}),
    }[event]()
    assert got == why


def test_small_increases_wait_decreases_go_and_full_resend_is_periodic() -> None:
    site = Site(Policy(resend_s=60.0, hysteresis_a=0.5))
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 0.0})
    first = site.step()
    assert limits_of(first) == {"CP1/1": 8.0}
    site.at(101.0)
    site.demand({"CP1": 8.0})
    site.meter(10.0)
    assert limits_of(site.step()) == {"CP1/1": 16.0}
    # Base load creeps so the target rises by less than the hysteresis: nothing is sent ...
    site.at(102.5)
    site.demand({"CP1": 16.0})
    site.meter(18.0)
    site.step()  # -> 24
    site.at(104.0)
    site.demand({"CP1": 24.0})
    site.meter(26.0)
    site.step()  # -> 32 (the car maximum)
    count = len(site.batches)
    site.at(105.5)
    site.demand({"CP1": 32.0})
    site.meter(33.7)  # base 1.7 -> target 37.3 -> capped at 32: unchanged, no batch
    assert site.step() is None
    assert len(site.batches) == count
    site.at(106.0)
    site.meter(38.0)  # base 6 -> target 33 -> still capped at 32
    assert site.step() is None
    assert site.meter(39.2) is None, "a sample no newer than the last one is ignored"
    site.at(106.5)
    site.meter(39.2)  # base 7.2 -> headroom 31.8: a 0.2 A decrease goes at once
    assert limits_of(site.step()) == {"CP1/1": 31.8}
    site.at(108.0)
    site.demand({"CP1": 31.8})
    site.meter(38.8)  # base 7.0 -> target 32.0: a 0.2 A increase is decided but not sent
    assert site.step() is None
    connector = site_summary(site.state, site.now_s)["connectors"]["CP1/1"]
    assert (connector["limit_a"], connector["sent_a"]) == (32.0, 31.8)
    site.at(167.0)
    site.meter(38.8)
    resent = site.step()
    assert limits_of(resent) == {"CP1/1": 32.0}, "full set again after resend_s"


@pytest.mark.parametrize("ahead_s", [0.0, 60.0], ids=["clock right", "clock a minute ahead"])
def test_one_sample_over_its_limit_is_judged_once_whatever_the_charge_points_clock(
    ahead_s: float,
) -> None:
    """A charge point sends MeterValues once a minute; one of them catches its car above its
    limit (it had not followed a decrease yet), the next ones within. The broker reports the
    connector every second with its last sample: that is one sample over, briefly, not over for
    the grace. A charge point whose clock runs ahead (one that sets it from nothing but the
    CSMS's answers drifts) stamps its samples in the energy node's future: each report of the
    same sample was taken as a new one until the energy node's clock caught up with its stamp,
    so a clock ahead by more than the grace (5 s here, 30 s by default) had the car flagged as
    ignoring its profile for one sample, and the others lowered."""
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 0.0, "CP2": 0.0})
    assert limits_of(site.step())["CP1/1"] == 6.0
    site.at(110.0)  # long after react_s: 6 A is in force
    over = site.report("CP1", (12.0, 12.0, 12.0))
    over = replace(over, sampled_utc=format_utc(site.utc + timedelta(seconds=ahead_s)))
    within = site.report("CP2", (8.0, 8.0, 8.0))
    for t in range(110, 122):  # the same sample, reported every second
        site.at(float(t))
        site.reports(over, within)
        site.meter(22.0)
        site.step()
    summary = site_summary(site.state, site.now_s)
    assert summary["connectors"]["CP1/1"]["non_compliant"] is False
    assert not [r for r in site.records if getattr(r, "inputs", {}).get("non_compliant")]


def test_a_register_reading_alone_is_no_new_sample_of_the_cars_current() -> None:
    """The broker's connector report (ChargePointState) after a charge point's clock-aligned
    MeterValues, the energy register alone: the car's current from before its limit was
    lowered was re-dated to the register's time, so each such reading was a new sample over
    the limit (flagged as ignoring its profile after the grace)."""
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    cp1 = ChargePointState("CP1")
    cp1.on_call("StatusNotification", {"connectorId": 1, "status": "Charging"}, site.utc)

    def meter_values(at: datetime, amps: float | None) -> None:
        values: list[dict[str, object]] = [
            {"measurand": "Energy.Active.Import.Register", "value": "1000"}
        ]
        if amps is not None:
            values += [
                {"measurand": "Current.Import", "phase": p, "value": amps}
                for p in ("L1", "L2", "L3")
            ]
        sample = {"timestamp": format_utc(at), "sampledValue": values}
        cp1.on_call("MeterValues", {"connectorId": 1, "meterValue": [sample]}, site.utc)

    start = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": format_utc(T0)}
    cp1.on_call("StartTransaction", start, site.utc)
    cp1.start_transaction(
        transaction_id=1,
        payload=start,
        message_id="m",
        edge_minted=False,
        id_tag_info={"status": "Accepted"},
        start_key=start_dedup_key(start).text(),
        now=site.utc,
    )
    meter_values(site.utc, 16.0)  # before the 6 A limit below

    def cp1_report() -> ConnectorReport:
        (r,) = cp1.connector_reports(connected=True, now=site.utc, phases=3)
        return r

    site.reports(cp1_report(), site.report("CP2", (0.0, 0.0, 0.0)))
    assert limits_of(site.step())["CP1/1"] == 6.0
    for t in range(110, 122):  # a register reading every second, the car at its 6 A now
        site.at(float(t))
        meter_values(site.utc, None)
        site.reports(cp1_report(), site.report("CP2", (8.0, 8.0, 8.0)))
    summary = site_summary(site.state, site.now_s)
    assert summary["connectors"]["CP1/1"]["non_compliant"] is False
    assert not [r for r in site.records if getattr(r, "inputs", {}).get("non_compliant")]
    for t in range(122, 130):  # the same 16 A sampled anew: that is over, and flagged
        site.at(float(t))
        meter_values(site.utc, 16.0)
        site.reports(cp1_report(), site.report("CP2", (8.0, 8.0, 8.0)))
    summary = site_summary(site.state, site.now_s)
    assert summary["connectors"]["CP1/1"]["non_compliant"] is True


def test_stubborn_connector_is_flagged_audited_and_others_lowered() -> None:
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 0.0, "CP2": 0.0})
    assert limits_of(site.step()) == {"CP1/1": 6.0, "CP2/1": 8.0}  # CP2 has priority
    t = 100.0
    for _ in range(12):  # CP1 draws 25 A whatever it is offered; CP2 follows its offer
        t += 1.0
        site.at(t)
        offered = limits_of(site.batches[-1])
        site.demand({"CP1": 25.0, "CP2": offered["CP2/1"]})
        site.meter(2.0 + 25.0 + offered["CP2/1"])
        site.step()
    flags = [
        r
        for r in site.records
        if getattr(r, "kind", None) is AuditKind.LIMIT
        and r.inputs.get("binding_source") == "compliance: profile ignored"  # type: ignore[attr-defined]
    ]
    assert len(flags) == 1
    assert flags[0].charge_point_id == "CP1"  # type: ignore[attr-defined]
    summary = site_summary(site.state, site.now_s)
    assert summary["connectors"]["CP1/1"]["non_compliant"] is True
    assert summary["connectors"]["CP1/1"]["binding_source"] == "compliance: profile ignored"
    last = limits_of(site.batches[-1])
    # What the site carries: base 2 + CP1's real 25 A + CP2's offer, within 40 - 1 margin.
    assert 2.0 + 25.0 + last["CP2/1"] <= 39.0 + 1e-6
    assert last["CP2/1"] >= 6.0


def node_flags(site: Site) -> list[tuple[str, dict[str, object], str]]:
    """The node compliance records so far: (decision, inputs, reason)."""
    return [
        (r.decision, dict(r.inputs), r.reason)
        for r in site.records
        if isinstance(r, AuditRecord)
        and r.kind is AuditKind.LIMIT
        and r.charge_point_id is None
        and r.decision.startswith("node ")
    ]


def test_a_metered_node_over_its_limit_for_the_grace_is_flagged_and_cleared() -> None:
    """SiteState._check_node: the meter against the node's limit (grace 5 s, react 2 s,
    tolerance 2 A). Flagged once over for the grace (an audit record, the status's
    ``nodes_over_limit``), not on a shorter excursion nor within the tolerance; cleared once
    within for the grace (a second record)."""
    site = Site()
    site.limits()
    site.limits("ems")
    assert site.state.effective["site"].current_a == (40.0, 40.0, 40.0)
    site.at(101.0)
    assert site.meter(45.0) == "meter shows overload"  # the limit is too young to judge
    for t in (103.0, 105.0):  # over 4 s: less than the grace
        site.at(t)
        site.meter(45.0)
    site.at(106.0)
    site.meter(41.9)  # within the tolerance: the run is broken
    for t in (107.0, 109.0, 111.0):
        site.at(t)
        site.meter(45.0)
    assert node_flags(site) == [], "over for 4 s only"
    assert site_summary(site.state, site.now_s)["nodes_over_limit"] == []
    site.at(112.0)
    site.meter((45.0, 38.0, 38.0))  # over on L1 for 5 s
    (flag,) = node_flags(site)
    decision, inputs, reason = flag
    assert decision == "node site over its limit"
    assert inputs["node"] == "site"
    assert inputs["meter_a"] == [45.0, 38.0, 38.0]
    assert inputs["limit"] == {
        phase: {"limit_a": 40.0, "source": "main fuse"} for phase in ("L1", "L2", "L3")
    }
    assert "'grid' shows node 'site' above its limit" in reason
    assert "45.0/38.0/38.0 A against 40/40/40 A, tolerance 2 A" in reason
    assert site_summary(site.state, site.now_s)["nodes_over_limit"] == ["site"]
    site.at(113.0)
    site.meter(46.0)
    assert len(node_flags(site)) == 1, "flagged once, not at every reading"
    for t in (114.0, 116.0, 118.0):  # within from 114: 4 s
        site.at(t)
        site.meter(30.0)
    assert site_summary(site.state, site.now_s)["nodes_over_limit"] == ["site"], "no flapping"
    site.at(119.0)
    site.meter(30.0)
    assert [f[0] for f in node_flags(site)] == [
        "node site over its limit",
        "node site within its limit",
    ]
    assert "back within its limit" in node_flags(site)[1][2]
    assert site_summary(site.state, site.now_s)["nodes_over_limit"] == []


def test_a_nodes_lowered_limit_is_judged_react_s_after_it_is_set() -> None:
    """The node's limit drops from 40 to 20 A at t=110 (the EMS): the meter's 30 A is not over
    the limit until react_s (2 s) later; from then, over for the grace (5 s), it is flagged."""
    site = Site()
    site.limits()
    site.limits("ems")
    site.at(110.0)
    site.limits("ems", LimitValue(current_a=(20.0, 20.0, 20.0)))
    assert site.state.effective["site"].current_a == (20.0, 20.0, 20.0)
    for t in (110.5, 111.0, 111.5, 115.0, 116.5):  # judged against 40 A until 112
        site.at(t)
        site.meter(30.0)
    assert node_flags(site) == []
    for t in (117.0, 117.5):  # over since 115 (the first reading judged against 20 A)
        site.at(t)
        site.meter(30.0)
    assert node_flags(site) == []
    site.at(120.0)
    site.meter(30.0)
    assert [f[0] for f in node_flags(site)] == ["node site over its limit"]
    assert node_flags(site)[0][1]["limit"] == {
        phase: {"limit_a": 20.0, "source": "ems"} for phase in ("L1", "L2", "L3")
    }


def test_silent_source_falls_back() -> None:
    site = Site()
    site.limits()
    site.limits("ems", LimitValue(current_a=(32.0, 32.0, 32.0)), heartbeat_s=1.0)
    assert site.state.effective_limits(100.0, T0)["site"].current_a == (32.0, 32.0, 32.0)
    lim = site.state.effective_limits(104.0, T0)["site"]  # ems silent for 4 heartbeats
    assert lim.current_a == (16.0, 16.0, 16.0)
    assert lim.sources[0] == "ems (stale: fail-safe)"


def test_complete_batch_forgets_connectors_it_does_not_name() -> None:
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 0.0, "CP3": 0.0})
    assert set(limits_of(site.step())) == {"CP1/1", "CP3/1"}
    site.at(101.0)
    site.demand({"CP1": 8.0}, complete=True)
    assert set(limits_of(site.step())) == {"CP1/1"}


def test_a_complete_batch_of_one_broker_node_forgets_only_that_nodes_connectors() -> None:
    """Broker shards: each node's DemandBatch is complete for its own charge points."""
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 0.0, "CP2": 0.0}, complete=True, shard=0)
    site.demand({"CP3": 0.0}, complete=True, shard=1)
    assert set(limits_of(site.step())) == {"CP1/1", "CP2/1", "CP3/1"}
    site.at(101.0)
    site.demand({"CP3": 8.0}, complete=True, shard=1)  # shard 0's stand
    assert set(site.state.reports) == {"CP1/1", "CP2/1", "CP3/1"}
    site.demand({"CP1": 8.0}, complete=True, shard=0)  # CP2 gone from shard 0
    assert set(site.state.reports) == {"CP1/1", "CP3/1"}
    site.demand({}, complete=True, shard=1)
    assert set(site.state.reports) == {"CP1/1"}
    assert set(limits_of(site.step())) == {"CP1/1"}


def test_a_charge_point_that_moved_to_another_node_is_kept_by_it() -> None:
    """A charge point now reported by another broker node (the shard count changed): the old
    node's next complete batch, without it, does not forget it."""
    site = Site()
    site.demand({"CP1": 8.0, "CP2": 8.0}, complete=True, shard=0)
    site.demand({"CP2": 8.0}, complete=True, shard=1)
    site.demand({"CP1": 8.0}, complete=True, shard=0)
    assert set(site.state.reports) == {"CP1/1", "CP2/1"}


def test_overtaking_is_judged_per_broker_node() -> None:
    site = Site()
    site.demand({"CP1": 8.0}, complete=True, sent_ns=2_000, shard=0)
    # Shard 1's clock stamp is older than shard 0's batch: not overtaken, another sender.
    site.demand({"CP3": 8.0}, complete=True, sent_ns=1_000, shard=1)
    assert set(site.state.reports) == {"CP1/1", "CP3/1"}
    assert site.state.demand_overtaken == 0
    assert site.demand({}, complete=True, sent_ns=500, shard=1) is None  # older than shard 1's
    assert site.state.demand_overtaken == 1
    assert set(site.state.reports) == {"CP1/1", "CP3/1"}


def test_a_report_equal_to_the_last_keeps_its_object() -> None:
    """The broker sends every connector every second, changed or not: an unchanged report keeps
    the object its demand and count were made of (DemandCache and CountMemo go by identity)."""
    site = Site()
    site.demand({"CP1": 8.0, "CP3": 8.0})
    first = dict(site.state.reports)
    site.demand({"CP1": 8.0, "CP3": 9.0}, complete=True)
    assert site.state.reports["CP1/1"] is first["CP1/1"]
    assert site.state.reports["CP3/1"] is not first["CP3/1"]
    assert site.state.reports["CP3/1"].measured_a == (9.0, 9.0, 9.0)


def test_an_idle_connector_keeps_its_status_entry_from_step_to_step() -> None:
    """A connector without a car gets the same decision object each step (CountMemo.parked):
    its status entry is kept too, and made anew once a car arrives."""
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 8.0})
    idle = ConnectorReport(
        charge_point_id="CP3",
        connector_id=1,
        connected=True,
        plugged=False,
        charging=False,
        transaction_id=None,
        arrived_utc=None,
        status="Available",
        measured_a=None,
        offered_a=None,
        power_w=None,
        energy_wh=None,
        sampled_utc=None,
    )
    site.state.demand(DemandBatch(reports=(idle,), sent_utc=format_utc(site.utc)), 100.0, site.utc)
    entries = []
    for s in (100.0, 101.0, 102.0):
        site.at(s)
        site.step()
        entries.append(site.state.decisions["CP3/1"])
    assert entries[0] == {
        "limit_a": 0.0,
        "target_a": 0.0,
        "action": "unchanged",
        "binding_source": "no car",
        "reason": "no car wants energy; allocation: no car wants energy",
    }
    assert entries[2] is entries[1]
    site.at(103.0)
    site.demand({"CP3": 0.0})
    site.step()
    assert site.state.decisions["CP3/1"] is not entries[2]
    assert site.state.decisions["CP3/1"]["binding_source"] != "no car"


def test_feeder_connector_is_bound_by_the_feeder() -> None:
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP3": 0.0})
    site.step()
    site.at(102.0)
    site.demand({"CP3": 8.0})
    site.meter(10.0)
    batch = site.step()
    (cp3,) = batch.limits if batch else ()
    assert cp3.limit_a == 15.0  # feeder 16 A less the 1 A margin (unmetered: no base load)
    assert cp3.binding_source == "grid_limit:garage breaker/L1"


@pytest.mark.parametrize(
    ("samples", "meter_s", "expected"),
    [
        pytest.param([], 10.0, (0.0, 0.0, 0.0), id="no-samples"),
        pytest.param([(5.0, (8.0,) * 3), (9.0, (16.0,) * 3)], 10.0, (16.0,) * 3, id="newest"),
        pytest.param([(5.0, (8.0,) * 3), (11.0, (16.0,) * 3)], 10.0, (8.0,) * 3, id="as-of-meter"),
        pytest.param([(11.0, (8.0,) * 3)], 10.0, (8.0,) * 3, id="all-newer-oldest"),
        pytest.param([(5.0, (8.0,) * 3), (11.0, (16.0,) * 3)], None, (16.0,) * 3, id="no-meter"),
    ],
)
def test_measured_as_of_the_meter(
    samples: list[tuple[float, PerPhase]], meter_s: float | None, expected: PerPhase
) -> None:
    assert measured_as_of(samples, meter_s) == expected


def test_central_rules_amend_priorities_maxima_margin_and_site_cap() -> None:
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 0.0, "CP2": 0.0})
    assert limits_of(site.step()) == {"CP1/1": 6.0, "CP2/1": 8.0}  # CP2 has priority 1
    site.at(101.0)
    why = site.state.rules_changed(
        SiteRulesChanged(
            version=7,
            priorities={"cp1": 5},  # ids compare case-insensitively
            max_current_a={"CP2": 6.0, "CP3": 99.0},
            site={"margin_a": 3.0, "max_current_a": 20.0},
        )
    )
    assert why == "central rules version 7"
    site.meter(2.0)
    batch = site.step()
    by_cp = {x.charge_point_id: x for x in batch.limits} if batch else {}
    # Site cap 20 - margin 3 - base 2 = 15 A: CP1 (now first) keeps going, CP2 is capped at 6.
    assert by_cp["CP2"].limit_a == 6.0
    assert "CP1" not in by_cp, "CP1's limit did not change: only changed limits are sent"
    in_force = {k.split("/")[0]: d["limit_a"] for k, d in site.state.decisions.items()}
    assert in_force["CP1"] <= 15.0 - 6.0

    assert site.state.effective["site"].sources[0] == "central rules"
    assert site.state.model.charge_point("CP3").max_current_a == 32.0, "never above the rating"
    site.state.rules_changed(SiteRulesChanged(version=8, priorities={}, max_current_a={}, site={}))
    assert site.state.model == site.state.base_model, "empty rules: back to the site file"


def test_batches_carry_the_changed_limits_and_all_of_them_every_resend_s() -> None:
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 0.0, "CP2": 0.0, "CP3": 0.0})
    first = site.step()
    assert first is not None
    assert first.full
    assert set(limits_of(first)) == {"CP1/1", "CP2/1", "CP3/1"}
    before = {k: d["limit_a"] for k, d in site.state.decisions.items()}
    site.at(101.0)
    site.state.rules_changed(
        SiteRulesChanged(version=1, priorities={}, max_current_a={"CP2": 6.0}, site={})
    )
    site.meter(2.0)
    batch = site.step()
    after = {k: d["limit_a"] for k, d in site.state.decisions.items()}
    changed = {k: a for k, a in after.items() if a != before[k]}
    assert batch is not None
    assert not batch.full
    assert limits_of(batch) == changed
    assert changed["CP2/1"] == 6.0
    assert len(changed) < len(after)
    # resend_s (60 s) after the last full batch, every limit goes again, changed or not.
    site.at(101.0 + Policy().resend_s)
    site.meter(2.0)
    again = site.step()
    assert again is not None
    assert again.full
    assert set(limits_of(again)) == set(after)


def test_a_lowering_batch_goes_to_urgent_before_its_records_an_increase_does_not() -> None:
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 0.0})
    urgent: list[ProfileBatch] = []
    first = site.state.step(
        now_s=site.now_s,
        now_utc=site.utc,
        urgent=urgent.append,
    )
    assert first is not None
    assert first.batch is not None
    assert not first.lowers
    assert first.records, "a start is recorded"
    assert urgent == [], "an increase waits for its records: not urgent"
    assert not first.sent
    site.at(101.0)
    site.demand({"CP1": 8.0})
    site.meter(60.0)  # base load jumps: CP1 must come down at once
    out = site.state.step(
        now_s=site.now_s,
        now_utc=site.utc,
        urgent=urgent.append,
    )
    assert out is not None
    assert out.lowers
    assert out.sent
    assert urgent == [out.batch], "the same batch, handed over once"
    assert limits_of(out.batch)["CP1/1"] < 8.0
    assert out.records, "its records still come with the output"
    assert out.records[0].inputs["action"] in ("decrease", "pause")
    tracker = site.state.trackers["CP1/1"]
    assert tracker.limits[-1][1][0] == limits_of(out.batch)["CP1/1"], "compliance tracks it"


def must_lower() -> Site:
    """CP1 charging at 8 A, then the base load jumps: its next step must lower it at once."""
    site = Site()
    site.limits()
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 8.0})
    assert site.step() is not None  # CP1 starts
    site.at(101.0)
    site.demand({"CP1": 8.0})
    site.meter(60.0)
    return site


def test_stepping_yields_a_lowering_batch_and_builds_the_rest_only_when_resumed() -> None:
    """The allocator sends the yielded batch and leaves the broker the CPU before it resumes:
    until then nothing of the step beyond the batch is applied (the loop's state, its record,
    the mode, the compliance trackers); resumed, the output is the step's as ``step`` gives it."""
    site = must_lower()
    loop, record, trackers = site.state.loop, site.state.record, dict(site.state.trackers)
    run = site.state.stepping(now_s=site.now_s, now_utc=site.utc)
    batch = next(run)
    assert limits_of(batch)["CP1/1"] < 8.0
    assert site.state.loop is loop, "the loop's next state waits"
    assert site.state.record is record, "the step's record waits"
    assert site.state.trackers == trackers, "compliance bookkeeping waits"
    with pytest.raises(StopIteration) as done:
        next(run)
    out = done.value.value
    assert out is not None
    assert out.sent
    assert out.lowers
    assert out.batch is batch
    assert out.records
    assert out.records[0].inputs["action"] in ("decrease", "pause")
    assert site.state.loop is not loop
    assert site.state.loop.connectors["CP1/1"].limit_a == limits_of(batch)["CP1/1"]
    assert site.state.trackers["CP1/1"].limits[-1][1][0] == limits_of(batch)["CP1/1"]


def test_stepping_without_hand_over_yields_nothing() -> None:
    site = must_lower()
    run = site.state.stepping(now_s=site.now_s, now_utc=site.utc, hand_over=False)
    with pytest.raises(StopIteration) as done:
        next(run)
    out = done.value.value
    assert out is not None
    assert out.lowers
    assert not out.sent
    assert limits_of(out.batch)["CP1/1"] < 8.0


def test_a_demand_batch_overtaken_on_the_way_is_dropped() -> None:
    """The broker sent two complete snapshots; the older arrives last (it took the root's path
    while the direct link came up): the newer one stands, and the status counts the drop."""
    site = Site()
    site.limits("main fuse")
    site.limits("ems")
    site.meter(2.0)
    site.demand({"CP1": 10.0, "CP2": 10.0}, complete=True, sent_ns=2_000)
    assert site.demand({"CP1": 10.0}, complete=True, sent_ns=1_000) is None
    assert set(site.state.reports) == {"CP1/1", "CP2/1"}
    assert site.state.demand_overtaken == 1
    assert site_summary(site.state, site.now_s)["demand_batches_overtaken"] == 1
    site.demand({"CP1": 10.0}, complete=True, sent_ns=3_000)  # newer: applied
    assert set(site.state.reports) == {"CP1/1"}
    site.demand({"CP1": 10.0, "CP3": 10.0}, complete=True)  # no stamp (an older broker): applied
    assert set(site.state.reports) == {"CP1/1", "CP3/1"}


def test_finish_refuses_a_generator_that_still_yields() -> None:
    def two() -> Generator[int, None, str]:
        yield 1
        yield 2
        return "done"

    run = two()
    assert next(run) == 1
    with pytest.raises(RuntimeError, match="yielded again: 2"):
        finish(run)

    def one() -> Generator[int, None, str]:
        yield 1
        return "done"

    run = one()
    next(run)
    assert finish(run) == "done"


def test_prepare_makes_the_counts_the_next_step_reuses_and_changes_no_decision() -> None:
    """New samples came in and no step followed: prepare() counts the connectors as the next
    step would, so that step reuses every count (and decides what it decides without it)."""
    sites = [Site(), Site()]  # prepared, and its twin that is not
    for site in sites:
        site.limits()
        site.limits("ems")
        site.meter(20.0)
        site.demand({"CP1": 8.0, "CP2": 8.0, "CP3": 8.0})
        site.step()
        site.at(103.0)
        site.meter(22.0)
        site.demand({"CP1": 10.0, "CP2": 7.0, "CP3": 9.0})
    prepared, twin = sites
    decisions = dict(prepared.state.decisions)
    loop = prepared.state.loop
    assert prepared.state.prepare(103.5)
    assert prepared.state.decisions == decisions  # nothing decided
    assert prepared.state.loop is loop
    kept = prepared.state.count_memo._kept
    made = {cid: kept[cid].high for cid in ("CP1/1", "CP2/1", "CP3/1")}
    assert kept["CP1/1"].demand.measured_a == (10.0, 10.0, 10.0)  # the new sample counted
    for site in sites:
        site.at(104.0)
        site.meter(22.0)
        site.step()
    record, twin_record = prepared.state.record, twin.state.record
    assert record is not None
    assert twin_record is not None
    assert all(d is made[d.connector_id] for d in record.demands)  # reused, every one
    assert not any(d is made[d.connector_id] for d in twin_record.demands)
    assert record.demands == twin_record.demands
    assert record.decisions == twin_record.decisions
    assert prepared.state.decisions == twin.state.decisions
    assert prepared.batches == twin.batches


def test_prepare_before_every_limit_is_known_does_nothing() -> None:
    site = Site()
    site.limits()  # "ems" has not reported, and the grace is not over
    site.meter(20.0)
    site.demand({"CP1": 8.0})
    assert not site.state.prepare(100.5)
    assert len(site.state.count_memo) == 0


def test_a_limit_names_the_phases_its_car_was_seen_drawing_on() -> None:
    """A 1-phase car on a 3-phase charge point: once its samples show it drawing on L1 alone,
    its limits say so (car_phases 1: a charge point that takes only watts gets one phase's)."""
    site = Site()
    site.limits()
    site.limits("ems", None)
    seen: list[tuple[float, int]] = []
    for t in range(102, 112, 2):
        site.at(float(t))
        sent = {lim.charge_point_id: lim.limit_a for b in site.batches for lim in b.limits}
        a = min(sent.get("CP1", 6.0), 16.0)  # the car follows its offer, up to 16 A, on L1
        site.reports(site.report("CP1", (a, 0.0, 0.0)))
        site.meter((5.0 + a, 5.0, 5.0))
        batch = site.step()
        seen += [(lim.limit_a, lim.car_phases) for lim in batch.limits] if batch else []
    assert seen[0][1] == 0, "nothing learned before its first sample"
    assert seen[-1][1] == 1, seen
    assert all(lim.phases == 3 for b in site.batches for lim in b.limits)


def test_a_new_session_does_not_count_the_last_cars_samples() -> None:
    """CP1's 1-phase car leaves; the next car's session begins before its first sample: the
    energy node keeps none of the last car's samples for it (its draw and phases would be
    taken from them)."""
    site = Site()
    site.limits()
    site.limits("ems", None)

    def demand(tx: str | None, measured: PerPhase | None) -> None:
        site.reports(site.report("CP1", measured, tx=tx))

    site.at(101.0)
    demand("1", (16.0, 0.0, 0.0))
    site.at(102.0)
    demand("1", (16.0, 0.0, 0.0))
    assert site.state.measured["CP1/1"]
    site.at(103.0)
    demand(None, None)
    site.at(104.0)
    demand("2", None)
    assert not site.state.measured.get("CP1/1")
    site.at(105.0)
    demand("2", (7.0, 7.0, 7.0))
    assert [a for _, a in site.state.measured["CP1/1"]] == [(7.0, 7.0, 7.0)]


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_a_report_whose_current_is_no_finite_number_counts_as_unmeasured(bad: float) -> None:
    """An infinite current from a charge point (a broker that let it through) once stopped the
    allocator 40 s later: compliance put it in an audit record, which refuses it."""
    site = Site(Policy())
    site.limits()
    site.limits("ems", None)
    site.meter(5.0)
    site.demand({"CP1": 0.0})
    site.step()
    for i in range(1, 90):
        site.at(100.0 + i)
        site.reports(site.report("CP1", (bad, bad, bad)))
        site.meter(15.0)
        site.step()
    assert site.state.reports["CP1/1"].measured_a is None
    assert "CP1/1" not in site.state.measured or all(
        math.isfinite(a) for _, m in site.state.measured["CP1/1"] for a in m
    )


def arrive_again(site: Site, base_a: float) -> ProfileBatch | None:
    """CP2 (priority 1) and CP1 charging, each following its offer; CP1's car leaves and the
    next car's session begins there (before its first sample): the step on that report.
    ``base_a``: the site's load besides the cars, per phase."""
    site.limits()
    site.limits("ems", None)
    sent: dict[str, float] = {}

    def follow(t: float, cp1_tx: str | None) -> None:
        site.at(t)
        for b in site.batches:
            sent.update({lim.charge_point_id: lim.limit_a for lim in b.limits})
        draws = {cp: min(sent.get(cp, 6.0), 32.0) for cp in ("CP1", "CP2")}
        if cp1_tx is None:
            draws["CP1"] = 0.0
        site.reports(
            site.report("CP1", (draws["CP1"],) * 3, tx=cp1_tx),
            site.report("CP2", (draws["CP2"],) * 3),
        )
        site.meter(base_a + draws["CP1"] + draws["CP2"])
        site.step()

    for t in range(101, 111):
        follow(float(t), "1")
    for t in range(111, 116):
        follow(float(t), None)
    assert sent["CP1"] == 0.0, "no car: 0 A"
    site.at(116.0)
    site.reports(site.report("CP1", None, tx="2"), site.report("CP2", (sent["CP2"],) * 3))
    return site.step()


def test_a_car_at_a_connector_used_before_keeps_its_tx_default_current_if_it_fits() -> None:
    """The new car charges under the TxDefaultProfile (6 A) from its start (the broker sends it
    no limit decided before its transaction): the loop counts it there and keeps it, and the
    first decision for it goes at once, for its transaction, with its own audit record. It
    is not paused and started again (the "no car" 0 A once reached it at its start: some cars
    do not resume after a pause). CP2, at more than its share, gives way in the same step."""
    site = Site()
    batch = arrive_again(site, base_a=4.0)
    assert batch is not None
    (cp1,) = [lim for lim in batch.limits if lim.charge_point_id == "CP1"]
    assert (cp1.limit_a, cp1.transaction_id) == (6.0, "2")
    decision = site.state.decisions["CP1/1"]
    assert decision["action"] == "unchanged", decision
    assert "session began under the TxDefaultProfile at 6.0 A" in decision["reason"]
    (record,) = [
        r
        for r in site.records
        if getattr(r, "kind", None) is AuditKind.LIMIT
        and r.charge_point_id == "CP1"  # type: ignore[attr-defined]
        and "session began" in r.reason  # type: ignore[attr-defined]
    ]
    assert record.decision == "6 A"  # type: ignore[attr-defined]
    # CP2, at more than its share, gives way in the same step (the meter read before it does
    # not show the new car: it is not taken off the base load).
    assert limits_of(batch)["CP2/1"] == 40.0 - 1.0 - 4.0 - 6.0, "CP2 gives way at once"
    # It keeps its share (6 A: CP2 has the higher priority) as its samples come: never paused.
    first = len(site.batches) - 1
    assert site.batches[first] is batch
    for t in range(117, 130):
        site.at(float(t))
        sent = {lim.charge_point_id: lim.limit_a for b in site.batches for lim in b.limits}
        site.reports(
            site.report("CP1", (sent["CP1"],) * 3, tx="2"),
            site.report("CP2", (sent["CP2"],) * 3),
        )
        site.meter(4.0 + sent["CP1"] + sent["CP2"])
        site.step()
    new_car = [
        lim.limit_a
        for b in site.batches[first:]
        for lim in b.limits
        if lim.charge_point_id == "CP1"
    ]
    assert set(new_car) == {6.0}, new_car
    assert site.state.decisions["CP1/1"]["limit_a"] == 6.0


def test_a_car_at_a_connector_used_before_that_does_not_fit_is_paused_at_once() -> None:
    """No room for it at the minimum beside CP2 (priority 1): paused at once, at 0 A for its
    transaction (no charging dwell: the loop never started it)."""
    site = Site()
    batch = arrive_again(site, base_a=29.0)  # 40 - 1 margin - 29 = 10 A: CP2's, not 6 A more
    assert batch is not None
    assert site.state.sent["CP2/1"] == 10.0
    (cp1,) = [lim for lim in batch.limits if lim.charge_point_id == "CP1"]
    assert (cp1.limit_a, cp1.transaction_id) == (0.0, "2")
    decision = site.state.decisions["CP1/1"]
    assert decision["action"] == "pause", decision
    assert decision["reason"].startswith(
        "its session began under the TxDefaultProfile at 6.0 A; paused at once: no room"
    ), decision


def test_a_transaction_out_of_energy_is_paused_at_once_and_its_room_goes_to_the_others() -> None:
    """The broker reports CP1's transaction energy_blocked (its energy cap reached, or the cloud
    refused its id): the next step sends it 0 A, bound by the energy cap, and CP2 may take its
    room (the energy node once went on allocating to it: the 0 A reached the car only with its
    next limit, up to the 60 s resend later)."""
    site = Site()
    site.limits()
    site.limits("ems", None)
    sent: dict[str, float] = {}
    for t in range(101, 111):  # both charging, each following its offer
        site.at(float(t))
        for b in site.batches:
            sent.update({lim.charge_point_id: lim.limit_a for lim in b.limits})
        draws = {cp: sent.get(cp, 6.0) for cp in ("CP1", "CP2")}
        site.demand(draws)
        site.meter(4.0 + draws["CP1"] + draws["CP2"])
        site.step()
    assert site.state.sent["CP1/1"] >= 6.0
    site.at(111.0)
    cp1_a = (sent["CP1"],) * 3
    blocked = replace(site.report("CP1", cp1_a), energy_blocked=True)
    site.reports(blocked, site.report("CP2", (sent["CP2"],) * 3))
    batch = site.step()
    assert batch is not None
    assert limits_of(batch)["CP1/1"] == 0.0
    (cp1,) = [lim for lim in batch.limits if lim.charge_point_id == "CP1"]
    assert cp1.binding_source == "energy cap"
    assert "set by the energy cap" in site.state.decisions["CP1/1"]["reason"]


def follow_two(site: Site, until_s: float, cp1_tx: str | None, base_a: float) -> dict[str, float]:
    """CP1 and CP2 charging a second apart up to ``until_s``, each car following its offer (CP1
    in transaction ``cp1_tx``): the limits last sent."""
    sent: dict[str, float] = {}
    t = site.now_s
    while t < until_s:
        t += 1.0
        site.at(t)
        for b in site.batches:
            sent.update({lim.charge_point_id: lim.limit_a for lim in b.limits})
        draws = {cp: sent.get(cp, 6.0) for cp in ("CP1", "CP2")}
        site.reports(
            site.report("CP1", (draws["CP1"],) * 3, tx=cp1_tx),
            site.report("CP2", (draws["CP2"],) * 3),
        )
        site.meter(base_a + draws["CP1"] + draws["CP2"])
        site.step()
    for b in site.batches:
        sent.update({lim.charge_point_id: lim.limit_a for lim in b.limits})
    return sent


def test_a_new_transaction_of_a_car_charging_already_keeps_its_limit() -> None:
    """A charge point ends and begins a transaction without the car leaving (or a stop and a
    start queued offline arrive together): its limit goes again at once, for the new
    transaction; the car is not counted as new (the meter shows its draw: counted twice, it
    was paused on a full site)."""
    site = Site()
    site.limits()
    site.limits("ems", None)
    sent = follow_two(site, 120.0, "1", base_a=22.0)
    assert sent["CP1"] == 6.0, "a full site: CP1 at its minimum"
    site.at(121.0)
    site.reports(site.report("CP1", None, tx="2"), site.report("CP2", (sent["CP2"],) * 3))
    batch = site.step()
    assert batch is not None
    assert [(lim.limit_a, lim.transaction_id) for lim in batch.limits] == [(6.0, "2")]
    assert site.state.decisions["CP1/1"]["action"] != "pause"


def test_a_transaction_begun_before_the_plug_in_is_at_0_a_until_the_car_is_there() -> None:
    """2.0.1 with the transaction starting at authorization (or a 1.6 charge point that starts
    it so): the broker gave it a TxProfile at the safe default at its start; the loop's "no
    car" 0 A replaces it at once (for the transaction: no car is counted there, so none may
    draw), and at the plug-in the car starts from 0 A as a paused one does, with room."""
    site = Site()
    site.limits()
    site.limits("ems", None)
    follow_two(site, 105.0, None, base_a=4.0)
    site.at(106.0)
    authorized = replace(site.report("CP1", None, tx="2"), plugged=False, status="Available")
    why = site.reports(authorized, site.report("CP2", (16.0,) * 3))
    assert why == "a new transaction"
    batch = site.step()
    assert batch is not None
    (cp1,) = [lim for lim in batch.limits if lim.charge_point_id == "CP1"]
    assert (cp1.limit_a, cp1.transaction_id) == (0.0, "2")
    plugged_in = len(site.batches)
    follow_two(site, 120.0, "2", base_a=4.0)
    cp1_limits = [
        (lim.limit_a, lim.transaction_id)
        for b in site.batches[plugged_in:]
        for lim in b.limits
        if lim.charge_point_id == "CP1"
    ]
    assert cp1_limits, "started"
    assert cp1_limits[0] == (6.0, "2"), cp1_limits
    assert all(a >= 6.0 for a, _ in cp1_limits), cp1_limits


def test_a_car_whose_status_leaves_charging_is_held_at_0_a_within_its_transaction() -> None:
    """A Faulted blip, or an unplug with the transaction going on: the connector has no car
    wanting energy, so its room goes to the others and its transaction's TxProfile says 0 A
    (a car still there must not draw what it had); back, it starts from 0 A as a paused car
    does, not counted at the default the broker gave only a new transaction."""
    site = Site()
    site.limits()
    site.limits("ems", None)
    sent = follow_two(site, 115.0, "1", base_a=4.0)
    assert sent["CP1"] >= 6.0
    site.at(116.0)
    faulted = replace(site.report("CP1", None, tx="1"), plugged=False, status="Faulted")
    site.reports(faulted, site.report("CP2", (sent["CP2"],) * 3))
    site.meter(4.0 + sent["CP1"] + sent["CP2"])
    batch = site.step()
    assert batch is not None
    (cp1,) = [lim for lim in batch.limits if lim.charge_point_id == "CP1"]
    assert (cp1.limit_a, cp1.transaction_id) == (0.0, "1")
    site.at(117.0)
    site.reports(site.report("CP1", None, tx="1"), site.report("CP2", (sent["CP2"],) * 3))
    site.meter(4.0 + sent["CP2"])
    site.step()
    state = site.state.loop.connectors["CP1/1"]
    assert not state.beginning
    back = site.state.decisions["CP1/1"]
    # Not kept at the default as a new car would be: at 0 A until the change settles.
    assert (back["limit_a"], back["action"]) == (0.0, "hold"), back
    assert back["reason"].startswith("no increase while a recent change settles"), back
    # Its samples show it drawing nothing at 0 A: it starts as a paused car does, once the
    # changes settle.
    cp2 = sent["CP2"]
    for t in range(118, 130):
        site.at(float(t))
        site.reports(site.report("CP1", (0.0,) * 3, tx="1"), site.report("CP2", (cp2,) * 3))
        site.meter(4.0 + cp2)
        site.step()
        cp2 = site.state.decisions["CP2/1"]["limit_a"]
        if site.state.decisions["CP1/1"]["limit_a"] > 0:
            break
    started = site.state.decisions["CP1/1"]
    assert started["limit_a"] >= 6.0, started
    assert not started["reason"].startswith("its session began"), started


def test_a_paused_car_in_a_new_transaction_is_held_at_0_a_at_once() -> None:
    """The charge point restarts the transaction of a car the loop has paused: the broker gave
    the new transaction a TxProfile at the safe default; the step comes at once and sends the
    car's 0 A for the new transaction."""
    site = Site()
    site.limits()
    site.limits("ems", None)
    sent = follow_two(site, 115.0, "1", base_a=29.0)  # 10 A of room: CP2's (priority 1)
    assert sent["CP1"] == 0.0, sent
    site.at(116.0)
    why = site.reports(site.report("CP1", None, tx="2"), site.report("CP2", (sent["CP2"],) * 3))
    assert why == "a new transaction"
    batch = site.step()
    assert batch is not None
    (cp1,) = [lim for lim in batch.limits if lim.charge_point_id == "CP1"]
    assert (cp1.limit_a, cp1.transaction_id) == (0.0, "2")


def test_the_fields_a_meter_refuses_are_in_the_site_summary() -> None:
    """Each reading says which fields the meter is read without (actors.meter, MeterRead.dropped):
    the site summary (``run.py status``) shows them, and a reading without them clears them."""
    site = Site()
    site.at(100.0)
    site.meter(10.0, dropped=("energy_export_wh",))
    meter = site_summary(site.state, site.now_s)["meters"]["grid"]
    assert (meter["dropped_fields"], meter["stale"]) == (["energy_export_wh"], False)
    site.at(101.0)
    site.meter(10.0)
    assert site_summary(site.state, site.now_s)["meters"]["grid"]["dropped_fields"] == []


def test_the_first_decision_after_a_start_is_recorded_changed_or_not() -> None:
    """A restarted energy node starts every connector at 0 A: a car that was charging and is
    now paused (no room) got no record ("unchanged"), while its charge point was lowered to 0 A
    by the first batch; ``explain`` then showed the limit from before the restart."""
    site = Site()
    site.limits()
    site.limits("ems")
    site.demand({"CP1": 12.0})
    site.meter(60.0)
    batch = site.step()
    assert limits_of(batch) == {"CP1/1": 0.0}
    limits = [r for r in site.records if isinstance(r, AuditRecord) and r.kind == AuditKind.LIMIT]
    assert [(r.charge_point_id, r.decision) for r in limits] == [("CP1", "0 A")], limits
    site.at(101.0)
    site.meter(60.0)
    site.step()
    again = [r for r in site.records if isinstance(r, AuditRecord) and r.kind == AuditKind.LIMIT]
    assert len(again) == 1, "only the first decision since the start is recorded unchanged"


def test_a_limit_going_down_while_waiting_for_the_first_meter_reading_steps_at_once() -> None:
    """Waiting for the meters' first reading keeps the charge points' limits as under a stale
    meter, where no increase is made but a decrease still is: a limit that goes down meanwhile
    (a meter that does not answer at the start) must not wait stale_failsafe_s (10 s) while the
    charge points keep limits made for the higher one."""
    site = Site()
    site.limits("main fuse")
    assert site.limits("ems") == "every limit source reported"
    site.demand({"CP1": 16.0, "CP2": 16.0})
    assert site.state.step(now_s=site.now_s, now_utc=site.utc) is None
    assert site.state.mode == "waiting for meters"
    site.at(102.0)
    down = LimitValue(current_a=(6.0, 6.0, 6.0))
    assert site.limits("ems", down) == "limit from 'ems' went down"
    out = site.state.step(now_s=site.now_s, now_utc=site.utc)
    assert out is not None, "the decrease waited for the meter"
    assert site.state.mode != "waiting for meters"
