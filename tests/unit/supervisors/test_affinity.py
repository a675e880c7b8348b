"""Which CPU each node process runs on (supervisors/affinity.py); the node layer's test
(tests/integration/nodes/test_node_layer.py) checks the pinning on real node processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from supervisors.affinity import assign
from supervisors.node_messages import NodeSpec
from tests.integration.nodes.site import REPO

NODES = (NodeSpec(name="energy", kind="energy"), NodeSpec(name="broker", kind="broker"))


def cpus_of(nodes: tuple[NodeSpec, ...]) -> list[tuple[int, ...]]:
    return [n.cpus for n in nodes]


def test_auto_gives_each_node_its_own_cpu_in_declared_order() -> None:
    assert cpus_of(assign(NODES, {0, 1}, "auto")) == [(0,), (1,)]
    assert cpus_of(assign(NODES, {7, 2, 5, 3}, "auto")) == [(2,), (3,)]  # what systemd allows
    three = (*NODES, NodeSpec(name="extra", kind="probe"))
    assert cpus_of(assign(three, {0, 1}, "auto")) == [(0,), (1,), (0,)]  # more nodes than CPUs
    assert [n.name for n in assign(NODES, {0, 1}, "auto")] == ["energy", "broker"]


def test_nothing_pinned_when_off_or_one_cpu() -> None:
    assert cpus_of(assign(NODES, {0, 1, 2, 3}, "off")) == [(), ()]
    assert cpus_of(assign(NODES, {3}, "auto")) == [(), ()]
    pinned = (NodeSpec(name="energy", kind="energy", cpus=(1,)),)
    assert cpus_of(assign(pinned, {0, 1}, "off")) == [()]


def test_an_unknown_setting_is_named() -> None:
    with pytest.raises(ValueError, match="cpu_affinity must be one of auto, off, got 'all'"):
        assign(NODES, {0, 1}, "all")


def test_pin_this_thread_leaves_the_others_and_passes_on_to_its_own() -> None:
    script = textwrap.dedent(
        """
        import os, threading
        from supervisors.affinity import current, pin_this_thread
        started = threading.Event(); stop = threading.Event()
        def before():
            started.set(); stop.wait()
        t = threading.Thread(target=before); t.start(); started.wait()
        cpu = max(os.sched_getaffinity(0))
        assert pin_this_thread([cpu])
        seen = []
        later = threading.Thread(target=lambda: seen.append(current())); later.start(); later.join()
        print(cpu, len(os.sched_getaffinity(t.native_id)), current(), seen[0])
        stop.set(); t.join()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    cpu, before, this, later = int(out[0]), int(out[1]), out[2], out[3]
    assert (this, later) == (f"[{cpu}]", f"[{cpu}]"), "this thread and one it starts later"
    assert before == len(os.sched_getaffinity(0)), "a thread already running keeps its CPUs"


def test_a_refused_pin_is_reported_not_raised() -> None:
    script = "from supervisors.affinity import pin_this_thread; print(pin_this_thread([4095]))"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    assert "could not pin this thread to CPUs [4095]" in out.stderr
