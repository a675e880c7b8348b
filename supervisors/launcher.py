"""The launcher of the node layer (``run.py`` in the default "nodes" mode).

It starts a Thespian ``multiprocTCPBase`` system on a unique admin port with every socket on
loopback, creates the root supervisor, which creates the nodes, and then watches: it pings the root
every second and, if the admin is gone, tears everything down and exits non-zero so systemd restarts
the whole runtime (the admin cannot be restarted in place): it watches the admin's and the root's
processes through pidfds (messages from the launcher reach the root directly, so a dead admin does
not show in a ping), and a root that stops answering is the same as gone. It serves the control
socket for
``run.py status``. SIGTERM: orderly stop (nodes in reverse start order, each committing what it
acknowledged; one that does not stop by its deadline is killed), exit 0, no process left behind.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import selectors
import signal
import socket
import time
from dataclasses import replace
from typing import Any

from config.schema import RuntimeConfig, SiteConfig
from drivers import control
from drivers.ports import free_tcp_port
from drivers.thespian import hygiene
from supervisors import affinity, reshard
from supervisors.node_messages import (
    NodePolicy,
    NodeSpec,
    Ping,
    Pong,
    SiteStarted,
    SiteStatus,
    SiteStopped,
    StartSite,
    StatusQuery,
    StopSite,
    stop_deadline_s,
)
from supervisors.status_doc import status_document

log = logging.getLogger(__name__)


def _specs(runtime: RuntimeConfig) -> tuple[NodeSpec, ...]:
    return tuple(NodeSpec(name=name, kind=kind) for name, kind in runtime.nodes())


DEFAULT_NODES = _specs(RuntimeConfig())


def site_nodes(config: SiteConfig) -> tuple[NodeSpec, ...]:
    """The site's nodes (:meth:`RuntimeConfig.nodes`, which the site file's ``realtime_nodes``
    were checked against): the energy node and ``[runtime] broker_shards`` broker nodes
    (``broker``, ``broker-1``, ...: actors/shards.py)."""
    return _specs(config.runtime)


PING_INTERVAL_S = 1.0
PING_TIMEOUT_S = 2.0
MISSED_PINGS_BEFORE_TEARDOWN = 2

EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_ADMIN_LOST = 2
EXIT_NODES_GAVE_UP = 3

# How long the launcher waits for the site's start: at least this, and node_start_timeout_s
# with this margin (the root's deadline, the kill, the exit report) if longer.
START_WAIT_MIN_S = 60.0
START_WAIT_MARGIN_S = 10.0


class NodeLauncher:
    def __init__(self, config: SiteConfig, nodes: tuple[NodeSpec, ...] | None = None) -> None:
        self.config = config
        self.nodes = site_nodes(config) if nodes is None else nodes
        self.stop_requested = False
        self.started_utc = ""
        self.admin_port = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_requested = True
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _stopping(self) -> bool:
        return self.stop_requested  # set by the signal handler

    def run(self) -> int:
        from thespian.actors import ActorSystem

        from supervisors.nodes import RootSupervisor

        cfg = self.config
        cfg.storage_dir.mkdir(parents=True, exist_ok=True)
        # Before anything forks: the stores are opened (read-only unless a key moves) and closed.
        refused = reshard.refusal(cfg.storage_dir, cfg.runtime.broker_shards)
        if refused is not None:
            log.error("not starting: %s", refused)
            return EXIT_START_FAILED
        for moved in reshard.move_keys(cfg.storage_dir, cfg.runtime.broker_shards):
            log.warning("broker_shards = %d: %s", cfg.runtime.broker_shards, moved)
        hygiene.force_loopback_bind()
        hygiene.configure_thespian_logfile(cfg.storage_dir)
        hygiene.become_subreaper()
        hygiene.die_with_launcher()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.admin_port = cfg.runtime.admin_port or free_tcp_port(admin=True)
        self.nodes = affinity.assign(self.nodes, affinity.current(), cfg.runtime.cpu_affinity)
        # The site file's names were checked when it was loaded; ``nodes`` may be a test's own.
        names = {n.name for n in self.nodes}
        unknown = [n for n in cfg.runtime.realtime_nodes if n not in names]
        if unknown:
            log.error(
                "not starting: [runtime] realtime_nodes names %s, not a node of this site (%s)",
                ", ".join(map(repr, unknown)),
                ", ".join(sorted(names)),
            )
            return EXIT_START_FAILED
        self.nodes = tuple(
            replace(n, realtime=n.name in cfg.runtime.realtime_nodes) for n in self.nodes
        )
        for node in self.nodes:
            if node.cpus:
                log.info("node %s runs on CPU %s", node.name, ",".join(map(str, node.cpus)))
        warn_unmanaged(cfg)
        self.started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # Children fork from here: freeze what is already allocated so copy-on-write pages stay
        # shared (measured: 15 MB per process without, 4 MB with).
        gc.freeze()
        asys = ActorSystem(
            "multiprocTCPBase",
            {"Admin Port": self.admin_port, "Process Startup Method": "fork"},
        )
        listener: socket.socket | None = None
        # The root answers once every node is up, or one failed: at the latest when a start
        # deadline ends a node (node_start_timeout_s) and its exit is reported.
        start_wait_s = max(START_WAIT_MIN_S, cfg.runtime.node_start_timeout_s + START_WAIT_MARGIN_S)
        try:
            root = asys.createActor(RootSupervisor)
            answer = asys.ask(
                root,
                StartSite(
                    nodes=self.nodes,
                    config=cfg,
                    storage_dir=str(cfg.storage_dir),
                    policy=NodePolicy(
                        max_restarts=cfg.runtime.node_max_restarts,
                        period_s=cfg.runtime.node_restart_period_s,
                        start_timeout_s=cfg.runtime.node_start_timeout_s,
                    ),
                    log_level=logging.getLevelName(cfg.runtime.log_level),
                ),
                start_wait_s,
            )
            if not isinstance(answer, SiteStarted) or not answer.ok:
                error = (
                    answer.error
                    if isinstance(answer, SiteStarted)
                    else f"no answer in {start_wait_s:g} s"
                )
                log.error("site did not start: %s", error)
                return EXIT_START_FAILED
            listener = control.bind_control_socket(cfg.control_socket)
            log.info(
                "site %s up: nodes %s, admin port %d (loopback), control %s",
                cfg.name,
                ", ".join(n.name for n in self.nodes),
                self.admin_port,
                cfg.control_socket,
            )
            code = self._serve(asys, root, listener)
            if code == EXIT_OK:
                # The root gives each node its deadline and kills it then: the whole stop
                # ends within the nodes' deadlines, this margin for the root's own messages.
                stopped = asys.ask(
                    root,
                    StopSite(timeout_s=cfg.runtime.shutdown_timeout_s),
                    stop_deadline_s(cfg.runtime.shutdown_timeout_s) * len(self.nodes) + 5,
                )
                if not isinstance(stopped, SiteStopped):
                    log.warning("orderly stop did not complete in time")
            return code
        finally:
            if listener is not None:
                listener.close()
                cfg.control_socket.unlink(missing_ok=True)
            try:
                asys.shutdown()
            except Exception as exc:  # the admin may already be gone
                log.warning("thespian shutdown: %r", exc)
            left = hygiene.stop_descendants()
            if left:
                log.info("stopped what was still running after the shutdown: %s", ", ".join(left))

    def _serve(self, asys: Any, root: Any, listener: socket.socket) -> int:
        sel = selectors.DefaultSelector()
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ, "control")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        first = asys.ask(root, Ping(), PING_TIMEOUT_S)
        if not isinstance(first, Pong):
            log.critical("root supervisor does not answer: tearing the runtime down")
            return EXIT_ADMIN_LOST
        watched = []
        for role, pid in (("admin", first.admin_pid), ("root", first.root_pid)):
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                log.critical(
                    "the Thespian %s (pid %d) is gone: tearing the runtime down", role, pid
                )
                return EXIT_ADMIN_LOST
            watched.append(fd)
            sel.register(fd, selectors.EVENT_READ, role)
        try:
            return self._watch(asys, root, listener, sel)
        finally:
            for fd in watched:
                os.close(fd)

    def _watch(
        self, asys: Any, root: Any, listener: socket.socket, sel: selectors.BaseSelector
    ) -> int:
        missed = 0
        next_ping = time.monotonic() + PING_INTERVAL_S
        while not self._stopping():
            for key, _ in sel.select(timeout=max(0.0, next_ping - time.monotonic())):
                if key.data == "control":
                    self._handle_control(asys, root, listener)
                elif key.data == "wake":
                    os.read(self._wake_r, 64)
                else:
                    log.critical("the Thespian %s is gone: tearing the runtime down", key.data)
                    return EXIT_ADMIN_LOST
            if self._stopping():
                break
            if time.monotonic() >= next_ping:
                next_ping = time.monotonic() + PING_INTERVAL_S
                hygiene.reap_children()
                pong = asys.ask(root, Ping(), PING_TIMEOUT_S)
                if not isinstance(pong, Pong):
                    missed += 1
                    log.error("root supervisor did not answer a ping (%d in a row)", missed)
                    if missed >= MISSED_PINGS_BEFORE_TEARDOWN:
                        log.critical("the Thespian admin is gone: tearing the runtime down")
                        return EXIT_ADMIN_LOST
                    continue
                missed = 0
                if pong.gave_up:
                    log.critical("node restarts exhausted (%s): exiting for systemd", pong.gave_up)
                    return EXIT_NODES_GAVE_UP
        log.info("SIGTERM: stopping the site")
        return EXIT_OK

    def _handle_control(self, asys: Any, root: Any, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        with conn:
            try:
                request = control.read_request(conn)
                if request.get("cmd") != "status":
                    answer: dict[str, Any] = {"error": f"unknown command {request.get('cmd')!r}"}
                else:
                    answer = self._status(asys, root)
                conn.sendall(control.encode_answer(answer))
            except Exception as exc:
                log.warning("control request failed: %r", exc)

    def _status(self, asys: Any, root: Any) -> dict[str, Any]:
        timeout = self.config.runtime.status_timeout_s
        reply = asys.ask(root, StatusQuery(timeout_s=timeout * 0.7), timeout)
        nodes = reply.nodes if isinstance(reply, SiteStatus) else []
        return status_document(
            config=self.config,
            mode="nodes",
            nodes=nodes,
            launcher={
                "pid": os.getpid(),
                "root_pid": reply.root_pid if isinstance(reply, SiteStatus) else None,
                "admin_port": self.admin_port,
                "started_utc": self.started_utc,
                "root_answered": isinstance(reply, SiteStatus),
            },
        )


def warn_unmanaged(cfg: SiteConfig) -> None:
    """A site file without load management says so in the start log (either mode)."""
    if cfg.energy is None and cfg.charge_points:
        log.warning(
            "no load management: %s has no [[meters]], [[feeders]], [[grid_limits]] or "
            "[allocation]; no charging profiles are installed and the charge points' "
            "max_current_a, priority and phases are not used",
            cfg.source,
        )
