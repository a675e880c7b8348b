"""Allocation, table-driven: each case is a site, its demand and the limits expected."""

from __future__ import annotations

import math

import pytest

from actors.allocation import allocate, ancestry
from actors.allocation_types import AllocationConfig, ConnectorDemand, MeterSample, NodeInput
from actors.evolve import evolve
from actors.grid_limits import (
    ContactSource,
    ContactState,
    GridLimit,
    LimitValue,
    contact_limit,
    effective_limits,
)
from tests.unit.energy.builders import car, node, phases

CFG = AllocationConfig(margin_a=1.0, min_current_a=6.0, draw_slack_a=1.0, resolution_a=0.1)


def case(
    nodes: list[NodeInput],
    cars: list[ConnectorDemand],
    expected: dict[str, float],
    kinds: dict[str, str] | None = None,
    *,
    cfg: AllocationConfig = CFG,
    id: str,
) -> object:
    return pytest.param(nodes, cars, expected, kinds or {}, cfg, id=id)


CASES = [
    case(
        [node(limit_a=63, meter_a=phases(5))],
        [car("a", max_a=16)],
        {"a": 16.0},
        {"a": "car_max"},
        id="plenty-of-room-car-max",
    ),
    case(
        [node(limit_a=32, meter_a=phases(10))],
        [car("a", arrived_s=1), car("b", arrived_s=2)],
        {"a": 10.5, "b": 10.5},
        {"a": "node", "b": "node"},
        id="equal-share-of-headroom-32-1-10",
    ),
    case(
        [node(limit_a=32, meter_a=phases(26))],
        [car("a")],
        {"a": 0.0},
        {"a": "paused"},
        id="base-load-leaves-5a-paused",
    ),
    case(
        [node(limit_a=32, meter_a=phases(17))],
        [car("a", arrived_s=1), car("b", arrived_s=2), car("c", arrived_s=3)],
        {"a": 7.0, "b": 7.0, "c": 0.0},
        {"c": "paused"},
        id="third-arrival-paused-first",
    ),
    case(
        [node(limit_a=32, meter_a=phases(1))],
        [car("low", priority=0, arrived_s=1), car("high", priority=5, max_a=16, arrived_s=2)],
        {"high": 16.0, "low": 14.0},
        {"high": "car_max", "low": "node"},
        id="higher-priority-served-to-its-max-first",
    ),
    case(
        [node(limit_a=32, meter_a=phases(21))],
        [car("low", priority=0, arrived_s=1), car("high", priority=5, arrived_s=2)],
        {"high": 10.0, "low": 0.0},
        {"low": "paused"},
        id="priority-beats-arrival-when-pausing",
    ),
    case(
        [node(limit_a=(63, 9, 63), meter_a=(0, 0, 0))],
        [car("srt", phases=1, rotation="SRT")],
        {"srt": 8.0},
        {"srt": "node"},
        id="one-phase-car-on-SRT-loads-grid-L2",
    ),
    case(
        [node(limit_a=(63, 9, 63), meter_a=(0, 0, 0))],
        [car("rst", phases=1, rotation="RST")],
        {"rst": 32.0},
        {"rst": "car_max"},
        id="one-phase-car-on-RST-loads-grid-L1",
    ),
    case(
        [node(limit_a=(63, 9, 63), meter_a=(0, 0, 0))],
        [car("tsr", phases=1, rotation="TSR", max_a=16)],
        {"tsr": 16.0},
        id="one-phase-car-on-TSR-loads-grid-L3",
    ),
    case(
        [node(limit_a=100, meter_a=phases(0)), node("garage", parent="site", limit_a=16)],
        [car("a", node="garage", arrived_s=1), car("b", node="garage", arrived_s=2)],
        {"a": 7.5, "b": 7.5},
        {"a": "node", "b": "node"},
        id="feeder-limit-binds-below-site",
    ),
    case(
        [
            node(limit_a=40, meter_a=phases(0)),
            node("garage", parent="site", limit_a=10),
            node("yard", parent="site", limit_a=63),
        ],
        [car("g", node="garage"), car("y1", node="yard"), car("y2", node="yard")],
        {"g": 9.0, "y1": 15.0, "y2": 15.0},
        {"g": "node", "y1": "node", "y2": "node"},
        id="feeder-capped-car-leaves-the-rest-of-the-site-to-others",
    ),
    case(
        [node(limit_a=32, meter_a=phases(9))],
        [
            car("full", offered_a=16, measured_a=phases(8), settled=True, arrived_s=1),
            car("hungry", arrived_s=2),
        ],
        {"full": 9.0, "hungry": 21.0},
        {"full": "undrawn", "hungry": "node"},
        id="undrawn-current-returns-to-the-pool",
    ),
    case(
        [node(limit_a=32, meter_a=phases(9))],
        [
            car("full", offered_a=16, measured_a=phases(8), settled=False, arrived_s=1),
            car("hungry", arrived_s=2),
        ],
        {"full": 15.0, "hungry": 15.0},
        id="undrawn-ignored-until-settled",
    ),
    case(
        [node(limit_a=32, meter_a=phases(0))],
        [car("asleep", offered_a=16, measured_a=phases(0), settled=True)],
        {"asleep": 6.0},
        {"asleep": "undrawn"},
        id="car-drawing-nothing-keeps-the-minimum-not-paused",
    ),
    case(
        [node(limit_a=32, meter_a=phases(8))],
        [car("capped", offered_a=9, measured_a=phases(8), settled=True)],
        {"capped": 9.0},
        {"capped": "undrawn"},
        id="undrawn-cap-is-stable-at-draw-plus-slack",
    ),
    case(
        [node(limit_a=32, meter_a=phases(8.6))],
        [car("wants-more", offered_a=9, measured_a=phases(8.6), settled=True)],
        {"wants-more": 31.0},
        {"wants-more": "node"},
        id="draw-near-the-offer-means-the-car-wants-more",
    ),
    case(
        [node(limit_a=63, total_a=4200 / 230, meter_a=phases(0))],
        [car("3ph")],
        {"3ph": 6.0},
        {"3ph": "node"},
        cfg=AllocationConfig(margin_a=0.0),
        id="power-limit-4200w-3-phase-gets-6a",
    ),
    case(
        [node(limit_a=63, total_a=4200 / 230, meter_a=phases(0))],
        [car("1ph", phases=1)],
        {"1ph": 18.2},
        cfg=AllocationConfig(margin_a=0.0),
        id="power-limit-4200w-1-phase-gets-18a",
    ),
    case(
        [
            node(limit_a=63, meter_a=phases(20)),
            node("cp1", parent="site", limit_a=math.inf, total_a=4200 / 230),
        ],
        [car("3ph", node="cp1")],
        {"3ph": 6.0},
        {"3ph": "node"},
        cfg=AllocationConfig(margin_a=1.0),
        id="14a-on-the-charge-point-at-the-shipped-margin-3-phase-gets-6a",
    ),
    case(
        [
            node(limit_a=63, meter_a=phases(20)),
            node("cp1", parent="site", limit_a=math.inf, total_a=4200 / 230),
        ],
        [car("1ph", node="cp1", phases=1)],
        {"1ph": 18.2},
        cfg=AllocationConfig(margin_a=1.0),
        id="14a-on-the-charge-point-at-the-shipped-margin-1-phase-gets-18a",
    ),
    case(
        # On a metered node a power limit keeps a margin per phase: the base load it measures
        # moves while the chargers react.
        [node(limit_a=63, total_a=6900 / 230, meter_a=phases(0))],
        [car("3ph")],
        {"3ph": 9.0},
        cfg=AllocationConfig(margin_a=1.0),
        id="power-limit-on-a-metered-node-keeps-three-margins",
    ),
    case(
        [node(limit_a=63, meter_a=phases(0))],
        [car("tiny", max_a=5)],
        {"tiny": 0.0},
        {"tiny": "below_min"},
        id="max-below-minimum-paused",
    ),
    case(
        [node(limit_a=63, meter_a=phases(0))],
        [car("gone", active=False, measured_a=phases(0))],
        {"gone": 0.0},
        {"gone": "inactive"},
        id="inactive-gets-zero",
    ),
    case(
        [node(limit_a=32, meter_a=phases(16))],
        [
            car("rogue", offered_a=10, measured_a=phases(16), settled=True, arrived_s=1),
            car("b", arrived_s=2),
        ],
        {"rogue": 12.5, "b": 12.5},
        id="draw-above-offer-after-settling-counts-as-base-load",
    ),
    case(
        [node(limit_a=32, metered=True)],
        [car("a")],
        {"a": 0.0},
        {"a": "paused"},
        id="metered-node-never-read-nothing-fits",
    ),
    case(
        [node(limit_a=(32, 32, 32), meter_a=(-10, 20, 0))],
        [car("pv", phases=1, max_a=40)],
        {"pv": 40.0},
        id="pv-export-on-L1-adds-headroom",
    ),
    case(
        [node(limit_a=32)],
        [car("a", arrived_s=1), car("b", arrived_s=2), car("c", arrived_s=3)],
        {"a": 10.3, "b": 10.3, "c": 10.3},
        id="unmetered-node-splits-limit-minus-margin",
    ),
]


@pytest.mark.parametrize(("nodes", "cars", "expected", "kinds", "cfg"), CASES)
def test_allocation_table(
    nodes: list[NodeInput],
    cars: list[ConnectorDemand],
    expected: dict[str, float],
    kinds: dict[str, str],
    cfg: AllocationConfig,
) -> None:
    result = allocate(nodes, cars, cfg)
    assert result.limits() == pytest.approx(expected, abs=1e-9)
    for cid, kind in kinds.items():
        assert result.of(cid).binding.kind == kind, result.of(cid).reason


def test_binding_names_node_phase_and_source() -> None:
    nodes = [node(limit_a=100, meter_a=phases(0)), node("garage", parent="site", limit_a=16)]
    nodes[1] = nodes[1].__class__(
        name="garage",
        parent="site",
        limit=nodes[1].limit.__class__(
            current_a=(16, 12, 16), sources=("breaker", "ems", "breaker")
        ),
    )
    result = allocate(nodes, [car("a", node="garage")], CFG)
    binding = result.of("a").binding
    assert (binding.node, binding.phase, binding.source) == ("garage", "L2", "ems")
    assert result.of("a").limit_a == 11.0
    assert "ems" in result.of("a").reason


def test_headroom_report_has_every_figure() -> None:
    result = allocate(
        [node(limit_a=32, meter_a=(20, 10, 5))],
        [car("a", measured_a=(8, 8, 8))],
        CFG,
    )
    l1 = next(h for h in result.headroom if h.phase == "L1")
    assert (l1.limit_a, l1.margin_a, l1.meter_a, l1.managed_a) == (32, 1.0, 20, 8)
    assert l1.base_load_a == 12
    assert l1.headroom_a == 19
    assert l1.allocated_a == result.of("a").limit_a == 19.0


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        pytest.param([node("a"), node("b")], "exactly one root", id="two-roots"),
        pytest.param([node(), node("f", parent="nope")], "not a node", id="unknown-parent"),
        pytest.param([node(), node("f", parent="g"), node("g", parent="f")], "cycle", id="cycle"),
        pytest.param([node(), node()], "twice", id="duplicate"),
    ],
)
def test_malformed_tree_rejected(nodes: list[NodeInput], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ancestry(nodes)


def test_connector_on_unknown_node_rejected() -> None:
    with pytest.raises(ValueError, match="unknown node 'attic'"):
        allocate([node()], [car("a", node="attic")], CFG)


def test_duplicate_connector_ids_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        allocate([node()], [car("a"), car("a")], CFG)


def test_bad_rotation_rejected() -> None:
    with pytest.raises(ValueError, match="phase rotation"):
        allocate([node()], [car("a", rotation="RRT")], CFG)


def test_unlimited_node_gives_car_max() -> None:
    result = allocate([node(limit_a=math.inf)], [car("a", max_a=22)], CFG)
    assert result.limits() == {"a": 22.0}


def test_a_maximum_the_cloud_sets_is_named_where_it_binds() -> None:
    capped = evolve(car("a", max_a=8, arrived_s=1), max_source="cloud profile")
    result = allocate([node(limit_a=32, meter_a=phases(1))], [capped, car("b", arrived_s=2)], CFG)
    assert result.limits() == {"a": 8.0, "b": 22.0}, "what a does not take goes to b"
    a = result.of("a")
    assert (a.binding.kind, a.binding.source) == ("car_max", "cloud profile")
    assert a.reason == "maximum 8.0 A set by the cloud profile"
    paused = allocate([node()], [evolve(car("a", max_a=4), max_source="cloud profile")], CFG)
    a = paused.of("a")
    assert (a.limit_a, a.binding.kind, a.binding.source) == (0.0, "below_min", "cloud profile")
    assert "4.0 A (set by the cloud profile) is below the minimum" in a.reason
    plain = allocate([node(limit_a=math.inf)], [car("a", max_a=22)], CFG).of("a")
    assert (plain.binding.source, plain.reason) == ("", "connector maximum 22.0 A")


def test_a_node_without_a_limit_now_holds_back_no_car() -> None:
    """A charge point's node whose only source sets no limit now (a section 14a contact open)
    has infinite capacity: a car under it rises to its own maximum while another car reaches
    its cap first (it was frozen at the other's level, "limit inf A", and lowered)."""
    open_contact = node("CP-001", parent="site", limit_a=math.inf, source="")
    result = allocate(
        [node(limit_a=100, meter_a=phases(0)), open_contact],
        [car("a", node="CP-001", max_a=32, arrived_s=1), car("b", max_a=10, arrived_s=2)],
        CFG,
    )
    assert result.limits() == {"a": 32.0, "b": 10.0}
    a = result.of("a")
    assert a.binding.kind == "car_max", a.reason
    assert "inf" not in a.reason


def test_a_car_at_0_a_starts_under_a_4_2_kw_dimming_of_its_charge_point() -> None:
    """Section 14a: a dimmed device keeps 4.2 kW. A 3-phase car not charging (new, paused, or
    after a restart) under its charge point's 4.2 kW (18.3 A summed, no meter there) was held
    at 0 A: its minimum plus the start margin on each phase (3 x 7 A) never fit the total. The
    allocation alone loads that node, so the margin for unseen load does not apply there."""
    dimmed = node("CP-001", parent="site", limit_a=4200 / 230, total_a=4200 / 230, source="14a")
    site = node(limit_a=100, meter_a=phases(0))
    result = allocate([site, dimmed], [car("a", node="CP-001")], CFG, start_margin_a=1.0)
    assert result.of("a").limit_a == 6.0, result.of("a").reason
    # The site's own (metered) room still needs the margin to start a car.
    tight = node(limit_a=7.5, meter_a=phases(0))
    result = allocate([tight, dimmed], [car("a", node="CP-001")], CFG, start_margin_a=1.0)
    assert result.of("a").limit_a == 0.0
    assert "(+1.0 A to start) on node 'site'" in result.of("a").reason


def test_a_current_dimming_on_a_charge_point_keeps_the_margin_per_phase() -> None:
    """README: a per-phase limit keeps margin_a free on every node, metered or not; so a
    charge point dimmed by current needs min_current_a + margin_a (7 A leaves 6 A, 6 A pauses),
    where a power dimming (the total) keeps none."""
    site = node(limit_a=100, meter_a=phases(0))
    for dimmed_a, expected in ((7.0, 6.0), (6.0, 0.0)):
        cp = node("CP-001", parent="site", limit_a=dimmed_a, source="14a")
        result = allocate([site, cp], [car("a", node="CP-001", offered_a=6.0)], CFG)
        assert result.of("a").limit_a == expected, result.of("a").reason


def test_a_4_2_kw_dimming_of_a_charge_point_leaves_a_1_phase_car_18_2_a() -> None:
    """README: a section 14a contact on a charge point (``dimmed = { power_w = 4200 }``) leaves
    a 1-phase car 18.2 A; a power limit on a node without a meter keeps no margin. The node's
    limit as the runtime makes it (the contact's limit through effective_limits) also caps each
    phase at 4200 / 230 A, and that cap kept margin_a: 17.2 A (3.96 kW) where the unit cases,
    written with the total alone, said 18.2."""
    contact = ContactSource(
        name="14a", node="CP-001", dimmed=LimitValue(power_w=4200), fail_safe=LimitValue(power_w=0)
    )
    dimmed = contact_limit(contact, ContactState(closed=True, read_s=0.0), now_s=0.0)
    fuse = GridLimit(source="fuse", node="site", value=LimitValue(current_a=phases(63)))
    limits = effective_limits([fuse, dimmed], ["site", "CP-001"])
    nodes = [
        NodeInput(
            name="site",
            parent=None,
            limit=limits["site"],
            metered=True,
            meter=MeterSample(current_a=phases(20), read_s=0.0),
        ),
        NodeInput(name="CP-001", parent="site", limit=limits["CP-001"]),
    ]
    for phase_count, expected in ((1, 18.2), (3, 6.0)):
        for offered in (0.0, 6.0):
            d = car("a", node="CP-001", phases=phase_count, offered_a=offered)
            got = allocate(nodes, [d], CFG, start_margin_a=1.0).of("a")
            assert got.limit_a == expected, (phase_count, offered, got.reason)
    # An explicit per-phase limit on the charge point keeps its margin, power limit or not.
    both = GridLimit(
        source="14a", node="CP-001", value=LimitValue(current_a=phases(16), power_w=4200)
    )
    limits = effective_limits([fuse, both], ["site", "CP-001"])
    nodes[1] = NodeInput(name="CP-001", parent="site", limit=limits["CP-001"])
    one = allocate(nodes, [car("a", node="CP-001", phases=1, offered_a=6.0)], CFG).of("a")
    assert one.limit_a == 15.0, one.reason


def test_a_current_dimming_of_min_plus_margin_starts_no_car_at_0_a() -> None:
    """README: ``dimmed = { current_a = 7 }`` on a charge point keeps a charging car at 6 A but
    starts none at 0 A (its minimum plus resume_margin_a, 1 A, must fit: 8 A). It said 7 A
    (min_current_a + margin_a) would do: a car arriving under the dimming waited for its end."""
    site = node(limit_a=100, meter_a=phases(0))
    for dimmed_a, offered_a, expected in ((7.0, 6.0, 6.0), (7.0, 0.0, 0.0), (8.0, 0.0, 7.0)):
        cp = node("CP-001", parent="site", limit_a=dimmed_a, source="14a")
        d = car("a", node="CP-001", offered_a=offered_a)
        got = allocate([site, cp], [d], CFG, start_margin_a=1.0).of("a")
        assert got.limit_a == expected, (dimmed_a, offered_a, got.reason)
