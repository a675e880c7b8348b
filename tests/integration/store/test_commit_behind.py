"""A batch that only changes state is committed behind the actor (it goes on with its next
message while the writer commits), on a real LMDB. What must still hold: a batch with
after-commit actions is waited for (what they send is not overtaken by the next message's
sends), a restarted instance sees the state of its predecessor's last batch, asks and durable
mail are answered only once committed, and a failed commit crashes the actor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from actors.store_writer import StoreWriter
from drivers.store.env import Store, open_store, state_key
from supervisors.actor import Actor, ActorContext
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem
from tests.helpers import wait_for


class Counter(Actor):
    """Counts "inc" messages in its persisted state; "bad" stages a key LMDB refuses."""

    def __init__(self, ctx: ActorContext, log: dict[str, Any]) -> None:
        super().__init__(ctx)
        self.log = log

    async def started(self) -> None:
        self.n = self.load("n", 0)
        self.log["starts"] = self.log.get("starts", 0) + 1
        self.log["loaded"] = self.n

    async def receive(self, msg: object) -> Any:
        if msg in ("inc", "inc_after"):
            self.n += 1
            self.persist("n", self.n)
            done = self.n
            if msg == "inc_after":
                marker = ("put", "state", b"test/marker", b"%d" % done)
                self.stage(marker, lambda: self._committed(done))
            self.log.setdefault("handled", []).append(done)
            return None
        if msg == "bad":
            self.persist("x" * 600, 1)  # longer than LMDB's 511-byte key limit
            return None
        if msg == "n":
            return self.n
        return await super().receive(msg)

    def _committed(self, n: int) -> None:
        self.log.setdefault("committed", []).append(n)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[ActorSystem, Store, dict[str, Any]]]:
    store = open_store(tmp_path / "lmdb")
    system = ActorSystem("node", store=store)
    log: dict[str, Any] = {}
    spec = SupervisorSpec(
        strategy="one_for_one",
        max_restarts=10,
        children=(
            ChildSpec(id="store", start=StoreWriter),
            ChildSpec(id="counter", start=lambda ctx: Counter(ctx, log)),
        ),
    )
    await system.start(spec)
    yield system, store, log
    await system.stop(2.0)
    store.close()


@contextmanager
def writer_held(store: Store) -> Iterator[None]:
    """No commit completes while held: the writer thread waits for the store's write lock."""
    store.write_lock.acquire()
    try:
        yield
    finally:
        store.write_lock.release()


def counter(system: ActorSystem) -> Any:
    ref = system.lookup("node/counter")
    assert ref is not None
    return ref


async def test_state_only_batches_do_not_wait_for_their_commit(
    node: tuple[ActorSystem, Store, dict[str, Any]],
) -> None:
    system, store, log = node
    with writer_held(store):
        for _ in range(3):
            counter(system).tell("inc")
            # Each handled while the commits before it cannot complete.
            await wait_for(lambda: len(log.get("handled", [])) >= 1, what="handled")
        await wait_for(
            lambda: log.get("handled") == [1, 2, 3], what="three handled, none committed"
        )
        assert store.get_value("state", state_key("node/counter", "n")) is None
    await wait_for(
        lambda: store.get_value("state", state_key("node/counter", "n")) == 3, what="committed"
    )


async def test_a_batch_with_after_commit_actions_is_waited_for(
    node: tuple[ActorSystem, Store, dict[str, Any]],
) -> None:
    system, store, log = node
    with writer_held(store):
        counter(system).tell("inc_after")
        await wait_for(lambda: log.get("handled") == [1], what="handled")
        counter(system).tell("inc")
        with pytest.raises(TimeoutError):  # bounded: the actor waits for the held commit
            await asyncio.wait_for(
                wait_for(lambda: len(log["handled"]) > 1, timeout=1.0), timeout=0.3
            )
        assert "committed" not in log
    await wait_for(lambda: log.get("handled") == [1, 2], what="the next message, after the commit")
    assert log["committed"] == [1]


async def test_an_ask_is_answered_only_after_its_commit(
    node: tuple[ActorSystem, Store, dict[str, Any]],
) -> None:
    system, store, _ = node
    with writer_held(store):
        counter(system).tell("inc")
        answer = asyncio.ensure_future(counter(system).ask("inc"))
        done, _ = await asyncio.wait({answer}, timeout=0.3)
        assert not done, "an ask waits for the commit of its batch"
    await asyncio.wait_for(answer, 5.0)
    assert store.get_value("state", state_key("node/counter", "n")) == 2


async def test_a_restarted_actor_loads_the_state_of_the_last_batch_before_it(
    node: tuple[ActorSystem, Store, dict[str, Any]],
) -> None:
    system, store, log = node
    with writer_held(store):
        counter(system).tell("inc")
        counter(system).tell("inc")
        await wait_for(lambda: log.get("handled") == [1, 2], what="two handled")
        cell = system.cells["node/counter"]
        cell.kill()
        await wait_for(lambda: not cell.running, what="killed")
        assert log["starts"] == 1, "the new instance waits for the commit before it loads"
    await wait_for(lambda: log.get("starts") == 2, what="restarted")
    assert log["loaded"] == 2
    assert await counter(system).ask("n") == 2


async def test_a_failed_state_commit_crashes_the_actor(
    node: tuple[ActorSystem, Store, dict[str, Any]],
) -> None:
    system, _, log = node
    counter(system).tell("inc_after")
    await wait_for(lambda: log.get("committed") == [1], what="the first batch committed")
    counter(system).tell("bad")
    await wait_for(lambda: log.get("starts") == 2, what="the actor crashed and was restarted")
    assert log["loaded"] == 1, "the batch before the failed one is kept"
    reports = await system.which_children(1.0)
    text = repr(reports)
    assert "commit failed" in text, text
