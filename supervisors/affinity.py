"""Each node process on its own CPU (``[runtime] cpu_affinity``, "auto" by default).

Measured (``bench/energy.py --cars 500``, two vCPUs, five pairs of runs, each pair within a few
minutes): with the nodes free to move, the broker, woken by the energy node's batch, was started
on the energy node's CPU (the scheduler places a woken process beside its waker) while the energy
node finished its step there, and its 500 SetChargingProfile frames took 27-40 ms of wall time
for 20-25 ms of CPU; with the energy node on CPU 0 and the broker on CPU 1, 21-24 ms for 20-21
ms, and meter sample -> last frame went from p50 51-69 ms to 38-51 ms (p99 58-107 -> 43-74 ms).
A node's work is its event loop thread (its other threads mostly wait, and share its GIL), so one
CPU is nearly all it can use; the launcher, the Thespian admin and everything else on the
machine stay free to run anywhere.

"auto" gives the nodes distinct CPUs, in the order they are declared, from the CPUs the runtime
may use (systemd's ``CPUAffinity=`` narrows them); with fewer than two there is nothing to gain
and nothing is pinned. "off" leaves placement to the scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from config.schema import CPU_AFFINITY

if TYPE_CHECKING:  # node_messages -> node_runtime -> this module
    from supervisors.node_messages import NodeSpec

log = logging.getLogger(__name__)


def assign(nodes: Iterable[NodeSpec], allowed: Iterable[int], setting: str) -> tuple[NodeSpec, ...]:
    """The nodes with the CPUs each is to run on (``cpus`` empty: anywhere)."""
    if setting not in CPU_AFFINITY:
        raise ValueError(f"cpu_affinity must be one of {', '.join(CPU_AFFINITY)}, got {setting!r}")
    specs = tuple(nodes)
    cpus = sorted(set(allowed))
    if setting == "off" or len(cpus) < 2:
        return tuple(replace(n, cpus=()) for n in specs)
    return tuple(replace(n, cpus=(cpus[i % len(cpus)],)) for i, n in enumerate(specs))


def pin_process(cpus: Iterable[int]) -> list[int]:
    """Every thread of this process (and those it starts later) onto ``cpus``; returns the
    threads that could not be pinned (a thread that ended meanwhile is not one)."""
    target = set(cpus)
    failed = []
    for entry in os.scandir("/proc/self/task"):
        tid = int(entry.name)
        try:
            os.sched_setaffinity(tid, target)
        except ProcessLookupError:
            continue
        except OSError as exc:
            log.warning("could not pin thread %d to CPUs %s: %s", tid, sorted(target), exc)
            failed.append(tid)
    return failed


def current() -> list[int]:
    """The CPUs this thread may run on."""
    with contextlib.suppress(AttributeError):  # not Linux
        return sorted(os.sched_getaffinity(0))
    return []
