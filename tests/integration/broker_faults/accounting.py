"""Account for transaction messages: what charge points had acknowledged vs what the cloud got.

``lost``: acknowledged to the charge point, never at the cloud and not dead-lettered (must be 0).
``unexpected``: at the cloud but never sent by that charge point (must be 0).
``out_of_order``: first occurrences at the cloud not in the charge point's send order (must be 0).
``wrong_tx_id``: MeterValues/StopTransaction at the cloud not under the id the cloud gave that
transaction's StartTransaction (must be 0).
``duplicates``: copies beyond the first (at-least-once delivery: reported, allowed).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

from sim.cloud import ReceivedMessage, SimCloud
from tests.integration.broker_faults.ledger_cp import TX_ACTIONS, LedgerChargePoint


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    sent: int
    acked: int
    at_cloud: int
    received: int
    dead_lettered: int
    lost: int
    unexpected: int
    out_of_order: int
    wrong_tx_id: int
    duplicates: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def problems(self) -> dict[str, int]:
        """The figures that must be zero and are not."""
        keys = ("lost", "unexpected", "out_of_order", "wrong_tx_id")
        return {k: getattr(self, k) for k in keys if getattr(self, k)}


def marker(msg: ReceivedMessage) -> int:
    payload: Any = msg.payload
    if msg.action == "StartTransaction":
        return int(payload["meterStart"])
    if msg.action == "StopTransaction":
        return int(payload["meterStop"])
    return int(payload["meterValue"][0]["sampledValue"][0]["value"])


def tx_messages(cloud: SimCloud, cp_id: str) -> list[ReceivedMessage]:
    return [m for m in cloud.received(cp_id) if m.action in TX_ACTIONS]


def cloud_markers(cloud: SimCloud, cp_id: str) -> list[int]:
    return [marker(m) for m in tx_messages(cloud, cp_id)]


def account(
    cps: list[LedgerChargePoint],
    cloud: SimCloud,
    dead_lettered: dict[str, set[int]] | None = None,
) -> Figures:
    dead = dead_lettered or {}
    totals = dict.fromkeys(
        (
            "sent",
            "acked",
            "at_cloud",
            "received",
            "dead_lettered",
            "lost",
            "unexpected",
            "out_of_order",
            "wrong_tx_id",
            "duplicates",
        ),
        0,
    )
    for cp in cps:
        received = tx_messages(cloud, cp.cp_id)
        markers = [marker(m) for m in received]
        firsts = list(dict.fromkeys(markers))
        acked = cp.acked_markers()
        gone = dead.get(cp.cp_id, set())
        totals["sent"] += len(cp.sent)
        totals["acked"] += len(acked)
        totals["at_cloud"] += len(firsts)
        totals["received"] += len(markers)
        totals["dead_lettered"] += len(gone)
        totals["lost"] += len(acked - set(firsts) - gone)
        totals["unexpected"] += len(set(firsts) - set(cp.sent))
        totals["out_of_order"] += sum(1 for a, b in itertools.pairwise(firsts) if a > b)
        totals["duplicates"] += len(markers) - len(firsts)
        totals["wrong_tx_id"] += _wrong_tx_ids(cp, cloud, received)
    return Figures(**totals)


def _wrong_tx_ids(cp: LedgerChargePoint, cloud: SimCloud, received: list[ReceivedMessage]) -> int:
    """MeterValues/Stop whose transactionId is not the cloud's id for their own transaction."""
    known = cloud.charge_points.get(cp.cp_id)
    by_start = {} if known is None else {t.meter_start_wh: t for t in known.transactions.values()}
    starts = {m.local_tx: n for n, m in cp.sent.items() if m.action == "StartTransaction"}
    wrong = 0
    for msg in received:
        if msg.action == "StartTransaction":
            continue
        sent = cp.sent.get(marker(msg))
        if sent is None:
            continue  # counted as unexpected
        tx = by_start.get(starts[sent.local_tx])
        if tx is None or msg.payload.get("transactionId") != int(tx.transaction_id):
            wrong += 1
    return wrong
