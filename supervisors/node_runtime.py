"""One node's actor tree on its asyncio loop: store, actor system, snapshots, status, routing.

The same class runs inside a Thespian node process (``supervisors.nodes``) and, for
``--single-process`` mode and most tests, several of them side by side on one loop
(``supervisors.single``). What differs is only how messages leave the node (``outbound``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.store import codec
from drivers.store.env import SEP, Op, Store, open_store, peek_value
from supervisors import affinity, priority
from supervisors.gc_policy import gc_maintenance
from supervisors.loop_lag import LoopLag, monitor
from supervisors.messages import ChildReport, ExitReason
from supervisors.node_links import NodeLinks
from supervisors.system import ActorSystem
from supervisors.trees import NODE_KINDS, NodeContext, NodeKind

log = logging.getLogger(__name__)

SNAPSHOT_KEY = b"status/snapshot"
SNAPSHOT_INTERVAL_S = 30.0  # the stale fallback's age; 500 charge points: ~30 ms of work, in steps
ORPHANS_PER_COMMIT = 1000  # messages moved to the dead letters per commit at start


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHistory:
    """What the node's supervisor (Thespian root or single-process launcher) knows of its life."""

    restarts: int = 0
    last_failure: str | None = None
    last_failure_utc: str | None = None


def report_to_dict(r: ChildReport) -> dict[str, Any]:
    return {
        "id": r.id,
        "path": r.path,
        "kind": r.kind,
        "restart": r.restart,
        "state": r.state,
        "restarts": r.restarts,
        "last_failure": r.last_failure,
        "last_failure_utc": r.last_failure_utc,
        "started_utc": r.started_utc,
        "mailbox_depth": r.mailbox_depth,
        "dead_letters": r.dead_letters,
        "info": r.info,
        "children": [report_to_dict(c) for c in r.children],
    }


@dataclass
class NodeRuntime:
    name: str
    kind: str
    config: Any
    storage_dir: Path
    outbound: Callable[[str, object], None]
    history: NodeHistory = field(default_factory=NodeHistory)
    links: NodeLinks | None = None  # direct links to the other nodes (nodes mode only)
    store: Store | None = None
    system: ActorSystem | None = None
    started_utc: str = ""
    _snapshot_task: asyncio.Task[None] | None = None
    _gc_task: asyncio.Task[None] | None = None
    lag: LoopLag = field(default_factory=LoopLag)
    _lag_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        node_kind = NODE_KINDS.get(self.kind)
        if node_kind is None:
            raise ValueError(f"unknown node kind {self.kind!r} (known: {sorted(NODE_KINDS)})")
        self.store = open_store(self.storage_dir / self.name)
        self.system = ActorSystem(self.name, store=self.store)
        self.system.remote = self.outbound
        ctx = NodeContext(name=self.name, config=self.config, system=self.system)
        spec = node_kind.build(ctx)
        self.started_utc = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.system.on_restart = self._record_restart
        await self.system.start(spec)
        await self._dead_letter_orphans(ctx, node_kind)
        if self.history.restarts:
            self._record_restart(
                self.name,
                f"node restarted (restart {self.history.restarts})",
                self.history.last_failure or "unknown",
            )
        self._snapshot_task = asyncio.get_running_loop().create_task(self._snapshots())
        self._gc_task = asyncio.get_running_loop().create_task(gc_maintenance())
        self._lag_task = asyncio.get_running_loop().create_task(monitor(self.lag))
        log.info(
            "node %s (%s) started, pid %d, epoch %d",
            self.name,
            self.kind,
            os.getpid(),
            self.store.epoch,
        )

    async def _dead_letter_orphans(self, ctx: NodeContext, node_kind: NodeKind) -> None:
        """Durable mail for an actor this node no longer has (a charge point removed from the
        site file) would stay in the mailbox table for ever: no actor at that path reads it (a
        charge point that a new ``broker_shards`` moves with mail still here is refused before
        the nodes start: supervisors/reshard.py). It goes to the dead
        letters, its reason naming the path, so nothing acknowledged disappears without a trace.
        Paths where an actor may start later (``NodeKind.starts_later``) keep theirs."""
        system, store = self.system, self.store
        assert system is not None
        assert store is not None
        later = node_kind.starts_later
        kept: set[str] = set()
        orphans: dict[str, list[tuple[bytes, bytes]]] = {}
        for key, value in store.scan("mailbox"):
            path = key[: -len(SEP) - 8].decode("utf-8", "replace")
            if path in system.cells or path in kept:
                continue
            if later is not None and later(ctx, path):
                kept.add(path)
                continue
            orphans.setdefault(path, []).append((key, value))
        if not orphans:
            return
        ops: list[Op] = []
        for path, items in orphans.items():
            reason = f"no actor at {path} in node {self.name} at its start: not configured any more"
            for key, value in items:
                ops.append(("del", "mailbox", key))  # moved in the same commit
                ops.append(system.dead_letter_op(path, value[1:], reason))
                system.count_dead_letter(path)
        for i in range(0, len(ops), 2 * ORPHANS_PER_COMMIT):
            await store.submit(ops[i : i + 2 * ORPHANS_PER_COMMIT])
        log.warning(
            "node %s: %d durable messages for actors it no longer has moved to the dead letters "
            "(%s)",
            self.name,
            sum(len(items) for items in orphans.values()),
            ", ".join(f"{path} {len(items)}" for path, items in sorted(orphans.items())),
        )

    @property
    def terminated(self) -> asyncio.Future[ExitReason]:
        assert self.system is not None
        assert self.system.terminated is not None
        return self.system.terminated

    def deliver(self, path: str, msg: object) -> None:
        """A message from another node, on this node's loop."""
        if self.system is not None:
            self.system.send(path, msg)

    async def status(self, timeout_s: float = 0.5) -> dict[str, Any]:
        system = self.system
        tree: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        if system is not None and system.root is not None:
            reports = await system.which_children(timeout_s)
            tree = [report_to_dict(r) for r in reports]
            node_kind = NODE_KINDS[self.kind]
            try:
                if node_kind.summary_steps is None:
                    with priority.background():  # a status is never urgent
                        summary = node_kind.summary(system)
                else:
                    summary = await _in_steps(node_kind.summary_steps(system))
            except Exception as exc:  # the status must survive a bad summary
                summary = {"summary_error": repr(exc)}
        store_info = None if self.store is None else self.store.info()
        return {
            "name": self.name,
            "kind": self.kind,
            "pid": os.getpid(),
            "cpus": affinity.current(),
            "realtime": priority.is_realtime(),
            "started_utc": self.started_utc,
            "restarts": self.history.restarts,
            "last_failure": self.history.last_failure,
            "last_failure_utc": self.history.last_failure_utc,
            "epoch": None if store_info is None else store_info.epoch,
            "dead_letters": 0 if system is None else system.dead_letters_total,
            "links": None if self.links is None else self.links.report(),
            "loop_lag": self.lag.report(),
            "tree": tree,
            "site": summary,
            "snapshot_utc": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }

    def _record_restart(self, path: str, decision: str, reason: str) -> None:
        """An audit record for every restart decision (fire and forget: a restart must never
        wait for, or fail with, its record)."""
        from actors.audit import record_ops
        from actors.audit_records import AuditKind, new_record

        store = self.store
        if store is None or store.writer is None:
            return
        record = new_record(
            time_utc=datetime.now(UTC),
            actor=path,
            kind=AuditKind.RESTART,
            decision=decision,
            reason=reason,
        )
        ops, _ = record_ops(store, record)
        future = store.submit(ops)
        future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    async def _persist_snapshot(self) -> None:
        """The last state persisted here is what ``run.py status`` shows, marked stale, when the
        runtime does not answer."""
        try:
            snapshot = await self.status()
            if self.store is not None and self.store.writer is not None:
                await self.store.submit([("put", "state", SNAPSHOT_KEY, codec.encode(snapshot))])
        except Exception as exc:
            log.warning("node %s: status snapshot failed: %r", self.name, exc)

    async def _snapshots(self) -> None:
        await asyncio.sleep(2.0)  # a first picture soon after the start
        while True:
            await self._persist_snapshot()
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self.links is not None:
            await self.links.close()  # the peers fall back to the root, which holds for us
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
        if self._gc_task is not None:
            self._gc_task.cancel()
        if self._lag_task is not None:
            self._lag_task.cancel()
        if self.system is not None:
            await self._persist_snapshot()  # the final picture, before the tree goes down
            started = time.monotonic()

            await self.system.stop(timeout_s)
            log.info("node %s stopped in %.2f s", self.name, time.monotonic() - started)
        if self.store is not None:
            self.store.close()
            self.store = None


def read_snapshot(storage_dir: Path, node: str) -> dict[str, Any] | None:
    """The node's last persisted status, read without disturbing a running node."""
    path = storage_dir / node
    if not (path / "data.mdb").exists():
        return None
    value = peek_value(path, "state", SNAPSHOT_KEY)
    return value if isinstance(value, dict) else None


async def _in_steps(steps: Generator[None, None, dict[str, Any]]) -> dict[str, Any]:
    """Run a summary that yields between its pieces, letting the loop run in between."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            summary: dict[str, Any] = done.value
            return summary
        await asyncio.sleep(0)
