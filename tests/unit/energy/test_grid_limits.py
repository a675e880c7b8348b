"""Grid limit sources: each kind, staleness, the minimum over sources, schedule edges."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta

import pytest

from actors.grid_limits import (
    CloudSource,
    CloudState,
    ContactSource,
    ContactState,
    GridLimit,
    LimitValue,
    RegisterSource,
    RegisterState,
    StaticSource,
    cloud_limit,
    contact_limit,
    contact_update,
    effective_limits,
    parse_contact,
    register_limit,
    register_update,
)
from actors.grid_limits_schedule import ScheduleSource, ScheduleStep, schedule_limit

A16 = LimitValue(current_a=(16.0, 16.0, 16.0))
DIM = LimitValue(power_w=4200.0)
WEEKDAYS = frozenset({"mon", "tue", "wed", "thu", "fri"})


def test_static_is_always_in_force() -> None:
    limit = StaticSource(name="fuse", node="site", value=LimitValue(current_a=(63, 63, 50))).limit()
    assert limit.value.current_a == (63.0, 63.0, 50.0)
    assert not limit.stale


# --- EMS register with heartbeat ------------------------------------------------------------

EMS = RegisterSource(name="ems", node="site", unit="a", fail_safe=A16, stale_after_s=10.0)


def test_register_never_read_is_fail_safe() -> None:
    limit = register_limit(EMS, RegisterState(), now_s=0.0)
    assert limit.stale
    assert limit.value == A16


@pytest.mark.parametrize(
    ("heartbeats", "now_s", "stale"),
    [
        pytest.param([(0.0, 1)], 9.9, False, id="fresh"),
        pytest.param([(0.0, 1)], 10.0, True, id="10s-without-change"),
        pytest.param([(0.0, 1), (5.0, 1), (9.0, 1)], 10.0, True, id="same-heartbeat-re-read"),
        pytest.param([(0.0, 1), (5.0, 2)], 14.9, False, id="changed-heartbeat-keeps-alive"),
        pytest.param([(0.0, 65535), (5.0, 0)], 14.9, False, id="wrapping-counter-is-a-change"),
    ],
)
def test_register_heartbeat_staleness(
    heartbeats: list[tuple[float, int]], now_s: float, stale: bool
) -> None:
    state = RegisterState()
    for t, hb in heartbeats:
        state = register_update(state, value=40.0, heartbeat=hb, now_s=t)
    limit = register_limit(EMS, state, now_s=now_s)
    assert limit.stale is stale
    assert limit.value == (A16 if stale else LimitValue(current_a=(40.0, 40.0, 40.0)))


@pytest.mark.parametrize("raw", [65535.0, 1e9, math.inf, math.nan, -1.0, -32768.0])
def test_a_register_value_no_limit_could_be_is_the_fail_safe(raw: float) -> None:
    """All ones of a uint16 (65535 A), a mis-scaled or infinite value: no limit (infinity read
    as one had made the site's limit vanish while the source looked alive). A negative value
    (an int16 EMS writing -1 for "no limit", 0x8000) is none either: it read as 0 A, every car
    on the node paused while the source showed live."""
    state = register_update(RegisterState(), value=raw, heartbeat=1, now_s=0.0)
    limit = register_limit(EMS, state, now_s=1.0)
    assert limit.stale
    assert limit.value == A16
    assert "is no limit" in limit.detail


@pytest.mark.parametrize(
    "kw", [{"current_a": (math.nan,) * 3}, {"current_a": (math.inf,) * 3}, {"power_w": math.nan}]
)
def test_a_limit_value_is_finite(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="finite"):
        LimitValue(**kw)  # type: ignore[arg-type]


def test_register_in_watts_with_scale() -> None:
    source = RegisterSource(name="ems", node="site", unit="w", fail_safe=A16, scale=100.0)
    state = register_update(RegisterState(), value=110, heartbeat=7, now_s=0.0)
    assert register_limit(source, state, now_s=1.0).value == LimitValue(power_w=11000.0)


# --- schedule -------------------------------------------------------------------------------

BERLIN = ScheduleSource(
    name="peak",
    node="site",
    timezone="Europe/Berlin",
    steps=(
        ScheduleStep(
            days=WEEKDAYS, start=time(17), end=time(20), value=LimitValue(current_a=(40,) * 3)
        ),
        ScheduleStep(
            days=frozenset({"fri"}),
            start=time(22),
            end=time(6),
            value=LimitValue(current_a=(20,) * 3),
        ),
        ScheduleStep(days=WEEKDAYS, start=time(18), end=time(19), value=LimitValue(power_w=9000)),
    ),
)


def berlin(text: str) -> datetime:
    """Local Berlin wall time (winter: UTC+1) as an aware UTC instant."""
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        pytest.param("2025-01-06T16:59:59", None, id="mon-before-from"),
        pytest.param(
            "2025-01-06T17:00:00", LimitValue(current_a=(40,) * 3), id="mon-at-from-inclusive"
        ),
        pytest.param(
            "2025-01-06T18:30:00",
            LimitValue(current_a=(40,) * 3, power_w=9000),
            id="overlap-takes-the-tighter-of-each",
        ),
        pytest.param("2025-01-06T20:00:00", None, id="mon-at-to-exclusive"),
        pytest.param("2025-01-11T17:30:00", None, id="saturday-not-in-days"),
        pytest.param("2025-01-10T23:00:00", LimitValue(current_a=(20,) * 3), id="fri-night"),
        pytest.param("2025-01-11T05:59:00", LimitValue(current_a=(20,) * 3), id="wraps-into-sat"),
        pytest.param("2025-01-11T06:00:00", None, id="wrap-ends-at-to"),
        pytest.param("2025-01-07T05:00:00", None, id="mon-night-not-fri"),
    ],
)
def test_schedule_edges(local: str, expected: LimitValue | None) -> None:
    limit = schedule_limit(BERLIN, now_utc=berlin(local))
    assert (None if limit is None else limit.value) == expected


def test_schedule_uses_local_time_across_dst() -> None:
    source = ScheduleSource(
        name="night",
        node="site",
        timezone="Europe/Berlin",
        steps=(ScheduleStep(days=frozenset({"sun"}), start=time(1), end=time(3), value=A16),),
    )
    # 2025-03-30: clocks jump 02:00 CET -> 03:00 CEST. 00:30 UTC is 01:30 local, 01:00 UTC is 03:00.
    assert schedule_limit(source, now_utc=datetime(2025, 3, 30, 0, 30, tzinfo=UTC)) is not None
    assert schedule_limit(source, now_utc=datetime(2025, 3, 30, 1, 0, tzinfo=UTC)) is None


def test_schedule_expires_at_the_next_boundary() -> None:
    limit = schedule_limit(BERLIN, now_utc=berlin("2025-01-06T17:10:00"))
    assert limit is not None
    assert limit.expires_utc == berlin("2025-01-06T18:00:00")


def test_schedule_rejects_bad_zone_and_empty_step() -> None:
    with pytest.raises(Exception, match="Nowhere"):
        ScheduleSource(name="x", node="site", timezone="Nowhere/City", steps=())
    with pytest.raises(ValueError, match="from != to"):
        ScheduleStep(days=WEEKDAYS, start=time(5), end=time(5), value=A16)


# --- contact input --------------------------------------------------------------------------

CONTACT = ContactSource(name="14a", node="site", dimmed=DIM, fail_safe=DIM, stale_after_s=10.0)


@pytest.mark.parametrize(
    ("text", "closed"),
    [
        pytest.param("1", True, id="one"),
        pytest.param("1\n", True, id="one-newline"),
        pytest.param(" 0 ", False, id="zero-spaces"),
    ],
)
def test_parse_contact(text: str, closed: bool) -> None:
    assert parse_contact(text) is closed


@pytest.mark.parametrize("text", ["", "2", "on", "10"])
def test_parse_contact_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="'0' or '1'"):
        parse_contact(text)


def test_contact_closed_dims_open_lifts() -> None:
    closed = contact_update(ContactState(), text="1", now_s=0.0)
    limit = contact_limit(CONTACT, closed, now_s=1.0)
    assert limit is not None
    assert limit.value == DIM
    assert not limit.stale
    opened = contact_update(closed, text="0", now_s=2.0)
    assert contact_limit(CONTACT, opened, now_s=3.0) is None


def test_contact_unreadable_goes_stale_then_fail_safe() -> None:
    state = contact_update(ContactState(), text="0", now_s=0.0)
    state = contact_update(state, text=None, now_s=5.0)
    assert contact_limit(CONTACT, state, now_s=9.9) is None  # last good read still fresh
    state = contact_update(state, text="garbage", now_s=9.0)
    limit = contact_limit(CONTACT, state, now_s=10.0)
    assert limit is not None
    assert limit.stale
    assert limit.value == DIM
    assert "'0' or '1'" in limit.detail


def test_contact_never_read_is_fail_safe() -> None:
    limit = contact_limit(CONTACT, ContactState(), now_s=0.0)
    assert limit is not None
    assert limit.stale


# --- cloud ----------------------------------------------------------------------------------

NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fail_safe", "valid_for_s", "expected"),
    [
        pytest.param(None, 60, LimitValue(current_a=(25,) * 3), id="live"),
        pytest.param(None, 0, None, id="expired-no-fail-safe-vanishes"),
        pytest.param(A16, 0, A16, id="expired-with-fail-safe"),
        pytest.param(A16, -5, A16, id="long-expired"),
    ],
)
def test_cloud_limit_expiry(
    fail_safe: LimitValue | None, valid_for_s: float, expected: LimitValue | None
) -> None:
    source = CloudSource(name="cloud", node="site", fail_safe=fail_safe)
    state = CloudState(
        value=LimitValue(current_a=(25,) * 3), valid_until_utc=NOW + timedelta(seconds=valid_for_s)
    )
    limit = cloud_limit(source, state, now_utc=NOW)
    assert (None if limit is None else limit.value) == expected


# --- effective limit ------------------------------------------------------------------------


def test_effective_is_minimum_per_phase_with_binding_names() -> None:
    limits: list[GridLimit | None] = [
        GridLimit(source="fuse", node="site", value=LimitValue(current_a=(63, 63, 63))),
        GridLimit(source="ems", node="site", value=LimitValue(current_a=(70, 40, 70))),
        GridLimit(source="sched", node="site", value=LimitValue(current_a=(50, 50, 80))),
        None,
        GridLimit(source="breaker", node="garage", value=LimitValue(current_a=(16, 16, 16))),
    ]
    eff = effective_limits(limits, ["site", "garage", "yard"])
    assert eff["site"].current_a == (50.0, 40.0, 63.0)
    assert eff["site"].sources == ("sched", "ems", "fuse")
    assert eff["garage"].sources == ("breaker",) * 3
    assert eff["yard"].current_a == (math.inf,) * 3
    assert math.isinf(eff["yard"].total_a)


def test_stale_source_contributes_its_fail_safe_and_says_so() -> None:
    ems = register_limit(EMS, RegisterState(), now_s=100.0)
    fuse = StaticSource(name="fuse", node="site", value=LimitValue(current_a=(63,) * 3)).limit()
    eff = effective_limits([fuse, ems], ["site"])
    assert eff["site"].current_a == (16.0, 16.0, 16.0)
    assert eff["site"].sources[0] == "ems (stale: fail-safe)"


def test_power_limit_becomes_total_and_caps_each_phase() -> None:
    limits = [
        GridLimit(source="fuse", node="site", value=LimitValue(current_a=(63,) * 3)),
        GridLimit(source="14a", node="site", value=DIM),
    ]
    eff = effective_limits(limits, ["site"], nominal_voltage_v=230.0)
    assert eff["site"].total_a == pytest.approx(4200 / 230)
    assert eff["site"].total_source == "14a"
    assert eff["site"].current_a == pytest.approx((4200 / 230,) * 3)


def test_unknown_node_rejected() -> None:
    with pytest.raises(ValueError, match="unknown node 'attic'"):
        effective_limits([GridLimit(source="x", node="attic", value=A16)], ["site"])
