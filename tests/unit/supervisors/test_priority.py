"""A node's loop at real-time priority (supervisors/priority.py), on this kernel: each case runs
in a process of its own (a thread's scheduling policy is the kernel's, and a failed case must
not leave the test process's threads at real-time priority). The node layer's test
(tests/integration/nodes/test_node_layer.py) checks it on real node processes."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap

import orjson
import pytest

from tests.integration.nodes.site import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux scheduling")

NOBODY = 65534


def run_case(body: str, *, rtprio: int | None = None, as_nobody: bool = False) -> dict[str, object]:
    """``body`` in a fresh process, in a thread of its own (a node's loop thread), after the
    RLIMIT_RTPRIO ``rtprio`` (systemd's LimitRTPRIO=) and, as_nobody, without root's
    privileges; it sets ``out`` (a dict), printed as JSON."""
    setup = ""
    if rtprio is not None:
        setup += f"resource.setrlimit(resource.RLIMIT_RTPRIO, ({rtprio}, {rtprio}))\n"
    if as_nobody:
        setup += f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
    code = (
        "import json, logging, os, resource, sys, threading\n"
        "from supervisors import priority\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n" + setup + "out = {}\n"
        "def case():\n"
        + textwrap.indent(body, "    ")
        + "\nt = threading.Thread(target=case); t.start(); t.join()\n"
        "out['main_thread_realtime'] = priority.is_realtime()\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = orjson.loads(done.stdout)
    result["log"] = done.stderr
    return result


def root() -> bool:
    return os.geteuid() == 0


def may_raise_rtprio() -> bool:
    """Whether this process may give a child RLIMIT_RTPRIO 1 (root with CAP_SYS_RESOURCE, or a
    hard limit already that high): not in every container (this sandbox's root lacks it)."""
    if resource.getrlimit(resource.RLIMIT_RTPRIO)[1] >= 1:
        return True
    with open("/proc/self/status") as f:
        caps = next((line.split()[1] for line in f if line.startswith("CapEff:")), "0")
    return root() and bool(int(caps, 16) & (1 << CAP_SYS_RESOURCE))


CAP_SYS_RESOURCE = 24

BACKGROUND = """
out['set'] = priority.realtime_this_thread('energy')
out['realtime'] = priority.is_realtime()
with priority.background():
    out['in_background'] = priority.is_realtime()
out['after'] = priority.is_realtime()
"""


def states(got: dict[str, object]) -> tuple[object, ...]:
    return got["set"], got["realtime"], got["in_background"], got["after"]


@pytest.mark.skipif(not root(), reason="real-time scheduling as root (CAP_SYS_NICE)")
def test_the_loop_thread_goes_realtime_and_leaves_it_for_background_work() -> None:
    """Only the calling thread (the node's loop) moves; it leaves real-time priority for
    background work and comes back."""
    got = run_case(BACKGROUND)
    assert states(got) == (True, True, False, True), got
    assert got["main_thread_realtime"] is False
    assert "node energy runs its loop at real-time priority (SCHED_RR 1)" in str(got["log"])


@pytest.mark.skipif(
    not may_raise_rtprio(), reason="cannot give a child RLIMIT_RTPRIO 1 (no CAP_SYS_RESOURCE)"
)
def test_the_rtprio_limit_is_enough_without_privileges() -> None:
    """What the systemd unit gives (LimitRTPRIO=1, no capability)."""
    got = run_case(BACKGROUND, rtprio=1, as_nobody=True)
    assert states(got) == (True, True, False, True), got


@pytest.mark.skipif(not root(), reason="drops root")
def test_refused_the_node_stays_normal_and_says_how_to_allow_it() -> None:
    got = run_case(BACKGROUND, rtprio=0, as_nobody=True)
    assert states(got) == (False, False, False, False), got
    log = str(got["log"])
    assert "node energy stays at normal priority (realtime_nodes)" in log, log
    assert "LimitRTPRIO=1 in the systemd unit" in log, log


@pytest.mark.skipif(not root(), reason="real-time scheduling as root (CAP_SYS_NICE)")
def test_nested_background_work_stays_normal_until_the_outer_ends_and_no_thread_inherits() -> None:
    got = run_case(
        "priority.realtime_this_thread('energy')\n"
        "with priority.background():\n"
        "    with priority.background():\n"
        "        pass\n"
        "    out['after_inner'] = priority.is_realtime()\n"
        "out['after_outer'] = priority.is_realtime()\n"
        "child = threading.Thread(target=lambda: out.update(child=priority.is_realtime()))\n"
        "child.start(); child.join()\n"
    )
    assert (got["after_inner"], got["after_outer"], got["child"]) == (False, True, False), got


def test_background_changes_nothing_on_a_thread_at_normal_priority() -> None:
    got = run_case(
        "with priority.background():\n"
        "    out['in_background'] = priority.is_realtime()\n"
        "out['after'] = priority.is_realtime()\n"
    )
    assert (got["in_background"], got["after"]) == (False, False), got


@pytest.mark.skipif(not root(), reason="drops root")
def test_refused_back_to_realtime_the_thread_stays_normal_with_one_warning() -> None:
    """Real-time priority taken, then the right to it lost (root dropped, the limit 0): after
    background work the thread stays at normal priority, and later background work makes no
    more system calls (one warning)."""
    got = run_case(
        BACKGROUND
        + "resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))\n"
        + f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        + "with priority.background():\n"
        + "    pass\n"
        + "out['lowered'] = priority.is_realtime()\n"
        + "with priority.background():\n"
        + "    pass\n"
        + "out['again'] = priority.is_realtime()\n"
    )
    assert (got["after"], got["lowered"], got["again"]) == (True, False, False), got
    assert str(got["log"]).count("back to real-time priority refused") == 1, got["log"]
