"""What the broker node's actors share: the site configuration, the live charge point links and
the clock. Built once per node start by the broker tree and closed over by the actor factories.

``links`` maps a charge point id to its current websocket. It outlives the ChargePoint actor's
restarts on purpose: a charge point stays connected while its actor is restarted, and the new
instance picks the link up in ``started``.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.control_types import IEC_MIN_CURRENT_A
from actors.shards import broker_node, shard_of, shard_of_node
from config.schema import ChargePointConfig, SiteConfig
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import OcppConnection


@dataclass(slots=True)
class Link:
    conn: OcppConnection
    conn_no: int
    version: OcppVersion


def utc_now() -> datetime:
    return datetime.now(UTC)


class ProfileWrites:
    """When the limits of each recent ProfileBatch were written to the charge points' sockets,
    keyed by the batch's trigger (the monotonic ns of the meter sample behind it; the clock is
    system-wide, so the energy node's stamp and ours compare). For ``run.py status`` and
    bench/energy.py: meter sample -> last SetChargingProfile written."""

    KEPT = 16

    def __init__(self) -> None:
        self.batches: OrderedDict[int, dict[str, int]] = OrderedDict()

    def batch(self, trigger_ns: int, limits: int, *, sent_ns: int = 0, step_ns: int = 0) -> None:
        """A batch received. Another batch from the same sample (a later step before the next
        meter read takes that read's time) joins the first's entry, as the broker nodes' parts of
        one batch merge (:func:`merge_batch_reports`): its limits add up, the first's stamps stay
        and the last frame of either is the last. (Replacing the entry lost the first batch's
        stamps; with none of the second's frames written yet, nothing of the sample showed.)"""
        if trigger_ns <= 0:
            return
        entry = self.batches.get(trigger_ns)
        if entry is not None:
            entry["limits"] += limits
            if entry["written"] < entry["limits"]:
                entry["cpu_ns"] = 0  # not every limit written any more
            return
        self.batches[trigger_ns] = {
            "limits": limits,
            "written": 0,
            "step_ns": step_ns,
            "sent_ns": sent_ns,
            "received_ns": time.monotonic_ns(),
            "first_ns": 0,
            "last_ns": 0,
            # this node's loop thread CPU time, at receipt and at the last frame written: with
            # the wall time between, whether the fan-out ran or waited for a core
            "cpu0_ns": time.thread_time_ns(),
            "cpu_ns": 0,
        }
        while len(self.batches) > self.KEPT:
            self.batches.popitem(last=False)

    def written(self, trigger_ns: int) -> None:
        entry = self.batches.get(trigger_ns)
        if entry is None:
            return
        now = time.monotonic_ns()
        entry["written"] += 1
        entry["first_ns"] = entry["first_ns"] or now
        entry["last_ns"] = now
        if entry["written"] == entry["limits"]:
            # the thread clock is a system call (0.6 us): read once, at the batch's last frame
            entry["cpu_ns"] = time.thread_time_ns()

    def write_s_per_limit(self, at_least: int) -> float | None:
        """Wall seconds per limit, receipt to last frame, of the latest batch of at least
        ``at_least`` limits written whole; None if there is none."""
        for e in reversed(self.batches.values()):
            if e["limits"] >= at_least and e["written"] == e["limits"]:
                return (e["last_ns"] - e["received_ns"]) / 1e9 / e["limits"]
        return None

    def report(self) -> list[dict[str, Any]]:
        return [
            {
                "trigger_monotonic_ns": t,
                "limits": e["limits"],
                "written": e["written"],
                # the stages, ms from the meter sample: the allocator's step began, it sent the
                # batch, this node received it, the first and the last of its frames were written
                "step_ms": _ms(e["step_ns"], t),
                "sent_ms": _ms(e["sent_ns"], t),
                "received_ms": _ms(e["received_ns"], t),
                "first_written_ms": _ms(e["first_ns"], t),
                "last_written_ms": _ms(e["last_ns"], t),
                # CPU this node's loop spent from receipt to the last frame written (None until
                # every limit of the batch has been written: some never are, their charge point
                # not charging or not connected)
                "cpu_ms": _ms(e["cpu_ns"], e["cpu0_ns"]),
            }
            for t, e in self.batches.items()
        ]


def _ms(at_ns: int, since_ns: int) -> float | None:
    return None if at_ns == 0 else round((at_ns - since_ns) / 1e6, 3)


def merge_batch_reports(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Several broker nodes' :meth:`ProfileWrites.report` as one (``[runtime] broker_shards``),
    a batch per trigger: each node wrote its part of the energy node's batch (the same trigger).
    Limits and frames written add up; the earliest step, send, receipt and first frame, the
    latest frame written so far; the CPU of the longest loop, once every part with limits has
    written them all (None until then, as in one node's report)."""
    by_trigger: dict[int, list[dict[str, Any]]] = {}
    for report in parts:
        for b in report:
            by_trigger.setdefault(b["trigger_monotonic_ns"], []).append(b)
    merged = []
    for t in sorted(by_trigger):
        bs = by_trigger[t]
        m: dict[str, Any] = {
            "trigger_monotonic_ns": t,
            "limits": sum(b["limits"] for b in bs),
            "written": sum(b["written"] for b in bs),
        }
        for key in ("step_ms", "sent_ms", "received_ms", "first_written_ms", "last_written_ms"):
            values = [b[key] for b in bs if b.get(key) is not None]
            pick = max if key == "last_written_ms" else min
            m[key] = pick(values) if values else None
        cpus = [b.get("cpu_ms") for b in bs if b["limits"]]
        m["cpu_ms"] = max(cpus) if cpus and None not in cpus else None  # type: ignore[type-var]
        merged.append(m)
    return merged


@dataclass
class BrokerContext:
    config: SiteConfig
    node: str = "broker"
    links: dict[str, Link] = field(default_factory=dict)
    conn_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    now: Callable[[], datetime] = utc_now
    listener_port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    profile_writes: ProfileWrites = field(default_factory=ProfileWrites)

    @property
    def nominal_voltage_v(self) -> float:
        """The site's ``[allocation] nominal_voltage_v``: amperes to watts for a charge point
        that takes only W, and the cloud's watts to amperes."""
        allocation = getattr(self.config.energy, "allocation", None)
        return float(getattr(allocation, "nominal_voltage_v", 230.0))

    @property
    def default_limit_a(self) -> float:
        """The safe current of the site's TxDefaultProfile (``[allocation] failsafe_current_a``,
        6 A unless set: ControlConfig.default_a), which the energy node's batches carry too: the
        broker's from its start, before the first batch."""
        allocation = getattr(self.config.energy, "allocation", None)
        control = getattr(allocation, "control", None)
        return IEC_MIN_CURRENT_A if control is None else float(control.default_a)

    @property
    def energy_managed(self) -> bool:
        """Whether the site has load management (meters or grid limits): only then does the edge
        install charging profiles and report demand."""
        energy = self.config.energy
        return energy is not None and bool(
            getattr(energy, "meters", ()) or getattr(energy, "grid_limits", ())
        )

    @property
    def shard(self) -> int:
        """This broker node's shard (actors/shards.py)."""
        return shard_of_node(self.node)

    @property
    def shards(self) -> int:
        return self.config.runtime.broker_shards

    def serves(self, cp_id: str) -> bool:
        """Whether this broker node serves charge point ``cp_id`` (always, with one node)."""
        return shard_of(cp_id, self.shards) == self.shard

    def handover_socket(self, shard: int) -> Path:
        """Where broker node ``shard`` takes the connections the front passes it."""
        return self.config.storage_dir / f"{broker_node(shard)}.handover.sock"

    def cp_path(self, cp_id: str) -> str:
        return f"{self.node}/charge_points/{cp_id}"

    def cloud_path(self, cp_id: str) -> str:
        return f"{self.node}/cloud/{cp_id}"

    def charge_point(self, cp_id: str) -> ChargePointConfig | None:
        return self.config.charge_point(cp_id)
