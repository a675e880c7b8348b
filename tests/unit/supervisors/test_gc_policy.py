"""collections_deferred: no automatic collection inside the block (and, with a loop, until the
loop has run what was queued by then); the collector's state is always given back."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from supervisors.gc_policy import collections_deferred


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_off_inside_the_block_and_on_after() -> None:
    with collections_deferred():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_on_again_after_an_exception() -> None:
    with pytest.raises(ValueError, match="in the block"), collections_deferred():
        raise ValueError("in the block")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collections_deferred():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_no_young_collection_inside_the_block() -> None:
    collections: list[int] = []

    def counted(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    threshold = gc.get_threshold()
    gc.callbacks.append(counted)
    try:
        gc.set_threshold(100, 10, 10)
        with collections_deferred():
            collections.clear()  # (entering the block allocates, and may collect, before)
            kept = [[i] for i in range(10_000)]  # a hundred times the young threshold
            assert collections == []
        more = [[i] for i in range(1_000)]
        assert collections  # the one that came due ran after the block
    finally:
        gc.callbacks.remove(counted)
        gc.set_threshold(*threshold)
    assert len(kept) + len(more) == 11_000


async def test_with_a_loop_on_again_once_the_queued_callbacks_ran() -> None:
    loop = asyncio.get_running_loop()
    seen: list[bool] = []
    with collections_deferred(loop):
        loop.call_soon(lambda: seen.append(gc.isenabled()))  # a woken actor, say
    assert not gc.isenabled()  # the block is over, its turn is not
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert seen == [False]
    assert gc.isenabled()


async def test_two_turns_deep_on_again_once_the_callbacks_they_queued_ran() -> None:
    """The broker's fan-out: the woken actors make their frames, which are written in the turn
    after theirs (drivers/ocpp/connection.py)."""
    loop = asyncio.get_running_loop()
    seen: list[bool] = []

    def woken() -> None:
        seen.append(gc.isenabled())
        loop.call_soon(lambda: seen.append(gc.isenabled()))  # its frame written

    with collections_deferred(loop, turns=2):
        loop.call_soon(woken)
    for _ in range(4):
        await asyncio.sleep(0)
    assert seen == [False, False]
    assert gc.isenabled()
