"""A charge point's durable ordered outbox and its 1.6 transaction-id map (used by CloudLink).

The outbox lives in the node store (table ``outbox``, key = charge point id, NUL, 8-byte sequence):
items are written in the CloudLink's unit of work and read back from LMDB when they reach the
head, so a backlog of 100,000 messages costs memory only for its keys.
"""

from __future__ import annotations

import collections
from typing import Any

import orjson

from actors.messages import EnqueueCall
from drivers.store.env import Store
from supervisors.actor import Actor

TABLE = "outbox"
DEAD_TABLE = "outbox_dead"
MAPPINGS_KEPT = 2000


class Outbox:
    def __init__(self, store: Store, cp_id: str) -> None:
        self.store = store
        self.prefix = cp_id.encode() + b"\x00"
        self.keys: collections.deque[bytes] = collections.deque(
            k for k, _ in store.scan(TABLE, self.prefix)
        )
        self.uncommitted: dict[bytes, dict[str, Any]] = {}
        self.dead = store.count(DEAD_TABLE, self.prefix)

    def __len__(self) -> int:
        return len(self.keys)

    def dead_count(self) -> int:
        return self.dead

    def append(self, actor: Actor, msg: EnqueueCall, after_commit: Any = None) -> bytes:
        key = self.prefix + self.store.next_id().to_bytes(8, "big")
        item = {
            "message_id": msg.message_id,
            "action": msg.action,
            "text": msg.text,
            "received_utc": msg.received_utc,
            "attempts": 0,
        }
        if msg.start_ref:
            item["start_ref"] = msg.start_ref
        self.uncommitted[key] = item

        def committed() -> None:
            self.uncommitted.pop(key, None)
            if after_commit is not None:
                after_commit()

        actor.stage(("put", TABLE, key, orjson.dumps(item)), after_commit=committed)
        self.keys.append(key)
        return key

    def peek(self, key: bytes) -> dict[str, Any] | None:
        item = self.uncommitted.get(key)
        if item is not None:
            return item
        raw = self.store.get(TABLE, key)
        return None if raw is None else dict(orjson.loads(raw))

    def head(self) -> tuple[bytes, dict[str, Any]] | None:
        while self.keys:
            key = self.keys[0]
            item = self.peek(key)
            if item is not None:
                return key, item
            self.keys.popleft()  # gone (dead-lettered by an older incarnation): skip
        return None

    def pop(self, actor: Actor, key: bytes) -> dict[str, Any] | None:
        item = self.peek(key)
        if self.keys and self.keys[0] == key:
            self.keys.popleft()
        self.uncommitted.pop(key, None)
        actor.stage(("del", TABLE, key))
        return item

    def update(self, actor: Actor, key: bytes, item: dict[str, Any]) -> None:
        self.uncommitted[key] = item

        def committed() -> None:
            if self.uncommitted.get(key) is item:
                del self.uncommitted[key]

        actor.stage(("put", TABLE, key, orjson.dumps(item)), after_commit=committed)

    def dead_letter(self, actor: Actor, key: bytes, item: dict[str, Any]) -> None:
        self.pop(actor, key)
        actor.stage(("put", DEAD_TABLE, key, orjson.dumps(item)))
        self.dead += 1


class TxMap:
    """1.6: which StartTransaction got which edge id and which cloud id.

    A start is named by its queued copy's reference (EnqueueCall.start_ref), not by its message
    id: a charge point's ids are unique per connection only, and one used again on a later
    connection (its counter starting again) met the earlier start's entry: the new start's cloud
    id joined the earlier transaction's edge id, or its edge id the earlier start's cloud id."""

    def __init__(self, doc: dict[str, Any] | None) -> None:
        d = doc or {}
        # start reference -> {"edge": id, "cloud": id, "status": the cloud's idTagInfo status};
        # entries written before references existed are keyed by the message id (its reference)
        self.by_msg: dict[str, dict[str, Any]] = dict(d.get("by_msg", {}))
        self.e2c: dict[int, int] = {int(k): int(v) for k, v in d.get("e2c", {}).items()}
        self.c2e: dict[int, int] = {c: e for e, c in self.e2c.items()}

    def _entry(self, start_ref: str) -> dict[str, Any]:
        entry = self.by_msg.setdefault(start_ref, {"edge": None, "cloud": None})
        while len(self.by_msg) > MAPPINGS_KEPT:
            del self.by_msg[next(iter(self.by_msg))]
        return entry

    def _join(self, entry: dict[str, Any]) -> None:
        edge, cloud = entry.get("edge"), entry.get("cloud")
        if edge is not None and cloud is not None:
            self.e2c[edge] = cloud
            self.c2e[cloud] = edge
            while len(self.e2c) > MAPPINGS_KEPT:
                old = next(iter(self.e2c))
                self.c2e.pop(self.e2c.pop(old), None)

    def edge_minted(self, start_ref: str, edge_id: int) -> int | None:
        entry = self._entry(start_ref)
        entry["edge"] = edge_id
        self._join(entry)
        return entry.get("cloud")

    def cloud_answered(self, start_ref: str, cloud_id: int, status: str) -> int | None:
        entry = self._entry(start_ref)
        entry["cloud"] = cloud_id
        entry["status"] = status
        self._join(entry)
        return entry.get("edge")

    def cloud_status(self, start_ref: str) -> str:
        """The cloud's idTagInfo status in its answer to this start (Accepted if not kept)."""
        return str(self.by_msg.get(start_ref, {}).get("status", "Accepted"))

    def to_dict(self) -> dict[str, Any]:
        return {"by_msg": self.by_msg, "e2c": {str(k): v for k, v in self.e2c.items()}}
