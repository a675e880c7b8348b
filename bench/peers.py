"""The simulated peers (charge points, cars, the cloud, load generators) step aside for the edge.

On a site the charge points and the cloud run on their own processors; in the bench they share
the edge's cores. Linux with ``sched_autogroup`` (the default on desktop and many server
kernels, and on this machine) shares the CPU between *sessions* first: the edge's nodes run in
one session (the Thespian admin starts its own), the bench and its peers in another, so whenever
the peers were busy (500 cars answering a fan-out) they had half the cores however nice they
were, and the broker's fan-out of 500 frames took twice its CPU time in wall time (``cpu_ms``
against the wall in ``bench/energy.py``). A peer that steps aside starts its own session, sets
that session's autogroup to nice 19 and itself to nice 19: it runs on what the edge leaves.

A peer steps aside only when the bench that starts it says so (``STEP_ASIDE_ENV`` = "1" in its
environment); ``bench/energy.py --peers-compete`` leaves them as they were, to reproduce the
earlier figures.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

STEP_ASIDE_ENV = "BENCH_PEERS_STEP_ASIDE"
PEER_NICE = 19


def step_aside() -> bool:
    """In a peer process, first thing: lowest CPU priority, if the bench asked. True if done."""
    if os.environ.get(STEP_ASIDE_ENV) != "1":
        return False
    with contextlib.suppress(OSError):  # already a session leader
        os.setsid()
    with contextlib.suppress(OSError):  # no autogroup (disabled, or not Linux)
        Path("/proc/self/autogroup").write_text(str(PEER_NICE))
    os.nice(max(0, PEER_NICE - os.nice(0)))
    return True
