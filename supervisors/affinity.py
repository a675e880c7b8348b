"""Each node process on its own CPU (``[runtime] cpu_affinity``, "auto" by default).

Measured (``bench/energy.py --cars 500``, two vCPUs, alternating runs): with the nodes free to
move, the broker, woken by the energy node's batch, was started on the energy node's CPU (the
scheduler places a woken process beside its waker) while the energy node finished its step
there, and its 500 SetChargingProfile frames took 30-40 ms of wall time for 20-25 ms of CPU;
with the energy node on CPU 0 and the broker on CPU 1 they took 21-23 ms for 20-21 ms, and meter
sample -> last frame fell from p50 53-69 ms to 38-43 ms (p99 84-107 -> 56-71 ms). A node is one
event loop thread (and its store's writer thread), so one CPU is all it can use anyway; the
launcher, the Thespian admin and everything else on the machine stay free to run anywhere.

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
