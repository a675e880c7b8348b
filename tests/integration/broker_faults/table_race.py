"""Reproduce the store deadlock: a table opened on the loop thread while the writer commits.

Run as ``python -m tests.integration.broker_faults.table_race STORE_DIR``; prints ``ok`` and exits
0 when it does not deadlock. It does what a running node does when an actor writes to a table for
the first time in that process (``audit()`` -> ``Cell.stage_op`` -> ``Store.table``) while the
group-commit writer thread is inside its write transaction.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from drivers.store.env import Store
from drivers.store.writer import GroupCommitWriter

BATCH_OPS = 150_000  # a commit that keeps the writer inside its transaction for a while


def _until_inside_commit(writer: GroupCommitWriter) -> None:
    while writer.pending_batches():  # the writer thread took the batch ...
        time.sleep(0.0005)
    time.sleep(0.02)  # ... and is applying it inside its write transaction (about 0.3 s of puts)


async def main(path: Path) -> None:
    store = Store(path)
    writer = GroupCommitWriter(store, asyncio.get_running_loop(), max_ops_per_commit=BATCH_OPS)
    store.writer = writer
    writer.start()
    done = writer.submit(
        [("put", "state", i.to_bytes(8, "big"), b"x" * 64) for i in range(BATCH_OPS)]
    )
    _until_inside_commit(writer)  # blocking the loop on purpose, as a busy node would
    store.table("audit")  # what the first audit record of a node does on the loop thread
    await done
    writer.stop()
    store.close()
    print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
