"""What the site allocator knows and decides, without the actor: no I/O, no clock reads.

:class:`SiteState` folds in meter samples, grid limits and connector reports (each fold says
whether a step is due at once: an event that can require a decrease), runs the control loop and
returns what the actor must do: the audit records to stage and the :class:`ProfileBatch` to send
(or None when no limit changed enough to be worth sending and no resend is due). Times are
parameters: ``now_s`` monotonic seconds, ``now_utc`` an aware datetime.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from actors.allocation_types import ConnectorDemand, MeterSample, NodeInput, NodeLimit, PerPhase
from actors.audit_records import AuditKind, AuditRecord, limit_record, new_record
from actors.compliance import ComplianceConfig, Tracker, as_fixed_load, limit_set, observe
from actors.control_loop import (
    ConnectorDecision,
    LoopState,
    Mode,
    StepRecord,
    beginning,
    finish,
    meter_age_s,
    mode_for,
    prepare,
    stepping,
)
from actors.control_plan import CountMemo
from actors.energy_inputs import (
    MODE_NAMES,
    DemandCache,
    SiteModel,
    binding_source,
    connector_key,
    finite,
    is_decrease,
    limit_json,
    node_inputs,
    node_limits,
    over_limit,
    unreported_limit,
    with_rules,
)
from actors.energy_messages import (
    ConnectorLimit,
    ConnectorReport,
    DemandBatch,
    ProfileBatch,
    ProfileOutcome,
    SiteRulesChanged,
)
from actors.grid_limit import GridLimitReported
from actors.grid_limits import GridLimit
from actors.meter import MeterFailed, MeterRead
from actors.profiles import HYSTERESIS_A, round_limit_a, worth_sending
from actors.utc import format_utc, parse_utc

MEASURED_KEPT = 8  # connector samples kept to match the meter's time
SILENT_HEARTBEATS = 3.0  # a source not heard for this many heartbeats: its fallback applies
IGNORED = "compliance: profile ignored"


def sampled_s(r: ConnectorReport, now_s: float, now_utc: datetime) -> float | None:
    """When the charge point took the sample, on the monotonic clock (None if unreadable)."""
    if r.sampled_utc is None:
        return now_s
    try:
        sampled = parse_utc(r.sampled_utc, where="sampled_utc")
    except ValueError:
        return None
    return now_s - max(0.0, (now_utc - sampled).total_seconds())


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    resend_s: float = 60.0
    hysteresis_a: float = HYSTERESIS_A
    source_grace_s: float = 10.0
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepOutput:
    records: tuple[AuditRecord, ...]
    batch: ProfileBatch | None
    # A connector's limit went down (a decrease or a pause): the batch is a safety action.
    lowers: bool = False
    # The batch was handed to ``step``'s ``urgent`` callback already (a lowering batch).
    sent: bool = False


class SiteState:
    def __init__(
        self, model: SiteModel, *, actor: str, started_s: float, policy: Policy | None = None
    ) -> None:
        self.base_model = model  # as the site file says
        self.model = model  # as the central rules amend it
        self.rules: SiteRulesChanged | None = None
        self.started_s = started_s
        self.actor = actor  # the allocator's path, named in audit records
        self.policy = policy or Policy()
        self.samples: dict[str, MeterSample] = {}  # node -> latest
        self.meters: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, GridLimitReported] = {}
        self.effective: dict[str, NodeLimit] = {}
        self.reports: dict[str, ConnectorReport] = {}
        self.measured: dict[str, deque[tuple[float, PerPhase]]] = {}  # (monotonic s, per phase)
        self.demand_cache = DemandCache()
        self.count_memo = CountMemo()
        self.loop = LoopState()
        self.record: StepRecord | None = None  # the last step's inputs and decisions
        self.mode = "waiting for limits"
        self.decisions: dict[str, dict[str, Any]] = {}
        # each connector's decision of the last step, its mode and its entry in decisions
        self.decided_as: dict[str, tuple[ConnectorDecision, Mode, dict[str, Any]]] = {}
        self.sent: dict[str, float] = {}
        # connectors with a new transaction since the last batch: their next decision goes out
        # whatever was sent before (the broker gave the transaction the safe default at its
        # start, actors.cp_energy)
        self.fresh: set[str] = set()
        # connectors with a limit record since this state began, and the binding source of its
        # last one: the first decision of each is recorded, changed or not (after a restart
        # "unchanged" is against the 0 A it starts from, not the limit the charge point had: a
        # pause there went unexplained); so is one whose source changed with the loop's mode
        # (the fail-safe binding at the limit a car had: explain named the source before it)
        self.recorded: dict[str, str] = {}
        self.last_batch_s: float | None = None
        self.trackers: dict[str, Tracker] = {}
        self.node_trackers: dict[str, Tracker] = {}
        self.outcomes: dict[str, ProfileOutcome] = {}
        # per broker node (shard): the newest DemandBatch applied (its sent_monotonic_ns)
        self.demand_sent_ns: dict[int, int] = {}
        self.report_shard: dict[str, int] = {}  # connector key -> the shard that reported it
        self.demand_overtaken = 0  # older batches that arrived after it, dropped
        # A decrease was due while waiting for the meters' first reading (a limit went down, a
        # meter over its limit): the wait is over (meters_known), as under a stale meter.
        self.must_lower = False

    # -- folds: each returns why a step is due now, or None ------------------------------------
    def limits_known(self, now_s: float) -> bool:
        """Every source reported, or the grace for reporting is over (then a source that never
        reported counts with its fail-safe: load management does not wait forever)."""
        if now_s - self.started_s >= self.policy.source_grace_s:
            return True
        return all(s in self.sources for s in self.model.sources)

    def meters_known(self, now_s: float) -> bool:
        """Every metered node has a reading, or ``stale_failsafe_s`` since this state began are
        over (a meter that never answers: the fail-safe then, as for one that stops). Until
        then no step: the charge points keep the limits they have, as under a stale meter (no
        increase, the fail-safe after ``stale_failsafe_s``). A step before the first reading
        was the fail-safe at once, and a (re)started node starts every car from 0 A
        (control_types.arriving): without ``failsafe_total_a`` nothing rises there, so every
        car on the site was paused by a restart of the energy node, until its first reading and
        a start (7 s at the defaults), and some cars do not resume after a pause. A decrease
        due meanwhile (a limit gone down, a meter that has read over its limit) ends the wait
        at once (``must_lower``): a stale meter does not hold one back either."""
        if self.must_lower or now_s - self.started_s >= self.model.control.stale_failsafe_s:
            return True
        samples = self.samples
        return all(node in samples for node in self.model.metered)

    def meter_read(self, msg: MeterRead, now_utc: datetime) -> tuple[str | None, list[AuditRecord]]:
        old = self.samples.get(msg.node)
        if old is not None and msg.read_monotonic_s <= old.read_s:
            return None, []
        self.samples[msg.node] = MeterSample(current_a=msg.current_a, read_s=msg.read_monotonic_s)
        # The last meter's first reading: the steps that waited for it may go (meters_known).
        why = (
            "every meter read"
            if old is None and all(node in self.samples for node in self.model.metered)
            else None
        )
        self._meter_info(msg)
        limit = self.effective.get(msg.node)
        if limit is None:
            return why, []
        records = self._check_node(msg, limit, now_utc)
        if over_limit(msg.current_a, limit, self.model.control.allocation.margin_a):
            self.must_lower = True
            return "meter shows overload", records
        return why, records

    def _meter_info(self, msg: MeterRead) -> None:
        self.meters[msg.meter] = {
            "node": msg.node,
            "current_a": list(msg.current_a),
            "power_w": msg.total_power_w,
            "read_s": msg.read_monotonic_s,
            "read_utc": format_utc(msg.read_utc),
            "error": None,
            "failures": 0,
            "dropped_fields": list(msg.dropped),
        }

    def meter_failed(self, msg: MeterFailed) -> None:
        info = self.meters.setdefault(msg.meter, {"node": msg.node})
        info.update(error=msg.error, failures=msg.failures)

    def limit_reported(self, msg: GridLimitReported, now_s: float, now_utc: datetime) -> str | None:
        known_before = self.limits_known(now_s)
        self.sources[msg.source] = msg
        before = self.effective
        after = self.effective_limits(now_s, now_utc)
        if not self.limits_known(now_s):
            return None
        if not known_before:
            return "every limit source reported"
        if is_decrease(before, after):
            self.must_lower = True
            return f"limit from {msg.source!r} went down"
        return None

    def demand(
        self, msg: DemandBatch, now_s: float, now_utc: datetime
    ) -> tuple[str | None, list[AuditRecord]]:
        shard = msg.shard
        if 0 < msg.sent_monotonic_ns < self.demand_sent_ns.get(shard, 0):
            # Overtaken on the way (the direct node link and the root's path at the moment
            # one of them comes or goes): the newer snapshot stands.
            self.demand_overtaken += 1
            return None, []
        self.demand_sent_ns[shard] = max(self.demand_sent_ns.get(shard, 0), msg.sent_monotonic_ns)
        previous = self.reports
        was_active = {k for k, r in previous.items() if r.plugged and r.charging}
        if msg.complete:
            # What the other broker nodes (shards) reported stands.
            origin = self.report_shard
            self.reports = {k: r for k, r in previous.items() if origin.get(k, 0) != shard}
        records: list[AuditRecord] = []
        new_tx = False
        for r in msg.reports:
            key = connector_key(r.charge_point_id, r.connector_id)
            self.report_shard[key] = shard
            m = r.measured_a
            if m is not None and not math.isfinite(m[0] + m[1] + m[2]):
                # No measurement (the broker leaves such values out; an infinite one in an
                # audit record stopped the allocator).
                r = replace(r, measured_a=None)
            old = previous.get(key)
            if r.transaction_id is not None and (
                old is None or old.transaction_id != r.transaction_id
            ):
                # A session begins: the samples of the connector's last car are not its car's
                # (counted as its draw, and the car's phases learned from them).
                self.measured.pop(key, None)
                if old is not None:
                    # The broker gave the transaction a TxProfile at the safe default at its
                    # start (actors.cp_energy): the loop's decision for it goes at once, and
                    # if a car begins to charge with it, the loop counts it at that default.
                    if r.plugged and r.charging and not (old.plugged and old.charging):
                        self._session_began(key, now_s)
                    self.fresh.add(key)
                    new_tx = True
            if old is not None and old == r:
                # The broker sends every connector every second, changed or not: the same
                # report keeps its object, so the demand and count made of it are reused
                # (DemandCache, CountMemo: they go by identity).
                r = old
            self.reports[key] = r
            measured = r.measured_a
            if (
                old is not None
                and r.sampled_utc is not None
                and r.sampled_utc == old.sampled_utc
                and measured == old.measured_a
            ):
                # The sample seen already (reported again each second): dated again, a stamp
                # in the future (a charge point's clock ahead) made it a new one each time,
                # judged over for as long as the clock was ahead (flagged past the grace).
                at_s = None
            else:
                at_s = sampled_s(r, now_s, now_utc)
            if measured is not None and at_s is not None:
                history = self.measured.setdefault(key, deque(maxlen=MEASURED_KEPT))
                if not history or at_s > history[-1][0]:
                    history.append((at_s, measured))
                if r.charging:
                    records.extend(self._observe(key, r, at_s, now_utc))
        for gone in set(self.measured) - set(self.reports):
            del self.measured[gone]
        for gone in set(self.report_shard) - set(self.reports):
            del self.report_shard[gone]
        self.demand_cache.forget(self.reports)
        new_car = any(
            r.plugged and r.charging and k not in was_active for k, r in self.reports.items()
        )
        if new_car:
            return "a new car", records
        return ("a new transaction" if new_tx else None), records

    def _session_began(self, key: str, now_s: float) -> None:
        """A car begins to charge with a new transaction at a connector seen before: it
        charges at the safe default (the broker gives a transaction no limit decided before it,
        and at its start a TxProfile at that default, actors.cp_energy), so the loop counts it
        there and keeps it there if it fits (actors.control_types.beginning) instead of pausing
        it at its start and starting it again. Not so: a connector first seen with its
        transaction running (after a restart: a limit in force nobody knows; it starts again,
        actors.control_types.arriving); a new transaction of a car charging already (a charge
        point that restarts its transaction: the car keeps its state, its limit goes again for
        the new transaction); a transaction begun before the plug-in (its "no car" 0 A goes to
        it, and the car starts from 0 A as a paused one does); a car back from a status that
        is not charging within the same transaction (held at 0 A meanwhile, likewise)."""
        control = self.model.control
        self.loop = replace(
            self.loop, connectors={**self.loop.connectors, key: beginning(now_s, control)}
        )

    def rules_changed(self, msg: SiteRulesChanged) -> str:
        """New central rules (priorities, maximum currents, margin, site cap): step at once,
        since any of them can lower a limit."""
        self.rules = msg
        self.model = with_rules(self.base_model, msg)
        return f"central rules version {msg.version}"

    def outcome(self, o: ProfileOutcome) -> None:
        self.outcomes[connector_key(o.charge_point_id, o.connector_id)] = o

    # -- the step -------------------------------------------------------------------------------
    def effective_limits(self, now_s: float, now_utc: datetime) -> dict[str, NodeLimit]:
        limits: list[GridLimit | None] = [
            unreported_limit(config, now_utc)
            for name, config in self.model.source_configs.items()
            if name not in self.sources
        ]
        for name, rep in self.sources.items():
            limit = rep.limit
            silent_s = now_s - rep.reported_monotonic_s
            if silent_s > rep.heartbeat_s * SILENT_HEARTBEATS and rep.fallback is not None:
                limit = GridLimit(
                    source=name,
                    node=rep.node,
                    value=rep.fallback,
                    stale=True,
                    detail=f"source silent for {silent_s:.0f} s; its fallback applies",
                )
            limits.append(limit)
        self.effective = node_limits(self.model, limits)
        for node, lim in self.effective.items():
            tracker = self.node_trackers.get(node, Tracker())
            self.node_trackers[node] = limit_set(
                tracker, lim.current_a, now_s=now_s, cfg=self.policy.compliance
            )
        return self.effective

    def step(
        self,
        *,
        now_s: float,
        now_utc: datetime,
        trigger_ns: int | None = None,
        urgent: Callable[[ProfileBatch], None] | None = None,
    ) -> StepOutput | None:
        """One control-loop step; None while a limit source has not reported yet.

        ``urgent`` gets a batch that lowers a limit as soon as it is known: before the control
        loop's next state and record, the step's audit records and its compliance bookkeeping
        are built (a third of a 500-connector step). Without it, such a batch is in the output
        like any other."""
        run = self.stepping(
            now_s=now_s, now_utc=now_utc, trigger_ns=trigger_ns, hand_over=urgent is not None
        )
        while True:
            try:
                batch = next(run)
            except StopIteration as done:
                out: StepOutput | None = done.value
                return out
            if urgent is not None:
                urgent(batch)

    def settles_s(self) -> float | None:
        """When the loop's last change (a limit raised, lowered or paused) has settled, on the
        steps' clock: from then an increase may follow it (actors.control_loop). None before
        any change."""
        loop = self.loop
        times = [t for t in (loop.last_change_s, loop.last_decrease_s) if t is not None]
        return max(times) + self.model.control.settle_s if times else None

    def stepping(
        self,
        *,
        now_s: float,
        now_utc: datetime,
        trigger_ns: int | None = None,
        hand_over: bool = True,
    ) -> Generator[ProfileBatch, None, StepOutput | None]:
        """:meth:`step` in two parts, for a caller that lets other work run between them.

        With ``hand_over``, a batch that lowers a limit is yielded as soon as it is known, for
        the caller to send at once (the output then says ``sent``); the rest of the step (the
        loop's next state, its record, the audit records and the compliance bookkeeping) is
        built when the generator is resumed, and returned. The decisions (status) and the
        limits sent are recorded before it yields; the caller must resume it before the next
        fold or step."""
        if not self.limits_known(now_s):
            self.mode = "waiting for limits"
            return None
        if not self.meters_known(now_s):
            self.mode = "waiting for meters"
            return None
        model = self.model
        nodes = node_inputs(model, self.effective_limits(now_s, now_utc), self.samples)
        nodes, demands, draws = self._inputs(nodes, now_s)
        loop = stepping(
            self.loop, nodes, demands, now_s=now_s, cfg=model.control, memo=self.count_memo
        )
        # Final decisions: the batch, and a decrease leaves at once, before the loop's next
        # state, the step's record and its audit records are built.
        ordered, mode = next(loop)
        self._decided(ordered, mode, draws)
        began = set(self.fresh)  # their first decision is recorded, changed or not
        batch = self._batch(now_s, now_utc, trigger_ns, nodes)
        lowers = any(d.limit_a < d.previous_a for d in ordered)
        sent = False
        if batch is not None and hand_over and lowers:
            yield batch
            sent = True
        result = finish(loop)
        kept = {k: self.loop.connectors[k] for k in draws if k in self.loop.connectors}
        self.loop = replace(result.state, connectors={**result.state.connectors, **kept})
        was = self.record
        rec = self.record = result.record
        mode_changed = was is not None and was.mode != rec.mode
        self.mode = MODE_NAMES[rec.mode]
        if batch is not None:
            self._track(batch, now_s)
        # Each decision's binding source (the entries made before the hand-over).
        sources = {cid: kept[2]["binding_source"] for cid, kept in self.decided_as.items()}
        recorded = self.recorded
        due = [
            dec
            for dec in rec.decisions
            if dec.changed
            or dec.connector_id in began
            or recorded.get(dec.connector_id) is None
            or (mode_changed and recorded[dec.connector_id] != sources[dec.connector_id])
        ]
        records = tuple(
            self._limit_record(dec, sources[dec.connector_id], rec.mode, rec.meter_age_s, now_utc)
            for dec in due
        )
        recorded.update((dec.connector_id, sources[dec.connector_id]) for dec in due)
        return StepOutput(records=records, batch=batch, lowers=lowers, sent=sent)

    def prepare(self, now_s: float) -> bool:
        """Make the demands and counts a step at ``now_s`` would (DemandCache, CountMemo),
        deciding and changing nothing else: for the quiet moment after a DemandBatch that did not
        step. The step after it reuses them as long as its inputs are the same objects (no newer
        report or sample, no newer meter reading picking another sample) and the time has not
        moved a connector's change past its settle time; what changed is made again there. On
        bench/energy.py's site at 500 cars (timed in a scratch copy), 6 of 16 overload steps came
        after a DemandBatch and made every car's demand and count again (3-4.5 and 3.5-4 ms
        instead of about 1 each); with the prepare 2 of 24 did. False: not prepared (limits not
        known yet, or a node without its effective limit: the step works those out)."""
        model = self.model
        if not self.limits_known(now_s) or any(n not in self.effective for n in model.parents):
            return False
        # The effective limits of the last step: a step works them out afresh, and only the
        # meters' read times matter here (which sample of each connector counts).
        _, demands, _ = self._inputs(node_inputs(model, self.effective, self.samples), now_s)
        prepare(self.loop, demands, now_s=now_s, cfg=model.control, memo=self.count_memo)
        return True

    def _inputs(
        self, nodes: list[NodeInput], now_s: float
    ) -> tuple[list[NodeInput], list[ConnectorDemand], Mapping[str, tuple[float, float, float]]]:
        """The step's nodes and demands, and the draw of each connector that ignores its profile
        (counted as load nobody controls; those nodes and demands are amended for it)."""
        model = self.model
        reads = [n.meter.read_s for n in nodes if n.metered and n.meter is not None]
        meter_s = min(reads) if reads else None
        demands = self.demand_cache.demands(
            model, self.reports, self.measured, meter_s, now_s=now_s
        )
        flagged = [k for k, t in self.trackers.items() if t.flagged and k in self.reports]
        if not flagged:
            return nodes, demands, {}
        trusted = mode_for(meter_age_s(nodes, now_s), model.control) != "failsafe"
        fixed = as_fixed_load(nodes, demands, flagged, meters_trusted=trusted)
        return list(fixed.nodes), list(fixed.demands), fixed.draw_by_connector

    def _decided(
        self,
        ordered: tuple[ConnectorDecision, ...],
        mode: Mode,
        draws: Mapping[str, tuple[float, float, float]],
    ) -> None:
        """The decisions as the status and the batch see them (:attr:`decisions`)."""
        decisions: dict[str, dict[str, Any]] = {}
        # A decision kept from the last step (a connector without a car, see CountMemo.parked)
        # keeps its entry: the entries are read, never changed.
        was = self.decided_as
        now: dict[str, tuple[ConnectorDecision, Mode, dict[str, Any]]] = {}
        # Connectors bound by the same constraint share its binding (one object): its source
        # is named once. (binding_source reads the action only for a hold on a stale meter.)
        named: dict[int, str] = {}
        stale = mode == "no_increase"
        for dec in ordered:
            cid = dec.connector_id
            kept = was.get(cid)
            if kept is not None and kept[0] is dec and kept[1] == mode:
                entry = kept[2]
                now[cid] = kept
            else:
                if stale and dec.action == "hold":
                    source = binding_source(dec, mode)
                elif (source := named.get(id(dec.binding), "")) == "":
                    source = named[id(dec.binding)] = binding_source(dec, mode)
                entry = {
                    "limit_a": dec.limit_a,
                    "target_a": dec.target_a,
                    "action": dec.action,
                    "binding_source": source,
                    "reason": dec.reason,
                }
                now[cid] = (dec, mode, entry)
            decisions[cid] = entry
        self.decided_as = now
        if not draws and len(decisions) == len(self.reports):
            # One decision per report, in the reports' order (the demands are made so): the
            # same dict as the filter below would make.
            self.decisions = decisions
            return
        for key, draw in draws.items():
            decisions[key] = {
                "limit_a": self.sent.get(key, 0.0),
                "target_a": None,
                "action": "unchanged",
                "binding_source": IGNORED,
                "reason": f"ignores its profile: its draw ({'/'.join(f'{a:.1f}' for a in draw)} A"
                " per grid phase) counts as load nobody controls",
            }
        self.decisions = {k: decisions[k] for k in self.reports if k in decisions}

    def _track(self, batch: ProfileBatch, now_s: float) -> None:
        """Compliance: each limit sent is in force from now."""
        cfg = self.policy.compliance
        for lim in batch.limits:
            key = connector_key(lim.charge_point_id, lim.connector_id)
            a = lim.limit_a
            self.trackers[key] = limit_set(
                self.trackers.get(key, Tracker()), (a, a, a), now_s=now_s, cfg=cfg
            )

    def _batch(
        self, now_s: float, now_utc: datetime, trigger_ns: int | None, nodes: list[NodeInput]
    ) -> ProfileBatch | None:
        decisions = self.decisions
        new = {k: float(d["limit_a"]) for k, d in decisions.items()}
        # In full on the first batch, every resend_s and when connectors come or go (so a
        # restarted broker converges); otherwise only the limits that changed since they were
        # last sent: a site-wide decrease then carries what changed, not every idle connector.
        full = (
            self.last_batch_s is None
            or now_s - self.last_batch_s >= self.policy.resend_s
            or new.keys() != self.sent.keys()
        )
        # (A limit equal to the one sent is never worth sending nor changed: no rounding needed
        # for the many that stay as they are.)
        sent, fresh = self.sent, self.fresh
        due = (
            full
            or bool(fresh)
            or any(
                a != sent.get(k)
                and worth_sending(a, sent.get(k), hysteresis_a=self.policy.hysteresis_a)
                for k, a in new.items()
            )
        )
        if not due:
            return None
        if full:
            keys = list(new)
        else:
            keys = []
            rounded: dict[float, float] = {}  # round_limit_a: a few distinct limits
            for k, a in new.items():
                was = sent.get(k)
                if k in fresh:
                    keys.append(k)
                elif a != was:
                    if (new_a := rounded.get(a)) is None:
                        new_a = rounded[a] = round_limit_a(a)
                    was_a = -1.0 if was is None else was
                    if (old_a := rounded.get(was_a)) is None:
                        old_a = rounded[was_a] = round_limit_a(was_a)
                    if new_a != old_a:
                        keys.append(k)
        fresh.clear()

        if trigger_ns is None:
            reads = [n.meter.read_s for n in nodes if n.meter is not None]
            trigger_ns = int(max(reads) * 1e9) if reads else 0
        limits = []
        known, reports, charge_point = self.loop.connectors, self.reports, self.model.charge_point
        for key in keys:
            d = decisions[key]
            r = reports[key]
            cp = charge_point(r.charge_point_id)
            st = known.get(key)
            limits.append(
                ConnectorLimit(
                    charge_point_id=r.charge_point_id,
                    connector_id=r.connector_id,
                    limit_a=new[key],
                    phases=cp.phases,
                    binding_source=d["binding_source"],
                    reason=d["reason"],
                    car_phases=0 if st is None else _car_phases(st.car.phases, cp.phases),
                    transaction_id=r.transaction_id,
                )
            )
        if full:
            self.sent = new
            self.last_batch_s = now_s
        else:
            self.sent.update((k, new[k]) for k in keys)

        return ProfileBatch(
            limits=tuple(limits),
            default_limit_a=self.model.control.default_a,
            computed_utc=format_utc(now_utc),
            trigger_monotonic_ns=trigger_ns,
            full=full,
        )

    # -- compliance -----------------------------------------------------------------------------
    def _observe(
        self, key: str, r: ConnectorReport, at_s: float, now_utc: datetime
    ) -> list[AuditRecord]:
        if r.measured_a is None:
            return []
        cfg = self.policy.compliance
        before = self.trackers.get(key, Tracker())
        after = observe(before, r.measured_a, at_s=at_s, cfg=cfg)
        self.trackers[key] = after
        if after.flagged == before.flagged:
            return []
        limit = self.sent.get(key, 0.0)
        if after.flagged:
            text = (
                f"ignores its profile: draws {max(r.measured_a):.1f} A against {limit:.1f} A "
                f"for {cfg.grace_s:g} s or more; its draw counts as fixed load and the other "
                "connectors are lowered"
            )
        else:
            text = "follows its profile again: its draw is managed again"
        last = after.last
        return [
            limit_record(
                time_utc=now_utc,
                actor=self.actor,
                charge_point_id=r.charge_point_id,
                connector_id=r.connector_id,
                limit_a=limit,
                binding_source=IGNORED if after.flagged else "compliance",
                reason=text,
                inputs={
                    "non_compliant": after.flagged,
                    "measured_a": list(r.measured_a),
                    "excess_a": None if last is None else finite(last.excess_a),
                    "tolerance_a": cfg.tolerance_a,
                },
            )
        ]

    def _check_node(self, msg: MeterRead, lim: NodeLimit, now_utc: datetime) -> list[AuditRecord]:
        cfg = self.policy.compliance
        before = self.node_trackers.get(msg.node, Tracker())
        after = observe(before, msg.current_a, at_s=msg.read_monotonic_s, cfg=cfg)
        self.node_trackers[msg.node] = after
        if after.flagged == before.flagged:
            return []
        verb = "above" if after.flagged else "back within"
        text = (
            f"meter {msg.meter!r} shows node {msg.node!r} {verb} its limit "
            f"({'/'.join(f'{a:.1f}' for a in msg.current_a)} A against "
            f"{'/'.join(f'{a:g}' for a in lim.current_a)} A, tolerance {cfg.tolerance_a:g} A)"
        )
        return [
            new_record(
                time_utc=now_utc,
                actor=self.actor,
                kind=AuditKind.LIMIT,
                decision=f"node {msg.node} {'over' if after.flagged else 'within'} its limit",
                reason=text,
                inputs={"node": msg.node, "limit": limit_json(lim), "meter_a": list(msg.current_a)},
            )
        ]

    def _limit_record(
        self,
        dec: ConnectorDecision,
        source: str,
        mode: Any,
        age_s: float,
        now_utc: datetime,
    ) -> AuditRecord:
        r = self.reports[dec.connector_id]
        return limit_record(
            time_utc=now_utc,
            actor=self.actor,
            charge_point_id=r.charge_point_id,
            connector_id=r.connector_id,
            limit_a=dec.limit_a,
            binding_source=source,
            reason=dec.reason,
            # Flat and few: a site-wide decrease writes one record per connector in one step.
            inputs={
                "previous_a": dec.previous_a,
                "target_a": dec.target_a,
                "action": dec.action,
                "mode": MODE_NAMES[mode],
                "meter_age_s": finite(age_s),
                "headroom_a": finite(dec.binding.headroom_a),
            },
        )


@functools.lru_cache(maxsize=64)  # a few distinct arguments, once per limit of a batch
def _car_phases(learned: tuple[int, ...], wired: int) -> int:
    """How many of the charge point's ``wired`` phases its car was seen drawing on, if fewer
    (0: not known, or all of them)."""
    n = sum(1 for p in learned if p < wired)
    return n if 0 < n < wired else 0
