"""Nodes on Thespian: the root supervisor and the node actor (each an OS process).

The root supervisor runs in its own process under the Thespian admin. It creates one node actor per
configured node, restarts a node whose process dies (kill -9 included: Thespian turns SIGCHLD into
``ChildActorExited``) and sends it the same configuration plus its history, so the node re-creates
its actor tree from configuration and its LMDB store. Messages between nodes go through the root:
they are few and batched, and the root always knows the current address of a restarted node.

A node actor owns an asyncio thread that runs a :class:`NodeRuntime`. Rules (ARCHITECTURE.md): it
creates no Thespian children, and its asyncio thread never calls Thespian: replies travel through a
:class:`PipeBridge` that this actor watches with ``ThespianWatch``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from thespian.actors import (
    Actor,
    ActorExitRequest,
    ChildActorExited,
    ThespianWatch,
    WakeupMessage,
    WatchMessage,
)

from drivers.thespian import hygiene
from drivers.thespian.bridge import PipeBridge
from drivers.thespian.logs import install_process_logging
from supervisors import affinity, priority
from supervisors.intensity import restart_allowed
from supervisors.node_links import NodeLinks
from supervisors.node_messages import (
    NodeFailed,
    NodePolicy,
    NodeSpec,
    NodeStarting,
    NodeStatusQuery,
    NodeStatusReply,
    NodeStopped,
    NodeUp,
    Ping,
    Pong,
    Route,
    Routes,
    SiteStarted,
    SiteStatus,
    SiteStopped,
    StartNode,
    StartSite,
    StatusQuery,
    StopNode,
    StopSite,
    stop_deadline_s,
    transient,
)
from supervisors.node_runtime import NodeHistory, NodeRuntime

log = logging.getLogger(__name__)

# Held for a node that is down: at most this many transient messages (the oldest go first) ...
HELD_TRANSIENT_MAX = 1000
# ... and at most this many in all, a bound for memory only: the others are few (cloud pushes,
# rules, local lists), and if it is ever reached they go too, each drop logged as an ERROR.
HELD_MAX = 100_000
KEPT_DROP_LOG_EVERY_S = 10.0


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _counts(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counter.most_common())


# -- the node actor ------------------------------------------------------------------------------
class NodeActor(Actor):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.bridge: PipeBridge | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runtime: NodeRuntime | None = None
        self.root: Any = None
        self.name = "?"
        self.stopping = False

    def receiveMessage(self, msg: Any, sender: Any) -> Any:
        try:
            if isinstance(msg, WatchMessage):
                self._pump()
            elif isinstance(msg, StartNode):
                self._start(msg, sender)
            elif isinstance(msg, Route):
                self._on_loop(self._deliver, msg.path, msg.message)
            elif isinstance(msg, Routes):
                for route in msg.routes:
                    self._on_loop(self._deliver, route.path, route.message)
            elif isinstance(msg, NodeStatusQuery):
                self._on_loop(self._status, msg.request_id, sender)
            elif isinstance(msg, StopNode):
                self._on_loop(self._stop, msg.timeout_s, sender)
            elif isinstance(msg, ActorExitRequest):
                self._stop_blocking()
        except Exception:
            log.exception("node %s: failed to handle %s", self.name, type(msg).__name__)
        return ThespianWatch([self.bridge.fileno]) if self.bridge is not None else None

    def _start(self, msg: StartNode, sender: Any) -> None:
        if self.bridge is not None:
            return
        self.name = msg.spec.name
        self.root = sender
        self.send(sender, NodeStarting(name=self.name, pid=os.getpid()))
        hygiene.ignore_terminal_signals()
        install_process_logging(f"node={self.name} pid={os.getpid()}", msg.log_level)
        self.bridge = PipeBridge()
        ready = threading.Event()
        thread = threading.Thread(
            target=self._thread_main, args=(msg, ready), name=f"node-{self.name}", daemon=True
        )
        thread.start()
        ready.wait(10)

    def _thread_main(self, msg: StartNode, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        ready.set()
        try:
            loop.run_until_complete(self._main(msg))
        finally:
            loop.close()

    async def _main(self, msg: StartNode) -> None:
        assert self.bridge is not None
        self.stop_done = asyncio.Event()
        links = NodeLinks(
            msg.spec.name,
            Path(msg.storage_dir),
            deliver=lambda path, message: runtime.deliver(path, message),
            fallback=lambda path, message: self._post(self.root, Route(path=path, message=message)),
        )
        runtime = NodeRuntime(
            name=msg.spec.name,
            kind=msg.spec.kind,
            config=msg.config,
            storage_dir=Path(msg.storage_dir),
            outbound=links.send,
            history=msg.history,
            links=links,
        )
        self.runtime = runtime
        try:
            await runtime.start()
            await links.start()  # after the tree: what arrives has somewhere to go
        except Exception as exc:
            log.exception("node %s failed to start", self.name)
            self._fail(f"start failed: {type(exc).__name__}: {exc}")
            return
        if msg.spec.cpus:  # the loop's thread only, once the store's writer has started
            affinity.pin_this_thread(msg.spec.cpus)
        if msg.spec.realtime:  # the same thread
            priority.realtime_this_thread(self.name)
        self._post(self.root, NodeUp(name=self.name, pid=os.getpid()))
        reason = await runtime.terminated
        if self.stopping:  # an orderly stop: let _stop finish (it answers the root)
            await self.stop_done.wait()
            return
        # The node's root supervisor gave up: escalate to the Thespian root by exiting.
        self._fail(f"actor tree ended: {reason}")

    def _fail(self, reason: str) -> None:
        assert self.bridge is not None
        self._post(self.root, NodeFailed(name=self.name, reason=reason))
        self._pump()  # not our thread, but the process is about to end; best effort
        time.sleep(0.2)
        os._exit(70)

    def _post(self, target: Any, message: Any) -> None:
        if self.bridge is not None:
            self.bridge.post(target, message)

    def _pump(self) -> None:
        if self.bridge is None:
            return
        for target, message in self.bridge.drain():
            self.send(target, message)

    def _on_loop(self, fn: Any, *args: Any) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _deliver(self, path: str, message: Any) -> None:
        if self.runtime is not None:
            self.runtime.deliver(path, message)

    def _status(self, request_id: int, requester: Any) -> None:
        runtime = self.runtime
        if runtime is None:
            return

        async def answer() -> None:
            status = await runtime.status()
            self._post(
                requester, NodeStatusReply(request_id=request_id, name=self.name, status=status)
            )

        asyncio.get_running_loop().create_task(answer())

    def _stop(self, timeout_s: float, requester: Any) -> None:
        runtime = self.runtime

        async def stop() -> None:
            self.stopping = True
            self.runtime = None
            try:
                if runtime is not None:
                    await runtime.stop(timeout_s)
            finally:
                self._post(requester, NodeStopped(name=self.name))
                self.stop_done.set()

        asyncio.get_running_loop().create_task(stop())

    def _stop_blocking(self) -> None:
        """Thespian is ending this actor: stop the tree so nothing acknowledged is lost."""
        runtime, loop = self.runtime, self.loop
        if runtime is None or loop is None or loop.is_closed():
            return
        self.stopping = True
        self.runtime = None
        future = asyncio.run_coroutine_threadsafe(runtime.stop(5.0), loop)
        try:
            future.result(8.0)
        except Exception:
            log.exception("node %s: stop on exit request failed", self.name)


# -- the root supervisor ---------------------------------------------------------------------------
@dataclass
class _Slot:
    spec: NodeSpec
    address: Any = None
    pid: int | None = None
    state: str = "starting"  # starting, running, restarting, stopping, stopped, failed
    restarts: int = 0
    history: tuple[float, ...] = ()
    last_failure: str | None = None
    last_failure_utc: str | None = None
    up_since_utc: str | None = None
    pending_failure: str | None = None
    launches: int = 0  # which launch a start deadline is for
    held: collections.deque[Route] = field(default_factory=collections.deque)  # see _hold
    held_transient: int = 0
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)  # by type
    kept_drop_logged_s: float = 0.0


@dataclass(frozen=True, slots=True)
class _StopDeadline:
    """The wakeup payload of a node's stop deadline (which launch it is for)."""

    name: str
    launch: int


@dataclass
class _StatusRequest:
    requester: Any
    waiting: set[str]
    replies: dict[str, dict[str, Any]]


class RootSupervisor(Actor):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.slots: list[_Slot] = []
        self.site: StartSite | None = None
        self.starter: Any = None
        self.stopper: Any = None
        self.stop_timeout_s = 15.0
        self.stopped: list[str] = []
        self.gave_up: str | None = None
        self.requests: dict[int, _StatusRequest] = {}
        self.unknown_nodes: set[str] = set()
        self.ids = itertools.count(1)

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        try:
            self._dispatch(msg, sender)
        except Exception:
            log.exception("root supervisor: failed to handle %s", type(msg).__name__)

    def _dispatch(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, StartSite):
            hygiene.ignore_terminal_signals()
            install_process_logging(f"root pid={os.getpid()}", msg.log_level)
            self.site, self.starter = msg, sender
            for spec in msg.nodes:
                slot = _Slot(spec=spec)
                self.slots.append(slot)
                self._launch(slot)
        elif isinstance(msg, NodeStarting):
            starting = self._by_name(msg.name)
            if starting is not None and starting.state in ("starting", "restarting"):
                starting.pid = msg.pid
        elif isinstance(msg, NodeUp):
            self._node_up(msg)
        elif isinstance(msg, NodeFailed):
            failed = self._by_name(msg.name)
            if failed is not None:
                failed.pending_failure = msg.reason
        elif isinstance(msg, ChildActorExited):
            self._child_exited(msg.childAddress)
        elif isinstance(msg, Route):
            self._route(msg)
        elif isinstance(msg, Ping):
            self.send(sender, self._pong())
        elif isinstance(msg, StatusQuery):
            self._status_query(msg, sender)
        elif isinstance(msg, NodeStatusReply):
            self._status_reply(msg)
        elif isinstance(msg, WakeupMessage) and isinstance(msg.payload, int):
            self._finish_status(msg.payload)
        elif isinstance(msg, WakeupMessage) and isinstance(msg.payload, tuple):
            self._start_deadline(*msg.payload)
        elif isinstance(msg, WakeupMessage) and isinstance(msg.payload, _StopDeadline):
            self._stop_deadline(msg.payload)
        elif isinstance(msg, StopSite):
            self._stop_site(msg, sender)
        elif isinstance(msg, NodeStopped):
            self._node_stopped(msg)

    # -- lifecycle of nodes -----------------------------------------------------------------------
    def _launch(self, slot: _Slot) -> None:
        assert self.site is not None
        slot.launches += 1
        slot.address = self.createActor(NodeActor)
        self.wakeupAfter(
            timedelta(seconds=self.site.policy.start_timeout_s),
            payload=(slot.spec.name, slot.launches),
        )
        self.send(
            slot.address,
            StartNode(
                spec=slot.spec,
                config=self.site.config,
                storage_dir=self.site.storage_dir,
                history=NodeHistory(
                    restarts=slot.restarts,
                    last_failure=slot.last_failure,
                    last_failure_utc=slot.last_failure_utc,
                ),
                log_level=self.site.log_level,
            ),
        )

    def _start_deadline(self, name: str, launch: int) -> None:
        """A node not up by now is ended; its exit is then a failure like any other."""
        slot = self._by_name(name)
        if slot is None or slot.launches != launch or slot.state not in ("starting", "restarting"):
            return
        assert self.site is not None
        reason = f"did not start within {self.site.policy.start_timeout_s:g} s"
        if not self._kill(slot, reason, "ending it"):
            self.send(slot.address, ActorExitRequest())

    def _kill(self, slot: _Slot, reason: str, action: str = "killing it") -> bool:
        """A node past its deadline (its loop may be blocked, its process frozen: no orderly
        way): SIGKILL by its pid, logged as an ERROR with ``reason``, which its exit report then
        names as its failure. False: no process to kill (it never said its pid, or it is gone
        already: Thespian's exit report is on its way)."""
        log.error("node %s (pid %s) %s: %s", slot.spec.name, slot.pid, reason, action)
        slot.pending_failure = reason
        if slot.pid is None:
            return False
        try:
            os.kill(slot.pid, signal.SIGKILL)  # SIGKILL ends a SIGSTOPped process too
        except ProcessLookupError:
            return False
        return True

    def _by_name(self, name: str) -> _Slot | None:
        return next((s for s in self.slots if s.spec.name == name), None)

    def _node_up(self, msg: NodeUp) -> None:
        slot = self._by_name(msg.name)
        if slot is None:
            return
        if slot.state in ("stopping", "stopped"):
            # Asked to stop while it started (the site stops as it restarts): it stays so, and
            # its NodeStopped (or exit, or stop deadline, for which its pid) moves the stop on.
            # Marked running, its NodeStopped was ignored and the stop hung.
            slot.pid = msg.pid
            return
        slot.pid, slot.state, slot.up_since_utc = msg.pid, "running", _utc_now()
        delivered = len(slot.held)
        if slot.held:
            self.send(slot.address, Routes(routes=tuple(slot.held)))
            slot.held.clear()
        slot.held_transient = 0
        if slot.dropped:
            log.warning(
                "node %s is up: %d held messages delivered, %d dropped while it was down (%s)",
                slot.spec.name,
                delivered,
                sum(slot.dropped.values()),
                _counts(slot.dropped),
            )
            slot.dropped.clear()
        if self.starter is not None and all(s.state == "running" for s in self.slots):
            self.send(self.starter, SiteStarted(ok=True))
            self.starter = None

    def _child_exited(self, address: Any) -> None:
        slot = next((s for s in self.slots if s.address == address), None)
        if slot is None:
            return
        try:
            self._exited(slot)
        finally:
            self._no_answer_from(slot.spec.name)

    def _no_answer_from(self, name: str) -> None:
        """A node that exited will not answer the status queries it was asked: they end without
        it now, not at their timeout, and show its slot as it is after the exit (restarting),
        where the end of the wait showed the restarted node, 'running', as not answering."""
        for request_id, request in list(self.requests.items()):
            if name in request.waiting:
                request.waiting.discard(name)
                if not request.waiting:
                    self._finish_status(request_id)

    def _exited(self, slot: _Slot) -> None:
        if slot.state == "stopped":
            return
        reason = slot.pending_failure or "process exited without notice (killed?)"
        slot.pending_failure = None
        if slot.state == "stopping" or self.stopper is not None:
            # The site is stopping: no restart (OTP), and if this node was the one stopping,
            # the stop goes on to the next one now: its NodeStopped will never come.
            current = slot.state == "stopping"
            log.warning(
                "node %s (pid %s) exited while the site stops: %s", slot.spec.name, slot.pid, reason
            )
            slot.state, slot.pid = "stopped", None
            if current:
                self._stop_next()
            return
        slot.last_failure, slot.last_failure_utc = reason, _utc_now()
        log.warning("node %s (pid %s) exited: %s", slot.spec.name, slot.pid, reason)
        assert self.site is not None
        policy: NodePolicy = self.site.policy
        allowed, slot.history = restart_allowed(
            slot.history,
            time.monotonic(),
            max_restarts=policy.max_restarts,
            period_s=policy.period_s,
        )
        initial_start = slot.state == "starting" and slot.restarts == 0 and self.starter is not None
        if not allowed or initial_start:  # a site starts whole or not at all (like OTP)
            slot.state = "failed"
            self.gave_up = f"node {slot.spec.name}: {reason}"
            if self.starter is not None:
                self.send(self.starter, SiteStarted(ok=False, error=self.gave_up))
                self.starter = None
            return
        slot.restarts += 1
        slot.state, slot.pid = "restarting", None
        self._launch(slot)

    def _route(self, msg: Route) -> None:
        node = msg.path.split("/", 1)[0]
        slot = self._by_name(node)
        if slot is None:
            if node not in self.unknown_nodes:  # once per node, not once per message
                self.unknown_nodes.add(node)
                log.warning("messages for node %r are dropped: this site has no such node", node)
        elif slot.state == "running":
            self.send(slot.address, msg)
        else:
            self._hold(slot, msg)  # delivered when the node is back up

    def _hold(self, slot: _Slot, msg: Route) -> None:
        """Hold ``msg`` for a node that is down. Beyond HELD_TRANSIENT_MAX transient messages,
        the oldest transient one goes; what is not transient stays (it was dropped like the
        rest, the oldest first and unlogged: a cloud grid limit the broker had answered
        Accepted, held while the energy node restarted, went first)."""
        slot.held.append(msg)
        if transient(msg.message):
            slot.held_transient += 1
            if slot.held_transient > HELD_TRANSIENT_MAX:
                i = next(i for i, r in enumerate(slot.held) if transient(r.message))
                oldest = slot.held[i]
                del slot.held[i]
                slot.held_transient -= 1
                self._dropped(slot, oldest)
        if len(slot.held) > HELD_MAX:
            oldest = slot.held.popleft()
            slot.held_transient -= transient(oldest.message)
            self._dropped(slot, oldest)

    def _dropped(self, slot: _Slot, route: Route) -> None:
        kind = type(route.message).__name__
        first = not slot.dropped
        slot.dropped[kind] += 1
        if not transient(route.message):
            now = time.monotonic()
            if now - slot.kept_drop_logged_s >= KEPT_DROP_LOG_EVERY_S:
                slot.kept_drop_logged_s = now
                log.error(
                    "node %s is down and %d messages are held for it: dropping the oldest, "
                    "%s for %s (dropped so far: %s)",
                    slot.spec.name,
                    HELD_MAX,
                    kind,
                    route.path,
                    _counts(slot.dropped),
                )
        elif first:
            log.warning(
                "node %s is down: holding at most %d transient messages for it, dropping the "
                "oldest transient ones from now on (counted when it is back)",
                slot.spec.name,
                HELD_TRANSIENT_MAX,
            )

    def _pong(self) -> Pong:
        return Pong(
            root_pid=os.getpid(),
            admin_pid=os.getppid(),
            nodes={
                s.spec.name: {"pid": s.pid, "state": s.state, "restarts": s.restarts}
                for s in self.slots
            },
            gave_up=self.gave_up,
        )

    # -- status ---------------------------------------------------------------------------------
    def _status_query(self, msg: StatusQuery, sender: Any) -> None:
        request_id = next(self.ids)
        running = [s for s in self.slots if s.state == "running"]
        self.requests[request_id] = _StatusRequest(
            requester=sender, waiting={s.spec.name for s in running}, replies={}
        )
        for slot in running:
            self.send(slot.address, NodeStatusQuery(request_id=request_id))
        if not running:
            self._finish_status(request_id)
        else:
            self.wakeupAfter(timedelta(seconds=msg.timeout_s), payload=request_id)

    def _status_reply(self, msg: NodeStatusReply) -> None:
        request = self.requests.get(msg.request_id)
        if request is None:
            return
        request.replies[msg.name] = msg.status
        request.waiting.discard(msg.name)
        if not request.waiting:
            self._finish_status(msg.request_id)

    def _finish_status(self, request_id: int) -> None:
        request = self.requests.pop(request_id, None)
        if request is None:
            return
        nodes = []
        for slot in self.slots:
            status = request.replies.get(slot.spec.name) or {
                "name": slot.spec.name,
                "kind": slot.spec.kind,
                "pid": slot.pid,
                "tree": [],
                "site": {},
                "answered": False,
            }
            status.update(
                {
                    "state": slot.state,
                    "restarts": slot.restarts,
                    "last_failure": slot.last_failure,
                    "last_failure_utc": slot.last_failure_utc,
                    "up_since_utc": slot.up_since_utc,
                }
            )
            status.setdefault("answered", True)
            nodes.append(status)
        self.send(request.requester, SiteStatus(root_pid=os.getpid(), nodes=nodes))

    # -- orderly stop ----------------------------------------------------------------------------
    def _stop_site(self, msg: StopSite, sender: Any) -> None:
        """Stop nodes one at a time in reverse start order (OTP), each within its timeout: a
        node still there at its deadline (:func:`stop_deadline_s`) is killed, and the next one
        gets its orderly stop."""
        self.stopper, self.stop_timeout_s = sender, msg.timeout_s
        self.stopped = []
        self._stop_next()

    def _stop_next(self) -> None:
        live = [s for s in self.slots if s.state in ("running", "starting", "restarting")]
        if live:
            slot = live[-1]
            slot.state = "stopping"
            log.info("stopping node %s (pid %s)", slot.spec.name, slot.pid)
            self.send(slot.address, StopNode(timeout_s=self.stop_timeout_s))
            self.wakeupAfter(
                timedelta(seconds=stop_deadline_s(self.stop_timeout_s)),
                payload=_StopDeadline(name=slot.spec.name, launch=slot.launches),
            )
        elif self.stopper is not None:
            self.send(self.stopper, SiteStopped(stopped=tuple(self.stopped)))
            self.stopper = None

    def _stop_deadline(self, deadline: _StopDeadline) -> None:
        """A node that has not answered its stop by now (its loop blocked, its process frozen, or
        its StopNode taken before it had a loop) is killed: the root waited for it until the
        launcher's whole wait ran out, and the nodes after it got no orderly stop. Its exit
        report then moves the stop on (:meth:`_exited`)."""
        slot = self._by_name(deadline.name)
        if slot is None or slot.launches != deadline.launch or slot.state != "stopping":
            return
        if self._kill(slot, f"did not stop within {stop_deadline_s(self.stop_timeout_s):g} s"):
            return
        # No process to kill (it never said its pid): end the actor and move on now.
        slot.state, slot.pid = "stopped", None
        self.send(slot.address, ActorExitRequest())
        self._stop_next()

    def _node_stopped(self, msg: NodeStopped) -> None:
        slot = self._by_name(msg.name)
        if slot is None or slot.state != "stopping":
            return  # late: the node's exit already moved the stop on
        slot.state = "stopped"
        self.stopped.append(msg.name)
        self.send(slot.address, ActorExitRequest())
        self._stop_next()
