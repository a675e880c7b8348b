"""The simulated peers (charge points, cars, the cloud, load generators) step aside for the edge.

On a site the charge points and the cloud run on their own processors; in the bench they share
the edge's cores. Linux with ``sched_autogroup`` (the default on desktop and many server
kernels, and on this machine) shares the CPU between *sessions* first: the edge's nodes run in
one session (the Thespian admin starts its own), the bench and its peers in another, so whenever
the peers were busy (500 cars answering a fan-out) they had half the cores however nice they
were, and the broker's fan-out of 500 frames took twice its CPU time in wall time (``cpu_ms``
against the wall in ``bench/energy.py``). A peer that steps aside starts its own session, sets
that session's autogroup to nice 19 and itself to nice 19: it runs on what the edge leaves.
It also takes the SCHED_IDLE policy (threads it starts later inherit it): at nice 19 a peer
still held a core until its slice ran out when an edge process woke (this kernel's EEVDF
scheduler preempts a running idle-policy task at once, a nice one only by its deadline). Two
pairs of ``--cars 500 --runs 5`` runs, nice 19 against SCHED_IDLE: p99 48.6 / 63.7 and 68.7 /
66.9 ms against 60.2 / 53.6 and 54.8 / 49.5 ms (idle / loaded), p50 the same (35-41 ms), the
background traffic the same (600 msg/s): the loaded tail lower in both pairs, the idle one
within the noise.

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
    with contextlib.suppress(OSError, AttributeError):  # not Linux
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    return True
