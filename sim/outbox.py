"""The charge point's own ordered queue of transaction messages (pure, no I/O).

Real charge points keep StartTransaction, transaction MeterValues and StopTransaction (2.0.1: every
TransactionEvent) in order while the link is down and deliver them after reconnect; a new transaction
message waits until the queue ahead of it is empty. A 1.6 message queued before its StartTransaction
was answered does not know the cloud's transaction id yet, so it refers to the local transaction and
the id is filled in when the message is sent. A message the cloud keeps refusing (CALLERROR, or
no answer within the response timeout) is dropped after ``TransactionMessageAttempts``, waiting
``TransactionMessageRetryInterval`` times the attempt number in between (see ``sim/cp_session.py``); a message whose StartTransaction was dropped is
dropped too rather than sent with an invented id (zombie transactions, SteVe #292).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, kw_only=True)
class Outgoing:
    seq: int
    action: str
    payload: dict[str, Any]
    # 1.6 only: the local transaction whose cloud id goes into payload["transaction_id"].
    local_tx: int | None = None
    queued_offline: bool = False
    attempts: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropped:
    seq: int
    action: str
    reason: str


@dataclass(slots=True)
class Outbox:
    _items: deque[Outgoing] = field(default_factory=deque)
    _tx_ids: dict[int, int | str] = field(default_factory=dict)
    _next_seq: int = 0
    dropped: list[Dropped] = field(default_factory=list)
    delivered: int = 0

    def __len__(self) -> int:
        return len(self._items)

    def append(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        local_tx: int | None = None,
        offline: bool = False,
    ) -> Outgoing:
        item = Outgoing(
            seq=self._next_seq,
            action=action,
            payload=payload,
            local_tx=local_tx,
            queued_offline=offline,
        )
        self._next_seq += 1
        self._items.append(item)
        return item

    def head(self) -> Outgoing | None:
        return self._items[0] if self._items else None

    def items(self) -> tuple[Outgoing, ...]:
        return tuple(self._items)

    def set_transaction_id(self, local_tx: int, transaction_id: int | str) -> None:
        self._tx_ids[local_tx] = transaction_id

    def transaction_id(self, local_tx: int) -> int | str | None:
        return self._tx_ids.get(local_tx)

    def resolve(self, item: Outgoing) -> dict[str, Any] | None:
        """The payload to send, with the transaction id filled in; None when it cannot be known."""
        if item.local_tx is None or "transaction_id" not in item.payload:
            return item.payload
        tx_id = self._tx_ids.get(item.local_tx)
        if tx_id is None:
            return None
        return {**item.payload, "transaction_id": tx_id}

    def pop_delivered(self, item: Outgoing) -> None:
        self._remove_head(item)
        self.delivered += 1

    def pop_dropped(self, item: Outgoing, reason: str) -> None:
        self._remove_head(item)
        self.dropped.append(Dropped(seq=item.seq, action=item.action, reason=reason))

    def _remove_head(self, item: Outgoing) -> None:
        if not self._items or self._items[0] is not item:
            raise RuntimeError(f"outbox: message {item.seq} ({item.action}) is not at the head")
        self._items.popleft()
