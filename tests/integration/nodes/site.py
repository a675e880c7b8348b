"""Drive a probe site as a subprocess: start, ask status, kill pieces, stop, account."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from drivers import control
from drivers.ports import free_tcp_port
from tests.helpers import timeout_s, wait_for_sync

REPO = Path(__file__).resolve().parents[3]


def write_config(
    tmp_path: Path,
    *,
    mode: str = "nodes",
    extra: str = "",
    max_restarts: int = 100,
    log_level: str = "WARNING",
    tables: str = "",
) -> Path:
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        f"""
[site]
name = "probe"
storage_dir = "{tmp_path / "var"}"

[runtime]
mode = "{mode}"
log_level = "{log_level}"
node_max_restarts = {max_restarts}
cpu_affinity = "auto"
{extra}
{tables}
"""
    )
    return cfg


@dataclass
class ProbeSite:
    tmp_path: Path
    single_process: bool = False
    port: int = field(default_factory=free_tcp_port)
    proc: subprocess.Popen[bytes] | None = None
    config: Path | None = None
    extra: str = ""  # more [runtime] keys
    realtime_nodes: str = ""  # probe_site.py --realtime=
    max_restarts: int = 100  # [runtime] node_max_restarts
    log_level: str = "WARNING"  # [runtime] log_level (the root's and the nodes' logs)
    tables: str = ""  # more tables after [runtime] ([[charge_points]]: probe.probe_kind)

    @property
    def control_socket(self) -> Path:
        return self.tmp_path / "var" / "control.sock"

    def start(self, *, answer_timeout: float = 30) -> None:
        self.config = write_config(
            self.tmp_path,
            extra=self.extra,
            max_restarts=self.max_restarts,
            log_level=self.log_level,
            tables=self.tables,
        )
        args = [
            sys.executable,
            "-m",
            "tests.integration.nodes.probe_site",
            str(self.config),
            str(self.port),
        ]
        if self.single_process:
            args.append("--single-process")
        if self.realtime_nodes:
            args.append(f"--realtime={self.realtime_nodes}")
        self.log = open(self.tmp_path / "site.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_sync(
            self._answers, timeout=answer_timeout, what="the site to answer on its control socket"
        )

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"site exited with {self.proc.returncode}: {self.log_text()}")
        try:
            doc = self.status()
        except control.ControlUnavailable:
            return False
        nodes = doc["nodes"]
        return len(nodes) == 2 and all(
            n.get("state") == "running" and n.get("answered") for n in nodes
        )

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        return control.ask(self.control_socket, {"cmd": "status"}, timeout_s=timeout)

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.status()["nodes"] if n["name"] == name)

    def processes(self) -> list[psutil.Process]:
        assert self.proc is not None
        me = psutil.Process(self.proc.pid)
        return [me, *me.children(recursive=True)]

    def listening(self) -> list[tuple[int, str, int]]:
        out = []
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        out.append((p.pid, c.laddr.ip, c.laddr.port))
        return out

    def kill_node(self, name: str) -> int:
        pid = int(self.node(name)["pid"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_node_back(self, name: str, old_pid: int, timeout: float = 20) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def back() -> bool:
            try:
                node = self.node(name)
            except (control.ControlUnavailable, StopIteration):  # StopIteration: no root answer
                return False
            if (
                node.get("state") == "running"
                and node.get("answered")
                and node.get("pid") not in (None, old_pid)
            ):
                found.update(node)
                return True
            return False

        wait_for_sync(back, timeout=timeout, what=f"node {name} restarted")
        return found

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s(timeout))

    def log_text(self) -> str:
        return (self.tmp_path / "site.log").read_text(errors="replace")[-4000:]

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for p in self.processes()[::-1]:
                    p.kill()
            self.proc.wait(10)
        if hasattr(self, "log"):
            self.log.close()


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """Pids still alive (not zombies) after ``timeout``."""
    deadline = time.monotonic() + timeout_s(timeout)
    alive = pids
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
