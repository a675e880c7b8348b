"""Actor.send_once_committed on a real LMDB: what a handler sends that way (an answer to the
cloud, say) goes out only once what the handler staged is committed, at once if it staged
nothing; a failed commit sends nothing; an actor killed while its commit runs still sends it
once the commit lands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actors.store_writer import StoreWriter
from drivers.store.env import Store, open_store, state_key
from supervisors.actor import Actor, ActorContext
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem
from tests.helpers import wait_for
from tests.integration.store.test_commit_behind import writer_held

KEEPER = "node/keeper"
SINK = "node/sink"


class Keeper(Actor):
    """("keep", n): persists n, then sends ("kept", n) once committed; ("read", n) stages
    nothing and sends ("read", n); ("bad", n) stages a key LMDB refuses."""

    def __init__(self, ctx: ActorContext, log: dict[str, Any]) -> None:
        super().__init__(ctx)
        self.log = log

    async def started(self) -> None:
        self.log["starts"] = self.log.get("starts", 0) + 1

    async def receive(self, msg: object) -> Any:
        assert isinstance(msg, tuple)
        what, n = msg
        if what == "keep":
            self.persist("n", n)
            self.send_once_committed(SINK, ("kept", n))
        elif what == "read":
            self.send_once_committed(SINK, ("read", n))
        elif what == "bad":
            self.persist("x" * 600, n)  # longer than LMDB's 511-byte key limit
            self.send_once_committed(SINK, ("kept", n))
        self.log.setdefault("handled", []).append(msg)
        return None


class Sink(Actor):
    """Records what it gets with the keeper's persisted n at that moment."""

    def __init__(self, ctx: ActorContext, got: list[tuple[object, object]]) -> None:
        super().__init__(ctx)
        self.got = got

    async def receive(self, msg: object) -> Any:
        store = self.ctx.system.require_store()
        self.got.append((msg, store.get_value("state", state_key(KEEPER, "n"))))
        return None


Node = tuple[ActorSystem, Store, dict[str, Any], list[tuple[object, object]]]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    store = open_store(tmp_path / "lmdb")
    system = ActorSystem("node", store=store)
    log: dict[str, Any] = {}
    got: list[tuple[object, object]] = []
    spec = SupervisorSpec(
        strategy="one_for_one",
        max_restarts=10,
        children=(
            ChildSpec(id="store", start=StoreWriter),
            ChildSpec(id="sink", start=lambda ctx: Sink(ctx, got)),
            ChildSpec(id="keeper", start=lambda ctx: Keeper(ctx, log)),
        ),
    )
    await system.start(spec)
    yield system, store, log, got
    await system.stop(2.0)
    store.close()


def waits_for_commit(system: ActorSystem) -> bool:
    """The keeper handled its batch and awaits its commit: a send that did not wait for it has
    been made by now."""
    cell = system.cells[KEEPER]
    return cell.current is None and cell._inflight is not None


def sent(system: ActorSystem, got: list[tuple[object, object]]) -> bool:
    """Anything sent to the sink, received or still in its mailbox."""
    return bool(got) or len(system.cells[SINK].mailbox) > 0


def keeper(system: ActorSystem) -> Any:
    ref = system.lookup(KEEPER)
    assert ref is not None
    return ref


async def test_it_goes_only_once_what_the_handler_staged_is_committed(node: Node) -> None:
    system, store, _, got = node
    with writer_held(store):
        keeper(system).tell(("keep", 1))
        await wait_for(lambda: waits_for_commit(system), what="the keeper waits for its commit")
        assert not sent(system, got), "sent before its commit"
    await wait_for(lambda: bool(got), what="sent after the commit")
    assert got == [(("kept", 1), 1)], "the sink sees the state it is about"


async def test_it_goes_at_once_when_the_handler_staged_nothing(node: Node) -> None:
    system, store, _, got = node
    with writer_held(store):
        keeper(system).tell(("read", 1))
        # No commit can complete while held: it went without one.
        await wait_for(lambda: got == [(("read", 1), None)], what="sent without a commit")


async def test_a_later_send_in_the_batch_does_not_overtake_one_that_waits(node: Node) -> None:
    system, store, log, got = node
    with writer_held(store):
        keeper(system).tell(("keep", 1))  # one batch: both queued before the keeper runs
        keeper(system).tell(("read", 2))
        await wait_for(lambda: len(log.get("handled", [])) == 2, what="both handled")
        await wait_for(lambda: waits_for_commit(system), what="the keeper waits for its commit")
        assert not sent(system, got), "the second waits behind the first"
    await wait_for(lambda: len(got) == 2, what="both sent after the commit")
    assert [m for m, _ in got] == [("kept", 1), ("read", 2)]


async def test_a_failed_commit_sends_nothing(node: Node) -> None:
    system, _, log, got = node
    keeper(system).tell(("keep", 1))
    await wait_for(lambda: got == [(("kept", 1), 1)], what="the first sent")
    keeper(system).tell(("bad", 2))
    await wait_for(lambda: log.get("starts") == 2, what="the keeper crashed and restarted")
    keeper(system).tell(("read", 3))  # goes at once: after anything the failed batch sent
    await wait_for(lambda: len(got) == 2, what="the read answered")
    assert [m for m, _ in got] == [("kept", 1), ("read", 3)], "nothing of the failed commit"


async def test_an_actor_killed_during_its_commit_still_sends_once_it_lands(node: Node) -> None:
    system, store, log, got = node
    cell = system.cells[KEEPER]
    with writer_held(store):
        keeper(system).tell(("keep", 1))
        await wait_for(lambda: len(log.get("handled", [])) == 1, what="handled")
        cell.kill()
        await wait_for(lambda: not cell.running, what="killed")
        assert got == []
    await wait_for(lambda: bool(got), what="sent once the commit landed")
    assert got == [(("kept", 1), 1)]
