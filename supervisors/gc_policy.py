"""The garbage-collector policy of a long-running asyncio process with many long-lived objects.

Used by every node (``NodeRuntime``) and by the simulators that stand beside the edge in the
benchmarks (the simulated cloud, the load generators), whose own collections would otherwise show
up as the edge's latency.

Measured at 500 charge points, 1 msg/s each: full collections of 75-200 ms every few seconds, the
main cause of the edge's round-trip p99 (and, before the simulated cloud had this policy, of its
own 70-165 ms pauses inside the benchmark's "direct" and "through the edge" runs). What has lived
a while is frozen (never walked again) every ``freeze_every_s``; once every ``full_every_s``
everything is unfrozen and collected once, so cyclic garbage that got frozen (a closed
connection, say) is freed after at most that long. Young generation at 20,000 (not 700 or
2,000): most of what a message allocates (coroutines, futures, timer handles) is gone before a
collection, instead of walked there and again in generation 1. Measured
(bench/broker_profile.py, 500 charge points, 20 s): 4 collections, 50 ms of GC instead of 46
collections and 260-340 ms; loop lag p99 3 ms instead of 5-11 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator

from supervisors.priority import background

YOUNG_THRESHOLD = 20000
FREEZE_EVERY_S = 10.0  # gc.freeze() is cheap: it moves lists
FULL_EVERY_S = 3600.0


async def gc_maintenance(
    freeze_every_s: float = FREEZE_EVERY_S, full_every_s: float = FULL_EVERY_S
) -> None:
    """Run for the life of the process (a task; cancel it to stop)."""
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
    gc.collect()
    gc.freeze()
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(freeze_every_s)
        if time.monotonic() - last_full >= full_every_s:
            gc.unfreeze()
            with background():  # a node's real-time loop (priority.py): not urgent
                gc.collect()
            last_full = time.monotonic()
        gc.freeze()


@contextlib.contextmanager
def collections_deferred(
    loop: asyncio.AbstractEventLoop | None = None, *, turns: int = 1
) -> Iterator[None]:
    """No automatic collection inside the block (which must not await); with ``loop``, nor
    until that loop has run the callbacks queued by the end of the block, and those these queue
    in turn, ``turns`` deep. A collection that came
    due runs at the first allocation after. For latency-critical stretches that allocate a lot:

    - the allocator's step until its lowering batch is handed over: a young-generation
      collection there took 1-7 ms and an older one 27 ms at 500 connectors (bench/allocator.py's
      site at its pace, counted with gc.callbacks: 17 collections inside those stretches in 340
      steps);
    - the broker's fan-out of a profile batch: the router wakes 500 charge point actors, each
      makes its frame in the loop's next turn and the frames are written in the turn after
      (drivers/ocpp/connection.py holds them to the end of a turn: ``turns=2``).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if loop is None or loop.is_closed():
            gc.enable()
        else:
            loop.call_soon(_enable_after, loop, turns - 1)


def _enable_after(loop: asyncio.AbstractEventLoop, turns: int) -> None:
    if turns <= 0 or loop.is_closed():
        gc.enable()
    else:
        loop.call_soon(_enable_after, loop, turns - 1)
