"""Faults injected into the node layer on real Thespian nodes (OS processes): a node killed while
the site stops, a node that hangs in its start, the status between a kill -9 and Thespian's exit
report, and what the root holds for a node that is down.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from drivers.store.env import Store
from supervisors.node_messages import STOP_GRACE_S
from tests.helpers import timeout_s, wait_for_sync
from tests.integration.nodes.probe import (
    LEDGER_TABLE,
    block_file,
    blocking_file,
    hang_file,
    slow_file,
)
from tests.integration.nodes.site import ProbeSite, wait_gone

pytestmark = [pytest.mark.nodes, pytest.mark.slow]

SHUTDOWN_TIMEOUT_S = 5  # per node; the launcher waits this per node plus 5 s for the whole stop


def freeze_other_and_stop(site: ProbeSite) -> tuple[list[int], int, float]:
    """'other' frozen (SIGSTOP: alive, it cannot answer its stop), then the site asked to stop
    (SIGTERM to the launcher): the site's pids, other's pid and when the stop was asked."""
    assert site.proc is not None
    pids = [p.pid for p in site.processes()]
    other = int(site.node("other")["pid"])
    os.kill(other, signal.SIGSTOP)
    started = time.monotonic()
    site.proc.send_signal(signal.SIGTERM)
    return pids, other, started


def test_a_node_killed_while_the_site_stops_moves_the_stop_on(tmp_path: Path) -> None:
    """The nodes stop one at a time in reverse start order: 'other' first, then 'probe'. 'other'
    is frozen so it cannot answer its stop, then killed -9 once the root has asked it to stop:
    the root goes on to 'probe' at once (an orderly stop of it, exit 0), where it used to wait
    for a NodeStopped that never came until the launcher's whole wait ran out (2 x 5 + 5 s), and
    'probe' was then only torn down by Thespian's shutdown."""
    site = ProbeSite(tmp_path, log_level="INFO", extra=f"shutdown_timeout_s = {SHUTDOWN_TIMEOUT_S}")
    site.start()
    try:
        pids, other, started = freeze_other_and_stop(site)
        wait_for_sync(
            lambda: f"stopping node other (pid {other})" in site.log_text(),
            timeout=10,
            what="the root to ask node other to stop",
        )
        os.kill(other, signal.SIGKILL)
        code = site.proc.wait(timeout_s(30))
        took_s = time.monotonic() - started
        log = site.log_text()
        assert code == 0, log
        assert "orderly stop did not complete in time" not in log, log
        assert "node probe stopped in" in log, "probe got its orderly stop"
        assert took_s < SHUTDOWN_TIMEOUT_S, f"the stop took {took_s:.1f} s: {log}"
        assert wait_gone(pids) == []
    finally:
        site.cleanup()


def test_a_node_that_never_answers_its_stop_is_killed_at_its_deadline(tmp_path: Path) -> None:
    """'other' (stopped first) is frozen: alive, but it cannot answer its stop. The root had no
    deadline of its own for a node's stop: it waited for a NodeStopped that never came until
    the launcher's whole wait ran out (2 x 3 + 5 s), said the orderly stop did not complete,
    and 'probe' never got its orderly stop from the root. Now the root kills 'other' once its
    stop deadline (shutdown_timeout_s plus a grace) has passed, logs it as an ERROR naming it,
    and goes on to stop 'probe' in order: exit 0 well within the launcher's wait."""
    shutdown_s = 3
    site = ProbeSite(tmp_path, log_level="INFO", extra=f"shutdown_timeout_s = {shutdown_s}")
    site.start()
    try:
        pids, other, started = freeze_other_and_stop(site)
        code = site.proc.wait(timeout_s(30))
        took_s = time.monotonic() - started
        log = site.log_text()
        assert code == 0, log
        assert "orderly stop did not complete in time" not in log, log
        assert re.search(
            rf"ERROR supervisors.nodes: node other \(pid {other}\) did not stop within "
            rf"{shutdown_s + STOP_GRACE_S:g} s: killing it",
            log,
        ), log
        assert "node probe stopped in" in log, "probe got its orderly stop"
        launcher_wait_s = shutdown_s * 2 + 5
        assert took_s < shutdown_s + STOP_GRACE_S + 3 < launcher_wait_s, f"took {took_s:.1f} s"
        assert wait_gone(pids) == []
    finally:
        site.cleanup()


def test_a_node_that_comes_up_while_it_is_asked_to_stop_still_moves_the_stop_on(
    tmp_path: Path,
) -> None:
    """'other' (stopped first) is restarting when the site is asked to stop: its tree is up but
    its loop is blocked before it reports up, and the root asks it to stop. It then reports up
    (NodeUp) and, its tree stopped, stopped (NodeStopped). The root took the NodeUp as it came
    and marked it running: its NodeStopped was then ignored (not 'stopping'), its stop deadline
    did nothing (not 'stopping'), and the stop waited for the launcher's whole wait, 'probe'
    given no orderly stop by the root. Now a node asked to stop stays stopping when it reports
    up, and its NodeStopped moves the stop on."""
    shutdown_s = 3
    site = ProbeSite(tmp_path, log_level="INFO", extra=f"shutdown_timeout_s = {shutdown_s}")
    site.start()
    block = block_file(tmp_path / "var", "other")
    blocking = blocking_file(tmp_path / "var", "other")
    try:
        assert site.proc is not None
        block.touch()
        site.kill_node("other")
        wait_for_sync(blocking.exists, timeout=30, what="other's restart blocked, tree up")
        assert site.node("other")["state"] == "restarting", "blocked before it reported up"
        started = time.monotonic()
        site.proc.send_signal(signal.SIGTERM)
        wait_for_sync(
            lambda: re.search(r"stopping node other \(pid \d+\)", site.log_text()) is not None,
            timeout=10,
            what="the root to ask node other to stop",
        )
        block.unlink()
        code = site.proc.wait(timeout_s(60))
        took_s = time.monotonic() - started
        log = site.log_text()
        assert code == 0, log
        assert "orderly stop did not complete in time" not in log, log
        assert "node other stopped in" in log, log
        assert took_s < shutdown_s + 2 + 3, f"the stop took {took_s:.1f} s: {log}"
    finally:
        block.unlink(missing_ok=True)
        site.cleanup()


START_TIMEOUT_S = 2


def test_a_node_hanging_in_its_start_is_ended_restarted_and_shown(tmp_path: Path) -> None:
    """The restarted 'probe' never reports started (its ledger's start waits for ever). The root
    ends it after node_start_timeout_s, says so in the log and in the status (a failure, not
    'restarting' for ever) and restarts it; once the fault is gone it comes back."""
    site = ProbeSite(tmp_path, log_level="INFO", extra=f"node_start_timeout_s = {START_TIMEOUT_S}")
    site.start()
    try:
        hang = hang_file(tmp_path / "var", "probe")
        hang.touch()
        old_pid = site.kill_node("probe")
        failed = f"did not start within {START_TIMEOUT_S} s"

        def ended_twice() -> bool:
            node = site.node("probe")
            return node["restarts"] >= 2 and failed in (node["last_failure"] or "")

        wait_for_sync(ended_twice, timeout=30, what="the hung start ended and restarted")
        assert site.node("other")["restarts"] == 0
        assert re.search(
            rf"ERROR supervisors.nodes: node probe \(pid \d+\) {failed}", site.log_text()
        )
        hang.unlink()
        node = site.wait_node_back("probe", old_pid, timeout=30)
        assert node["restarts"] >= 2
        assert failed in node["last_failure"]
    finally:
        site.cleanup()


def test_a_node_hanging_in_its_start_uses_up_the_restart_intensity(tmp_path: Path) -> None:
    """node_max_restarts = 1: the kill -9's restart hangs, is ended, and that failure is one
    restart too many: the runtime exits 3 for systemd (it used to wait for ever)."""
    site = ProbeSite(tmp_path, max_restarts=1, extra=f"node_start_timeout_s = {START_TIMEOUT_S}")
    site.start()
    try:
        assert site.proc is not None
        hang_file(tmp_path / "var", "probe").touch()
        site.kill_node("probe")
        code = site.proc.wait(timeout_s(30))
        assert code == 3, site.log_text()
        assert (
            f"node restarts exhausted (node probe: did not start within {START_TIMEOUT_S} s)"
            in site.log_text()
        )
    finally:
        site.cleanup()


LAUNCHER_START_WAIT_S = 60  # how long the launcher waited for the site's start, whatever else


def test_a_first_start_may_take_as_long_as_node_start_timeout_s(tmp_path: Path) -> None:
    """node_start_timeout_s = 120 (a node whose start takes longer than a minute: a large store,
    say): 'probe' comes up after 62 s on the site's first start. The root allows it that (its
    deadline is node_start_timeout_s) but the launcher waited 60 s for the site's start
    whatever node_start_timeout_s said, and exited 1 ("no answer in 60 s")."""
    slow = slow_file(tmp_path / "var", "probe")
    slow.parent.mkdir(parents=True, exist_ok=True)
    slow.touch()
    site = ProbeSite(tmp_path, extra="node_start_timeout_s = 120")
    timer = threading.Timer(LAUNCHER_START_WAIT_S + 2, slow.unlink)
    timer.start()
    try:
        site.start(answer_timeout=LAUNCHER_START_WAIT_S + 30)
        assert not slow.exists(), "up only once the slow start ended"
        assert site.node("probe")["restarts"] == 0
        assert site.terminate() == 0
    finally:
        timer.cancel()
        site.cleanup()


def _from_root_unread(node_pid: int, root_pid: int, ingest_port: int) -> int:
    """Bytes the root sent the node that the node has not read (the kernel's receive queues in
    /proc/net/tcp): on the connections between the two processes, and on connections to the
    node's own listening ports (Thespian may reuse either; a fork inherits the root's sockets,
    which are left out)."""
    root = psutil.Process(root_pid).net_connections("tcp")
    root_ports = {c.laddr.port for c in root}
    root_listening = {c.laddr.port for c in root if c.status == psutil.CONN_LISTEN}
    node = psutil.Process(node_pid).net_connections("tcp")
    own = {
        c.laddr.port
        for c in node
        if c.status == psutil.CONN_LISTEN and c.laddr.port not in root_listening | {ingest_port}
    }
    to_root = {
        c.laddr.port
        for c in node
        if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port in root_ports
    }
    unread = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local = int(fields[1].split(":")[1], 16)
        remote = int(fields[2].split(":")[1], 16)
        if fields[3] == "01" and (local in own or (local in to_root and remote in root_ports)):
            unread += int(fields[4].split(":")[1], 16)
    return unread


def test_a_status_asked_of_a_node_that_then_dies_ends_at_its_exit(tmp_path: Path) -> None:
    """The window between a kill -9 and Thespian's exit report is short (6-18 ms measured), but
    a status query that reached the root in it was sent to the dead node, and the root waited
    its whole timeout for an answer that could not come, then showed the slot as it was by
    then: the restarted node, 'running', blamed for not answering. Widened here: 'probe' is
    frozen, so the query waits in its socket, then killed. The status now ends at the exit
    report and tells the node's state then (restarting), not 'running'."""
    site = ProbeSite(tmp_path, extra="status_timeout_s = 10")  # the root waits 7 s for nodes
    site.start()
    try:
        pid = int(site.node("probe")["pid"])
        root_pid = int(site.status()["launcher"]["root_pid"])
        os.kill(pid, signal.SIGSTOP)
        answer: dict[str, Any] = {}
        asking = threading.Thread(target=lambda: answer.update(site.status(timeout=20)))
        asking.start()
        wait_for_sync(
            lambda: _from_root_unread(pid, root_pid, site.port) > 0,
            timeout=10,
            what="the root's status query waiting in the frozen node's socket",
        )
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        asking.join(timeout_s(20))
        took_s = time.monotonic() - killed
        probe = next(n for n in answer["nodes"] if n["name"] == "probe")
        assert probe["answered"] is False
        assert probe["state"] != "running" or probe["pid"] == pid, probe
        assert took_s < 3, f"the status waited {took_s:.1f} s for a node that had exited"
    finally:
        site.cleanup()


TRANSIENT_HELD = 1000  # the root's bound on transient messages held for a node that is down


def _exchange(port: int, lines: list[bytes]) -> None:
    """Send the probe its command lines; return once it has echoed each (sent on)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s(10)) as sock:
        sock.sendall(b"".join(line + b"\n" for line in lines))
        echoed = b""
        while echoed.count(b"\n") < len(lines):
            chunk = sock.recv(65536)
            assert chunk, "the probe closed the connection"
            echoed += chunk


def test_the_root_keeps_what_is_not_transient_for_a_node_that_is_down(tmp_path: Path) -> None:
    """'other' is down (killed, its restarts hanging in their start) while 'probe' sends it,
    through the root, a Record (not transient: it stands for a cloud grid limit the broker has
    answered Accepted, or a rules bundle), 1500 transient Beats, and a second Record. The root
    used to hold the last 1000 of them, whatever they were, and drop the rest unlogged: the
    first Record was lost. It now drops only transient ones beyond 1000, oldest first, says so
    once as it starts and once with the count when the node is back, and delivers the rest in
    one message (one Thespian send each kept the root from the launcher's pings for over 4 s:
    the runtime was torn down)."""
    site = ProbeSite(tmp_path, extra=f"node_start_timeout_s = {START_TIMEOUT_S}")
    site.start()
    try:
        assert site.proc is not None
        hang = hang_file(tmp_path / "var", "other")
        hang.touch()
        old_pid = site.kill_node("other")
        wait_for_sync(
            lambda: site.node("other")["state"] == "restarting", timeout=10, what="other down"
        )
        restarts = site.node("other")["restarts"]
        _exchange(site.port, [b"record other 7", b"beat other 1500", b"record other 8"])

        def held_a_while() -> bool:
            # everything handed to the root, and one more hung start ended since
            # (the probe may not answer while its Thespian thread hands them to the root)
            links = site.node("probe").get("links") or {}
            return links.get("sent_via_root", 0) >= 1502 and (
                site.node("other")["restarts"] > restarts
            )

        wait_for_sync(held_a_while, timeout=20, what="the messages held for a while")
        hang.unlink()
        site.wait_node_back("other", old_pid, timeout=30)
        log = site.log_text()
        back = re.findall(
            r"node other is up: (\d+) held messages delivered, (\d+) dropped while it was "
            r"down \(Beat \d+\)",
            log,
        )
        assert len(back) == 1, log
        delivered, dropped = map(int, back[0])
        assert dropped >= 1
        assert delivered + dropped >= 1502
        assert log.count("dropping the oldest transient ones") == 1, "once, not per message"
        wait_for_sync(
            lambda: site.node("other")["site"]["beats"] == 1500 - dropped,
            timeout=10,
            what="every Beat not dropped delivered",
        )
        assert "did not answer a ping" not in site.log_text()
        assert site.terminate() == 0, site.log_text()
        store = Store(tmp_path / "var" / "other", readonly=True)
        try:
            records = {int.from_bytes(k, "big") for k, _ in store.scan(LEDGER_TABLE)}
        finally:
            store.close()
        assert records == {7, 8}, "the Records held for 'other' all reached it"
    finally:
        site.cleanup()
