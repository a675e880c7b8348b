"""A node's event loop at real-time priority (``[runtime] realtime_nodes``, e.g. ``["energy"]``;
empty, the default, leaves every node at normal priority).

What it is for: the issue's "the energy node's loop unaffected by broker load". On two cores
with the broker nodes busy, the energy node waits for a core when the meter's answer wakes it:
``bench/energy.py --cars 500 --runs 25 --broker-shards 2`` (a VM 3.1x the yardstick's reference
time), its meter sample -> lowering batch handed over p50 28.3 / 35.7 ms idle / loaded, p99
45.0 / 78.6. With its loop at SCHED_RR 1 (set from outside, ``chrt``), the same run's loaded
figures were those of its idle phase: p50 28.5 / 29.6, p99 44.7 / 40.6 ms.

The cost found with it: what the energy node does after a lowering batch left (its next state,
audit records, compliance; 20 ms there) preempted the broker nodes writing that batch, and their
500 frames took 60 ms of wall for 26 ms of CPU (33 ms without). So the urgent part runs at
real-time priority (waking on a meter read or a limit, the step until its lowering batch is out)
and the rest in :func:`background` at normal priority. Measured so (``--cars 500 --runs 5
--broker-shards 2``, three runs with ``--realtime-energy`` against two without, alternating, the
same hour): the energy node's sample -> batch handed over, loaded, p50 26.9-28.7 ms, p99
39.7-51.2 (idle 27.3-30.1 / 38.1-42.2) against 32.3-32.6 / 56.0-80.1; meter sample -> last
frame written p99 loaded 103.4-109.1 ms against 124.9-137.5, idle 98.8-100.6 against 88.0-91.1
(the broker nodes' fan-out of the batch 36-40 ms of wall idle against 34-36: what stays at
real-time priority still takes a core from them now and then). 100 steps a phase (``--runs 25``),
against the same the hour before without: batch out loaded p50 29.5 / p99 48.9 (idle 27.5 /
46.3) against 35.7 / 78.6; last frame p99 100.2 / 112.0 idle / loaded against 102.8 / 121.9; the
broker nodes' fan-out, loaded, 44.4 ms of wall against 36.7. What overlapped it were the
charge points' answers to the batch (ProfileOutcomes, 500 at once) handled at real-time
priority: now at normal priority too, as a node's status summary and the hourly full garbage
collection; then (one ``--runs 5``) fan-out 39.1 ms loaded, last frame p99 101.7 / 96.6 ms.

Only the loop's thread: with SCHED_RESET_ON_FORK, neither the threads it starts later nor what
it forks inherit it (the store's writer thread, started before, stays normal too). The kernel allows it to root, to
CAP_SYS_NICE, or up to the RLIMIT_RTPRIO soft limit (systemd: ``LimitRTPRIO=1``, the unit in
deploy/ sets it); refused, the node runs at normal priority and says so once. Real-time
throttling (``/proc/sys/kernel/sched_rt_runtime_us``, 95 % by default) leaves the other tasks
of a CPU their share should the loop ever spin.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

PRIORITY = 1  # the lowest real-time priority: above every normal task, below the kernel's own
_realtime: set[int] = set()  # the threads running at it (threading.get_ident())
_demoted: set[int] = set()  # those of them inside background() now


def _rr() -> tuple[int, os.sched_param]:
    return os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(PRIORITY)


def realtime_this_thread(node: str) -> bool:
    """The calling thread (node ``node``'s event loop) at real-time priority. False, with a
    warning naming the fix, where the kernel refuses it."""
    try:
        os.sched_setscheduler(0, *_rr())
    except (OSError, AttributeError) as exc:  # AttributeError: not Linux
        log.warning(
            "node %s stays at normal priority (realtime_nodes): real-time scheduling refused "
            "(%s); allow it with LimitRTPRIO=1 in the systemd unit, or CAP_SYS_NICE",
            node,
            exc,
        )
        return False
    _realtime.add(threading.get_ident())
    log.info("node %s runs its loop at real-time priority (SCHED_RR %d)", node, PRIORITY)
    return True


def is_realtime() -> bool:
    """Whether the calling thread runs at real-time priority, as the kernel has it."""
    with contextlib.suppress(AttributeError):
        return os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK == os.SCHED_RR
    return False


@contextlib.contextmanager
def background() -> Iterator[None]:
    """Work that is not urgent, at normal priority while it runs, on a real-time loop thread
    (elsewhere, or nested in another: nothing changes, no system call). Two system calls (a few
    microseconds)."""
    ident = threading.get_ident()
    if ident not in _realtime or ident in _demoted:
        yield
        return
    os.sched_setscheduler(0, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))
    _demoted.add(ident)
    try:
        yield
    finally:
        _demoted.discard(ident)
        try:
            os.sched_setscheduler(0, *_rr())
        except OSError as exc:  # the limit was lowered meanwhile: stay normal, say so once
            _realtime.discard(ident)
            log.warning("back to real-time priority refused (%s): normal priority now", exc)
