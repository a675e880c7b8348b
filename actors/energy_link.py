"""The broker node's two ends of load management (the energy node decides; these carry).

``demand`` collects what each ChargePoint reports about its connectors and sends the energy node
one :class:`DemandBatch` at most every ``DEMAND_INTERVAL_S`` (sooner, but never more than a few a
second, when a transaction starts or stops). ``profiles`` takes the energy node's
:class:`ProfileBatch` and hands each connector's limit to its ChargePoint, which turns it into a
SetChargingProfile; what the charge points answered goes back batched as :class:`ProfileOutcomes`.
Never one message per OCPP frame between the nodes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from actors.broker_context import BrokerContext
from actors.energy_messages import (
    FAN_OUT_LEARNED_MIN,
    ConnectorReport,
    DemandBatch,
    ProfileBatch,
    ProfileOutcome,
    ProfileOutcomes,
)
from actors.messages import ApplyLimit, ConnectorsReported
from actors.ocpp_rules import utc_text
from supervisors.actor import Actor, ActorContext
from supervisors.gc_policy import collections_deferred

ENERGY_ALLOCATOR = "energy/allocator"
DEMAND_INTERVAL_S = 1.0
URGENT_MIN_GAP_S = 0.2
OUTCOMES_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Flush:
    pass


class DemandCollector(Actor):
    def __init__(self, ctx: ActorContext, broker: BrokerContext) -> None:
        super().__init__(ctx)
        self.broker = broker
        # per charge point, its connectors' latest reports (a charge point's report replaces
        # all of its own: a lookup, not a scan of every connector of the site)
        self.reports: dict[str, tuple[ConnectorReport, ...]] = {}
        self.dirty = False
        self.last_sent = 0.0
        self.batches = 0

    async def started(self) -> None:
        self.send_after(DEMAND_INTERVAL_S, Flush())

    def report(self) -> dict[str, Any]:
        return {
            "connectors": sum(len(r) for r in self.reports.values()),
            "batches_sent": self.batches,
        }

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, ConnectorsReported):
            self.reports[msg.charge_point_id] = msg.reports
            self.dirty = True
            if msg.urgent and time.monotonic() - self.last_sent >= URGENT_MIN_GAP_S:
                self._send()
        elif isinstance(msg, Flush):
            self._send()
            self.send_after(DEMAND_INTERVAL_S, Flush())
        else:
            return await super().receive(msg)
        return None

    def _send(self) -> None:
        if not self.broker.energy_managed:
            return
        # Sent every interval even when unchanged: a restarted energy node converges at once.
        self.ctx.system.send(
            ENERGY_ALLOCATOR,
            # Every connector this broker node knows: the energy node forgets the others it
            # reported before.
            DemandBatch(
                reports=tuple(r for cp in self.reports.values() for r in cp),
                sent_utc=utc_text(datetime.now(UTC)),
                complete=True,
                sent_monotonic_ns=time.monotonic_ns(),
                shard=self.broker.shard,
            ),
        )
        self.dirty = False
        self.last_sent = time.monotonic()
        self.batches += 1


class ProfileRouter(Actor):
    def __init__(self, ctx: ActorContext, broker: BrokerContext) -> None:
        super().__init__(ctx)
        self.broker = broker
        self.outcomes: list[ProfileOutcome] = []
        self.last_batch: ProfileBatch | None = None
        self.batches = 0
        self.rejected = 0
        self.stale_dropped = 0
        self.last_rejection: str | None = None

    async def started(self) -> None:
        self.send_after(OUTCOMES_INTERVAL_S, Flush())

    def report(self) -> dict[str, Any]:
        return {
            "batches_received": self.batches,
            "batches_overtaken": self.stale_dropped,
            "last_batch_utc": None if self.last_batch is None else self.last_batch.computed_utc,
            "profiles_rejected": self.rejected,
            "last_rejection": self.last_rejection,
            "recent_batches": self.broker.profile_writes.report(),
        }

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, ProfileBatch):
            last = self.last_batch
            if last is not None and 0 < msg.sent_monotonic_ns < last.sent_monotonic_ns:
                # Overtaken on the way (supervisors/node_links.py: direct link or the root):
                # a newer batch has been applied already.
                self.stale_dropped += 1
                return None
            self.batches += 1
            self.last_batch = msg
            self.broker.profile_writes.batch(
                msg.trigger_monotonic_ns,
                len(msg.limits),
                sent_ns=msg.sent_monotonic_ns,
                step_ns=msg.step_monotonic_ns,
            )
            # The charge point actors make their frames in the loop's next turn, written in the
            # turn after (drivers/ocpp/connection.py): no garbage collection until they are
            # (gc_policy.collections_deferred).
            with collections_deferred(asyncio.get_running_loop(), turns=2):
                for limit in msg.limits:
                    self.ctx.system.send(
                        self.broker.cp_path(limit.charge_point_id),
                        ApplyLimit(
                            limit=limit,
                            default_limit_a=msg.default_limit_a,
                            trigger_monotonic_ns=msg.trigger_monotonic_ns,
                        ),
                    )
        elif isinstance(msg, ProfileOutcome):
            self.outcomes.append(msg)
            if msg.status != "Accepted" and not msg.status.endswith("(retrying)"):
                self.rejected += 1

                self.last_rejection = f"{msg.charge_point_id}/{msg.connector_id}: {msg.status}"

        elif isinstance(msg, Flush):
            if self.outcomes:
                writes = self.broker.profile_writes
                self.ctx.system.send(
                    ENERGY_ALLOCATOR,
                    ProfileOutcomes(
                        outcomes=tuple(self.outcomes),
                        node=self.broker.node,
                        write_s_per_limit=writes.write_s_per_limit(FAN_OUT_LEARNED_MIN),
                    ),
                )
                self.outcomes = []
            self.send_after(OUTCOMES_INTERVAL_S, Flush())
        else:
            return await super().receive(msg)
        return None
