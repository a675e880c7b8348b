"""A cloud that answers CALLERROR: retried with growing waits, dead-lettered after max_attempts.

The message at the head of the outbox is resent (nothing behind it overtakes), the wait between
attempts doubles (retry_backoff_min_s, x2, ...), after ``max_attempts`` it goes to the dead-letter
table with an alarm and an audit record, the status shows it, and the messages behind it flow. A
dead-lettered StartTransaction takes the messages of its transaction with it (they carry an
edge-minted id the cloud never mapped); the next transaction is unaffected.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest

from actors.audit_records import AuditKind
from actors.outbox import DEAD_TABLE
from drivers.store.audit_log import records_after
from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge
from tests.integration.broker_faults.accounting import account, marker, tx_messages
from tests.integration.broker_faults.ledger_cp import LedgerChargePoint
from tests.integration.broker_faults.site import site_toml, start_edge

MAX_ATTEMPTS = 3
BACKOFF_MIN_S = 0.2


def dead_markers(edge: Edge, cp_id: str) -> list[int]:
    store = edge.system.require_store()
    out = []
    for _, raw in store.scan(DEAD_TABLE, cp_id.encode() + b"\x00"):
        frame = orjson.loads(orjson.loads(raw)["text"])
        payload = frame[3]
        if frame[2] == "StartTransaction":
            out.append(int(payload["meterStart"]))
        elif frame[2] == "StopTransaction":
            out.append(int(payload["meterStop"]))
        else:
            out.append(int(payload["meterValue"][0]["sampledValue"][0]["value"]))
    return out


@pytest.mark.parametrize(
    ("action", "dead"),
    [
        pytest.param("MeterValues", [2], id="meter-values"),
        pytest.param("StartTransaction", [1, 2, 3, 4, 5], id="start-and-its-transaction"),
    ],
)
async def test_a_refused_message_is_retried_then_dead_lettered_and_the_rest_flows(
    tmp_path: Path,
    cloud: SimCloud,
    ledger_cps: list[LedgerChargePoint],
    action: str,
    dead: list[int],
) -> None:
    cloud_keys = {
        "max_attempts": MAX_ATTEMPTS,
        "retry_backoff_min_s": BACKOFF_MIN_S,
        "retry_backoff_max_s": 5.0,
    }
    edge = await start_edge(tmp_path, site_toml(tmp_path, cloud_url=cloud.url, cloud=cloud_keys))
    try:
        cp = await LedgerChargePoint("CP1", edge.url).start()
        ledger_cps.append(cp)
        await wait_for(lambda: cp.online and edge.cloud("CP1")["online"], what="online")
        cloud.inject_fault(action, call_error="InternalError", times=MAX_ATTEMPTS)
        cp.transaction(3)  # markers 1 (start), 2-4 (meter values), 5 (stop)
        cp.transaction(2)  # markers 6-9: must flow whatever happened to the first
        await wait_for(lambda: cp.drained, timeout=10, what="every message acknowledged")
        await wait_for(
            lambda: edge.cloud("CP1")["queue_depth"] == 0, timeout=10, what="outbox empty"
        )

        assert sorted(dead_markers(edge, "CP1")) == dead
        figures = account(ledger_cps, cloud, {"CP1": set(dead)})
        print(f"dead letters after CALLERRORs on {action}:", figures.as_dict())
        assert figures.acked == 9, "the charge point was answered for every message"
        assert figures.problems() == {}, figures

        attempts = [m for m in tx_messages(cloud, "CP1") if marker(m) == dead[0]]
        assert len(attempts) == MAX_ATTEMPTS
        gaps = [b.received_s - a.received_s for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= BACKOFF_MIN_S * 0.9, gaps
        assert gaps[1] >= 2 * BACKOFF_MIN_S * 0.9, f"the wait doubles: {gaps}"
        after = [marker(m) for m in tx_messages(cloud, "CP1") if m.seq > attempts[-1].seq]
        assert after == [n for n in range(dead[-1] + 1, 10)], "the rest flowed, in order"

        doc = await edge.site.status()
        link = doc["nodes"][0]["site"]["charge_points"]["CP1"]["cloud"]
        assert link["dead_letters"] == len(dead)
        records = [
            r
            for r in records_after(edge.system.require_store())
            if r.kind is AuditKind.MESSAGE_DEAD_LETTERED
        ]
        assert len(records) == len(dead)
        assert records[0].charge_point_id == "CP1"
        assert records[0].decision == action
        assert f"{MAX_ATTEMPTS} attempts failed" in records[0].reason
        assert "InternalError" in records[0].reason
    finally:
        await edge.stop()
