"""The story behind a limit and an answer, from a small hand-written day at one charge point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from actors.audit_records import (
    AuditKind,
    AuditRecord,
    limit_record,
    message_record,
    new_record,
    with_id,
)
from actors.explain import explain, format_audit, parse_since

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CP = "CP001"
ACTOR = "broker/charge_points/CP001"


def t(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def scenario() -> list[AuditRecord]:
    rows = [
        new_record(
            time_utc=t(-3600),
            actor="broker/rules",
            kind=AuditKind.RULES_APPLIED,
            decision="version 4",
            reason="version 4 applied (was 3)",
            inputs={"version": 4},
        ),
        limit_record(
            time_utc=t(-1200),
            actor="energy/site_allocator",
            charge_point_id=CP,
            limit_a=32,
            binding_source="charge_point_max",
            reason="nothing else binds",
        ),
        new_record(
            time_utc=t(-300),
            actor="broker/cloud/CP001",
            charge_point_id=CP,
            kind=AuditKind.CLOUD_LINK,
            decision="down",
            reason="no answer to 3 pings",
        ),
        new_record(
            time_utc=t(-120),
            actor=ACTOR,
            charge_point_id=CP,
            kind=AuditKind.AUTHORIZATION,
            decision="Accepted",
            reason="offline: unknown id (in neither local list nor cache); site rule accepts up to 5000 Wh",
            inputs={
                "id_tag": "04A1",
                "path": "fallback:accept_capped",
                "energy_cap_wh": 5000,
                "list_version": 7,
            },
        ),
        message_record(
            AuditKind.MESSAGE_BUFFERED,
            time_utc=t(-110),
            actor=ACTOR,
            charge_point_id=CP,
            action="StartTransaction",
            message_id="m-1",
            reason="cloud offline",
            inputs={"queue_depth": 1},
        ),
        limit_record(
            time_utc=t(-60),
            actor="energy/site_allocator",
            charge_point_id=CP,
            limit_a=16,
            binding_source="grid_limit:main",
            reason="headroom 16 A per phase after 2 A margin",
            inputs={"headroom_a": 16.0, "meter_a": [40.1, 39.0, 41.2]},
        ),
        limit_record(  # another charge point: must not be picked
            time_utc=t(-30),
            actor="energy/site_allocator",
            charge_point_id="CP002",
            limit_a=6,
            binding_source="grid_limit:main",
            reason="x",
        ),
        message_record(
            AuditKind.MESSAGE_REPLAYED,
            time_utc=t(200),
            actor=ACTOR,
            charge_point_id=CP,
            action="StartTransaction",
            message_id="m-1",
            reason="cloud back; transactionId 88 mapped",
        ),
        limit_record(  # after the question's time: context, not the answer
            time_utc=t(400),
            actor="energy/site_allocator",
            charge_point_id=CP,
            limit_a=24,
            binding_source="meter_headroom",
            reason="load dropped",
        ),
    ]
    return [with_id(r, i + 1) for i, r in enumerate(rows)]


def test_the_story_at_noon() -> None:
    story = explain(scenario(), charge_point_id=CP, at_utc=T0, window_s=600)
    assert story.lines == (
        "Why CP001 at 2025-06-01T12:00:00Z:",
        "  Limit: 16 A since 2025-06-01T11:59:00Z (record #6), bound by grid_limit:main: "
        "headroom 16 A per phase after 2 A margin",
        "    inputs: headroom_a=16.0, meter_a=[40.1,39.0,41.2]",
        "  Answer: Accepted for 04A1 via fallback:accept_capped at 2025-06-01T11:58:00Z (record #4): "
        "offline: unknown id (in neither local list nor cache); site rule accepts up to 5000 Wh",
        "  Rules: version 4 at 2025-06-01T11:00:00Z (record #1): version 4 applied (was 3)",
        "  Around it (within 10 min):",
        "    2025-06-01T11:55:00Z (-300 s) (record #3) cloud_link: down - no answer to 3 pings",
        "    2025-06-01T11:58:10Z (-110 s) (record #5) message_buffered: StartTransaction - cloud offline",
        "    2025-06-01T12:03:20Z (+200 s) (record #8) message_replayed: StartTransaction - "
        "cloud back; transactionId 88 mapped",
        "    2025-06-01T12:06:40Z (+400 s) (record #9) limit: 24 A - load dropped",
    )
    data = story.data
    assert data["limit"]["id"] == 6
    assert data["limit"]["inputs"]["binding_source"] == "grid_limit:main"
    assert data["answer"]["id"] == 4
    assert data["rules"]["id"] == 1
    assert [r["id"] for r in data["around"]] == [3, 5, 8, 9]
    assert data["messages"] == {
        "message_buffered": 1,
        "message_coalesced": 0,
        "message_replayed": 1,
        "message_dead_lettered": 0,
    }
    orjson.dumps(data)  # JSON-able as it is


def test_before_any_limit() -> None:
    story = explain(scenario(), charge_point_id=CP, at_utc=t(-1800), window_s=60)
    assert (
        story.lines[1] == "  Limit: no limit decision at or before this time in the records given."
    )
    assert story.lines[2] == "  Answer: no authorization decision at or before this time."
    assert story.lines[-1] == "  Nothing else recorded within 1 min."
    assert story.data["limit"] is None


def test_limit_exactly_at_the_time_counts() -> None:
    story = explain(scenario(), charge_point_id=CP, at_utc=t(400), window_s=1)
    assert story.data["limit"]["decision"] == "24 A"


def test_audit_rows_text_and_json() -> None:
    rows = scenario()[:2]
    text = format_audit(reversed(rows))
    assert text.splitlines() == [
        "      1  2025-06-01T11:00:00Z  rules_applied          -              version 4  "
        "(version 4 applied (was 3))  [broker/rules]",
        "      2  2025-06-01T11:40:00Z  limit                  CP001          32 A  "
        "(nothing else binds)  [energy/site_allocator]",
    ]
    doc = orjson.loads(format_audit(rows, as_json=True))
    assert [d["id"] for d in doc] == [1, 2]
    assert doc[1]["inputs"] == {"limit_a": 32, "binding_source": "charge_point_max"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("15m", T0 - timedelta(minutes=15), id="minutes"),
        pytest.param("2h", T0 - timedelta(hours=2), id="hours"),
        pytest.param("1.5d", T0 - timedelta(hours=36), id="days"),
        pytest.param("90s", T0 - timedelta(seconds=90), id="seconds"),
        pytest.param(
            "2025-05-31T08:00:00+02:00", datetime(2025, 5, 31, 6, tzinfo=UTC), id="rfc3339"
        ),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, now=T0) == expected


def test_parse_since_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="'yesterday'"):
        parse_since("yesterday", now=T0)
