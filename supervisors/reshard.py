"""A change of ``[runtime] broker_shards`` on a site that has run: checked before the nodes start.

Each broker node keeps its charge points' state in its own store: the messages queued for the
cloud (table ``outbox``) and each ChargePoint's state (its running transactions, with the ids they
go by). A charge point that the new count maps to another node starts there without them, so a
queued transaction message would never reach the cloud and a running transaction would lose its
ids: the runtime refuses to start while any charge point that moves has such state, and names
them. Run with the previous count until they are delivered and finished (``run.py status``:
``queued for the cloud`` 0, no transaction running on them), then change it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lmdb

from actors.outbox import TABLE as OUTBOX_TABLE
from actors.shards import shard_of, shard_of_node
from drivers.store import codec
from drivers.store.audit_log import reading
from drivers.store.env import SEP, Store

STATE = "state"  # the actors' persisted state (supervisors/cell.py), and a ChargePoint's key


def pending_moves(storage_dir: Path, shards: int) -> dict[str, list[str]]:
    """Per charge point that ``shards`` broker nodes would serve elsewhere than the node whose
    store holds its pending state: what is pending there ("3 messages queued for the cloud in
    broker", "a transaction running in broker-1")."""
    found: dict[str, list[str]] = {}
    for node in sorted(p.parent.name for p in storage_dir.glob("*/data.mdb")):
        try:
            shard = shard_of_node(node)
        except ValueError:
            continue  # the energy node, ...
        with reading(storage_dir / node) as store:
            for cp_id, what in _pending(store, node):
                if shard_of(cp_id, shards) != shard:
                    found.setdefault(cp_id, []).append(f"{what} in {node}")
    return found


def _pending(store: Store, node: str) -> Iterator[tuple[str, str]]:
    queued: dict[str, int] = {}
    for key, _ in _scan(store, OUTBOX_TABLE, b""):
        cp_id = key.split(b"\x00", 1)[0].decode()
        queued[cp_id] = queued.get(cp_id, 0) + 1
    for cp_id, n in queued.items():
        yield cp_id, f"{n} message{'s' if n != 1 else ''} queued for the cloud"
    prefix = f"{node}/charge_points/".encode()
    for key, raw in _scan(store, STATE, prefix):
        path, _, name = key.partition(SEP)
        if name != STATE.encode():
            continue
        doc = codec.decode(raw)
        txs = doc.get("transactions") if isinstance(doc, dict) else None
        running = [t for t in (txs or {}).values() if t.get("state") == "running"]
        if running:
            cp_id = path[len(prefix) :].decode()
            yield cp_id, f"{len(running)} transaction{'s' if len(running) != 1 else ''} running"


def _scan(store: Store, table: str, prefix: bytes) -> list[tuple[bytes, bytes]]:
    try:
        return list(store.scan(table, prefix))
    except lmdb.NotFoundError:  # a node that never wrote that table
        return []


def refusal(storage_dir: Path, shards: int) -> str | None:
    """Why the nodes must not start with ``shards`` broker nodes, or None."""
    moves = pending_moves(storage_dir, shards)
    if not moves:
        return None
    listed = "; ".join(f"{cp}: {', '.join(what)}" for cp, what in sorted(moves.items()))
    return (
        f"[runtime] broker_shards = {shards} would move charge points whose state is pending in "
        f"another broker node's store under {storage_dir}: {listed}. Run with the previous "
        "broker_shards until their messages reached the cloud and their transactions ended "
        "(run.py status), then change it."
    )
