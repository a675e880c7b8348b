"""A change of ``[runtime] broker_shards`` on a site that has run: checked before the nodes start.

Each broker node keeps its charge points' state in its own store: the messages queued for the
cloud (table ``outbox``), the durable mail its ChargePoint and CloudLink had not handled yet (a
kill -9: a transaction message on its way into the outbox), and each ChargePoint's state (its
running transactions, with the ids they go by). A charge point that the new count maps to another node starts there without them, so a
queued transaction message would never reach the cloud and a running transaction would lose its
ids: the runtime refuses to start while any charge point that moves has such state, and names
them. Run with the previous count until they are delivered and finished (``run.py status``:
``queued for the cloud`` 0, no transaction running on them), then change it.

A key the cloud rotated (actors/credentials.py, table ``credentials``) is the one state that never
drains: without it, the charge point's new node would ask it for the site file's password and
lock it out. :func:`move_keys` carries each such key to the node that serves its charge point
under the new count, before the nodes start (the latest, should several stores hold one; the
copies elsewhere removed, so a later move back cannot revive an older key).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lmdb

from actors.credentials import TABLE as CREDENTIALS_TABLE
from actors.credentials import StoredKey
from actors.outbox import TABLE as OUTBOX_TABLE
from actors.shards import broker_node, shard_of, shard_of_node
from drivers.store import codec
from drivers.store.audit_log import reading
from drivers.store.env import SEP, Op, Store

MAILBOX = "mailbox"  # the actors' durable mail (supervisors/cell.py)
STATE = "state"  # the actors' persisted state (supervisors/cell.py), and a ChargePoint's key


def pending_moves(storage_dir: Path, shards: int) -> dict[str, list[str]]:
    """Per charge point that ``shards`` broker nodes would serve elsewhere than the node whose
    store holds its pending state: what is pending there ("3 messages queued for the cloud in
    broker", "a transaction running in broker-1")."""
    found: dict[str, list[str]] = {}
    for node, shard in _broker_stores(storage_dir):
        with reading(storage_dir / node) as store:
            for cp_id, what in _pending(store, node):
                if shard_of(cp_id, shards) != shard:
                    found.setdefault(cp_id, []).append(f"{what} in {node}")
    return found


def move_keys(storage_dir: Path, shards: int) -> list[str]:
    """Each rotated key into the store of the broker node that serves its charge point with
    ``shards`` nodes (see the module's text); what was moved, for the log (never a key). Only
    while no node runs: the stores that change are opened for writing here."""
    held: dict[str, list[tuple[str, bytes, str]]] = {}  # cp -> [(node, record, rotated_utc)]
    for node, _ in _broker_stores(storage_dir):
        with reading(storage_dir / node) as store:
            for key, raw in _scan(store, CREDENTIALS_TABLE, b""):
                try:
                    value = codec.decode(raw)
                except codec.CodecError:
                    value = None  # moved as it is; its node reports it unreadable
                rotated = value.rotated_utc if isinstance(value, StoredKey) else ""
                held.setdefault(key.decode(), []).append((node, raw, rotated))
    ops: dict[str, list[Op]] = {}
    moved: list[str] = []
    for cp_id, copies in sorted(held.items()):
        home = broker_node(shard_of(cp_id, shards))
        if all(node == home for node, _, _ in copies):
            continue
        node, raw, _ = max(copies, key=lambda c: c[2])  # the latest (ISO 8601 UTC text)
        if node != home:
            ops.setdefault(home, []).append(("put", CREDENTIALS_TABLE, cp_id.encode(), raw))
            moved.append(f"{cp_id}: its rotated key moved from {node} to {home}")
        for other, _, _ in copies:
            if other != home:
                ops.setdefault(other, []).append(("del", CREDENTIALS_TABLE, cp_id.encode()))
    for node, node_ops in sorted(ops.items()):
        store = Store(storage_dir / node)
        try:
            store.write_now(node_ops)
        finally:
            store.close()
    return moved


def _broker_stores(storage_dir: Path) -> Iterator[tuple[str, int]]:
    """(name, shard) of each broker node that has a store under ``storage_dir``."""
    for node in sorted(p.parent.name for p in storage_dir.glob("*/data.mdb")):
        try:
            yield node, shard_of_node(node)
        except ValueError:
            continue  # the energy node, ...


def _pending(store: Store, node: str) -> Iterator[tuple[str, str]]:
    queued: dict[str, int] = {}
    for key, _ in _scan(store, OUTBOX_TABLE, b""):
        cp_id = key.split(b"\x00", 1)[0].decode()
        queued[cp_id] = queued.get(cp_id, 0) + 1
    for cp_id, n in queued.items():
        yield cp_id, f"{n} message{'s' if n != 1 else ''} queued for the cloud"
    # Durable mail not yet handled (a kill -9): a transaction message handed to the CloudLink
    # and not in its outbox yet, a verdict for the ChargePoint. Its actors start on the new node
    # without it, and this node moves it to the dead letters at its start (node_runtime).
    mail: dict[str, int] = {}
    for actors in ("charge_points", "cloud"):
        actors_prefix = f"{node}/{actors}/".encode()
        for key, _ in _scan(store, MAILBOX, actors_prefix):
            cp_id = key[len(actors_prefix) : -len(SEP) - 8].decode("utf-8", "replace")
            mail[cp_id] = mail.get(cp_id, 0) + 1
    for cp_id, n in mail.items():
        yield cp_id, f"{n} message{'s' if n != 1 else ''} in its actors' durable mailboxes"
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
