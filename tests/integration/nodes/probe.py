"""A probe node kind for the node-layer tests: messages in over TCP, into a durable mailbox.

Protocol on 127.0.0.1:<port>: the client sends ``<id>\\n`` lines; the edge answers ``<id>\\n`` once
the message is committed to the ledger's durable mailbox (acknowledged = on disk). The ledger
counts each id it consumes in its own table (one transaction with the consumption), so the test can
account for every acknowledged message after any number of kill -9s: lost, unexpected, duplicates.

Two more lines send to another node's ledger (through the node links, or the Thespian root while
that node is down) and are echoed once sent: ``record NODE ID`` a Record (kept by the root),
``beat NODE COUNT`` COUNT Beats (transient: the root may drop them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from drivers.store.codec import persisted
from supervisors.actor import Actor, ActorContext
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem
from supervisors.trees import NodeContext, NodeKind, store_writer_spec

LEDGER_TABLE = "probe_ledger"


@persisted(name="probe.Record")
@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    msg_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Beat:
    """A message between nodes that its sender repeats: the root may drop it while it holds it
    for a node that is down (supervisors.node_messages.transient)."""

    TRANSIENT: ClassVar[bool] = True
    seq: int


def hang_file(storage_dir: Path, node: str) -> Path:
    """While this file exists, the node's start never ends (its ledger's ``started`` waits)."""
    return storage_dir / f"{node}.hang_start"


def slow_file(storage_dir: Path, node: str) -> Path:
    """While this file exists, the node's start goes on (it ends once the file is gone)."""
    return storage_dir / f"{node}.slow_start"


def block_file(storage_dir: Path, node: str) -> Path:
    """While this file exists when the node's tree is up, the node's event loop is blocked (a
    handler stuck in a synchronous call) from its next step on, before the node reports up;
    ``blocking_file`` says it is."""
    return storage_dir / f"{node}.block_loop"


def blocking_file(storage_dir: Path, node: str) -> Path:
    return storage_dir / f"{node}.loop_blocked"


BLOCK_AT_MOST_S = 60.0  # a test that never removes the file must not leave a process stuck


def _block_loop(block: Path, blocking: Path) -> None:
    blocking.touch()
    given_up = time.monotonic() + BLOCK_AT_MOST_S
    while block.exists() and time.monotonic() < given_up:
        time.sleep(0.05)  # the fault itself: the loop does nothing else meanwhile
    blocking.unlink(missing_ok=True)


class Ledger(Actor):
    DURABLE = frozenset({Record})

    def __init__(
        self, ctx: ActorContext, hang: Path | None = None, slow: Path | None = None
    ) -> None:
        super().__init__(ctx)
        self.hang = hang
        self.slow = slow

    async def started(self) -> None:
        self.consumed = self.load("consumed", 0)
        self.beats = 0
        if self.hang is not None and self.hang.exists():
            await asyncio.Event().wait()  # the fault: a start that never reports back
        # a slow start (a large store, say), until the test removes the file (polled: a file
        # outside the process, no event to wait on)
        while self.slow is not None and self.slow.exists():  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, Record):
            store = self.ctx.system.require_store()
            key = msg.msg_id.to_bytes(8, "big")
            seen = store.get(LEDGER_TABLE, key)
            count = 1 if seen is None else int(seen) + 1
            self.consumed += 1
            self.stage(("put", LEDGER_TABLE, key, str(count).encode()))
            self.persist("consumed", self.consumed)
            return None
        if isinstance(msg, Beat):
            self.beats += 1
            return None
        return await super().receive(msg)

    def report(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "beats": self.beats}


class Ingest(Actor):
    def __init__(
        self, ctx: ActorContext, port: int, block: tuple[Path, Path] | None = None
    ) -> None:
        super().__init__(ctx)
        self.port = port
        self.block = block
        self.server: asyncio.Server | None = None

    async def started(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        if self.block is not None and self.block[0].exists():
            # The last child: the tree is up; the loop blocks at its next step.
            asyncio.get_running_loop().call_soon(_block_loop, *self.block)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ledger = self.ctx.system.lookup(self.path.rsplit("/", 1)[0] + "/ledger")
        assert ledger is not None
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                words = line.split()
                if words[0] == b"beat":  # beat NODE COUNT: COUNT Beats to NODE's ledger
                    for seq in range(int(words[2])):
                        self.ctx.system.send(f"{words[1].decode()}/ledger", Beat(seq=seq))
                elif words[0] == b"record":  # record NODE ID: a Record to NODE's ledger
                    self.ctx.system.send(
                        f"{words[1].decode()}/ledger", Record(msg_id=int(words[2]))
                    )
                else:
                    await ledger.tell_durable(Record(msg_id=int(line)))
                writer.write(line)
        writer.close()

    async def receive(self, msg: object) -> Any:
        return await super().receive(msg)

    async def terminate(self, reason: object) -> None:
        if self.server is not None:
            self.server.close()


def probe_kind(port: int) -> NodeKind:
    def build(ctx: NodeContext) -> SupervisorSpec:
        hang = hang_file(Path(ctx.config.storage_dir), ctx.name)
        slow = slow_file(Path(ctx.config.storage_dir), ctx.name)
        storage = Path(ctx.config.storage_dir)
        block = (block_file(storage, ctx.name), blocking_file(storage, ctx.name))
        # One more ledger per configured charge point, as the broker has one actor each.
        cps = tuple(
            ChildSpec(id=cp.id, start=lambda c: Ledger(c)) for cp in ctx.config.charge_points
        )
        return SupervisorSpec(
            strategy="rest_for_one",
            children=(
                store_writer_spec(),
                ChildSpec(id="ledger", start=lambda c: Ledger(c, hang, slow)),
                ChildSpec(id="cps", start=SupervisorSpec(children=cps)),
                ChildSpec(id="ingest", start=lambda c: Ingest(c, port, block)),
            ),
        )

    def starts_later(ctx: NodeContext, path: str) -> bool:
        # Stands for the broker's auto-registered charge points: actors started when they connect.
        return path.startswith(f"{ctx.name}/later/")

    def summary(system: ActorSystem) -> dict[str, Any]:
        ledger = system.actor(f"{system.name}/ledger")
        return {
            "consumed": getattr(ledger, "consumed", None),
            "beats": getattr(ledger, "beats", None),
        }

    return NodeKind(build=build, summary=summary, starts_later=starts_later)
