"""The in-process actor system of one node: registry of refs, the root supervisor, dead letters.

One ActorSystem runs per node process (or one per tree in ``--single-process`` mode). Its root
supervisor's exit ends the system: ``terminated`` resolves with the reason, and the node process
exits so the Thespian root (or systemd) restarts it: escalation beyond the process.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from drivers.store import codec
from drivers.store.env import Op, Store, StoreError
from supervisors.actor import Actor, ActorRef
from supervisors.cell import Cell
from supervisors.messages import ChildReport, ExitReason, WhichChildren
from supervisors.spec import SupervisorSpec

log = logging.getLogger(__name__)


class ActorSystem:
    def __init__(self, name: str, *, store: Store | None = None) -> None:
        self.name = name
        self.store = store
        self.cells: dict[str, Cell] = {}
        self.dead_letters_total = 0
        self.dead_letters_by_path: collections.Counter[str] = collections.Counter()
        self.recent_dead_letters: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self.root: ActorRef | None = None
        self.terminated: asyncio.Future[ExitReason] | None = None
        self.started_monotonic = time.monotonic()
        self._last_dead_log = 0.0
        self.stopping = False

        # Delivery to actors of other nodes (set by the node runtime): (path, message) -> None.
        self.remote: Callable[[str, object], None] | None = None
        # Told of every restart decision (set by the node runtime, which audits them):
        # (actor path, what was decided, why).
        self.on_restart: Callable[[str, str, str], None] | None = None

    def restarted(self, path: str, decision: str, reason: str) -> None:
        if self.on_restart is not None:
            try:
                self.on_restart(path, decision, reason)
            except Exception as exc:  # recording a restart must never stop one
                log.warning("restart of %s not recorded: %r", path, exc)

    # -- registry -------------------------------------------------------------------------------
    def cell(
        self,
        path: str,
        factory: Any,
        parent: ActorRef | None,
        *,
        max_attempts: int = 3,
        terminate_timeout_s: float = 5.0,
    ) -> Cell:
        cell = self.cells.get(path)
        if cell is None:
            cell = Cell(
                path=path,
                system=self,
                factory=factory,
                parent=parent,
                max_attempts=max_attempts,
                terminate_timeout_s=terminate_timeout_s,
            )
            self.cells[path] = cell
        else:
            cell.factory = factory
            cell.max_attempts = max_attempts
            cell.terminate_timeout_s = terminate_timeout_s
        return cell

    def forget(self, path: str) -> None:
        self.cells.pop(path, None)

    def lookup(self, path: str) -> ActorRef | None:
        cell = self.cells.get(path)
        return None if cell is None else cell.ref

    def send(self, path: str, msg: object) -> None:
        """Tell the actor at ``path``, in this node or another one (paths start with the node)."""
        if path.split("/", 1)[0] != self.name and self.remote is not None:
            self.remote(path, msg)
            return
        ref = self.lookup(path)
        if ref is None:
            self.dead_letter(path, msg, "no actor at this path")
        else:
            ref.tell(msg)

    def actor(self, path: str) -> Actor | None:
        """The live instance at ``path`` (for reports and tests; never to bypass messages)."""
        cell = self.cells.get(path)
        return None if cell is None else cell.actor

    # -- store ----------------------------------------------------------------------------------
    def require_store(self) -> Store:
        if self.store is None:
            raise StoreError(f"actor system {self.name!r} has no store")
        return self.store

    # -- dead letters ---------------------------------------------------------------------------
    def count_dead_letter(self, path: str) -> None:
        self.dead_letters_total += 1
        self.dead_letters_by_path[path] += 1

    def dead_letter(self, path: str, msg: object, reason: str) -> None:
        self.count_dead_letter(path)
        entry = {
            "time_utc": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "path": path,
            "message": type(msg).__name__,
            "reason": reason,
        }
        self.recent_dead_letters.append(entry)
        now = time.monotonic()
        if self.stopping:  # actors stopping in order tell each other things nobody needs now
            log.debug("dead letter to %s while stopping: %s", path, type(msg).__name__)
        elif now - self._last_dead_log > 1.0:  # a flood of dead letters must not flood the log
            self._last_dead_log = now
            log.warning("dead letter to %s: %s (%s)", path, type(msg).__name__, reason)
        if (
            self.store is not None
            and self.store.writer is not None
            and codec.is_persisted(type(msg))
        ):
            try:
                self.store.submit([self.dead_letter_op(path, msg, reason)])
            except StoreError:
                log.warning("dead letter to %s not persisted: store not writable", path)

    def dead_letter_op(self, path: str, msg: object, reason: str) -> Op:
        store = self.require_store()
        body = msg if isinstance(msg, bytes) else codec.encode(msg)
        record = orjson.dumps(
            {
                "time_utc": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "path": path,
                "reason": reason,
                "message": body.decode("utf-8", "replace"),
            }
        )
        return ("put", "dead", store.next_id().to_bytes(8, "big"), record)

    # -- the root ------------------------------------------------------------------------------
    async def start(self, spec: SupervisorSpec, *, name: str | None = None) -> ActorRef:
        from supervisors.supervisor import Supervisor

        root_path = name or self.name
        loop = asyncio.get_running_loop()
        self.terminated = loop.create_future()
        cell = self.cell(root_path, lambda ctx: Supervisor(ctx, spec), None)
        cell.on_exit = self._root_exited
        await cell.start()
        self.root = cell.ref
        return cell.ref

    def _root_exited(self, cell: Cell, reason: ExitReason) -> None:
        if reason.abnormal:
            log.error("root supervisor %s exited: %s", cell.path, reason)
        if self.terminated is not None and not self.terminated.done():
            self.terminated.set_result(reason)

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self.root is None:
            return
        self.stopping = True
        cell = self.cells[self.root.path]
        cell.terminate_timeout_s = timeout_s  # the root's terminate is the whole tree's stop
        await cell.stop(timeout_s)

    async def which_children(self, timeout_s: float = 1.0) -> tuple[ChildReport, ...]:
        if self.root is None:
            return ()
        result: tuple[ChildReport, ...] = await self.root.ask(WhichChildren(), timeout_s=timeout_s)
        return result
