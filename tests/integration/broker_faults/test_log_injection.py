"""What a charge point chooses (an OCPP message id: any string of up to 36 characters) cannot
forge log lines: the edge's lines that name one quote it, so a newline in it stays inside its line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from actors.audit import AUDIT_TABLE
from actors.audit_records import decode_record
from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker_faults.site import site_toml, start_edge

FORGED = "x\n2026 broker ERROR forged line"  # 30 characters: a valid OCPP message id


def edge_lines(caplog: pytest.LogCaptureFixture, marker: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("actors.") and marker in r.getMessage()
    ]


async def test_a_message_id_with_a_newline_stays_on_its_log_line(
    tmp_path: Path, cloud: SimCloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cloud_keys = {"max_attempts": 1, "retry_backoff_min_s": 0.1}
    edge = await start_edge(tmp_path, site_toml(tmp_path, cloud_url=cloud.url, cloud=cloud_keys))
    cp = await RawChargePoint("CP1").connect(edge.url)
    try:
        await wait_for(lambda: edge.cloud("CP1")["online"], what="online")
        # An answer to a call the edge never made.
        await cp.send_text(orjson.dumps([3, FORGED, {}]).decode())
        await wait_for(lambda: bool(edge_lines(caplog, "unknown call")), what="the answer dropped")
        # A transaction message the cloud refuses: dead-lettered with an alarm naming its id.
        cloud.inject_fault("MeterValues", call_error="InternalError", times=1)
        meter_values = {
            "connectorId": 1,
            "transactionId": 7,
            "meterValue": [{"timestamp": "2026-11-28T10:00:00Z", "sampledValue": [{"value": "1"}]}],
        }
        await cp.send_frame([2, FORGED, "MeterValues", meter_values], FORGED)
        await wait_for(lambda: bool(edge_lines(caplog, "ALARM")), what="the alarm")
    finally:
        await cp.close()
        await edge.stop()
    lines = edge_lines(caplog, "forged line")
    assert len(lines) == 2, lines
    assert [line for line in lines if "\n" in line] == []


async def test_a_field_name_with_a_newline_stays_on_its_log_line(
    tmp_path: Path, cloud: SimCloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    edge = await start_edge(tmp_path, site_toml(tmp_path, cloud_url=cloud.url))
    cp = await RawChargePoint("CP1").connect(edge.url)
    try:
        # A field the schema does not allow is named in the CALLERROR, the log and the audit.
        answer = await cp.send_frame([2, "m1", "Heartbeat", {FORGED: 1}], "m1")
        assert answer[:3] == [4, "m1", "FormationViolation"]
        assert "forged line" in answer[3]
        await wait_for(lambda: bool(edge_lines(caplog, "frame rejected")), what="the log line")
        store = edge.system.require_store()
        reasons = [decode_record(v).reason for _, v in store.scan(AUDIT_TABLE)]
    finally:
        await cp.close()
        await edge.stop()
    lines = edge_lines(caplog, "forged line")
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]
    assert [r for r in reasons if "forged line" in r and "\n" not in r] == reasons[-1:]
