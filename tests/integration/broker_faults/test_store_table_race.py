"""A node must not hang when a table is first opened while the store writer is committing.

It did (fixed with Store.write_lock, drivers/store/env.py). Found by the dead-letter tests (the second run hung in ``CloudLink._up`` -> ``audit()`` ->
``Cell.stage_op`` -> ``Store.table``). py-lmdb's ``Environment.open_db`` takes LMDB's write lock
while holding the GIL; the writer thread, inside its write transaction, needs the GIL for its next
``txn.put``: each waits for the other, and the node's event loop is frozen for good.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import timeout_s
from tests.integration.broker_faults.site import REPO


def test_opening_a_table_while_the_writer_commits_does_not_hang(tmp_path: Path) -> None:
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.integration.broker_faults.table_race", str(tmp_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s(6),
        )
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock: Store.table() during a commit never returned")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
