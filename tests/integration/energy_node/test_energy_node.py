"""The energy node's actors together: a real SDM630 (pymodbus server), grid-limit sources, LMDB
in tmp_path and a fake broker node receiving the profile batches.

Times are configured short (stale after 0.5 s, fail-safe after 2 s, polls every 0.05-0.1 s) so
every scenario is bounded to a few seconds; every wait is for a condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from actors.allocation_types import PerPhase
from actors.audit_records import AuditKind
from actors.compliance import ComplianceConfig
from actors.energy_messages import (
    CloudLimitPushed,
    ProfileBatch,
    ProfileOutcome,
    ProfileOutcomes,
    SiteRulesChanged,
)
from actors.energy_tree import charge_point_energy
from actors.explain import explain
from actors.grid_limit import Clock, CloudLimitActor, GridLimitReported
from actors.grid_limits import GridLimit, LimitValue
from actors.meter import MeterActor, MeterRead
from actors.shards import shard_of
from actors.site_allocator import AllocatorSettings, SiteAllocator
from actors.utc import format_utc
from drivers.ports import free_tcp_port
from drivers.store.env import open_store
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem
from supervisors.trees import NODE_KINDS
from tests.helpers import timeout_s, wait_for
from tests.integration.energy_node.harness import (
    CarSim,
    EnergyNode,
    Received,
    demand,
    report,
    sdm630_server,
    set_meter,
    site_config,
)
from tests.integration.modbus.meter_server import MeterServer


def meter_toml(port: int, poll_s: float = 0.1) -> str:
    return f"""
[[meters]]
name = "grid"
model = "sdm630"
host = "127.0.0.1"
port = {port}
poll_interval_s = {poll_s}
timeout_s = 0.3
"""


def grid_read(at_s: float, current_a: PerPhase) -> MeterRead:
    """A read of the "grid" meter begun at ``at_s`` (monotonic), as its actor sends it."""
    return MeterRead(
        meter="grid",
        node="site",
        current_a=current_a,
        total_power_w=None,
        read_monotonic_s=at_s,
        read_utc=datetime.now(UTC),
        duration_s=0.001,
    )


FUSE_40 = """
[[grid_limits]]
name = "main fuse"
kind = "static"
current_a = 40
"""


def contact_toml(name: str, path: object, dimmed_a: float) -> str:
    """A contact grid-limit source at ``path``, polled every 0.05 s."""
    return f"""
[[grid_limits]]
name = "{name}"
kind = "contact"
path = "{path}"
dimmed = {{ current_a = {dimmed_a:g} }}
poll_interval_s = 0.05
"""


# The meter shows the base load (2 A) plus what the cars report drawing (8 A each): the base load
# the allocation works out is meter - managed draw, so the two must agree.
TWO_CARS_AT_8 = (18.0, 18.0, 18.0)

FAST = """
[allocation]
margin_a = 1.0
settle_s = 0.1
increase_step_a = 8.0
min_charge_s = 0.0
min_pause_s = 0.0
stale_no_increase_s = 0.5
stale_failsafe_s = 2.0
failsafe_current_a = 6.0
"""


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    body: str,
    *,
    meter_a: PerPhase | None = (2.0, 2.0, 2.0),
    tick_s: float = 0.1,
    charge_points: tuple[str, ...] = ("CP1", "CP2"),
    clock: Clock | None = None,
    poll_s: float = 0.1,
    heartbeat_s: float = 1.0,
    compliance: ComplianceConfig | None = None,
) -> AsyncIterator[EnergyNode]:
    """The node with ``body`` as its energy sections, and (unless ``meter_a`` is None) a real
    SDM630 reading ``meter_a`` as its "grid" meter (``node.server``); ``heartbeat_s``: the
    grid-limit sources' heartbeat (grid_limit.HEARTBEAT_S on a site: 10 s). ``compliance``: the
    allocator's (the site file's [allocation] compliance_*; the default grace is 30 s)."""
    async with contextlib.AsyncExitStack() as stack:
        server = None
        if meter_a is not None:
            server = await stack.enter_async_context(sdm630_server(meter_a))
            body = meter_toml(server.port, poll_s) + body
        node = EnergyNode(
            tmp_path,
            site_config(tmp_path, body, charge_points=charge_points),
            AllocatorSettings(
                tick_s=tick_s, resend_s=60.0, compliance=compliance or ComplianceConfig()
            ),
            server=server,
        )
        await node.start(clock=clock, heartbeat_s=heartbeat_s)
        try:
            yield node
        finally:
            await node.stop()


async def lift_dimming_for_three_steps(node: EnergyNode, dim: Path) -> None:
    """The dimming contact opens (the site's limit back up to the fuse's 40 A); three steps."""
    contact(dim, closed=False)
    await wait_for(
        lambda: node.summary()["limits"]["site"]["L1"]["limit_a"] == 40.0, what="dimming lifted"
    )
    steps = node.allocator().steps
    await wait_for(lambda: node.allocator().steps >= steps + 3, what="3 more steps")


@contextlib.asynccontextmanager
async def following(sim: CarSim, *, report_every_s: float | None = None) -> AsyncIterator[None]:
    """The cars follow every batch; with ``report_every_s`` their samples also come that often
    (as the broker's do), not only after a batch."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(sim.follow())]
    if report_every_s is not None:
        tasks.append(loop.create_task(sim.report_every(report_every_s)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def contact(path: Path, closed: bool) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("1\n" if closed else "0\n")
    tmp.replace(path)  # atomic, as a relay daemon would write it


# --- demand -> profiles within headroom ------------------------------------------------------


async def test_cars_get_profiles_within_headroom_latest_arrival_paused(tmp_path: Path) -> None:
    body = FUSE_40.replace("40", "32") + FAST
    async with running(
        tmp_path, body, meter_a=(10.0, 10.0, 10.0), charge_points=("A", "B", "C", "D")
    ) as node:
        await node.wait_meter_read()
        arrivals = {"A": "08:00", "B": "08:05", "C": "08:10", "D": "08:15"}
        node.send(
            demand(*(report(cp, arrived_utc=f"2025-01-01T{t}:00Z") for cp, t in arrivals.items()))
        )
        got = await node.wait_batch(lambda b: len(b.batch.limits) == 4, what="4 limits")
        limits = got.limits()
        headroom = 32.0 - 1.0 - 10.0  # limit - margin - base load
        assert sum(limits.values()) <= headroom
        assert limits == {"A/1": 7.0, "B/1": 7.0, "C/1": 7.0, "D/1": 0.0}  # 21 A shared
        paused = next(x for x in got.batch.limits if x.charge_point_id == "D")
        assert paused.binding_source == "grid_limit:main fuse/L1"
        assert paused.phases == 3
        assert got.batch.default_limit_a == 6.0
        assert got.batch.trigger_monotonic_ns > 0
        node.send(
            ProfileOutcomes(
                outcomes=(
                    ProfileOutcome(
                        charge_point_id="A",
                        connector_id=1,
                        limit_a=7.0,
                        status="Accepted",
                        written_utc=format_utc(datetime.now(UTC)),
                    ),
                )
            )
        )
        await wait_for(
            lambda: node.summary()["connectors"]["A/1"]["outcome"] == "Accepted", what="outcome"
        )
        assert node.system is not None
        status = NODE_KINDS["energy"].summary(node.system)  # what `run.py status` shows
        orjson.dumps(status)  # plain JSON, no default= needed
        assert status["mode"] == "normal"
        assert status["meters"]["grid"]["current_a"] == [10.0, 10.0, 10.0]
        assert status["meters"]["grid"]["stale"] is False
        assert status["limits"]["site"]["L2"] == {"limit_a": 32.0, "source": "main fuse"}
        assert status["sources"]["main fuse"]["limit"] == "32/32/32 A"
        d = status["connectors"]["D/1"]
        assert (d["limit_a"], d["binding_source"]) == (0.0, "grid_limit:main fuse/L1")
        assert "paused" in d["reason"]


async def test_ramp_keeps_the_sum_within_headroom_and_audits_every_change(tmp_path: Path) -> None:
    async with running(tmp_path, FUSE_40 + FAST, meter_a=(5.0, 5.0, 5.0)) as node:
        await node.wait_meter_read()
        sim = CarSim(node, node.meter(), base_a=5.0, charge_points=("CP1", "CP2"))
        async with following(sim):
            await sim.start()
            target = (40.0 - 1.0 - 5.0) / 2  # 17 A each
            await node.wait_batch(
                lambda b: b.limits() == {"CP1/1": target, "CP2/1": target}, what="ramp done"
            )
        for b in node.batches:
            assert sum(b.limits().values()) <= 40.0 - 1.0 - 5.0 + 1e-9
        records = [r for r in node.audit() if r.kind is AuditKind.LIMIT]
        cp1 = [r for r in records if r.charge_point_id == "CP1"]
        sent: list[float] = []
        for b in node.batches:
            a = b.limits().get("CP1/1")
            if a is not None and (not sent or sent[-1] != a):
                sent.append(a)
        assert [r.inputs["limit_a"] for r in cp1] == sent, "one record per change, in order"
        raised = 0
        for prev, b in itertools.pairwise(node.batches):
            if all(a > prev.limits().get(k, 0.0) for k, a in b.limits().items()):
                raised += 1
                for x in b.batch.limits:  # an increase leaves once its record is on disk
                    assert (x.charge_point_id, x.limit_a) in b.committed, (x, b.committed)
        assert raised >= 2, "the ramp has increases"
        assert all(r.inputs["binding_source"] for r in cp1)
        assert all(r.id is not None for r in cp1)
        story = explain(records, charge_point_id="CP1", at_utc=datetime.now(UTC))
        assert f"Limit: {target:g} A" in story.text()


async def test_explain_tells_each_connectors_limit_not_the_idle_ones_alone(
    tmp_path: Path,
) -> None:
    """A charge point with two connectors, a car on the first: the allocator records both
    first decisions in one step (the car's and the idle connector's "0 A, no car"). ``explain``
    told the latest record of either alone: "0 A, bound by no car" while the car charged."""
    async with running(tmp_path, FUSE_40 + FAST, meter_a=(10.0, 10.0, 10.0)) as node:
        await node.wait_meter_read()
        node.send(
            demand(report("CP1", measured_a=8.0), report("CP1", connector_id=2, charging=False))
        )
        first = await node.wait_batch(
            lambda b: b.limits().get("CP1/1", 0.0) >= 6.0, what="the car charging"
        )
        assert first.limits()["CP1/2"] == 0.0
        records = [r for r in node.audit() if r.kind is AuditKind.LIMIT]
        story = explain(records, charge_point_id="CP1", at_utc=datetime.now(UTC))
        text = story.text()
        car = f"{first.limits()['CP1/1']:g} A"
        assert f"  Limit on connector 1: {car} since" in text, text
        assert "bound by grid_limit:main fuse/" in text.split("Limit on connector 1:")[1], text
        assert "  Limit on connector 2: 0 A since" in text, text
        assert [x["inputs"]["connector_id"] for x in story.data["limits"]] == [1, 2]


# --- decrease at once on a meter overload ----------------------------------------------------


async def test_meter_overload_decreases_without_waiting_for_the_tick(tmp_path: Path) -> None:
    # No step when the decrease settles within the test (a settle step's reason is asserted
    # in test_an_increase_comes_when_the_last_change_settles_not_at_the_next_tick).
    body = FUSE_40 + FAST.replace("settle_s = 0.1", "settle_s = 60.0")
    async with running(tmp_path, body, meter_a=(22.0, 22.0, 22.0), tick_s=30.0) as node:
        await node.wait_meter_read()
        node.send(demand(report("CP1", measured_a=6.0), report("CP2", measured_a=6.0)))
        first = await node.wait_batch(lambda b: len(b.batch.limits) == 2, what="first")
        assert first.limits() == {"CP1/1": 8.0, "CP2/1": 8.0}
        count = len(node.batches)
        changed_at = time.monotonic()
        await set_meter(node.meter(), (45.0, 45.0, 45.0))  # base load jumped: over 40 - 1
        lowered = await node.wait_batch(
            lambda b: sum(b.limits().values()) < 16.0, after=count, what="decrease"
        )
        # No tick for 30 s: only the meter event can have caused it, within a few polls.
        assert lowered.at_s - changed_at < timeout_s(2.0)
        # A decrease leaves at once, before its records commit (they follow in the next one).
        assert not any(
            (x.charge_point_id, x.limit_a) in lowered.committed for x in lowered.batch.limits
        )
        await wait_for(
            lambda: (
                {(x.charge_point_id, x.limit_a) for x in lowered.batch.limits}
                <= {(r.charge_point_id, r.inputs.get("limit_a")) for r in node.audit()}
            ),
            what="the decrease's records committed",
        )
        sample_s = lowered.batch.trigger_monotonic_ns / 1e9
        assert changed_at - 0.2 <= sample_s <= lowered.at_s
        assert node.allocator().last_step_why == "meter shows overload"


async def test_an_increase_comes_when_the_last_change_settles_not_at_the_next_tick(
    tmp_path: Path,
) -> None:
    """No tick for 30 s. An overload lowers both cars; the base load goes back down at once, but
    an increase waits until the decrease has settled (settle_s 0.6 s): the allocator steps then
    (after the meter's next read) and raises them, rather than at the next tick."""
    body = FUSE_40 + FAST.replace("settle_s = 0.1", "settle_s = 0.6")
    async with running(tmp_path, body, meter_a=(22.0, 22.0, 22.0), tick_s=30.0) as node:
        await node.wait_meter_read()
        node.send(demand(report("CP1", measured_a=6.0), report("CP2", measured_a=6.0)))
        await node.wait_batch(lambda b: b.limits() == {"CP1/1": 8.0, "CP2/1": 8.0}, what="first")
        count = len(node.batches)
        await set_meter(node.meter(), (41.0, 41.0, 41.0))  # base load 25 A: 7 A each
        lowered = await node.wait_batch(
            lambda b: b.limits() == {"CP1/1": 7.0, "CP2/1": 7.0}, after=count, what="decrease"
        )
        assert node.allocator().last_step_why == "meter shows overload"
        steps = node.allocator().steps
        decreased_s = node.allocator().last_step_s  # the decrease's step began (monotonic)
        assert decreased_s is not None
        # The cars follow; the base load is back where it was.
        await set_meter(node.meter(), (24.0, 24.0, 24.0))
        node.send(demand(report("CP1", measured_a=7.0), report("CP2", measured_a=7.0)))
        raised = await node.wait_batch(
            lambda b: b.limits() and min(b.limits().values()) > 7.0,
            after=node.batches.index(lowered) + 1,
            what="an increase without a tick",
        )
        assert raised.at_s - decreased_s >= 0.6, "not before the decrease settled"
        assert raised.at_s - decreased_s < 0.6 + timeout_s(1.5)
        assert node.allocator().steps == steps + 1, "one step: the one at the settle"
        assert node.allocator().last_step_why == "a change settled"


async def test_new_demand_is_counted_after_the_meters_next_read_and_the_overload_reuses_it(
    tmp_path: Path,
) -> None:
    """A DemandBatch that does not step (no new car) is counted after the meter's next read,
    when the samples it brought are older than the reading and so the ones a step would take
    (SiteAllocator._prepare); the step of an overload that follows reuses every count."""
    body = FUSE_40 + FAST.replace("settle_s = 0.1", "settle_s = 60.0")
    async with running(tmp_path, body, meter_a=TWO_CARS_AT_8, tick_s=30.0) as node:
        await node.wait_meter_read()
        node.send(demand(report("CP1", measured_a=8.0), report("CP2", measured_a=8.0)))
        await node.wait_batch(lambda b: b.limits() == {"CP1/1": 8.0, "CP2/1": 8.0})
        alloc = node.allocator()
        assert alloc.state is not None
        steps = alloc.steps
        assert alloc.prepared == 0, "a batch that steps is counted by its step"
        node.send(demand(report("CP1", measured_a=7.5), report("CP2", measured_a=7.0)))
        await wait_for(lambda: alloc.prepared == 1, what="the new demand counted")
        assert alloc.steps == steps
        kept = alloc.state.count_memo._kept
        made = {cid: kept[cid].high for cid in ("CP1/1", "CP2/1")}
        assert kept["CP1/1"].demand.measured_a == (7.5,) * 3, "the batch's sample, not the last"
        await set_meter(node.meter(), (41.0, 41.0, 41.0))
        await wait_for(lambda: alloc.steps == steps + 1, what="the overload's step")
        assert alloc.last_step_why == "meter shows overload"
        record = alloc.state.record
        assert record is not None
        assert {d.connector_id for d in record.demands} == set(made)
        assert all(d is made[d.connector_id] for d in record.demands), "every count reused"


async def test_new_demand_waits_for_a_meter_read_begun_after_it(tmp_path: Path) -> None:
    """A read under way when the batch came in would pick the samples before the batch's: the
    counts are prepared after a read begun once the batch was in. The meter stops answering and
    the reads are handed to the allocator here, so their times are the test's."""
    body = FUSE_40 + FAST.replace("settle_s = 0.1", "settle_s = 60.0")
    async with running(tmp_path, body, meter_a=TWO_CARS_AT_8, tick_s=30.0) as node:
        await node.wait_meter_read()
        node.send(demand(report("CP1", measured_a=8.0), report("CP2", measured_a=8.0)))
        await node.wait_batch(lambda b: b.limits() == {"CP1/1": 8.0, "CP2/1": 8.0})
        node.meter().stop_answering()
        await wait_for(
            lambda: node.summary()["meters"]["grid"]["error"] is not None, what="a failed read"
        )
        alloc = node.allocator()
        state = alloc.state
        assert state is not None
        under_way = time.monotonic()
        node.send(demand(report("CP1", measured_a=7.5), report("CP2", measured_a=7.0)))
        node.send(grid_read(under_way, (22.0, 22.0, 22.0)))
        await wait_for(lambda: state.samples["site"].read_s == under_way, what="the read")
        assert alloc.prepared == 0, "a read begun before the batch came in"
        node.send(grid_read(time.monotonic(), (22.0, 22.0, 22.0)))
        await wait_for(lambda: alloc.prepared == 1, what="the new demand counted")
        assert state.count_memo._kept["CP1/1"].demand.measured_a == (7.5, 7.5, 7.5)


async def test_without_a_meter_new_demand_is_counted_once_the_waiting_messages_are_done(
    tmp_path: Path,
) -> None:
    """No meter to wait for: the allocator counts the new demand after the messages that were
    already waiting (a Prepare message to itself)."""
    body = FUSE_40 + FAST.replace("settle_s = 0.1", "settle_s = 60.0")
    async with running(tmp_path, body, meter_a=None, tick_s=30.0) as node:
        node.send(demand(report("CP1", measured_a=8.0)))
        await node.wait_batch(lambda b: "CP1/1" in b.limits())
        alloc = node.allocator()
        steps = alloc.steps
        node.send(demand(report("CP1", measured_a=7.0)))
        await wait_for(lambda: alloc.prepared == 1, what="the new demand counted")
        assert alloc.steps == steps
        assert alloc.state is not None
        assert alloc.state.count_memo._kept["CP1/1"].demand.measured_a == (7.0, 7.0, 7.0)


# --- stale meter: no increases, then fail-safe -----------------------------------------------


async def test_stale_meter_holds_then_falls_back_to_failsafe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actors.site_allocator")
    dim = tmp_path / "dim"
    contact(dim, closed=True)
    body = FUSE_40 + contact_toml("dimming", dim, 20) + FAST
    async with running(tmp_path, body) as node:
        await node.wait_meter_read()
        sim = CarSim(node, node.meter(), base_a=2.0, charge_points=("CP1", "CP2"))
        async with following(sim):
            await sim.start()
            dimmed = (20.0 - 1.0 - 2.0) / 2
            await node.wait_batch(lambda b: set(b.limits().values()) == {dimmed})
            node.meter().stop_answering()
            stopped = time.monotonic()
            await wait_for(lambda: node.summary()["mode"] == "stale", what="stale mode")
            held_from = len(node.batches)
            held = node.batches[-1].limits()
            await lift_dimming_for_three_steps(node, dim)
            assert node.summary()["mode"] == "stale", "machine too slow for this window"
            assert all(x.limits() == held for x in node.batches[held_from:]), "no increase"
            failsafe = await node.wait_batch(
                lambda b: set(b.limits().values()) == {6.0}, after=held_from, what="fail-safe"
            )
            assert failsafe.at_s - stopped < 2.0 + timeout_s(1.5)
            assert {x.binding_source for x in failsafe.batch.limits} == {"fail-safe"}
            assert node.summary()["mode"] == "fail-safe"
            meter = node.summary()["meters"]["grid"]
            assert meter["stale"]
            assert "no answer" in (meter["error"] or "")
            node.meter().answer_again()
            await wait_for(lambda: node.summary()["mode"] == "normal", what="normal again")
    # Each change of mode told the journal once (it said nothing: the records only, per
    # connector), with the oldest reading's age.
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    modes = [(level, m) for level, m in logged if m.startswith("load management: ")]
    assert [(level, m.split(" (")[0]) for level, m in modes][-4:] == [
        ("INFO", "load management: normal"),
        ("WARNING", "load management: stale"),
        ("WARNING", "load management: fail-safe"),
        ("INFO", "load management: normal again"),
    ], modes
    assert "the oldest meter reading" in modes[-3][1], modes
    assert "no increases" in modes[-3][1], modes


async def test_explain_names_the_fail_safe_when_it_binds_at_the_limit_the_car_had(
    tmp_path: Path,
) -> None:
    """A car at 7 A under a dimming (10 A: 7 A left) and a fail-safe of 7 A: the meter stops,
    the fail-safe binds at the same 7 A, and the dimming is lifted. The limit did not change, so
    nothing was recorded: ``explain`` named the lifted dimming, in mode normal, while the status
    and the batches said fail-safe."""
    dim = tmp_path / "dim"
    contact(dim, closed=True)
    body = FUSE_40 + contact_toml("dimming", dim, 10) + FAST.replace("= 6.0", "= 7.0")
    async with running(tmp_path, body, charge_points=("CP1",)) as node:
        await node.wait_meter_read()
        sim = CarSim(node, node.meter(), base_a=2.0, charge_points=("CP1",))
        async with following(sim):
            await sim.start()
            await node.wait_batch(lambda b: b.limits().get("CP1/1") == 7.0, what="7 A, dimmed")
            node.meter().stop_answering()
            await wait_for(
                lambda: node.summary()["mode"] == "fail-safe", timeout=6.0, what="fail-safe"
            )
            contact(dim, closed=False)
            await wait_for(
                lambda: node.summary()["limits"]["site"]["L1"]["limit_a"] == 40.0,
                what="dimming lifted",
            )
            status = node.summary()["connectors"]["CP1/1"]
            assert (status["limit_a"], status["binding_source"]) == (7.0, "fail-safe")
        records = [r for r in node.audit() if r.kind is AuditKind.LIMIT]
        story = explain(records, charge_point_id="CP1", at_utc=datetime.now(UTC))
        assert story.data["limit"]["inputs"]["binding_source"] == "fail-safe", story.text()
        assert story.data["limit"]["inputs"]["mode"] == "fail-safe", story.text()
        assert "Limit: 7 A since" in story.text()


async def test_stale_meter_stops_increases_the_samples_allow_then_falls_back_to_failsafe(
    tmp_path: Path,
) -> None:
    """The no-increase rule alone (control_loop.mode_for / _decide): the cars' samples keep
    coming (every 0.1 s, each car at its offer, so the sample rule lets them rise) while the
    meter stops answering, and the site limit goes up. Once the last good reading is older than
    stale_no_increase_s nothing increases, step after step, though the loop's targets are
    higher; from stale_failsafe_s the fail-safe current applies."""
    dim = tmp_path / "dim"
    contact(dim, closed=True)
    body = FUSE_40 + contact_toml("dimming", dim, 20) + FAST
    async with running(tmp_path, body) as node:
        await node.wait_meter_read()
        state = node.allocator().state
        assert state is not None
        control = state.model.control
        sim = CarSim(node, node.meter(), base_a=2.0, charge_points=("CP1", "CP2"))
        async with following(sim, report_every_s=0.1):
            await sim.start()
            dimmed = (20.0 - 1.0 - 2.0) / 2
            await node.wait_batch(lambda b: b.limits() == {"CP1/1": dimmed, "CP2/1": dimmed})
            node.meter().stop_answering()
            await wait_for(
                lambda: node.summary()["meters"]["grid"]["error"] is not None, what="a failed read"
            )
            last_read_s = state.samples["site"].read_s  # the last good reading (monotonic)
            # The meter's own age, not the loop's mode: the status says stale from
            # stale_no_increase_s on, whatever control_loop.mode_for makes of it.
            await wait_for(lambda: node.summary()["meters"]["grid"]["stale"], what="meter stale")
            assert time.monotonic() - last_read_s >= control.stale_no_increase_s
            held_from = len(node.batches)
            held = {k: c["sent_a"] for k, c in node.summary()["connectors"].items()}
            assert held == {"CP1/1": dimmed, "CP2/1": dimmed}
            await lift_dimming_for_three_steps(node, dim)
            connectors = node.summary()["connectors"]
            assert time.monotonic() - last_read_s < control.stale_failsafe_s, (
                "machine too slow for this window"
            )
            for key, c in connectors.items():  # the decisions (an increase's batch leaves
                # only once its audit record is on disk)
                assert c["target_a"] > c["limit_a"] == dimmed, (key, c)  # it would rise
                assert c["action"] == "hold", (key, c)
                assert c["reason"].startswith("no increase: meter data is stale"), (key, c)
            assert node.summary()["mode"] == "stale"
            failsafe = await node.wait_batch(
                lambda b: set(b.limits().values()) == {6.0}, after=held_from, what="fail-safe"
            )
            for b in node.batches[held_from : node.batches.index(failsafe)]:
                assert all(a <= held[k] for k, a in b.limits().items()), ("no increase", b)
            assert failsafe.at_s - last_read_s >= control.stale_failsafe_s
            assert failsafe.at_s - last_read_s < control.stale_failsafe_s + timeout_s(1.5)
            assert {x.binding_source for x in failsafe.batch.limits} == {"fail-safe"}
            assert node.summary()["mode"] == "fail-safe"


# --- compliance: a node over its limit, a charge point that ignores its profile -------------

# Short enough for a test (the default grace is 30 s; [allocation] compliance_grace_s).
QUICK_COMPLIANCE = ComplianceConfig(tolerance_a=2.0, grace_s=1.0, react_s=0.3)


async def test_a_metered_node_over_its_limit_is_flagged_in_the_status_and_the_audit_trail(
    tmp_path: Path,
) -> None:
    """The grid meter shows the site above its 40 A fuse (no car to lower: the base load alone)
    for longer than the grace: the status names the node and an audit record says so; back
    within the limit for the grace, both say that too."""
    grace_s = QUICK_COMPLIANCE.grace_s
    async with running(
        tmp_path, FUSE_40 + FAST, meter_a=(10.0, 10.0, 10.0), compliance=QUICK_COMPLIANCE
    ) as node:
        await node.wait_meter_read()
        assert node.summary()["nodes_over_limit"] == []
        over_from = time.monotonic()
        await set_meter(node.meter(), (45.0, 44.0, 44.0))
        await wait_for(lambda: node.summary()["nodes_over_limit"] == ["site"], what="flagged")
        assert time.monotonic() - over_from >= grace_s, "not before the grace"

        def node_records() -> list[str]:
            return [
                r.decision
                for r in node.audit()
                if r.kind is AuditKind.LIMIT and r.decision.startswith("node site")
            ]

        await wait_for(lambda: bool(node_records()), what="the flag's record committed")
        (over,) = [r for r in node.audit() if r.decision == "node site over its limit"]
        assert over.inputs["node"] == "site"
        assert over.inputs["meter_a"] == [45.0, 44.0, 44.0]
        assert over.inputs["limit"]["L1"] == {"limit_a": 40.0, "source": "main fuse"}
        assert "shows node 'site' above its limit" in over.reason
        within_from = time.monotonic()
        await set_meter(node.meter(), (10.0, 10.0, 10.0))
        await wait_for(lambda: node.summary()["nodes_over_limit"] == [], what="cleared")
        assert time.monotonic() - within_from >= grace_s, "not before the grace"
        await wait_for(lambda: len(node_records()) == 2, what="the clearing record committed")
        assert node_records() == ["node site over its limit", "node site within its limit"]


GARAGE = """
[[feeders]]
name = "garage"
limit_a = 32
[[charge_points]]
id = "CP1"
feeder = "garage"
[[charge_points]]
id = "CP2"
feeder = "garage"
[[charge_points]]
id = "CP3"
feeder = "garage"
"""


async def test_a_connector_that_ignores_its_profile_is_flagged_and_the_others_make_room(
    tmp_path: Path,
) -> None:
    """CP1 draws 16 A whatever it is offered, on the garage feeder (32 A, no meter of its own)
    it shares with CP2 and CP3. Only compliance tells the allocator what it draws there: over
    its offer for the grace (1 s here), it is flagged (status, audit record), its draw is taken
    off the feeder's limit and the others are lowered so that the feeder's real load fits
    (32 A less the 1 A margin). The offender keeps the limit it was sent."""
    rogue_a = 16.0
    room_a = 32.0 - 1.0 - rogue_a  # for CP2 and CP3 together
    async with running(
        tmp_path,
        FUSE_40 + GARAGE + FAST,
        charge_points=(),
        compliance=QUICK_COMPLIANCE,
    ) as node:
        await node.wait_meter_read()
        sim = CarSim(
            node,
            node.meter(),
            base_a=2.0,
            charge_points=("CP1", "CP2", "CP3"),
            stubborn={"CP1": rogue_a},
        )

        def others(b: Received) -> float:
            return b.limits().get("CP2/1", 0.0) + b.limits().get("CP3/1", 0.0)

        async with following(sim, report_every_s=0.1):
            await sim.start()
            first = await node.wait_batch(lambda b: len(b.limits()) == 3, what="3 limits")
            # Shared as if CP1 drew what it is offered: more than the room it leaves.
            assert others(first) > room_a, first.limits()
            assert node.summary()["connectors"]["CP1/1"]["non_compliant"] is False
            await wait_for(
                lambda: node.summary()["connectors"]["CP1/1"]["non_compliant"],
                what="CP1 flagged",
            )
            flagged_at = len(node.batches)
            assert time.monotonic() - first.at_s >= QUICK_COMPLIANCE.grace_s
            # The next step takes it out of the allocation.
            lowered = await node.wait_batch(
                lambda b: "CP2/1" in b.limits() and others(b) <= room_a + 1e-6,
                after=flagged_at - 1,
                what="the others lowered to make room",
            )
            cp1 = node.summary()["connectors"]["CP1/1"]
            assert cp1["binding_source"] == "compliance: profile ignored"
            assert cp1["limit_a"] == cp1["sent_a"], "the offender keeps the limit it was sent"
            assert min(lowered.limits()[k] for k in ("CP2/1", "CP3/1")) >= 6.0, "not paused"
            assert all(
                f"less {rogue_a:.1f} A drawn by CP1/1 (ignores its profile)" in x.binding_source
                for x in lowered.batch.limits
                if x.charge_point_id in ("CP2", "CP3")
            ), lowered.batch.limits
            # The cars follow; the feeder's real load fits, and stays so.
            await wait_for(
                lambda: sim.draws.get("CP2", 99.0) + sim.draws.get("CP3", 99.0) <= room_a + 1e-6,
                what="the others follow",
            )
            steps = node.allocator().steps
            await wait_for(lambda: node.allocator().steps >= steps + 5, what="5 more steps")
            in_force: dict[str, float] = {}
            for b in node.batches:  # a batch carries the limits that changed
                in_force.update(b.limits())
                if b.at_s >= lowered.at_s:
                    assert in_force["CP2/1"] + in_force["CP3/1"] <= room_a + 1e-6, in_force
            connectors = node.summary()["connectors"]
            assert connectors["CP2/1"]["limit_a"] + connectors["CP3/1"]["limit_a"] <= room_a + 1e-6
            assert connectors["CP1/1"]["non_compliant"] is True

        def flags() -> list[dict[str, object]]:
            return [
                dict(r.inputs)
                for r in node.audit()
                if r.kind is AuditKind.LIMIT
                and r.charge_point_id == "CP1"
                and r.inputs.get("binding_source") == "compliance: profile ignored"
            ]

        await wait_for(lambda: bool(flags()), what="the flag's record committed")
        (flag,) = flags()
        assert flag["non_compliant"] is True
        assert flag["measured_a"] == [rogue_a] * 3
        assert not [r for r in node.audit() if r.decision.startswith("node ")], (
            "the feeder has no meter; the site's stays under its fuse"
        )


# --- grid limit steps down -------------------------------------------------------------------


async def test_contact_flip_lowers_profiles_within_one_loop(tmp_path: Path) -> None:
    dim = tmp_path / "dim"
    contact(dim, closed=False)
    body = (
        FUSE_40
        + contact_toml("14a", dim.name, 16)
        + FAST.replace("settle_s = 0.1", "settle_s = 60.0")
    )
    async with running(tmp_path, body, meter_a=TWO_CARS_AT_8, tick_s=30.0) as node:
        await node.wait_meter_read()
        node.send(demand(report("CP1", measured_a=8.0), report("CP2", measured_a=8.0)))
        await node.wait_batch(lambda b: b.limits() == {"CP1/1": 8.0, "CP2/1": 8.0})
        count = len(node.batches)
        flipped = time.monotonic()
        contact(dim, closed=True)
        lowered = await node.wait_batch(
            lambda b: b.limits() == {"CP1/1": 6.5, "CP2/1": 6.5}, after=count, what="dimmed"
        )
        assert lowered.at_s - flipped < timeout_s(1.0)
        assert gc.isenabled(), "the collector left off after the step"
        assert {x.binding_source for x in lowered.batch.limits} == {"grid_limit:14a/L1"}
        assert node.allocator().last_step_why == "limit from '14a' went down"


async def test_an_ems_register_lowering_lowers_profiles_within_one_loop(tmp_path: Path) -> None:
    """An EMS writes a lower limit into its register (a real pymodbus server), its heartbeat
    moving: the profiles go down within one loop, bound by the EMS (coverage audit: the EMS
    source was tested up to its actor's reports only)."""
    async with MeterServer({"holding": {100: 40, 101: 1}}) as ems:
        body = (
            FUSE_40
            + f"""
[[grid_limits]]
name = "ems"
kind = "modbus"
host = "127.0.0.1"
port = {ems.port}
timeout_s = 0.3
poll_interval_s = 0.05
value_address = 100
heartbeat_address = 101
unit = "a"
stale_after_s = 30
fail_safe = {{ current_a = 10 }}
"""
            + FAST.replace("settle_s = 0.1", "settle_s = 60.0")
        )
        async with running(tmp_path, body, meter_a=TWO_CARS_AT_8, tick_s=30.0) as node:
            await node.wait_meter_read()
            await wait_for(lambda: "ems" in node.summary()["sources"], what="the EMS read")
            node.send(demand(report("CP1", measured_a=8.0), report("CP2", measured_a=8.0)))
            await node.wait_batch(lambda b: b.limits() == {"CP1/1": 8.0, "CP2/1": 8.0})
            count = len(node.batches)
            written = time.monotonic()
            await ems.set("holding", 100, [16])
            await ems.set("holding", 101, [2])
            lowered = await node.wait_batch(
                lambda b: b.limits() == {"CP1/1": 6.5, "CP2/1": 6.5}, after=count, what="lowered"
            )
            assert lowered.at_s - written < timeout_s(1.0)
            assert {x.binding_source for x in lowered.batch.limits} == {"grid_limit:ems/L1"}
            assert node.allocator().last_step_why == "limit from 'ems' went down"


def test_the_pause_after_a_lowering_batch_scales_with_it_between_bounds() -> None:
    s = AllocatorSettings()
    assert s.fan_out_pause_s([(10, None)]) == 0.0, "a small batch: no pause (below 1 ms)"
    assert s.fan_out_pause_s([(20, None)]) == pytest.approx(0.001)
    assert s.fan_out_pause_s([(500, None)]) == pytest.approx(0.025)
    assert s.fan_out_pause_s([(5000, None)]) == 0.05, "capped"
    assert AllocatorSettings(fan_out_pause_max_s=0.0).fan_out_pause_s([(500, None)]) == 0.0
    # Learned from the broker nodes: the longest part at its node's pace.
    assert s.fan_out_pause_s([(250, 100e-6), (250, 60e-6)]) == pytest.approx(0.025)
    assert s.fan_out_pause_s([(250, 20e-6), (250, None)]) == pytest.approx(0.0125)
    assert s.fan_out_pause_s([]) == 0.0


async def test_a_big_lowering_batch_leaves_the_loop_free_before_the_rest_of_the_step(
    tmp_path: Path,
) -> None:
    """40 connectors all lowered: the batch leaves, then the allocator pauses (as long as the
    broker node said its last batch took it, 1 ms a limit here; AllocatorSettings.fan_out_pause_s)
    before it builds the rest of the step, so whatever else wants the node's loop (in one
    process, the broker's fan-out) runs first; the step's records follow. Without the pause, the
    step would end before anything else ran."""
    cps = tuple(f"CP{i:02d}" for i in range(40))
    dim = tmp_path / "dim"
    contact(dim, closed=False)
    body = FUSE_40.replace("40", "720") + contact_toml("dimming", dim.name, 300) + FAST
    base = 2.0 + 40 * 8.0
    async with running(
        tmp_path, body, meter_a=(base, base, base), charge_points=cps, tick_s=30.0
    ) as node:
        system = node.system
        assert system is not None
        loop = asyncio.get_running_loop()
        inner = system.remote
        assert inner is not None
        # (steps when a batch left, steps when the loop next ran something else)
        seen: list[tuple[int, int]] = []

        def remote(path: str, msg: object) -> None:
            inner(path, msg)
            if isinstance(msg, ProfileBatch):
                allocator = node.allocator()
                at = allocator.steps
                loop.call_soon(lambda: seen.append((at, allocator.steps)))

        system.remote = remote
        await node.wait_meter_read()
        node.send(demand(*(report(cp, measured_a=8.0) for cp in cps)))
        first = await node.wait_batch(
            lambda b: len(b.limits()) == 40 and min(b.limits().values()) > 6.0,
            what="40 cars charging",
        )
        count = len(node.batches)
        node.send(ProfileOutcomes(outcomes=(), node="broker", write_s_per_limit=0.001))
        contact(dim, closed=True)  # 300 A instead of 720: every car comes down
        lowered = await node.wait_batch(
            lambda b: (
                len(b.limits()) == 40 and all(a < first.limits()[k] for k, a in b.limits().items())
            ),
            after=count,
            what="every limit lowered",
        )
        index = node.batches.index(lowered)
        await wait_for(lambda: len(seen) > index, what="the loop ran after the batch left")
        at, next_ran = seen[index]
        assert next_ran == at, "the loop ran something else before the step ended"
        await wait_for(lambda: node.allocator().steps > at, what="the step ends")
        assert node.allocator().report()["last_fan_out_pause_ms"] == pytest.approx(40.0)
        lowered_to = {k.split("/")[0]: a for k, a in lowered.limits().items()}
        await wait_for(
            lambda: (
                {
                    (r.charge_point_id, r.inputs.get("limit_a"))
                    for r in node.audit()
                    if r.kind is AuditKind.LIMIT
                }
                >= set(lowered_to.items())
            ),
            what="the decrease's records committed",
        )


async def test_ticks_step_right_after_the_meter_reads_not_between_them(tmp_path: Path) -> None:
    """A tick's step waits for the meter's next read (SiteAllocator._tick), so a read never
    waits for a tick's step: with a tick every 0.05 s and a read every 0.3 s, the steps come
    one per read, not six."""
    async with running(tmp_path, FUSE_40 + FAST, tick_s=0.05, poll_s=0.3) as node:
        await node.wait_meter_read()
        node.send(demand(report("CP1", measured_a=0.0), report("CP2", measured_a=0.0)))
        await node.wait_batch(lambda b: len(b.limits()) == 2)
        system = node.system
        assert system is not None
        meter = system.actor("energy/meters/grid")
        assert isinstance(meter, MeterActor)
        reads, steps = meter.reads, node.allocator().steps
        await wait_for(lambda: meter.reads >= reads + 5, timeout=5.0, what="5 more reads")
        read = meter.reads - reads
        stepped = node.allocator().steps - steps
        assert read - 1 <= stepped <= read + 1, (read, stepped)
        assert node.allocator().last_step_why == "tick"


async def test_ticks_go_on_without_a_meter_to_wait_for(tmp_path: Path) -> None:
    """A meter that stops answering does not pace the ticks: once its last good read is older
    than a wait (0.3 + 0.3 + 0.1 s), every tick steps on time (every 0.05 s here, not at each
    failed read, 0.6 s apart), so the stale-meter rules apply as late as before."""
    async with running(tmp_path, FUSE_40 + FAST, tick_s=0.05, poll_s=0.3) as node:
        await node.wait_meter_read()
        node.meter().stop_answering()
        await wait_for(lambda: node.summary()["mode"] == "stale", what="stale mode")
        steps = node.allocator().steps
        started = time.monotonic()
        await wait_for(lambda: node.allocator().steps >= steps + 10, what="10 more steps")
        assert time.monotonic() - started < timeout_s(1.5)


async def test_ticks_go_on_when_the_meter_actor_is_gone(tmp_path: Path) -> None:
    """The allocator alone, its meter's actor never started: after one reading (told by hand),
    nothing more comes from the meter. The first tick waits for it poll + timeout + 0.1 s
    (0.7 s), then steps; with the last read older than that, ticks step at once."""
    config = site_config(tmp_path, meter_toml(9, poll_s=0.3) + FUSE_40 + FAST)
    assert config.energy is not None
    store = open_store(tmp_path / "lmdb")
    system = ActorSystem("energy", store=store)
    system.remote = lambda path, msg: None
    settings = AllocatorSettings(tick_s=0.05)
    try:
        await system.start(
            SupervisorSpec(
                children=(
                    ChildSpec(
                        id="allocator",
                        start=lambda ctx: SiteAllocator(
                            ctx,
                            energy=config.energy,
                            charge_points=charge_point_energy(config),
                            settings=settings,
                        ),
                    ),
                )
            )
        )
        ref = system.lookup("energy/allocator")
        assert ref is not None
        now = time.monotonic()
        fuse = GridLimit(source="main fuse", node="site", value=LimitValue(current_a=(40.0,) * 3))
        await ref.ask(
            GridLimitReported(
                source="main fuse",
                node="site",
                limit=fuse,
                fallback=None,
                heartbeat_s=600.0,
                reported_monotonic_s=now,
            )
        )
        await ref.ask(grid_read(now, (2.0, 2.0, 2.0)))
        allocator = system.actor("energy/allocator")
        assert isinstance(allocator, SiteAllocator)
        steps = allocator.steps
        await wait_for(lambda: allocator.steps > steps, timeout=3.0, what="the waited tick")
        waited_s = time.monotonic() - now
        assert waited_s >= 0.6, "the first tick waited for the meter"
        await wait_for(
            lambda: allocator.steps >= steps + 20, timeout=5.0, what="ticks at once again"
        )
    finally:
        await system.stop(5.0)
        store.close()


async def test_schedule_step_edge_lowers_profiles(tmp_path: Path) -> None:
    edge = datetime(2025, 1, 6, 17, 0, tzinfo=UTC)  # a Monday
    fake_start = edge - timedelta(seconds=1.0)
    started = time.monotonic()
    clock = Clock(utc_now=lambda: fake_start + timedelta(seconds=time.monotonic() - started))
    body = (
        FUSE_40
        + """
[[grid_limits]]
name = "evening peak"
kind = "schedule"
timezone = "UTC"
[[grid_limits.steps]]
from = "17:00"
to = "20:00"
current_a = 16
"""
        + FAST
    )
    async with running(tmp_path, body, meter_a=TWO_CARS_AT_8, clock=clock, tick_s=30) as node:
        await node.wait_meter_read()
        node.send(demand(report("CP1", measured_a=8.0), report("CP2", measured_a=8.0)))
        before = await node.wait_batch(lambda b: len(b.batch.limits) == 2)
        assert before.limits() == {"CP1/1": 8.0, "CP2/1": 8.0}, "the edge is still ahead"
        lowered = await node.wait_batch(
            lambda b: b.limits() == {"CP1/1": 6.5, "CP2/1": 6.5}, what="evening peak"
        )
        wall = clock.utc_now() - timedelta(seconds=time.monotonic() - lowered.at_s)
        assert wall >= edge - timedelta(milliseconds=50)
        assert {x.binding_source for x in lowered.batch.limits} == {"grid_limit:evening peak/L1"}


async def cloud_limit_16_a_for_1_s(node: EnergyNode) -> datetime:
    """Two cars at 8 A, then the cloud pushes 16 A for 1 s: both lowered to 6.5 A. When the push
    expires."""
    await node.wait_meter_read()
    node.send(demand(report("CP1", measured_a=8.0), report("CP2", measured_a=8.0)))
    await node.wait_batch(lambda b: b.limits() == {"CP1/1": 8.0, "CP2/1": 8.0})
    expires = datetime.now(UTC) + timedelta(seconds=1.0)
    node.send(
        CloudLimitPushed(
            source="cloud",
            node="site",
            limit_a=16.0,
            power_w=None,
            expires_utc=format_utc(expires),
        )
    )
    await node.wait_batch(lambda b: b.limits() == {"CP1/1": 6.5, "CP2/1": 6.5})
    return expires


async def test_cloud_limit_applies_until_it_expires(tmp_path: Path) -> None:
    body = FUSE_40 + '\n[[grid_limits]]\nname = "cloud"\nkind = "cloud"\n' + FAST
    async with running(tmp_path, body, meter_a=TWO_CARS_AT_8, tick_s=30) as node:
        expires = await cloud_limit_16_a_for_1_s(node)
        assert node.summary()["sources"]["cloud"]["limit"] == "16/16/16 A"
        assert node.system is not None
        node.system.cells["energy/limits/cloud"].kill()  # restarts from its persisted push
        await wait_for(
            lambda: (
                node.system is not None
                and node.system.cells["energy/limits/cloud"].generation == 2
                and node.system.cells["energy/limits/cloud"].running
            ),
            what="cloud source restarted",
        )

        def restarted_limit() -> str | None:
            actor = node.system.actor("energy/limits/cloud") if node.system else None
            assert isinstance(actor, CloudLimitActor)
            return None if actor.current is None else actor.current.value.describe()

        await wait_for(lambda: restarted_limit() is not None, what="restored push")
        assert restarted_limit() == "16/16/16 A", "the push survived the restart (persisted)"
        assert node.summary()["sources"]["cloud"]["limit"] == "16/16/16 A"
        await wait_for(lambda: node.summary()["sources"]["cloud"]["limit"] is None, what="expired")
        assert datetime.now(UTC) >= expires


async def test_a_cloud_limit_is_lifted_when_it_expires_not_at_the_next_heartbeat(
    tmp_path: Path,
) -> None:
    """The source wakes at the push's expiry (CloudLimitActor: wake_at), not at its heartbeat
    (10 s on a site, 30 s here): the allocator's limit is the fuse's again at once."""
    body = FUSE_40 + '\n[[grid_limits]]\nname = "cloud"\nkind = "cloud"\n' + FAST
    async with running(tmp_path, body, meter_a=TWO_CARS_AT_8, heartbeat_s=30.0) as node:
        expires_utc = await cloud_limit_16_a_for_1_s(node)
        expires = time.monotonic() + (expires_utc - datetime.now(UTC)).total_seconds()

        def binding() -> object:
            return node.summary()["limits"]["site"]["L1"]

        assert binding() == {"limit_a": 16.0, "source": "cloud"}
        await wait_for(lambda: binding() == {"limit_a": 40.0, "source": "main fuse"}, what="lifted")
        assert time.monotonic() - expires < 3.0, f"lifted {time.monotonic() - expires:.1f} s late"


async def test_a_push_sent_again_does_not_replace_a_newer_one_the_source_took(
    tmp_path: Path,
) -> None:
    """The broker sends a kept push again (the source asked at its start, or the broker
    restarted), and it may arrive after a newer push that took another way (direct link or
    the Thespian root): the source keeps the newer one (the broker numbers its pushes, seq)."""
    body = FUSE_40 + '\n[[grid_limits]]\nname = "cloud"\nkind = "cloud"\n' + FAST

    def pushed(limit_a: float, seq: int) -> CloudLimitPushed:
        return CloudLimitPushed(
            source="cloud", node="site", limit_a=limit_a, power_w=None, expires_utc=None, seq=seq
        )

    async with running(tmp_path, body, meter_a=None, tick_s=30) as node:

        def source() -> CloudLimitActor:
            actor = node.system.actor("energy/limits/cloud") if node.system else None
            assert isinstance(actor, CloudLimitActor)
            return actor

        def cloud() -> object:
            return node.summary()["sources"].get("cloud", {}).get("limit")

        node.send(pushed(16.0, seq=7))
        await wait_for(lambda: cloud() == "16/16/16 A", what="the newer push")
        node.send(pushed(20.0, seq=5))
        await wait_for(lambda: source().stale_pushes == 1, what="the older push turned down")
        assert cloud() == "16/16/16 A"
        node.send(pushed(20.0, seq=9))
        await wait_for(lambda: cloud() == "20/20/20 A", what="a newer push still taken")


# --- supervision -----------------------------------------------------------------------------


async def test_killed_meter_is_restarted_and_the_allocator_keeps_running(tmp_path: Path) -> None:
    async with running(tmp_path, FUSE_40 + FAST) as node:
        await node.wait_meter_read()
        system = node.system
        assert system is not None
        meter_cell = system.cells["energy/meters/grid"]
        allocator_cell = system.cells["energy/allocator"]
        generation = allocator_cell.generation
        reads = node.meter().requests
        meter_cell.kill()
        await wait_for(
            lambda: meter_cell.generation == 2 and meter_cell.running,
            what="meter restarted by its supervisor",
        )
        await wait_for(lambda: node.meter().requests > reads + 2, what="reads resume")
        steps = node.allocator().steps
        await wait_for(lambda: node.allocator().steps > steps + 2, what="allocator ticks")
        assert allocator_cell.generation == generation, "the allocator was not restarted"
        assert node.summary()["mode"] == "normal"
        tree = await system.which_children()
        meters = next(c for c in tree if c.id == "meters")
        assert meters.children[0].restarts == 1


async def restart_allocator(node: EnergyNode) -> None:
    """Kill the allocator actor and wait for its supervisor to have it running again."""
    assert node.system is not None
    cell = node.system.cells["energy/allocator"]
    generation = cell.generation
    cell.kill()
    await wait_for(
        lambda: cell.generation == generation + 1 and cell.running, what="allocator restarted"
    )


async def test_restarted_allocator_gets_limits_and_meters_again(tmp_path: Path) -> None:
    async with running(tmp_path, FUSE_40 + FAST) as node:
        await node.wait_meter_read()
        node.send(demand(report("CP1", measured_a=8.0)))
        await node.wait_batch(lambda b: len(b.batch.limits) == 1)
        rules = SiteRulesChanged(
            version=3, priorities={}, max_current_a={}, site={"max_current_a": 30.0}
        )
        assert await node.allocator_ref.ask(rules) is None  # answered after its commit
        assert node.summary()["limits"]["site"]["L1"]["source"] == "central rules"
        await restart_allocator(node)
        await node.wait_meter_read()
        assert node.summary()["sources"]["main fuse"]["limit"] == "40/40/40 A"
        assert node.summary()["limits"]["site"]["L1"] == {
            "limit_a": 30.0,
            "source": "central rules",
        }, "the rules survive the restart (persisted)"
        count = len(node.batches)
        node.send(demand(report("CP1", measured_a=8.0)))
        again: Received = await node.wait_batch(
            lambda b: len(b.batch.limits) == 1, after=count, what="batch after restart"
        )
        assert again.limits()["CP1/1"] >= 6.0


async def test_rules_sent_again_do_not_replace_newer_ones_the_allocator_took(
    tmp_path: Path,
) -> None:
    """The broker sends the rules in force again when the allocator asks at its start, and
    they may arrive after a change that took the other way between the nodes: the allocator
    keeps the newer (the broker numbers its sendings, seq; a rollback lowers the version, so
    versions cannot order them)."""
    async with running(tmp_path, FUSE_40 + FAST, meter_a=None, tick_s=30) as node:

        def rules(max_a: float, seq: int) -> SiteRulesChanged:
            return SiteRulesChanged(
                version=3, priorities={}, max_current_a={}, site={"max_current_a": max_a}, seq=seq
            )

        def site_l1() -> object:
            return node.summary()["limits"]["site"]["L1"]

        await node.allocator_ref.ask(rules(30.0, seq=7))
        assert site_l1() == {"limit_a": 30.0, "source": "central rules"}
        await node.allocator_ref.ask(rules(20.0, seq=5))
        assert node.allocator().stale_rules == 1
        assert site_l1() == {"limit_a": 30.0, "source": "central rules"}
        await node.allocator_ref.ask(rules(20.0, seq=9))
        assert site_l1() == {"limit_a": 20.0, "source": "central rules"}


async def test_a_restarted_allocator_pauses_no_car_before_its_first_meter_reading(
    tmp_path: Path,
) -> None:
    """The allocator restarted (a crash, kill -9 of its node, the edge restarted) knows no car
    and no reading. It stepped as soon as its limit sources reported, before the meter's first
    reading: the fail-safe, where a car it knows nothing of (0 A) does not rise without a
    failsafe_total_a: every charging car was sent 0 A, and started again 7 s later (the
    defaults). It now waits for the reading (at most stale_failsafe_s), the charge points
    keeping their limits meanwhile, and restarts each car at the minimum."""
    body = FUSE_40 + "\n[allocation]\nmargin_a = 1.0\n"  # the control loop's defaults
    async with running(tmp_path, body, meter_a=(18.0, 18.0, 18.0)) as node:
        await node.wait_meter_read()
        node.send(demand(report("CP1", measured_a=16.0)))
        await node.wait_batch(lambda b: b.limits().get("CP1/1", 0.0) >= 6.0, what="charging")
        count = len(node.batches)
        await restart_allocator(node)
        node.send(demand(report("CP1", measured_a=16.0)))  # the broker reports again at once
        again = await node.wait_batch(
            lambda b: "CP1/1" in b.limits(), after=count, what="CP1's limit after the restart"
        )
        assert again.limits()["CP1/1"] >= 6.0, [b.limits() for b in node.batches[count:]]
        assert all(b.limits().get("CP1/1", 6.0) >= 6.0 for b in node.batches[count:])


@pytest.mark.parametrize("closed", [True, False], ids=["dimmed", "open"])
async def test_unreadable_contact_file_means_fail_safe(tmp_path: Path, closed: bool) -> None:
    dim = tmp_path / "dim"
    contact(dim, closed=closed)
    body = (
        FUSE_40
        + f"""
[[grid_limits]]
name = "14a"
kind = "contact"
path = "{dim}"
dimmed = {{ current_a = 16 }}
fail_safe = {{ current_a = 10 }}
poll_interval_s = 0.05
stale_after_s = 0.3
"""
    )
    async with running(tmp_path, body, meter_a=None) as node:
        await wait_for(lambda: "14a" in node.summary()["sources"], what="contact read")
        dim.unlink()
        await wait_for(
            lambda: node.summary()["limits"]["site"]["L1"]["limit_a"] == 10.0, what="fail-safe"
        )
        assert node.summary()["sources"]["14a"]["stale"] is True


# --- broker shards ---------------------------------------------------------------------------


async def test_each_broker_node_gets_the_limits_of_its_charge_points(tmp_path: Path) -> None:
    """Two broker nodes (actors/shards.py): each step's batch leaves in two parts, one per node,
    each with that node's charge points; the demand comes from both, each complete for its
    own."""
    ids = ("A", "B", "C", "D", "E", "F")
    shard = {cp: shard_of(cp, 2) for cp in ids}
    assert set(shard.values()) == {0, 1}  # both nodes have charge points here
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(sdm630_server((2.0, 2.0, 2.0)))
        node = EnergyNode(
            tmp_path,
            site_config(tmp_path, meter_toml(server.port) + FUSE_40 + FAST, charge_points=ids),
            AllocatorSettings(tick_s=0.1, resend_s=60.0, broker_shards=2),
            server=server,
        )
        await node.start()
        stack.push_async_callback(node.stop)
        await node.wait_meter_read()
        for k in (0, 1):
            batch = demand(*(report(cp) for cp in ids if shard[cp] == k))
            node.send(replace(batch, complete=True, shard=k))
        got = await node.wait_batch(lambda b: len(b.batch.limits) > 0, what="shard 0's part")

        def parts_of_shard_1() -> list[ProfileBatch]:
            return [
                m
                for p, m in node.other
                if p == "broker-1/profiles" and isinstance(m, ProfileBatch) and m.limits
            ]

        await wait_for(lambda: bool(parts_of_shard_1()), what="shard 1's part")
        other = parts_of_shard_1()[0]
        # shard 0's part of the same step (an earlier step may have sent shard 0's alone)
        got = await node.wait_batch(
            lambda b: b.batch.computed_utc == other.computed_utc, what="the same step's part"
        )
        assert {x.charge_point_id for x in got.batch.limits} == {cp for cp in ids if shard[cp] == 0}
        assert {x.charge_point_id for x in other.limits} == {cp for cp in ids if shard[cp] == 1}
        # The same step: its stamps, and the limits fit the headroom together.
        assert other.trigger_monotonic_ns == got.batch.trigger_monotonic_ns
        assert other.computed_utc == got.batch.computed_utc
        total = sum(x.limit_a for x in (*got.batch.limits, *other.limits))
        assert 0 < total <= 40.0 - 1.0 - 2.0
        # Shard 1's next complete batch, without C, leaves shard 0's charge points alone.
        gone = next(cp for cp in ids if shard[cp] == 1)
        node.send(
            replace(
                demand(*(report(cp) for cp in ids if shard[cp] == 1 and cp != gone)),
                complete=True,
                shard=1,
            )
        )
        await wait_for(
            lambda: f"{gone}/1" not in node.summary()["connectors"], what=f"{gone} forgotten"
        )
        assert {k.split("/")[0] for k in node.summary()["connectors"]} == set(ids) - {gone}


async def test_a_meter_that_never_reads_at_the_start_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The allocator waits for every meter's first reading, at most stale_failsafe_s: the
    fail-safe it then steps in is a meter that did not answer (a fault, as for one that stops),
    no longer the expected fail-safe of a start before its first reading (INFO)."""
    caplog.set_level(logging.INFO, logger="actors.site_allocator")
    body = meter_toml(free_tcp_port()) + FUSE_40 + FAST  # nothing listens there
    async with running(tmp_path, body, meter_a=None) as node:
        await wait_for(
            lambda: node.summary()["mode"] == "fail-safe",
            timeout=timeout_s(2.0 + 3.0),
            what="the fail-safe after stale_failsafe_s",
        )
    modes = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.getMessage().startswith("load management: ")
    ]
    assert modes, "no mode logged"
    assert modes[0][1].startswith("load management: fail-safe"), modes
    assert modes[0][0] == "WARNING", modes
