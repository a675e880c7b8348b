"""Messages between the broker node and the energy node: few, batched, at most a few a second.

broker -> energy (path ``energy/allocator``): :class:`DemandBatch`, what the charge points report
(plugged, charging, measured and offered current), and :class:`ProfileOutcomes`, how the charge
points took the limits. energy -> broker (path ``broker/profiles``): :class:`ProfileBatch`, one
limit per managed connector with the source that bound it. Never one message per OCPP frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from actors.evolve import value

# The binding source of a limit the cloud's TxProfile sets (actors.cp_cloud_caps): the broker's
# audit records and the energy node's decisions name it so.
CLOUD_PROFILE = "cloud profile"
# What holds a connector at [allocation] failsafe_current_a in the fail-safe mode, as its
# decision's reason names it ("maximum 6.0 A set by the fail-safe current"); batches and audit
# records call a limit it binds "fail-safe" (energy_inputs.binding_source).
FAILSAFE_CURRENT = "fail-safe current"
# What holds a transaction at 0 A once its energy cap is reached or the cloud refused its id
# (ConnectorReport.energy_blocked, actors.cp_limits): its maximum, named so.
ENERGY_CAP = "energy cap"


@value
class ConnectorReport:
    charge_point_id: str
    connector_id: int
    connected: bool  # the charge point's websocket is up
    plugged: bool  # a car is there (Preparing, Charging, SuspendedEV/EVSE, Finishing)
    charging: bool  # a transaction is running
    transaction_id: str | None  # as the charge point knows it (1.6 int as text, 2.0.1 string)
    arrived_utc: str | None  # when the transaction (or plug-in) started: the arrival order
    status: str  # the last StatusNotification status
    measured_a: tuple[float, float, float] | None  # Current.Import per phase (L1, L2, L3)
    offered_a: float | None  # Current.Offered
    power_w: float | None
    energy_wh: float | None
    # When the charge point took the sample measured_a comes from (one without a current, a
    # register reading say, does not move it)
    sampled_utc: str | None
    energy_blocked: bool = False  # an energy cap is reached or the cloud refused the id: 0 A
    # The cloud's TxProfile holds the transaction at this much now (actors.cp_cloud_caps): the
    # connector's maximum while it does
    cloud_cap_a: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DemandBatch:
    """Each report replaces the previous one of its connector."""

    # Sent again every second, complete: the Thespian root may drop one it holds for an energy
    # node that is down (supervisors.node_messages.transient).
    TRANSIENT: ClassVar[bool] = True

    reports: tuple[ConnectorReport, ...]
    sent_utc: str
    # ``complete``: every connector of the sending broker node (``shard``, actors/shards.py):
    # the allocator forgets the ones that node reported before and does not name now.
    complete: bool = False
    shard: int = 0
    # CLOCK_MONOTONIC when the broker sent it (one clock for every process on the host): a batch
    # that overtook this one on the way (node link vs the root, supervisors/node_links.py) is
    # newer, and this one is then dropped. 0: unknown (never dropped).
    sent_monotonic_ns: int = 0


@value
class ConnectorLimit:
    charge_point_id: str
    connector_id: int
    limit_a: float  # per phase; 0 = paused
    phases: int  # numberPhases to put in the profile
    binding_source: str  # e.g. "grid_limit:fuse/L2", "car max", "fail-safe"
    reason: str
    # the phases the car was seen drawing on, if fewer than ``phases`` (0: not known): a limit
    # in watts is given over these (actors.profiles.period_phases)
    car_phases: int = 0
    # the transaction it was decided for (None: no car): the broker puts a limit in a TxProfile
    # of that transaction only. One decided before a session began (the last car's, or "no
    # car") would otherwise reach the new car at its start (actors.cp_energy)
    transaction_id: str | None = None

    def __reduce__(self) -> tuple[Callable[..., ConnectorLimit], tuple[object, ...]]:
        """Pickled as its fields in order: a ProfileBatch carries one per connector across the
        node link (supervisors/node_links.py), and the default (each object's slots as a dict)
        took 0.57 ms to pickle 500 of them, this 0.21 ms (the same unpickling time)."""
        return _connector_limit, (
            self.charge_point_id,
            self.connector_id,
            self.limit_a,
            self.phases,
            self.binding_source,
            self.reason,
            self.car_phases,
            self.transaction_id,
        )


def _connector_limit(
    charge_point_id: str,
    connector_id: int,
    limit_a: float,
    phases: int,
    binding_source: str,
    reason: str,
    car_phases: int,
    transaction_id: str | None,
) -> ConnectorLimit:
    return ConnectorLimit(
        charge_point_id=charge_point_id,
        connector_id=connector_id,
        limit_a=limit_a,
        phases=phases,
        binding_source=binding_source,
        reason=reason,
        car_phases=car_phases,
        transaction_id=transaction_id,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileBatch:
    """The allocator's latest limits. A newer batch replaces whatever of an older one has not
    reached a charge point yet (a slow charge point never holds up the loop). ``full``: every
    connector's limit (the first batch, every ``resend_s``, when connectors come or go);
    otherwise only those that changed since they were last sent."""

    # A newer batch replaces it, and a full one goes every resend_s and when connectors come or
    # go (a restarted broker node's do): the root may drop one it holds for a node that is down.
    TRANSIENT: ClassVar[bool] = True
    limits: tuple[ConnectorLimit, ...]
    default_limit_a: float  # the safe TxDefaultProfile current (fail-safe per connector)
    computed_utc: str
    trigger_monotonic_ns: int = 0  # when the meter sample that caused it was taken (benchmarks)
    full: bool = True
    sent_monotonic_ns: int = 0  # when the allocator handed it to the broker link (status, bench)
    step_monotonic_ns: int = 0  # when the allocator's step that made it began (status, bench)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileOutcome:
    charge_point_id: str
    connector_id: int
    limit_a: float
    # "Accepted", "Rejected" (2.0.1 with its reasonCode: "Rejected: TxNotFound"), each refusal
    # with " (retrying)" while the broker tries again; "NotSupported", "error: ...", "no answer"
    status: str
    written_utc: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileOutcomes:
    # Bookkeeping (rejection counts, fan-out speed) a restarted energy node learns again: the
    # root may drop one it holds for a node that is down.
    TRANSIENT: ClassVar[bool] = True
    outcomes: tuple[ProfileOutcome, ...]
    # The broker node that sends them, and how long it took, per limit, to write its latest
    # whole batch of at least FAN_OUT_LEARNED_MIN limits (receipt -> last frame, wall seconds;
    # None: none yet): the site allocator leaves it the CPU about that long after a lowering batch.
    node: str = ""
    write_s_per_limit: float | None = None


FAN_OUT_LEARNED_MIN = 20  # limits: a smaller batch's per-limit time is mostly fixed costs


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudLimitPushed:
    """A grid limit pushed by the cloud (DataTransfer to the edge), for the "cloud" limit source."""

    source: str
    node: str
    limit_a: float | None
    power_w: float | None
    expires_utc: str | None
    # The broker's id for the push it accepted (its store's next_id(): a later push has a larger
    # one, across the broker's restarts too). The source takes none older than the last it took
    # in its run: a push sent again (CloudLimitWanted) may arrive after a newer one (the direct
    # node link and the Thespian root do not keep order between them). 0: not numbered.
    seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudLimitWanted:
    """A cloud limit source, started, asks the broker for the last push the edge accepted for it
    (``source``: its configured name); the broker sends it to ``reply_to`` again. The broker
    answers the cloud Accepted once the push is in its own store, not the energy node's: a push
    sent to an energy node that died before it stored it (kill -9, a link that went down) would
    otherwise be lost, the site running above a limit the edge acknowledged."""

    source: str
    reply_to: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteRulesChanged:
    """The central rules' energy part, applied by the broker's authorizer (version ``version``):
    per charge point priority and maximum current, and site overrides (``margin_a``,
    ``max_current_a``). Empty maps mean "back to the site file"."""

    version: int
    priorities: dict[str, int]
    max_current_a: dict[str, float]
    site: dict[str, float]
    # The broker's id for this sending (its store's next_id(): later sendings have larger ones):
    # the allocator takes none older than the last it took in its run, as rules sent again
    # (SiteRulesWanted) may arrive after a change that took the other way between the nodes
    # (direct link or the Thespian root). A rollback goes to a lower version: versions cannot
    # order them. 0: not numbered.
    seq: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteRulesWanted:
    """The site allocator, started, asks the front broker node's authorizer for the rules in
    force (:class:`SiteRulesChanged` to ``reply_to``). The authorizer answers the cloud once the
    rules are in its store, and sends them when they change: one sending lost with an energy
    node that died before it stored them (kill -9, a link that went down) would otherwise leave
    the site on the rules before, until the next change."""

    reply_to: str
