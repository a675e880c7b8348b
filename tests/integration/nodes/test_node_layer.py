"""The node layer on real Thespian multiprocTCPBase nodes (OS processes), driven from outside.

Covers: every listening socket on loopback; SIGTERM -> exit 0 and no process left; kill -9 of the
launcher or of the admin -> no process left; a node killed with SIGKILL is restarted with its actors
and persisted state, and `run.py status` shows it; crash safety counted over 20+ random kill -9s.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from drivers.store.codec import decode, encode
from drivers.store.env import Store, mailbox_key, mailbox_prefix
from tests.helpers import timeout_s, wait_for_sync
from tests.integration.nodes.probe import LEDGER_TABLE, Record
from tests.integration.nodes.site import REPO, ProbeSite, wait_gone

pytestmark = [pytest.mark.nodes, pytest.mark.slow]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[ProbeSite]:
    s = ProbeSite(tmp_path)
    s.start()
    yield s
    s.cleanup()


class Producer:
    """At-least-once client: resends what was not acknowledged after each reconnect."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent: list[int] = []
        self.acked: set[int] = set()
        self.resent: set[int] = set()  # sent again after a break: may be consumed twice
        self.next_id = 1
        self.sock: socket.socket | None = None

    def connect(self, timeout: float = 20) -> None:
        def attempt() -> bool:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:
                return False
            return True

        wait_for_sync(attempt, timeout=timeout, what="the probe node to accept connections")

    def _exchange(self, ids: list[int]) -> None:
        assert self.sock is not None
        self.sock.sendall(b"".join(b"%d\n" % i for i in ids))
        want = set(ids)
        buf = b""
        while want:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the edge")
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                msg_id = int(line)
                self.acked.add(msg_id)
                want.discard(msg_id)

    def pump_until_broken(self, batch: int = 20, limit: int = 100_000) -> None:
        try:
            unacked = [i for i in self.sent if i not in self.acked]
            if unacked:
                self.resent.update(unacked)
                self._exchange(unacked)
            while len(self.sent) < limit:
                ids = list(range(self.next_id, self.next_id + batch))
                self.next_id += batch
                self.sent.extend(ids)
                self._exchange(ids)
        except (OSError, ConnectionError):
            pass
        finally:
            if self.sock is not None:
                self.sock.close()
                self.sock = None

    def settle(self) -> None:
        """Resend everything unacknowledged until all is acknowledged."""
        self.connect()
        unacked = [i for i in self.sent if i not in self.acked]
        if unacked:
            self.resent.update(unacked)
            self._exchange(unacked)
        assert self.sock is not None
        self.sock.close()
        self.sock = None


def run_py(site: ProbeSite, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python run.py <args> --config <the site's file>``, as an operator runs it."""
    assert site.config is not None
    return subprocess.run(
        [sys.executable, "run.py", *args, "--config", str(site.config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s(20),
        check=check,
    )


def account(storage: Path, producer: Producer) -> dict[str, int]:
    store = Store(storage / "probe", readonly=True)
    try:
        counts = {int.from_bytes(k, "big"): int(v) for k, v in store.scan(LEDGER_TABLE)}
        pending = len(list(store.scan("mailbox", mailbox_prefix("probe/ledger"))))
    finally:
        store.close()
    consumed = set(counts)
    return {
        "sent": len(producer.sent),
        "acked": len(producer.acked),
        "consumed": len(consumed),
        "pending": pending,
        "lost": len(producer.acked - consumed) - pending,
        "unexpected": len(consumed - set(producer.sent)),
        "duplicates": sum(c - 1 for c in counts.values()),
        # At-least-once explains a duplicate only for an id the producer sent more than once.
        "applied_twice": sum(c - 1 for i, c in counts.items() if i not in producer.resent),
    }


def test_every_listening_socket_is_on_loopback(site: ProbeSite) -> None:
    listening = site.listening()
    assert len(listening) >= 6, listening  # admin, logger, root, 2 nodes, the probe's ingest port
    assert {ip for _, ip, _ in listening} == {"127.0.0.1"}, listening


def test_sigterm_stops_everything_with_exit_0(site: ProbeSite) -> None:
    pids = [p.pid for p in site.processes()]
    assert len(pids) >= 5
    assert site.terminate() == 0, site.log_text()
    assert wait_gone(pids) == []
    assert not site.control_socket.exists()


def test_kill_9_of_the_launcher_leaves_no_process(site: ProbeSite) -> None:
    assert site.proc is not None
    pids = [p.pid for p in site.processes()]
    site.proc.kill()
    site.proc.wait(10)
    assert wait_gone(pids) == [], "every process dies with the launcher"


def test_admin_death_tears_the_runtime_down(site: ProbeSite) -> None:
    doc = site.status()
    root = psutil.Process(doc["launcher"]["root_pid"])
    admin = root.parent()
    assert admin is not None
    pids = [p.pid for p in site.processes()]
    admin.kill()
    assert site.proc is not None
    code = site.proc.wait(timeout_s(20))
    assert code == 2, site.log_text()
    assert "the Thespian admin is gone" in site.log_text()
    assert wait_gone(pids) == []


def test_killed_node_comes_back_with_its_state_and_status_shows_it(site: ProbeSite) -> None:
    producer = Producer(site.port)
    producer.connect()
    producer.pump_until_broken(limit=200)
    assert len(producer.acked) == 200
    wait_for_sync(lambda: site.node("probe")["site"]["consumed"] == 200, what="200 consumed")
    old_pid = site.kill_node("probe")
    node = site.wait_node_back("probe", old_pid)
    assert node["restarts"] == 1
    assert "exited without notice" in node["last_failure"]
    assert node["site"]["consumed"] == 200, "persisted state restored after kill -9"
    ledger = next(c for c in node["tree"] if c["id"] == "ledger")
    assert ledger["state"] == "running"
    assert site.node("other")["restarts"] == 0, "the other node was not touched"
    producer.connect()
    producer.pump_until_broken(limit=300)
    wait_for_sync(lambda: site.node("probe")["site"]["consumed"] == 300, what="300 consumed")

    shown = run_py(site, "status", "--json")
    doc = json.loads(shown.stdout)
    probe = next(n for n in doc["nodes"] if n["name"] == "probe")
    assert doc["stale"] is False
    assert probe["restarts"] == 1
    human = run_py(site, "status").stdout
    assert "exited without notice" in human
    audit = run_py(site, "audit", "--kind", "restart", "--json").stdout
    rows = [json.loads(line) for line in audit.splitlines()]
    assert [(r["node"], r["decision"]) for r in rows] == [("probe", "node restarted (restart 1)")]
    assert "exited without notice" in rows[0]["reason"]

    assert human.splitlines()[0].startswith("Site probe: live (nodes mode)")


def test_node_restarts_beyond_the_intensity_end_the_runtime_with_exit_3(tmp_path: Path) -> None:
    """``node_max_restarts`` = 1: the second kill -9 within the period is one restart too many.
    The launcher says so and exits 3 for systemd, the other node stopped, no process left."""
    site = ProbeSite(tmp_path, max_restarts=1)
    site.start()
    try:
        pids = [p.pid for p in site.processes()]
        site.wait_node_back("probe", site.kill_node("probe"))
        pids += [p.pid for p in site.processes() if p.pid not in pids]
        site.kill_node("probe")
        assert site.proc is not None
        code = site.proc.wait(timeout_s(30))
        assert code == 3, site.log_text()
        assert "node restarts exhausted (node probe: process exited without notice" in (
            site.log_text()
        )
        assert wait_gone(pids) == []
        assert not site.control_socket.exists()
    finally:
        site.cleanup()


def thread_cpus(pid: int) -> list[tuple[int, ...]]:
    """The CPU sets of every thread of the process, as the kernel has them."""
    return [tuple(psutil.Process(t.id).cpu_affinity()) for t in psutil.Process(pid).threads()]


def pinned_alone(pid: int, cpu: int, every: tuple[int, ...]) -> bool:
    """One thread of the process on ``cpu`` (its loop's), every other on every CPU."""
    sets = thread_cpus(pid)
    return sets.count((cpu,)) == 1 and all(s in ((cpu,), every) for s in sets) and len(sets) > 1


def test_each_node_runs_on_a_cpu_of_its_own_and_keeps_it_after_a_restart(
    site: ProbeSite,
) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("one CPU: cpu_affinity 'auto' pins nothing")
    probe, other = site.node("probe"), site.node("other")
    # The declared order: probe on the first CPU the runtime may use, other on the second. The
    # status is read on each node's loop thread, the one pinned; its other threads (Thespian's,
    # the store's writer) keep every CPU.
    assert (probe["cpus"], other["cpus"]) == ([cpus[0]], [cpus[1]])
    assert pinned_alone(probe["pid"], cpus[0], tuple(cpus)), thread_cpus(probe["pid"])
    assert pinned_alone(other["pid"], cpus[1], tuple(cpus)), thread_cpus(other["pid"])
    assert f"node probe runs on CPU {cpus[0]}" in site.log_text()
    node = site.wait_node_back("probe", site.kill_node("probe"))
    assert node["cpus"] == [cpus[0]], "a restarted node is pinned like the first"
    assert pinned_alone(node["pid"], cpus[0], tuple(cpus)), thread_cpus(node["pid"])


def realtime_threads(pid: int) -> int:
    """How many threads of the process run at a real-time policy, as the kernel has it
    (``/proc/PID/task/TID/stat`` field 41: 1 SCHED_FIFO, 2 SCHED_RR)."""
    count = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            count += int(fields[41 - 3]) in (1, 2)
    return count


def test_a_realtime_nodes_loop_runs_at_real_time_priority_and_again_after_a_restart(
    tmp_path: Path,
) -> None:
    """``[runtime] realtime_nodes``: the named node's loop thread (only it) at SCHED_RR, in the
    kernel and in its status; the other node's none; a node restarted after kill -9 the same."""
    if os.geteuid() != 0 and resource.getrlimit(resource.RLIMIT_RTPRIO)[0] < 1:
        pytest.skip("real-time scheduling not allowed here (no root, RLIMIT_RTPRIO 0)")
    site = ProbeSite(tmp_path, realtime_nodes="probe")
    site.start()
    try:
        probe, other = site.node("probe"), site.node("other")
        assert (probe["realtime"], other["realtime"]) == (True, False)
        assert realtime_threads(probe["pid"]) == 1
        assert realtime_threads(other["pid"]) == 0
        node = site.wait_node_back("probe", site.kill_node("probe"))
        assert node["realtime"] is True, "a restarted node gets its priority again"
        assert realtime_threads(node["pid"]) == 1
    finally:
        site.cleanup()


def test_realtime_nodes_naming_no_node_of_the_site_is_refused_at_start(tmp_path: Path) -> None:
    """The launcher's own check, for nodes that are not the site file's (the site file's names
    are refused when it is loaded: tests/unit/config/test_site_file.py)."""
    site = ProbeSite(tmp_path, realtime_nodes="enrgy")
    try:
        with pytest.raises(AssertionError, match="site exited with 1"):
            site.start()
        assert (
            "realtime_nodes names 'enrgy', not a node of this site (other, probe)"
            in site.log_text()
        ), site.log_text()
    finally:
        site.cleanup()


def test_a_frozen_node_shows_in_its_loop_lag_and_only_in_its_own(site: ProbeSite) -> None:
    """Each node is its own process with its own loop: a node that gets no CPU for a second (its
    process stopped) shows that second as its loop lag; the other node's loop ran on."""

    def sampled() -> bool:
        return all(site.node(n)["loop_lag"]["samples"] >= 5 for n in ("probe", "other"))

    wait_for_sync(sampled, timeout=20, what="both nodes' loop lag sampled")
    pid = int(site.node("probe")["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(1.0)  # the fault: the probe node's process is stopped for a second
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for_sync(
        lambda: (site.node("probe")["loop_lag"]["max_ms"] or 0) >= 800,
        timeout=20,
        what="the stopped second in the probe node's loop lag",
    )
    other = site.node("other")["loop_lag"]
    assert other["max_ms"] < 800, other
    assert site.node("probe")["restarts"] == 0, "a stopped node is late, not dead"
    human = run_py(site, "status").stdout
    assert "LOOP LAG" in human
    probe_row = next(line for line in human.splitlines() if line.startswith("probe "))
    assert re.search(r"max (\d{4,}|[89]\d\d)(\.\d+)? ms", probe_row), probe_row


def test_status_falls_back_to_the_persisted_state_marked_stale(site: ProbeSite) -> None:
    producer = Producer(site.port)
    producer.connect()
    producer.pump_until_broken(limit=40)
    wait_for_sync(lambda: site.node("probe")["site"]["consumed"] == 40, what="consumed")
    # Let at least one periodic snapshot include the count, then take the runtime away brutally.
    wait_for_sync(lambda: _snapshot_consumed(site) == 40, timeout=10, what="snapshot persisted")
    assert site.proc is not None
    pids = [p.pid for p in site.processes()]
    site.proc.kill()
    assert wait_gone(pids) == []
    result = run_py(site, "status", "--json", check=False)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["stale"] is True
    assert doc["age_s"] >= 0
    probe = next(n for n in doc["nodes"] if n["name"] == "probe")
    assert probe["site"]["consumed"] == 40
    # README's stable document: every node says whether it answered and since when it is up.
    assert probe["answered"] is False
    assert probe["up_since_utc"]
    human = run_py(site, "status", check=False).stdout
    assert "STALE" in human.splitlines()[0]


def _snapshot_consumed(site: ProbeSite) -> int | None:
    from supervisors.node_runtime import read_snapshot

    snap = read_snapshot(site.tmp_path / "var", "probe")
    return None if snap is None else snap["site"].get("consumed")


ROUNDS = 20


def test_crash_safety_counted_over_random_kill_9s(site: ProbeSite) -> None:
    rng = random.Random(20261128)
    producer = Producer(site.port)
    restarts = 0
    for _ in range(ROUNDS):
        producer.connect()
        pid = int(site.node("probe")["pid"])
        killer = threading.Timer(rng.uniform(0.02, 0.3), site.kill_node, ("probe",))
        killer.start()
        producer.pump_until_broken()
        killer.join()
        site.wait_node_back("probe", pid)
        restarts += 1
    producer.settle()
    assert site.node("probe")["restarts"] == restarts
    assert site.terminate() == 0, site.log_text()
    figures = account(site.tmp_path / "var", producer)
    print("crash safety:", figures)
    assert figures["acked"] > ROUNDS, "messages flowed while the node was being killed"
    assert figures["lost"] == 0, figures
    assert figures["unexpected"] == 0, figures
    assert figures["applied_twice"] == 0, figures
    assert figures["pending"] == 0, "an orderly stop after settling leaves nothing unconsumed"


def _charge_points(*ids: str) -> str:
    return "".join(f'\n[[charge_points]]\nid = "{cp_id}"\n' for cp_id in ids)


def test_mail_for_a_charge_point_configured_away_goes_to_the_dead_letters(tmp_path: Path) -> None:
    """The probe node has one ledger per configured charge point (probe/cps/<id>), as the broker
    has a ChargePoint and a CloudLink. The site stops with durable mail still in the mailbox
    (committed, not yet consumed: a kill -9 or a stop at the wrong moment) for CP-1 and CP-2, and
    for probe/later/X, where an actor would start later (as an auto-registered charge point's do
    when it connects). Restarted with CP-2 removed from the site file, CP-2's mail stayed in the
    mailbox table for ever: no actor at that path would ever read it, and nothing said so. It now
    goes to the dead letters at the node's start, with a reason naming the path, one WARNING with
    the count per path; CP-1's is consumed, and probe/later/X's is kept for its actor."""
    site = ProbeSite(tmp_path, tables=_charge_points("CP-1", "CP-2"))
    site.start()
    assert site.terminate() == 0, site.log_text()
    site.cleanup()
    left = {"probe/cps/CP-1": [11], "probe/cps/CP-2": [21, 22], "probe/later/X": [31]}
    store = Store(tmp_path / "var" / "probe")
    try:
        store.write_now(
            [
                (
                    "put",
                    "mailbox",
                    mailbox_key(path, store.next_id()),
                    b"\x00" + encode(Record(msg_id=i)),
                )
                for path, ids in left.items()
                for i in ids
            ]
        )
    finally:
        store.close()

    site = ProbeSite(tmp_path, log_level="INFO", tables=_charge_points("CP-1"))
    site.start()
    try:
        assert site.node("probe")["dead_letters"] == 2
        assert site.terminate() == 0, site.log_text()
        log = site.log_text()
    finally:
        site.cleanup()
    store = Store(tmp_path / "var" / "probe", readonly=True)
    try:
        consumed = {int.from_bytes(k, "big") for k, _ in store.scan(LEDGER_TABLE)}
        pending = {p: store.count("mailbox", mailbox_prefix(p)) for p in left}
        dead = [orjson.loads(v) for _, v in store.scan("dead")]
    finally:
        store.close()
    assert consumed == {11}, "CP-1's mail reached its ledger"
    assert pending == {"probe/cps/CP-1": 0, "probe/cps/CP-2": 0, "probe/later/X": 1}
    assert sorted(d["path"] for d in dead) == ["probe/cps/CP-2", "probe/cps/CP-2"]
    assert all("probe/cps/CP-2" in d["reason"] for d in dead), dead
    assert sorted(decode(d["message"].encode()).msg_id for d in dead) == [21, 22]
    warnings = re.findall(r"WARNING supervisors.node_runtime: node probe: .*dead letters.*", log)
    assert len(warnings) == 1, log
    assert "probe/cps/CP-2 2" in warnings[0], warnings
    assert "later" not in warnings[0], warnings
