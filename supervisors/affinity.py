"""Each node's event loop on a CPU of its own (``[runtime] cpu_affinity = "auto"``; "off", the
default, leaves placement to the scheduler). A trade, measured on two vCPUs:

- For load management it pays. ``bench/energy.py --cars 500``, five pairs of runs, each pair
  within a few minutes: with the nodes free to move, the broker, woken by the energy node's
  batch, was started on the energy node's CPU (the scheduler places a woken process beside its
  waker) while the energy node finished its step there, and its 500 SetChargingProfile frames
  took 27-40 ms of wall time for 20-25 ms of CPU; pinned, 21-24 ms, and meter sample -> last
  frame went from p50 51-69 ms to 38-51 ms (p99 58-107 -> 43-74 ms).
- For the broker's own traffic it costs. ``bench/broker.py``, two pairs: the edge-added round
  trip p99 went from 4.3-4.7 ms to 10.6-12.5 ms (the pinned loop waits for its CPU while the
  other is free), beyond that issue's 5 ms; hence "off" by default.

Only the loop's thread is pinned (and threads it starts later): pinning the whole process, the
store's writer thread too, took the backlog replay of ``bench/broker.py`` from 5,446 to 3,235
messages/s; with the loop alone pinned, 5,400-5,939. "auto" gives the nodes distinct CPUs in the
order they are declared, from the CPUs the runtime may use (systemd's ``CPUAffinity=`` narrows
them); with fewer than two nothing is pinned. The launcher, the Thespian admin and everything
else on the machine stay free to run anywhere.
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


def pin_this_thread(cpus: Iterable[int]) -> bool:
    """The calling thread (a node's event loop) onto ``cpus``; threads it starts later inherit
    it. False, and a warning, if the kernel refused (a CPU outside the cgroup's set, say)."""
    try:
        os.sched_setaffinity(0, set(cpus))
    except OSError as exc:
        log.warning("could not pin this thread to CPUs %s: %s", sorted(cpus), exc)
        return False
    return True


def current() -> list[int]:
    """The CPUs this thread may run on (a node's status reads it on its loop's thread)."""
    with contextlib.suppress(AttributeError):  # not Linux
        return sorted(os.sched_getaffinity(0))
    return []
