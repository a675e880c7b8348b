"""One LMDB environment per node: opening, named tables, ids that never repeat, reads.

Opened inside the node's own process after it starts (an LMDB environment must not cross a fork, and
py-lmdb 3 refuses a second open of the same files in one process, so :func:`open_store` hands back
the one already open). Writes go through the group-commit writer (:mod:`drivers.store.writer`);
reads use short read transactions that never span an ``await`` (so the map can grow safely).

Keys:
- ``mailbox``: actor path, NUL, 8-byte big-endian sequence -> 1-byte attempts + encoded message
- ``state``:   actor path, NUL, state key -> encoded value
- ``dead``:    8-byte sequence -> dead letter (JSON)
- ``meta``:    ``epoch`` -> 8-byte boot epoch
Other modules open their own tables with :meth:`Store.table`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from drivers.store import codec

EPOCH_SHIFT = 40  # 2**40 ids per boot; 2**23 boots before the id leaves int64
SEP = b"\x00"
# Opened when the store opens (never while the writer may be in a transaction: see table()).
BUILTIN_TABLES = (
    "meta",
    "mailbox",
    "state",
    "dead",
    "audit",
    "audit_time",
    "audit_cp",
    "outbox",
    "outbox_dead",
)

Op = tuple[Any, ...]  # ("put", table, key, value) | ("del", table, key)


class StoreError(RuntimeError):
    """The node's store cannot be used (not open, closed, or the disk refused a write)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreInfo:
    path: str
    epoch: int
    map_size_bytes: int
    used_bytes: int
    stale_readers_cleared: int


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def mailbox_prefix(path: str) -> bytes:
    return path.encode() + SEP


def mailbox_key(path: str, seq: int) -> bytes:
    return path.encode() + SEP + _u64(seq)


def key_seq(key: bytes) -> int:
    return int.from_bytes(key[-8:], "big")


def state_key(path: str, key: str) -> bytes:
    return path.encode() + SEP + key.encode()


class Store:
    """The LMDB environment of one node. Thread-safe for reads; writes only via the writer."""

    def __init__(
        self,
        path: Path,
        *,
        map_size_bytes: int = 64 << 20,
        max_tables: int = 32,
        readonly: bool = False,
    ) -> None:
        if not readonly:
            # Only the runtime's user: the store holds the audit trail and keys the cloud
            # rotated (actors/credentials.py).
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not (path / "data.mdb").exists():
            raise StoreError(f"no store at {path}")
        self.path = path
        self.readonly = readonly
        self.env = lmdb.open(
            str(path),
            map_size=map_size_bytes,
            max_dbs=max_tables,
            sync=True,
            metasync=True,
            subdir=True,
            lock=True,
            readahead=False,
            readonly=readonly,
            mode=0o600,
        )
        # A reader slot left by a killed process would pin old pages forever.
        self.stale_readers_cleared = self.env.reader_check()
        self._tables: dict[str, Any] = {}
        # Held around every write transaction and every table open (see table()).
        self.write_lock = threading.RLock()

        if readonly:
            raw = self.get("meta", b"epoch")
            self.epoch = int.from_bytes(raw, "big") if raw else 0
        else:
            for name in BUILTIN_TABLES:
                self.table(name)
            self.epoch = self._bump_epoch()
        # Ids of this boot: 1, 2, ... next() on an itertools.count is one C call, atomic under
        # the GIL, so threads need no lock (a Lock around an int cost 4 % of a profile fan-out).
        self._seq = itertools.count(1)
        self.writer: Any = None  # set by the store-writer actor while it runs
        self.closed = False

    # -- tables and ids -------------------------------------------------------------------------
    def table(self, name: str) -> Any:
        handle = self._tables.get(name)
        if handle is None:
            # py-lmdb's open_db waits for LMDB's write mutex while holding the GIL: with the
            # writer thread inside a transaction (needing the GIL to finish it) that is a
            # deadlock, seen in 1 of 4 node starts. Both take write_lock first, which waits
            # without the GIL.
            with self.write_lock:
                handle = self._tables.get(name)
                if handle is None:
                    handle = self.env.open_db(name.encode(), create=not self.readonly)
                    self._tables[name] = handle
        return handle

    def _bump_epoch(self) -> int:
        meta = self.table("meta")
        with self.write_lock, self.env.begin(write=True, db=meta) as txn:
            raw = txn.get(b"epoch")
            epoch = (int.from_bytes(raw, "big") if raw else 0) + 1
            txn.put(b"epoch", _u64(epoch))
        return epoch

    def next_id(self) -> int:
        """An id unique across restarts of this node: boot epoch, then a counter."""
        seq = next(self._seq)
        if seq >= 1 << EPOCH_SHIFT:
            raise StoreError("id counter exhausted for this boot epoch")
        return (self.epoch << EPOCH_SHIFT) | seq

    # -- writes ---------------------------------------------------------------------------------
    def submit(self, ops: list[Op]) -> Any:
        """Hand ops to the group-commit writer; returns an asyncio future resolved after commit."""
        for op in ops:
            if op[1] not in self._tables:
                self.table(op[1])
        writer = self.writer
        if writer is None:
            raise StoreError(f"store {self.path} has no running writer")
        return writer.submit(ops)

    def write_now(self, ops: list[Op]) -> None:
        """Commit at once in the caller's thread: for start-up and tools, never on a hot path."""
        for op in ops:
            self.table(op[1])
        with self.write_lock, self.env.begin(write=True) as txn:
            apply_ops(self, txn, ops)

    # -- reads ----------------------------------------------------------------------------------
    def get(self, table: str, key: bytes) -> bytes | None:
        with self.env.begin(db=self.table(table)) as txn:
            value = txn.get(key)
        return None if value is None else bytes(value)

    def get_value(self, table: str, key: bytes, default: Any = None) -> Any:
        raw = self.get(table, key)
        return default if raw is None else codec.decode(raw)

    def scan(
        self, table: str, prefix: bytes = b"", *, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Items with keys starting with ``prefix`` (from ``start`` if given), read in one snapshot.

        The snapshot is materialised in chunks so no read transaction outlives a chunk.
        """
        cursor_key = start if start is not None else prefix
        while True:
            chunk: list[tuple[bytes, bytes]] = []
            with self.env.begin(db=self.table(table)) as txn:
                cur = txn.cursor()
                if not cur.set_range(cursor_key):
                    return
                for k, v in cur:
                    if not k.startswith(prefix):
                        break
                    chunk.append((bytes(k), bytes(v)))
                    if len(chunk) >= 1024:
                        break
            if not chunk:
                return
            yield from chunk
            if len(chunk) < 1024:
                return
            cursor_key = chunk[-1][0] + b"\x00"

    def count(self, table: str, prefix: bytes = b"") -> int:
        if not prefix:
            with self.env.begin(db=self.table(table)) as txn:
                return int(txn.stat(self.table(table))["entries"])
        return sum(1 for _ in self.scan(table, prefix))

    def info(self) -> StoreInfo:
        info = self.env.info()
        stat = self.env.stat()
        used = (info["last_pgno"] + 1) * stat["psize"]
        return StoreInfo(
            path=str(self.path),
            epoch=self.epoch,
            map_size_bytes=info["map_size"],
            used_bytes=used,
            stale_readers_cleared=self.stale_readers_cleared,
        )

    def grow(self) -> int:
        """Double the map. Only call when no transaction of this process is open."""
        new_size = int(self.env.info()["map_size"]) * 2
        self.env.set_mapsize(new_size)
        return new_size

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            _open_stores.pop(os.path.realpath(self.path), None)
            self.env.close()


def apply_ops(store: Store, txn: Any, ops: list[Op]) -> None:
    # Tables are opened by whoever stages the op, on the loop thread: opening one here, inside the
    # write transaction, would wait for the writer lock this very transaction holds.
    tables = store._tables
    for op in ops:
        handle = tables.get(op[1])
        if handle is None:
            raise StoreError(f"table {op[1]!r} was not opened before writing (Store.table)")
        if op[0] == "put":
            txn.put(op[2], op[3], db=handle)
        elif op[0] == "del":
            txn.delete(op[2], db=handle)
        else:
            raise StoreError(f"unknown store op {op[0]!r}")


_open_stores: dict[str, Store] = {}
_opened_here: set[str] = set()  # stores a node of this process owns (read-only opens would clash)
_open_lock = threading.Lock()


@contextlib.contextmanager
def read_other(path: Path) -> Iterator[Store | None]:
    """Read another node's store: the instance this process has open (single-process mode), else
    a short-lived read-only handle (LMDB readers in other processes are safe). None when the store
    does not exist or is being reopened by a node of this very process."""
    real = os.path.realpath(path)
    store = _open_stores.get(real)
    if store is not None and not store.closed:
        yield store
        return
    if real in _opened_here or not (path / "data.mdb").exists():
        yield None
        return
    ro = Store(path, readonly=True)
    try:
        yield ro
    finally:
        ro.close()


def peek_value(path: Path, table: str, key: bytes) -> Any:
    """Read one value without disturbing a running node (read-only, or this process's store)."""
    store = _open_stores.get(os.path.realpath(path))
    if store is not None and not store.closed:
        return store.get_value(table, key)
    ro = Store(path, readonly=True)
    try:
        return ro.get_value(table, key)
    finally:
        ro.close()


def open_store(path: Path, **kwargs: Any) -> Store:
    """The node's store, opened once per process (a second open of the same files is refused)."""
    real = os.path.realpath(path)
    with _open_lock:
        store = _open_stores.get(real)
        if store is None or store.closed:
            store = Store(path, **kwargs)
            _open_stores[real] = store
            _opened_here.add(real)
        return store
