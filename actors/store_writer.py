"""The store-writer actor: owns the node's group-commit writer thread for as long as it runs.

It is the first child of a node's supervisor (``rest_for_one``): if it fails, every actor that
writes through it is restarted after it. Its mailbox takes only queries; writes are handed to the
writer directly (``Store.submit``) so a commit costs no actor hop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from drivers.store.writer import GroupCommitWriter
from supervisors.actor import Actor, ActorContext


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterHealth:
    """Query: answered with the writer's counters."""


class StoreWriter(Actor):
    def __init__(self, ctx: ActorContext, *, max_ops_per_commit: int = 20_000) -> None:
        super().__init__(ctx)
        self.max_ops = max_ops_per_commit
        self.writer: GroupCommitWriter | None = None

    async def started(self) -> None:
        store = self.ctx.system.require_store()
        writer = GroupCommitWriter(
            store, asyncio.get_running_loop(), max_ops_per_commit=self.max_ops
        )
        writer.start()
        self.writer = writer
        store.writer = writer
        self.spawn(self._watch(writer), name="watch-writer")

    async def _watch(self, writer: GroupCommitWriter) -> None:
        # A writer thread that died must crash this actor, so its supervisor restarts the node's
        # writer and everything after it (rest_for_one).
        error = await writer.died
        raise RuntimeError(f"store writer thread died: {error!r}")

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, WriterHealth):
            return self.report()
        return await super().receive(msg)

    def report(self) -> dict[str, Any]:
        writer = self.writer
        if writer is None:
            return {}
        store = self.ctx.system.require_store()
        info = store.info()
        s = writer.stats
        return {
            "commits": s.commits,
            "ops": s.ops,
            "batches_per_commit": round(s.batches_per_commit, 2),
            "pending_batches": writer.pending_batches(),
            "map_growths": s.map_growths,
            "failures": s.failures,
            "epoch": info.epoch,
            "map_size_bytes": info.map_size_bytes,
            "used_bytes": info.used_bytes,
        }

    async def terminate(self, reason: object) -> None:
        writer = self.writer
        store = self.ctx.system.store
        if writer is not None:
            # Everything submitted so far is committed before the thread ends.
            await asyncio.to_thread(writer.stop)
            if store is not None and store.writer is writer:
                store.writer = None
