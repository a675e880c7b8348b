"""Durable mailboxes on a real LMDB: acknowledged means on disk, consumed means applied once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from actors.store_writer import StoreWriter
from drivers.store.codec import persisted
from drivers.store.env import EPOCH_SHIFT, Store, mailbox_prefix, open_store
from supervisors.actor import Actor, ActorContext
from supervisors.intensity import Backoff
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem
from tests.helpers import timeout_s, wait_for


@persisted(name="test.Deposit")
@dataclass(frozen=True, slots=True, kw_only=True)
class Deposit:
    n: int
    amount_wh: int = 1


@persisted(name="test.Forwarded")
@dataclass(frozen=True, slots=True, kw_only=True)
class Forwarded:
    n: int


class Gate:
    """Lets a test hold an actor inside ``receive``: ``open`` lets everyone through; ``passes``
    (when set) lets only that many handlers through in total."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.entered: list[int] = []
        self.passes: int | None = None
        self._passed = 0
        self._changed = asyncio.Event()

    def allow(self, passes: int) -> None:
        self.passes = passes
        self._changed.set()

    async def wait(self) -> None:
        await self.open.wait()
        while self.passes is not None and self._passed >= self.passes:
            self._changed.clear()
            await self._changed.wait()
        self._passed += 1


class Ledger(Actor):
    """Sums deposits; forwards each to "sink" durably; holds at the gate; crashes on n < 0."""

    DURABLE = frozenset({Deposit})

    def __init__(self, ctx: ActorContext, gate: Gate, *, forward: bool = True) -> None:
        super().__init__(ctx)
        self.gate = gate
        self.forward = forward

    async def started(self) -> None:
        self.total = self.load("total", 0)
        self.seen: list[int] = self.load("seen", [])

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, Deposit):
            self.gate.entered.append(msg.n)
            self.total += msg.amount_wh
            self.seen.append(msg.n)
            self.persist("total", self.total)
            self.persist("seen", self.seen)
            if self.forward:
                sink = self.ctx.system.lookup("node/sink")
                assert sink is not None
                self.send_durable(sink, Forwarded(n=msg.n))
            await self.gate.wait()
            if msg.n < 0:
                raise RuntimeError(f"poison deposit {msg.n}")
            return self.total
        if msg == "total":
            return self.total
        return await super().receive(msg)


class Sink(Actor):
    DURABLE = frozenset({Forwarded})

    def __init__(self, ctx: ActorContext, gate: Gate) -> None:
        super().__init__(ctx)
        self.gate = gate

    async def started(self) -> None:
        self.got: list[int] = self.load("got", [])

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, Forwarded):
            await self.gate.open.wait()
            self.got.append(msg.n)
            self.persist("got", self.got)
            return None
        if msg == "got":
            return list(self.got)
        return await super().receive(msg)


@dataclass
class Node:
    path: Path
    ledger_gate: Gate
    sink_gate: Gate
    store: Store | None = None
    system: ActorSystem | None = None

    async def start(self, *, max_attempts: int = 3) -> ActorSystem:
        self.store = open_store(self.path)
        self.system = ActorSystem("node", store=self.store)
        spec = SupervisorSpec(
            strategy="rest_for_one",
            max_restarts=20,
            children=(
                ChildSpec(id="store", start=StoreWriter),
                ChildSpec(id="sink", start=lambda ctx: Sink(ctx, self.sink_gate)),
                ChildSpec(
                    id="ledger",
                    start=lambda ctx: Ledger(ctx, self.ledger_gate),
                    max_attempts=max_attempts,
                    shutdown_timeout_s=0.2,
                ),
            ),
        )
        await self.system.start(spec)
        return self.system

    async def stop(self, *, release: bool = True) -> None:
        if release:
            self.ledger_gate.allow(10**9)
            self.ledger_gate.open.set()
            self.sink_gate.open.set()
        if self.system is not None:
            await self.system.stop(2.0)
        if self.store is not None:
            self.store.close()
        self.system = None
        self.store = None

    def ref(self, name: str) -> Any:
        assert self.system is not None
        ref = self.system.lookup(f"node/{name}")
        assert ref is not None
        return ref


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(tmp_path / "lmdb", Gate(), Gate())
    yield n
    await n.stop()


def mailbox_count(store: Store, path: str) -> int:
    return store.count("mailbox", mailbox_prefix(path))


async def test_acknowledged_means_committed(node: Node) -> None:
    await node.start()
    node.ledger_gate.open.clear()
    await node.ref("ledger").tell_durable(Deposit(n=1))
    assert node.store is not None
    assert mailbox_count(node.store, "node/ledger") == 1, "on disk before tell_durable returned"


async def test_consume_state_and_outgoing_commit_in_one_transaction(node: Node) -> None:
    await node.start()
    node.sink_gate.open.clear()  # the forwarded message must wait in the sink's durable mailbox
    ledger = node.ref("ledger")
    await ledger.tell_durable(Deposit(n=7, amount_wh=5))
    assert node.store is not None
    store = node.store
    await wait_for(lambda: mailbox_count(store, "node/ledger") == 0, what="deposit consumed")
    assert store.get_value("state", b"node/ledger\x00total") == 5
    assert mailbox_count(store, "node/sink") == 1
    node.sink_gate.open.set()
    await wait_for(lambda: mailbox_count(store, "node/sink") == 0, what="forward consumed")
    assert await node.ref("sink").ask("got") == [7]


async def test_a_failed_handler_applies_nothing_and_counts_the_attempt(node: Node) -> None:
    await node.start(max_attempts=5)
    node.ledger_gate.allow(1)  # one failed attempt, then hold the second one at the gate
    ledger = node.ref("ledger")
    await ledger.tell_durable(Deposit(n=-1, amount_wh=100))
    assert node.store is not None
    store = node.store
    await wait_for(lambda: node.ledger_gate.entered.count(-1) == 2, what="retried after restart")
    assert store.get_value("state", b"node/ledger\x00total", 0) == 0, "state of a failed handler"
    assert mailbox_count(store, "node/sink") == 0, "outgoing of a failed handler"
    ((_, value),) = list(store.scan("mailbox", mailbox_prefix("node/ledger")))
    assert value[0] >= 1, "attempt count persisted"


async def test_poison_message_goes_to_dead_letters_across_process_restarts(node: Node) -> None:
    await node.start(max_attempts=3)
    node.ledger_gate.allow(2)  # two failed attempts; the third is held at the gate
    await node.ref("ledger").tell_durable(Deposit(n=-5))
    await wait_for(lambda: node.ledger_gate.entered.count(-5) == 3, what="third delivery")
    assert node.store is not None
    store = node.store
    ((_, value),) = list(store.scan("mailbox", mailbox_prefix("node/ledger")))
    assert value[0] == 2, "two failed attempts recorded"
    # The node goes down in the middle of the third attempt: the handler never finishes (it is
    # killed at the shutdown timeout), as with kill -9.
    await node.stop(release=False)
    assert node.ledger_gate.entered.count(-5) == 3
    node.ledger_gate = Gate()
    await node.start(max_attempts=3)
    assert node.store is not None
    store = node.store
    await wait_for(lambda: store.count("dead") == 1, what="dead-lettered")
    assert mailbox_count(store, "node/ledger") == 0
    ((_, raw),) = list(store.scan("dead"))
    record = orjson.loads(raw)
    assert record["path"] == "node/ledger"
    assert record["reason"].startswith("failed 3 time(s): RuntimeError: poison deposit -5")
    assert '"n":-5' in record["message"]
    await node.ref("ledger").tell_durable(Deposit(n=1))
    assert await node.ref("ledger").ask("total") == 1, "the actor carries on after the poison"


async def test_killed_mid_message_is_redelivered_and_applied_once(node: Node) -> None:
    await node.start()
    ledger = node.ref("ledger")
    for n in range(1, 4):
        await ledger.tell_durable(Deposit(n=n))
    await wait_for(lambda: len(node.ledger_gate.entered) == 3, what="three handled")
    node.ledger_gate.open.clear()
    await ledger.tell_durable(Deposit(n=4))
    await wait_for(lambda: 4 in node.ledger_gate.entered, what="inside the 4th")
    assert node.system is not None
    node.system.cells["node/ledger"].kill()
    await wait_for(lambda: node.ledger_gate.entered.count(4) == 2, what="4th redelivered")
    node.ledger_gate.open.set()
    assert node.store is not None
    store = node.store
    await wait_for(lambda: mailbox_count(store, "node/ledger") == 0, what="all consumed")
    assert await ledger.ask("total") == 4
    assert store.get_value("state", b"node/ledger\x00seen") == [1, 2, 3, 4]
    await wait_for(lambda: mailbox_count(store, "node/sink") == 0, what="forwards consumed")
    assert await node.ref("sink").ask("got") == [1, 2, 3, 4]


async def test_unconsumed_mail_survives_a_restart_in_order(node: Node) -> None:
    await node.start()
    node.ledger_gate.open.clear()
    ledger = node.ref("ledger")
    for n in range(1, 51):
        await ledger.tell_durable(Deposit(n=n))
    await node.stop()
    node.ledger_gate = Gate()
    await node.start()
    assert node.store is not None
    store = node.store
    await wait_for(lambda: mailbox_count(store, "node/ledger") == 0, what="backlog consumed")
    seen = store.get_value("state", b"node/ledger\x00seen")
    assert seen == list(range(1, 51)), "each exactly once, in order"


def test_ids_never_repeat_across_restarts(tmp_path: Path) -> None:
    ids: list[int] = []
    epochs = []
    for _ in range(3):
        store = open_store(tmp_path / "ids")
        epochs.append(store.epoch)
        ids.extend(store.next_id() for _ in range(1000))
        store.close()
    assert epochs == [1, 2, 3]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_from_several_threads_never_repeat(tmp_path: Path) -> None:
    store = open_store(tmp_path / "ids")
    per_thread: list[list[int]] = [[] for _ in range(4)]

    def draw(out: list[int]) -> None:
        out.extend(store.next_id() for _ in range(20_000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s(30))
    store.close()
    ids = [i for out in per_thread for i in out]
    assert len(ids) == 80_000
    assert len(set(ids)) == len(ids)
    assert all(out == sorted(out) for out in per_thread)  # increasing within each thread
    assert {i >> EPOCH_SHIFT for i in ids} == {1}
    assert {i & ((1 << EPOCH_SHIFT) - 1) for i in ids} == set(range(1, 80_001))


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(tmp_path / "small", map_size_bytes=128 * 1024)
    yield store
    store.close()


async def test_map_full_grows_and_retries(small_store: Store) -> None:
    from drivers.store.writer import GroupCommitWriter

    writer = GroupCommitWriter(small_store, asyncio.get_running_loop())
    writer.start()
    small_store.writer = writer
    try:
        blob = b"x" * 4000
        futures = [
            small_store.submit([("put", "state", f"k{i:05d}".encode(), blob)]) for i in range(500)
        ]
        await asyncio.gather(*futures)
    finally:
        await asyncio.to_thread(writer.stop)
    assert writer.stats.map_growths >= 1
    assert small_store.info().map_size_bytes > 128 * 1024
    assert small_store.count("state") == 500
    assert small_store.get("state", b"k00499") == blob


async def test_killed_while_its_commit_is_in_flight_delivers_each_forward_once(
    node: Node,
) -> None:
    """The kill lands after the batch went to the writer and before the commit came back (a
    shutdown timeout, a sibling's restart, a linked task's failure): the commit still lands, so
    the forward it carries must reach the sink, and the deposit must not be handled again."""
    await node.start()
    ledger = node.ref("ledger")
    node.ledger_gate.open.clear()
    await ledger.tell_durable(Deposit(n=1))
    await wait_for(lambda: node.ledger_gate.entered == [1], what="inside the deposit")
    assert node.store is not None
    assert node.system is not None
    store, cell = node.store, node.system.cells["node/ledger"]
    store.write_lock.acquire()  # the batch's commit cannot complete while held
    try:
        node.ledger_gate.open.set()
        # Handled (nothing awaited between the handler's return and the batch's submit).
        await wait_for(lambda: cell.current is None, what="handled, waiting for the commit")
        cell.kill()
        await wait_for(lambda: not cell.running, what="killed")
    finally:
        store.write_lock.release()
    await wait_for(lambda: cell.generation == 2 and cell.running, what="restarted")
    await wait_for(lambda: mailbox_count(store, "node/ledger") == 0, what="deposit consumed")
    await wait_for(lambda: mailbox_count(store, "node/sink") == 0, what="forward consumed")
    assert await node.ref("sink").ask("got") == [1]
    assert await ledger.ask("total") == 1
    assert store.get_value("state", b"node/ledger\x00seen") == [1], "handled once"
    # After a restart of the whole node nothing is left to deliver a second time.
    await node.stop()
    await node.start()
    assert await node.ref("sink").ask("got") == [1]


class FlakySink(Sink):
    """A sink whose start fails while ``failing`` is set (a corrupt record, a port in use)."""

    failing = False

    async def started(self) -> None:
        if FlakySink.failing:
            raise RuntimeError("sink cannot start")
        await super().started()


async def test_a_durable_send_to_an_actor_waiting_to_restart_after_a_failed_start_waits_in_lmdb(
    tmp_path: Path,
) -> None:
    """Between a failed start and the next (a backoff), the target has no instance to ask what it
    takes durably: the sender's handler failed with a TypeError ("does not take Forwarded
    durably") until its deposit was dead-lettered, and the sink never got it. Its classes are
    known from the instance that failed: the message waits in LMDB for the next start."""
    store = open_store(tmp_path / "lmdb")
    system = ActorSystem("node", store=store)
    ledger_gate, sink_gate = Gate(), Gate()
    FlakySink.failing = False
    spec = SupervisorSpec(
        strategy="one_for_one",
        max_restarts=20,
        children=(
            ChildSpec(id="store", start=StoreWriter),
            ChildSpec(id="ledger", start=lambda ctx: Ledger(ctx, ledger_gate)),
            ChildSpec(
                id="sink",
                start=lambda ctx: FlakySink(ctx, sink_gate),
                backoff=Backoff(min_s=0.3, max_s=0.3, jitter=0.0, reset_after_s=60.0),
            ),
        ),
    )
    await system.start(spec)
    try:
        sink_cell = system.cells["node/sink"]
        FlakySink.failing = True
        sink_cell.kill()
        await wait_for(
            lambda: sink_cell.actor is None and sink_cell.generation >= 2,
            what="the sink's restart failed; it waits out its backoff",
        )
        ledger = system.lookup("node/ledger")
        assert ledger is not None
        await ledger.tell_durable(Deposit(n=1))
        await wait_for(lambda: mailbox_count(store, "node/ledger") == 0, what="deposit handled")
        assert store.get_value("state", b"node/ledger\x00seen") == [1], "handled once"
        FlakySink.failing = False
        await wait_for(lambda: sink_cell.running, what="the sink started again")
        await wait_for(lambda: mailbox_count(store, "node/sink") == 0, what="forward consumed")
        sink = system.lookup("node/sink")
        assert sink is not None
        assert await sink.ask("got") == [1]
        assert store.count("dead", b"") == 0, "nothing dead-lettered"
    finally:
        FlakySink.failing = False
        await system.stop(2.0)
        store.close()
