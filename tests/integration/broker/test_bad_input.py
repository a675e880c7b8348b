"""Bad input at the edge: the right CALLERROR or close code, an audit record, nothing else harmed.

Other charge points keep working and what was already queued for the cloud stays queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.audit import AUDIT_TABLE
from actors.audit_records import AuditKind, decode_record
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, start_edge
from tests.integration.broker.raw_cp import RawChargePoint

DEAD_CLOUD = "ws://127.0.0.1:9/ocpp"  # nothing listens: the cloud is away for the whole test


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    e = await start_edge(
        tmp_path,
        cloud_url=DEAD_CLOUD,
        charge_points=("CP1", "CP2"),
        listener_extra="max_frame_bytes = 65536",
    )
    yield e
    await e.stop()


def audit_kinds(edge: Edge) -> list[tuple[str, str]]:
    store = edge.system.store
    return [
        (r.kind.value, r.decision) for r in (decode_record(v) for _, v in store.scan(AUDIT_TABLE))
    ]


async def queued_start(edge: Edge, cp: RawChargePoint) -> int:
    start = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-11-28T10:00:00Z"},
    )
    await wait_for(lambda: edge.cloud("CP1")["queue_depth"] == 1, what="queued")
    return int(start[2]["transactionId"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("not json", [4, "-1", "FormationViolation"], id="not-json"),
        pytest.param("{}", [4, "-1", "FormationViolation"], id="not-an-array"),
        pytest.param(
            '[2, "a1", "Heartbeat"]', [4, "a1", "FormationViolation"], id="call-too-short"
        ),
        pytest.param(
            '[2, 17, "Heartbeat", {}]', [4, "-1", "FormationViolation"], id="id-not-a-string"
        ),
        pytest.param(
            '[2, "' + "x" * 37 + '", "Heartbeat", {}]',
            [4, "-1", "FormationViolation"],
            id="id-too-long",
        ),
        pytest.param('[2, "a2", "Teleport", {}]', [4, "a2", "NotImplemented"], id="unknown-action"),
        pytest.param(
            '[2, "a3", "BootNotification", {}]',
            [4, "a3", "OccurenceConstraintViolation"],
            id="missing-required",
        ),
        pytest.param(
            '[2, "a4", "StatusNotification", {"connectorId": "one", "errorCode": "NoError", "status": "Available"}]',
            [4, "a4", "TypeConstraintViolation"],
            id="wrong-type",
        ),
        pytest.param(
            '[2, "a5", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}]',
            [4, "a5", "PropertyConstraintViolation"],
            id="not-in-enum",
        ),
        pytest.param(
            '[2, "a6", "Heartbeat", {"extra": 1}]',
            [4, "a6", "FormationViolation"],
            id="additional-property",
        ),
    ],
)
async def test_bad_calls_get_the_right_callerror(
    edge: Edge, text: str, expected: list[Any]
) -> None:
    cp = await RawChargePoint("CP1").connect(edge.url)
    tx = await queued_start(edge, cp)
    await cp.send_text(text)
    reply = orjson.loads(await asyncio.wait_for(cp.other_frames.get(), 5))
    assert reply[:3] == expected
    assert isinstance(reply[3], str)
    assert isinstance(reply[4], dict)
    # Nothing else harmed: the socket works, the neighbour works, the queue is intact.
    assert (await cp.call("Heartbeat", {}))[0] == 3
    other = await RawChargePoint("CP2").connect(edge.url)
    assert (await other.call("Heartbeat", {}))[0] == 3
    assert edge.cloud("CP1")["queue_depth"] == 1
    assert str(tx) in edge.cp("CP1")["transactions"]
    await wait_for(
        lambda: ("frame_rejected", "answered CALLERROR") in audit_kinds(edge), what="audit record"
    )
    await cp.close()
    await other.close()


async def test_results_and_unknown_message_types_are_not_answered(edge: Edge) -> None:
    cp = await RawChargePoint("CP1").connect(edge.url)
    await cp.send_text('[3, "nobody-asked", {}]')
    await cp.send_text('[7, "x", "Heartbeat", {}]')  # 1.6 section 4.1.3: ignore
    assert (await cp.call("Heartbeat", {}))[0] == 3
    assert cp.other_frames.empty()
    await cp.close()


async def test_an_oversized_frame_closes_with_1009_and_is_audited(edge: Edge) -> None:
    cp = await RawChargePoint("CP1").connect(edge.url)
    await queued_start(edge, cp)
    await cp.send_text(
        '[2, "big", "DataTransfer", {"vendorId": "x", "data": "' + "y" * 70_000 + '"}]'
    )
    assert cp.closed is not None
    code, _ = await asyncio.wait_for(cp.closed, 5)
    assert code == 1009
    await wait_for(
        lambda: ("frame_rejected", "closed 1009") in audit_kinds(edge), what="audit record"
    )
    assert edge.cloud("CP1")["queue_depth"] == 1, "the queue survived"
    again = await RawChargePoint("CP1").connect(edge.url)
    assert (await again.call("Heartbeat", {}))[0] == 3
    await again.close()


async def test_a_flood_is_throttled_and_the_neighbour_is_unaffected(edge: Edge) -> None:
    flooder = await RawChargePoint("CP1").connect(edge.url)
    neighbour = await RawChargePoint("CP2").connect(edge.url)
    for i in range(400):
        await flooder.send_text(orjson.dumps([2, f"f{i}", "Heartbeat", {}]).decode())
    t0 = asyncio.get_running_loop().time()
    assert (await neighbour.call("Heartbeat", {}))[0] == 3
    assert asyncio.get_running_loop().time() - t0 < 2.0
    await wait_for(lambda: edge.cp("CP1")["counters"].get("rate_limited", 0) > 0, what="throttled")
    await neighbour.close()
    await flooder.close()


async def test_an_unknown_identity_is_refused_with_404(edge: Edge) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        await RawChargePoint("NOPE").connect(edge.url)
    assert info.value.response.status_code == 404


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=12,
)
frames = st.one_of(
    json_values.map(lambda v: orjson.dumps(v).decode()),
    st.tuples(
        st.sampled_from([2, 3, 4, 5]),
        st.text(min_size=1, max_size=8),
        st.sampled_from(
            ["Heartbeat", "BootNotification", "StatusNotification", "MeterValues", "Bogus"]
        ),
        st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    ).map(lambda t: orjson.dumps(list(t)).decode()),
    st.text(max_size=30),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=frames)
async def test_any_frame_gets_a_well_formed_answer_or_none(edge: Edge, text: str) -> None:
    cp = await RawChargePoint("CP1").connect(edge.url)
    try:
        await cp.send_text(text)
        probe = await cp.call("Heartbeat", {})  # frames are handled in order
        assert probe[0] == 3, "the edge keeps working"
        while not cp.other_frames.empty():
            reply = orjson.loads(cp.other_frames.get_nowait())
            assert reply[0] in (3, 4)
            if reply[0] == 4:
                assert len(reply) == 5
                assert reply[2] in {
                    "NotImplemented",
                    "NotSupported",
                    "InternalError",
                    "ProtocolError",
                    "SecurityError",
                    "FormationViolation",
                    "PropertyConstraintViolation",
                    "OccurenceConstraintViolation",
                    "TypeConstraintViolation",
                    "GenericError",
                }
    finally:
        await cp.close()
    assert AuditKind.FRAME_REJECTED  # the kind exists; records are checked in the table tests
