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
The control loop's state is monotonic time and is not persisted: after a restart every car
restarts at the minimum and ramps up (the safe side); the limit sources and meters restart with
the allocator (rest_for_one) and report again at once.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from actors.audit import stage_record
from actors.audit_records import AuditRecord
from actors.compliance import ComplianceConfig
from actors.energy_inputs import site_model
from actors.energy_messages import (
    CloudLimitPushed,
    DemandBatch,
    ProfileBatch,
    ProfileOutcomes,
    SiteRulesChanged,
)
from actors.grid_limit import GridLimitReported
from actors.meter import MeterFailed, MeterRead
from actors.profiles import HYSTERESIS_A
from actors.site_state import Policy, SiteState
from actors.site_status import site_summary
from config.energy import ChargePointEnergy, EnergyConfig
from supervisors.actor import Actor, ActorContext

log = logging.getLogger(__name__)

RULES_KEY = "central_rules"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocatorSettings:
    tick_s: float = 1.0
    resend_s: float = 60.0
    hysteresis_a: float = HYSTERESIS_A
    profiles_path: str = "broker/profiles"
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    pass


_UNMANAGED_IGNORED = (
    Tick,
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
        self.cloud_paths = dict(cloud_paths or {})
        self.monotonic = monotonic
        self.utc_now = utc_now
        self.steps = 0
        self.batches = 0
        self.audited = 0
        self.last_step_ms = 0.0
        self.max_step_ms = 0.0
        self.last_step_why = ""

    async def started(self) -> None:
        if self.state is not None:
            doc = self.load(RULES_KEY)
            if isinstance(doc, dict):
                # The authorizer sends rules when they change, not when this node restarts.
                self.state.rules_changed(_rules_from(doc))
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
            self._step("tick")
        elif isinstance(msg, MeterRead):
            why, records = state.meter_read(msg, self.utc_now())
            self._stage_all(records)
            if why is not None:
                self._step(why, trigger_ns=int(msg.read_monotonic_s * 1e9))
        elif isinstance(msg, MeterFailed):
            state.meter_failed(msg)
        elif isinstance(msg, GridLimitReported):
            why = state.limit_reported(msg, self.monotonic(), self.utc_now())
            if why is not None:
                self._step(why)
        elif isinstance(msg, DemandBatch):
            why, records = state.demand(msg, self.monotonic(), self.utc_now())
            self._stage_all(records)
            if why is not None:
                self._step(why)
        elif isinstance(msg, ProfileOutcomes):
            for o in msg.outcomes:
                state.outcome(o)
        elif isinstance(msg, SiteRulesChanged):
            self.persist(RULES_KEY, _rules_doc(msg))
            self._step(state.rules_changed(msg))
        else:
            return await super().receive(msg)
        return None

    def _step(self, why: str, *, trigger_ns: int | None = None) -> None:
        assert self.state is not None
        started = time.perf_counter()
        # A decrease or a pause is a safety action: it leaves at once, before its records are
        # even built, and they commit right after (one group commit later, a few ms). Should the
        # node die in between, the charge points hold a lower limit without its record; the
        # restarted allocator decides and records afresh.
        out = self.state.step(
            now_s=self.monotonic(), now_utc=self.utc_now(), trigger_ns=trigger_ns, urgent=self._send
        )
        if out is None:
            return
        if out.batch is not None:
            self.batches += 1
        batch = None if out.sent else out.batch
        if batch is not None and (out.lowers or not out.records):
            self._send(batch)
            batch = None
        if out.records:
            # Increases leave only once the records explaining them are on disk.
            after = None if batch is None else functools.partial(self._send, batch)
            self._stage_all(out.records, after_commit=after)
        self.steps += 1
        self.last_step_why = why
        self.last_step_ms = (time.perf_counter() - started) * 1000
        self.max_step_ms = max(self.max_step_ms, self.last_step_ms)

    def _send(self, batch: ProfileBatch) -> None:
        self.ctx.system.send(
            self.settings.profiles_path, replace(batch, sent_monotonic_ns=time.monotonic_ns())
        )

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
            "last_step_ms": round(self.last_step_ms, 3),
            "max_step_ms": round(self.max_step_ms, 3),
            "last_step": self.last_step_why,
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
