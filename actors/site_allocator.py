"""The site allocator actor: the energy node's one decision maker.

It feeds :class:`actors.site_state.SiteState` with meter samples (:class:`MeterRead`), grid
limits (:class:`GridLimitReported`) and what the broker reports of the connectors
(:class:`DemandBatch`), and runs a control-loop step on a tick (1 s) AND at once on an event that
can require a decrease: a meter sample showing a node over its limit less the margin, a limit
going down, a new car. Each step's audit records (one per changed decision, and compliance flags)
are staged into the node store's ``audit`` table and commit with the message that caused them.
The limits go to the broker node as one :class:`ProfileBatch` (path ``broker/profiles``) when one
is worth sending (only the changed limits; in full every ``resend_s`` so a restarted broker
converges): a batch that lowers a limit at once, a batch of increases once its records are on
disk.

It also routes :class:`CloudLimitPushed` from the broker to the cloud limit source it names.
Central rules (:class:`SiteRulesChanged`) are persisted as they come, and asked for again at
start (:class:`SiteRulesWanted`): they are sent when they change, and a sending lost with this
node (killed before it stored them) would not come again.
The control loop's state is monotonic time and is not persisted: after a restart every car
restarts at the minimum and ramps up (the safe side); the limit sources and meters restart with
the allocator (rest_for_one) and report again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from actors.audit import stage_record
from actors.audit_records import AuditRecord
from actors.compliance import ComplianceConfig
from actors.control_loop import finish
from actors.energy_inputs import site_model
from actors.energy_messages import (
    CloudLimitPushed,
    ConnectorLimit,
    DemandBatch,
    ProfileBatch,
    ProfileOutcomes,
    SiteRulesChanged,
    SiteRulesWanted,
)
from actors.grid_limit import GridLimitReported
from actors.meter import MeterFailed, MeterRead
from actors.profiles import HYSTERESIS_A
from actors.shards import broker_node, shard_of
from actors.site_state import Policy, SiteState, StepOutput
from actors.site_status import site_summary
from config.energy import ChargePointEnergy, EnergyConfig
from supervisors.actor import Actor, ActorContext
from supervisors.gc_policy import collections_deferred
from supervisors.priority import background

log = logging.getLogger(__name__)

RULES_KEY = "central_rules"
TICK_WAIT_SLACK_S = 0.1
# A settle step comes this long after the change settles: a timer may fire up to the clock's
# resolution early, and the loop counts a change as settled from settle_s on, not before.
SETTLE_SLACK_S = 0.005


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocatorSettings:
    tick_s: float = 1.0
    resend_s: float = 60.0
    hysteresis_a: float = HYSTERESIS_A
    profiles_path: str = "broker/profiles"  # of shard 0; shard k's is on broker_node(k)
    broker_shards: int = 1  # broker nodes: each gets the limits of its charge points
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    # After a batch that lowers limits leaves, the allocator waits (its other messages wait
    # too) before it builds the rest of the step: the loop's next state, the audit records,
    # the compliance bookkeeping (a third of the step, 6 ms at 500 connectors). The broker
    # writes the batch meanwhile; when the step went on at once, the scheduler often started
    # the broker, woken by this node, on this node's busy CPU, and the 500 frames took 24-33
    # ms of wall for 20 of CPU. Waiting about as long as the broker takes (its CPU per
    # SetChargingProfile is about 40 us here) gave 22-25 ms and meter sample -> last profile
    # written p50 39-43 against 42-52 ms (bench/energy.py --cars 500 --runs 5, four pairs,
    # two of them with the pause as a blocking sleep); the p99 (20 steps) moved within the
    # host's noise, 50-78 against 57-71 ms. The decrease is already out; its records commit
    # that much later.
    # Below fan_out_pause_min_s (a batch of fewer than 20 limits) the rest of the step is too
    # short to be worth a pause: none.
    # Learned since: each broker node reports how long its latest batch took it per limit
    # (ProfileOutcomes.write_s_per_limit), and the pause is the longest of the nodes' parts at
    # that pace (fan_out_pause_per_limit_s until a node has reported). On a host where 250
    # frames took a node 26 ms of CPU, the fixed 25 ms pause let the rest of the step overlap the
    # fan-out's end: 36-39 ms of wall; a 40 ms pause, 30-34 ms, and meter sample -> last frame
    # p50 61.5 / 66.0 against 63.9 / 74.5 ms idle / loaded (bench/energy.py --cars 500 --runs 5
    # --broker-shards 2 --realtime-energy, one run each). Learned, two runs against four with
    # the fixed pace: the fan-out idle 32.7-33.4 ms of wall against 35.9-39.6, meter sample ->
    # last frame p50 62.4-62.5 against 63.9-70.1 ms; loaded, where the broker nodes' own
    # traffic shares their loops, 40.7-41.2 against 39.1-50.6 and p50 68.6-74.6 against
    # 71.3-79.5; the p99s within the host's noise (91.7-126.5 idle, 97.8-138.9 loaded).
    fan_out_pause_per_limit_s: float = 50e-6
    fan_out_pause_min_s: float = 0.001
    fan_out_pause_max_s: float = 0.05

    def fan_out_pause_s(self, parts: list[tuple[int, float | None]]) -> float:
        """How long to leave the broker nodes the CPU after a lowering batch: ``parts``, each
        node's number of limits and its learned seconds per limit (None: not learned yet)."""
        pause_s = max(
            (n * (per_limit or self.fan_out_pause_per_limit_s) for n, per_limit in parts),
            default=0.0,
        )
        pause_s = min(self.fan_out_pause_max_s, pause_s)
        return pause_s if pause_s >= self.fan_out_pause_min_s else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class TickWaited:
    """The meters' next message after tick ``tick`` did not come in time: step without it."""

    tick: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    """New demand came in on a site without meters and no step followed: make the next step's
    demands and counts (SiteAllocator._prepare)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settled:
    """The loop's last change settles at ``at_s`` (the allocator's monotonic clock): from then
    increases may follow it, so a step then, after the meters' next read, rather than at the
    next tick (SiteAllocator._settled)."""

    at_s: float


_UNMANAGED_IGNORED = (
    Tick,
    TickWaited,
    Settled,
    Prepare,
    MeterRead,
    MeterFailed,
    GridLimitReported,
    DemandBatch,
    ProfileOutcomes,
    SiteRulesChanged,
)


class SiteAllocator(Actor):
    def __init__(
        self,
        ctx: ActorContext,
        *,
        energy: EnergyConfig | None,
        charge_points: Mapping[str, ChargePointEnergy],
        cloud_paths: Mapping[str, str] | None = None,
        settings: AllocatorSettings | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        utc_now: Callable[[], datetime] = _utc_now,
    ) -> None:
        super().__init__(ctx)
        self.settings = s = settings or AllocatorSettings()
        self.state: SiteState | None = None
        if energy is not None:
            self.state = SiteState(
                site_model(energy, charge_points),
                actor=ctx.path,
                started_s=monotonic(),
                policy=Policy(
                    resend_s=s.resend_s, hysteresis_a=s.hysteresis_a, compliance=s.compliance
                ),
            )
        # A tick's step waits for the meters' next read (see _tick), at most this long.
        self.meter_wait_s: float | None = None
        if energy is not None and energy.meters:
            self.meter_wait_s = TICK_WAIT_SLACK_S + max(
                m.poll_interval_s + m.timeout_s for m in energy.meters
            )
        self.meter_read_s: float | None = None  # when the last MeterRead came
        self.ticks = 0
        self.tick_due = 0  # the tick waiting for the meters' next read, 0: none
        self.tick_why = "tick"  # the reason the step it waits for will give
        self.settle_due: float | None = None  # the Settled message on its way (its at_s)
        # New demand came in (at this time, monotonic) and no step has made its counts yet:
        # prepare them after a meter read begun since (SiteAllocator._prepare). None: none due.
        self.prepare_due: float | None = None
        self.prepared = 0
        self.last_step_s: float | None = None  # when the last step began (monotonic)
        self.cloud_paths = dict(cloud_paths or {})
        self.monotonic = monotonic
        self.utc_now = utc_now
        self.steps = 0
        self.batches = 0
        self.audited = 0
        self.last_step_ms = 0.0
        self.max_step_ms = 0.0
        self.last_step_why = ""
        self.logged_mode = ""  # the load-management mode the log last told of (_log_mode)
        self.mode_warned = False  # and whether that was a warning (stale or fail-safe)
        self.write_s_per_limit: dict[str, float] = {}  # per broker node (ProfileOutcomes)
        self.last_pause_ms = 0.0  # after the last lowering batch (AllocatorSettings)
        self.rules_seq = 0  # of the last SiteRulesChanged taken in this run
        self.stale_rules = 0  # sent again and overtaken by newer rules: not taken

    async def started(self) -> None:
        if self.state is not None:
            doc = self.load(RULES_KEY)
            if isinstance(doc, dict):
                self.state.rules_changed(_rules_from(doc))
            # The authorizer sends rules when they change; those sent as this node died (or
            # before it stored them) come again only if asked for.
            self.ctx.system.send(
                f"{broker_node(0)}/authorizer", SiteRulesWanted(reply_to=self.ctx.path)
            )
            self.send_after(self.settings.tick_s, Tick())

    async def receive(self, msg: object) -> Any:
        state = self.state
        if isinstance(msg, CloudLimitPushed):
            self._route_cloud_limit(msg)
            return None
        if state is None:
            if isinstance(msg, _UNMANAGED_IGNORED):
                return None  # no load management configured: nothing to decide
            return await super().receive(msg)
        if isinstance(msg, Tick):
            self.send_after(self.settings.tick_s, Tick())
            await self._tick()
        elif isinstance(msg, TickWaited):
            if self.tick_due == msg.tick:
                await self._step(self.tick_why)
        elif isinstance(msg, Settled):
            await self._settled(msg)
        elif isinstance(msg, MeterRead):
            self.meter_read_s = self.monotonic()
            why, records = state.meter_read(msg, self.utc_now())
            self._stage_all(records)
            if why is not None:
                await self._step(why, urgent=True, trigger_ns=int(msg.read_monotonic_s * 1e9))
            elif self.tick_due:
                await self._step(self.tick_why)
            elif self.prepare_due is not None and msg.read_monotonic_s >= self.prepare_due:
                self._prepare()
        elif isinstance(msg, MeterFailed):
            state.meter_failed(msg)
            if self.tick_due:
                await self._step(self.tick_why)
        elif isinstance(msg, GridLimitReported):
            why = state.limit_reported(msg, self.monotonic(), self.utc_now())
            if why is not None:
                await self._step(why, urgent=True)
        elif isinstance(msg, DemandBatch):
            with background():  # folding every connector's report: not urgent
                why, records = state.demand(msg, self.monotonic(), self.utc_now())
                self._stage_all(records)
            if why is not None:  # a new car (room made for it) or transaction: at once
                await self._step(why, urgent=True)
            else:
                first = self.prepare_due is None
                self.prepare_due = self.monotonic()  # after a read begun once this batch was in
                if first and self.meter_wait_s is None:  # no meter: after what waits now
                    self.send_after(0.0, Prepare())
        elif isinstance(msg, Prepare):
            if self.prepare_due is not None:
                self._prepare()
        elif isinstance(msg, ProfileOutcomes):
            # The charge points' answers to a batch, while the broker nodes may still be writing
            # it: bookkeeping, not urgent.
            with background():
                for o in msg.outcomes:
                    state.outcome(o)
            if msg.node and msg.write_s_per_limit is not None:
                self.write_s_per_limit[msg.node] = msg.write_s_per_limit
        elif isinstance(msg, SiteRulesChanged):
            if msg.seq < self.rules_seq:
                self.stale_rules += 1
                return None
            self.rules_seq = msg.seq
            self.persist(RULES_KEY, _rules_doc(msg))
            await self._step(state.rules_changed(msg))
        else:
            return await super().receive(msg)
        return None

    async def _tick(self, why: str = "tick") -> None:
        """A tick steps right after the meters' next read (or failed read), not at once: a
        step takes 15-30 ms at 500 connectors, and a read that came while a tick's step ran
        waited for it, the overload it showed lowered that much later; stepping after a read,
        the next read is a poll interval away, and the step works on a fresh reading. (On
        bench/energy.py at 500 cars the hand-over's p99 stayed 25-34 ms against a p50 of
        14-17, before and after: its tail is mostly steps where the host ran both nodes
        slower, the broker's CPU for the same frames up by half too.) It waits at most
        ``meter_wait_s`` (poll interval + timeout + 0.1 s), and only while the last good read
        is younger than that: without a meter, or with one that fails or whose actor is gone,
        ticks step on time, so the stale-meter rules (no increases after 3 s, the fail-safe
        budget after 10 s) apply as late as before, a tick at most."""
        wait_s = self.meter_wait_s
        read_s = self.meter_read_s
        if wait_s is None or read_s is None or self.monotonic() - read_s > wait_s:
            await self._step(why)
            return
        self.ticks += 1
        if not self.tick_due:
            self.tick_due = self.ticks
            self.tick_why = why
            self.send_after(wait_s, TickWaited(tick=self.ticks))

    async def _settled(self, msg: Settled) -> None:
        """The loop's last change has settled: step as a tick does (after the meters' next
        read), unless a step has begun since or a later change has moved the moment on.

        Two gains. An increase waits for the last change to settle (control_loop); stepping
        then, it comes when allowed rather than at the next tick, up to ``tick_s`` later. And
        the count of every changed connector (actors.control_plan.CountMemo) differs once the
        change has settled: made in this step, a later overload's step finds it made. On
        bench/energy.py's site, whose overloads come just after a change settled, the
        overload's step until its lowering batch went from 9.7 to 6.2 ms in-process (p50,
        bench/allocator.py's site at its pace)."""
        if msg.at_s != self.settle_due:
            return
        self.settle_due = None
        if self.last_step_s is not None and self.last_step_s >= msg.at_s:
            return
        await self._tick("a change settled")

    def _prepare(self) -> None:
        """New demand came in (a DemandBatch) and no step has counted it yet: make the next
        step's demands and counts now (SiteState.prepare), after a meter read that began once the
        batch was in (which sample of each connector counts depends on the meter's read time, and
        the samples of a batch are older than such a read; a read under way when the batch came
        would have picked the samples before them) while nothing waits. An overload's step often
        comes right after a DemandBatch: it then counts only what changed since, not every car
        again."""
        assert self.state is not None
        self.prepare_due = None
        with background():
            if self.state.prepare(self.monotonic()):
                self.prepared += 1

    async def _step(self, why: str, *, urgent: bool = False, trigger_ns: int | None = None) -> None:
        """``urgent``: a step that can lower limits at once (a meter read over a limit, a limit
        gone down, a new car): until its lowering batch is out it runs at the loop's priority
        (real-time where ``[runtime] realtime_nodes`` has this node); the rest, and every other
        step (a tick, a change settled, new rules), at normal priority (supervisors/priority.py)."""
        assert self.state is not None
        self.tick_due = 0  # any step does a tick's work
        self.prepare_due = None  # and counts what came in
        self.last_step_s = self.monotonic()
        started = time.perf_counter()
        step_ns = time.monotonic_ns()
        paused_s = 0.0
        # A decrease or a pause is a safety action: it leaves at once, before its records are
        # even built, and they commit right after (one group commit later, a few ms). Should the
        # node die in between, the charge points hold a lower limit without its record; the
        # restarted allocator decides and records afresh.
        run = self.state.stepping(
            now_s=self.monotonic(), now_utc=self.utc_now(), trigger_ns=trigger_ns
        )
        out: StepOutput | None = None
        lowering: ProfileBatch | None = None
        parts: list[tuple[str, int]] = []  # the broker nodes the lowering batch went to
        # Until a lowering batch is out, no garbage collection (gc_policy.collections_deferred).
        with contextlib.nullcontext() if urgent else background(), collections_deferred():
            try:
                lowering = next(run)
            except StopIteration as done:
                out = done.value
            else:
                parts = self._send(lowering, step_ns)
        if lowering is not None:
            pause_s = self.settings.fan_out_pause_s(
                [(n, self.write_s_per_limit.get(node)) for node, n in parts]
            )
            if pause_s > 0.0:
                # The broker writes the batch now: leave it the CPU (see AllocatorSettings).
                mark = time.perf_counter()
                await asyncio.sleep(pause_s)
                paused_s = time.perf_counter() - mark
            self.last_pause_ms = pause_s * 1000
        with background():
            if lowering is not None:
                out = finish(run)
            if out is not None:
                self._after_step(out, why, step_ns, started, paused_s)

    def _after_step(
        self, out: StepOutput, why: str, step_ns: int, started: float, paused_s: float
    ) -> None:
        if out.batch is not None:
            self.batches += 1
        batch = None if out.sent else out.batch
        if batch is not None and (out.lowers or not out.records):
            self._send(batch, step_ns)
            batch = None
        if out.records:
            # Increases leave only once the records explaining them are on disk.
            after = None if batch is None else functools.partial(self._send_now, batch, step_ns)
            self._stage_all(out.records, after_commit=after)
        self.steps += 1
        self._log_mode()
        self.last_step_why = why
        self.last_step_ms = (time.perf_counter() - started - paused_s) * 1000
        self.max_step_ms = max(self.max_step_ms, self.last_step_ms)
        self._settle_later()

    def _log_mode(self) -> None:
        """A change of the load-management mode, once: what an operator reading the journal needs
        to explain limits that stopped rising (stale meter data) or fell to the fail-safe budget
        (its records say it per connector, the log said nothing)."""
        assert self.state is not None
        mode, record = self.state.mode, self.state.record
        if mode == self.logged_mode:
            return
        self.logged_mode = mode
        age_s = math.inf if record is None else record.meter_age_s
        seen = (
            "no meter reading yet"
            if age_s == math.inf
            else (f"the oldest meter reading {age_s:.1f} s old")
        )
        if mode == "normal":
            again = " again (meter data fresh)" if self.mode_warned else ""
            log.info("load management: normal%s", again)
            self.mode_warned = False
        elif mode == "stale":
            log.warning("load management: stale (%s: no increases until a fresh one)", seen)
            self.mode_warned = True
        elif mode == "fail-safe":
            # Always a warning: at the start the allocator waits for every meter's first reading
            # (SiteState.meters_known), so a fail-safe with none is a meter that did not answer
            # within stale_failsafe_s (or a decrease that could not wait for it), not the
            # expected state of a start.
            log.warning("load management: fail-safe (%s: every limit within its budget)", seen)
            self.mode_warned = True

    def _settle_later(self) -> None:
        """A Settled message for when the loop's last change settles, if that is still ahead
        and none is on its way for that moment."""
        assert self.state is not None
        at_s = self.state.settles_s()
        if at_s is None or at_s == self.settle_due:
            return
        delay_s = at_s - self.monotonic()
        if delay_s <= 0.0:
            return
        self.settle_due = at_s
        self.send_after(delay_s + SETTLE_SLACK_S, Settled(at_s=at_s))

    def _send_now(self, batch: ProfileBatch, step_ns: int) -> None:
        self._send(batch, step_ns)

    def _send(self, batch: ProfileBatch, step_ns: int) -> list[tuple[str, int]]:
        """The batch to the broker node(s), each its part; the nodes and their parts' sizes."""
        shards = self.settings.broker_shards
        if shards == 1:
            parts = [(self.settings.profiles_path, batch)]
        else:
            # Each broker node its own charge points' limits (a node with none of them still
            # gets its empty part: a full batch says what it says for every node).
            by_shard: list[list[ConnectorLimit]] = [[] for _ in range(shards)]
            for limit in batch.limits:
                by_shard[shard_of(limit.charge_point_id, shards)].append(limit)
            _, _, rest = self.settings.profiles_path.partition("/")
            parts = [
                (f"{broker_node(k)}/{rest}", replace(batch, limits=tuple(limits)))
                for k, limits in enumerate(by_shard)
            ]
        for path, part in parts:
            self.ctx.system.send(
                path,
                replace(part, sent_monotonic_ns=time.monotonic_ns(), step_monotonic_ns=step_ns),
            )
        return [(path.partition("/")[0], len(part.limits)) for path, part in parts]

    def _stage_all(
        self,
        records: list[AuditRecord] | tuple[AuditRecord, ...],
        *,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        for i, record in enumerate(records):
            last = i == len(records) - 1
            stage_record(self, record, after_commit if last else None)
            self.audited += 1

    def _route_cloud_limit(self, msg: CloudLimitPushed) -> None:
        path = self.cloud_paths.get(msg.source)
        if path is None and len(self.cloud_paths) == 1:
            # The platform names its push "cloud" by default; a site with one cloud source
            # may call it anything.
            path = next(iter(self.cloud_paths.values()))
        if path is None:
            log.warning(
                "cloud limit for source %r ignored: no such cloud source (configured: %s)",
                msg.source,
                ", ".join(sorted(self.cloud_paths)) or "none",
            )
            return
        self.ctx.system.send(path, msg)

    # -- status ---------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        return {
            "mode": "unmanaged" if self.state is None else self.state.mode,
            "steps": self.steps,
            "batches": self.batches,
            "audit_records": self.audited,
            "prepared": self.prepared,
            "last_step_ms": round(self.last_step_ms, 3),
            "last_fan_out_pause_ms": round(self.last_pause_ms, 3),
            "max_step_ms": round(self.max_step_ms, 3),
            "last_step": self.last_step_why,
            "stale_rules": self.stale_rules,
        }

    def summary(self) -> dict[str, Any]:
        """The site as ``run.py status`` shows it (JSON-able)."""
        if self.state is None:
            return {"mode": "unmanaged", "detail": "no load management configured"}
        return {**site_summary(self.state, self.monotonic()), **self.report()}


def _rules_doc(msg: SiteRulesChanged) -> dict[str, Any]:
    return {
        "version": msg.version,
        "priorities": dict(msg.priorities),
        "max_current_a": dict(msg.max_current_a),
        "site": dict(msg.site),
    }


def _rules_from(doc: dict[str, Any]) -> SiteRulesChanged:
    return SiteRulesChanged(
        version=int(doc.get("version", 0)),
        priorities={str(k): int(v) for k, v in doc.get("priorities", {}).items()},
        max_current_a={str(k): float(v) for k, v in doc.get("max_current_a", {}).items()},
        site={str(k): float(v) for k, v in doc.get("site", {}).items()},
    )
