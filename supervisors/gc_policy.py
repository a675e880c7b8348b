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
import gc
import time

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
            gc.collect()
            last_full = time.monotonic()
        gc.freeze()
