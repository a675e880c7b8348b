"""What the control loop knows about each car: how to count its draw, and what it learned.

Pure: times are parameters. The control loop calls :func:`learn` and :func:`as_counted` for
every connector on every step and plans with the demands :func:`as_counted` returns.

**Counting a car whose sample is older than its last change.** Base load = meter - managed draw.
The meter is read every second; a charge point reports its draw every 10-60 s (MeterValues).
After a change of offer the meter shows the car's new draw within seconds, while its last sample
still shows the old one. Counting that sample put the car's new draw into the base load as well as
into its own limit: a car resumed at 6 A "did not fit" two seconds later and was paused again,
every ``min_pause_s`` (the demo's oscillation). Until a sample that *reflects* the offer in force
arrives (taken ``settle_s`` or more after the change, or after it with the car at its offer),
the car's draw is only known to lie between two counts, and the loop plans with both:

- *high*: the car follows its offer (the larger of sample and offer while it may still be
  reacting, the offer after that). Least base load, most room: decreases and pauses are decided
  on it, so a car's new draw is never counted twice and a change does not undo itself.
- *low*: the smaller of sample and offer. Most base load, least room: increases and starts are
  decided on it, so current that a car's limit holds but the car does not draw (yet) is never
  handed to another car, which would overbook the site if the car then drew it.

A connector that never reported a sample counts at its offer (high) and at 0 A (low).

**Learned per session** (a new arrival time starts afresh), only from samples that reflect an
offer of at least the minimum:

- phases: a car clearly drawing on some of its charge point's phases and not on the others is a
  1- or 2-phase car; it then loads only those grid phases, so a 1-phase car on a 3-phase charge
  point no longer holds its minimum on two phases it cannot use. A phase seen drawing later is
  added back at once.
- not drawing: a car offered the minimum that draws nothing may be one that will not start at
  6 A or pauses below 8 A. It gets one probe: its minimum becomes the configured minimum plus
  ``probe_step_a``; if it draws there, that stays its minimum for the session (lowered below it,
  it would stop again). A car that draws nothing at the probe, or at any offer above it (a full
  battery), is idle: it keeps only the configured minimum, it is served after the cars that draw
  in its priority, and the charging dwell does not hold it (pausing it changes nothing for it).
  Both end as soon as it is seen drawing.
"""

from __future__ import annotations

import math

from actors.allocation_types import ConnectorDemand, PerPhase, cp_phases
from actors.evolve import evolve, value

DRAWING_A = 1.0  # a phase drawing less than this is not in use
CLEAR_DRAW_A = 3.0  # phases are learned only from a car drawing at least this on one phase
NEVER_SAMPLED = -math.inf  # ConnectorDemand.sampled_s of a connector without any sample


@value
class CarKnowledge:
    session_s: float | None = None  # the arrival this knowledge is about
    phases: tuple[int, ...] = ()  # charge-point phases seen drawing (empty: not known)
    min_a: float = 0.0  # its own minimum (0: the configured one)
    probed: bool = False  # the start probe above the minimum was given
    idle: bool = False  # seen not drawing at what it was offered (and not since drawing)


def reflects(
    d: ConnectorDemand,
    *,
    offered_a: float,
    changed_s: float | None,
    now_s: float,
    settle_s: float,
) -> bool:
    """Whether the demand's sample shows the car's draw at the offer in force: it was taken
    ``settle_s`` or more after the change, or after it with the car already at its offer."""
    at_s = now_s if d.sampled_s is None else d.sampled_s  # no time given: as fresh as the step
    if at_s == NEVER_SAMPLED:
        return False
    if changed_s is None or at_s >= changed_s + settle_s:
        return True
    if at_s < changed_s:
        return False
    measured = d.measured_a
    # A loop, not all() over a generator (a generator per call: every connector, every step).
    for p in cp_phases(d):  # noqa: SIM110
        if not abs(measured[p] - offered_a) < DRAWING_A:
            return False
    return True


def learn(
    k: CarKnowledge,
    d: ConnectorDemand,
    *,
    offered_a: float,
    reflecting: bool,
    min_current_a: float,
    probe_step_a: float,
) -> CarKnowledge:
    """The knowledge after this step's sample."""
    if not d.active:
        return CarKnowledge()
    if k.session_s != d.arrived_s:
        k = CarKnowledge(session_s=d.arrived_s)
    timed = d.sampled_s is not None and math.isfinite(d.sampled_s)
    if not (timed and reflecting) or offered_a < min_current_a:
        return k
    wired = range(d.phases)
    drawn = [max(0.0, d.measured_a[p]) for p in wired]
    top = max(drawn, default=0.0)
    if top >= DRAWING_A:
        phases = k.phases
        if top >= CLEAR_DRAW_A:
            seen = tuple([p for p in wired if drawn[p] >= DRAWING_A])  # in order, each once
            if seen != phases:  # (most cars: the phases known already)
                phases = tuple(sorted(set(phases) | set(seen)))
        if phases == k.phases and not k.idle:
            return k
        return evolve(k, phases=phases, idle=False)

    probe_a = min(d.max_current_a, min_current_a + probe_step_a)
    if not k.probed and offered_a < probe_a:
        return evolve(k, probed=True, min_a=probe_a, idle=True)
    if k.min_a > 0 and offered_a < k.min_a:
        return k  # the probe (or the minimum it taught) is not in force yet
    return evolve(k, probed=True, min_a=0.0, idle=True)


def as_counted(
    d: ConnectorDemand,
    k: CarKnowledge,
    *,
    offered_a: float,
    changed_s: float | None,
    now_s: float,
    settle_s: float,
    recent_a: tuple[float, ...] = (),
    reflecting: bool | None = None,
) -> tuple[ConnectorDemand, ConnectorDemand]:
    """The demand as the allocation counts it, high and low (the same demand once its sample
    reflects its offer): the offer in force, whether it settled, what was learned, and the draw
    counted while its sample is older than its last change. ``recent_a``: the other limits in
    force within the last ``settle_s`` (after several quick changes the car may still draw any
    of them). ``reflecting``: :func:`reflects` of the same arguments, if the caller has it."""
    if reflecting is None:
        reflecting = reflects(
            d, offered_a=offered_a, changed_s=changed_s, now_s=now_s, settle_s=settle_s
        )
    settled_in_time = changed_s is None or now_s - changed_s >= settle_s
    counted = evolve(
        d,
        offered_a=offered_a,
        settled=settled_in_time and reflecting,
        car_phases=k.phases,
        min_current_a=k.min_a,
        idle=k.idle,
    )
    if reflecting:
        return counted, counted
    reacting = not settled_in_time
    offers = (offered_a, *recent_a) if reacting else (offered_a,)
    return (
        evolve(counted, measured_a=expected_draw(counted, offers, reacting=reacting, high=True)),
        evolve(counted, measured_a=expected_draw(counted, offers, reacting=reacting, high=False)),
    )


def expected_draw(
    d: ConnectorDemand, offers_a: tuple[float, ...], *, reacting: bool, high: bool
) -> PerPhase:
    """Per charge-point phase, on the phases the car loads: high, the largest of the sample and
    the offers it may still be following while it reacts, the offer in force after that; low,
    the smallest of them. The sample on the phases it does not load."""
    out = list(d.measured_a)
    for p in cp_phases(d):
        if not high:
            out[p] = min(out[p], *offers_a)
        elif reacting:
            out[p] = max(out[p], *offers_a)
        else:
            out[p] = d.offered_a
    return (out[0], out[1], out[2])
