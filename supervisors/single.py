"""``--single-process`` mode: the same node trees on one asyncio loop, without Thespian.

For development and most tests. A node whose actor tree gives up is restarted here, with the same
node restart intensity as the Thespian root applies; beyond it the runtime exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from config.schema import SiteConfig
from drivers import control
from supervisors.intensity import restart_allowed
from supervisors.launcher import (
    DEFAULT_NODES,
    EXIT_NODES_GAVE_UP,
    EXIT_OK,
    EXIT_START_FAILED,
    warn_unmanaged,
)
from supervisors.node_messages import NodeSpec
from supervisors.node_runtime import NodeHistory, NodeRuntime
from supervisors.status_doc import status_document

log = logging.getLogger(__name__)


class SingleProcessSite:
    def __init__(self, config: SiteConfig, nodes: tuple[NodeSpec, ...] = DEFAULT_NODES) -> None:
        self.config = config
        self.nodes = nodes
        self.runtimes: dict[str, NodeRuntime] = {}
        self.histories: dict[str, tuple[float, ...]] = {}
        self.stop_event = asyncio.Event()
        self.gave_up: str | None = None
        self.started_utc = ""
        self._server: asyncio.AbstractServer | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self.unknown_nodes: set[str] = set()

    def _route(self, path: str, msg: object) -> None:
        node = path.split("/", 1)[0]
        runtime = self.runtimes.get(node)
        if runtime is None:
            if node not in self.unknown_nodes:  # once per node, not once per message
                self.unknown_nodes.add(node)
                log.warning("messages for node %r are dropped: this site has no such node", node)
            return
        # Asynchronous like a real hop between nodes: never inside the sender's handler.
        asyncio.get_running_loop().call_soon(runtime.deliver, path, msg)

    def _runtime(self, spec: NodeSpec, history: NodeHistory) -> NodeRuntime:
        return NodeRuntime(
            name=spec.name,
            kind=spec.kind,
            config=self.config,
            storage_dir=self.config.storage_dir,
            outbound=self._route,
            history=history,
        )

    async def start(self) -> None:
        self.started_utc = datetime.now(UTC).isoformat(timespec="milliseconds")
        for spec in self.nodes:
            runtime = self._runtime(spec, NodeHistory())
            try:
                await runtime.start()
            except Exception:
                for started in reversed(list(self.runtimes.values())):
                    await started.stop(self.config.runtime.shutdown_timeout_s)
                raise
            self.runtimes[spec.name] = runtime
            self._watchers.append(asyncio.get_running_loop().create_task(self._watch(spec)))
        self._server = await asyncio.start_unix_server(
            self._control, sock=control.bind_control_socket(self.config.control_socket)
        )

    async def _watch(self, spec: NodeSpec) -> None:
        restarts = 0
        while True:
            runtime = self.runtimes[spec.name]
            reason = await runtime.terminated
            if self.stop_event.is_set():
                return
            await runtime.stop(self.config.runtime.shutdown_timeout_s)
            policy = self.config.runtime
            allowed, self.histories[spec.name] = restart_allowed(
                self.histories.get(spec.name, ()),
                time.monotonic(),
                max_restarts=policy.node_max_restarts,
                period_s=policy.node_restart_period_s,
            )
            failure = f"actor tree ended: {reason}"
            if not allowed:
                self.gave_up = f"node {spec.name}: {failure}"
                self.stop_event.set()
                return
            restarts += 1
            history = NodeHistory(
                restarts=restarts,
                last_failure=failure,
                last_failure_utc=datetime.now(UTC).isoformat(timespec="milliseconds"),
            )
            replacement = self._runtime(spec, history)
            await replacement.start()
            self.runtimes[spec.name] = replacement

    async def status(self) -> dict[str, Any]:
        nodes = []
        for spec in self.nodes:
            runtime = self.runtimes.get(spec.name)
            if runtime is None:
                continue
            node = await runtime.status()
            node["state"] = "running"
            node["answered"] = True
            node.setdefault("up_since_utc", node.get("started_utc"))  # as in nodes mode
            nodes.append(node)
        return status_document(
            config=self.config,
            mode="single-process",
            nodes=nodes,
            launcher={"pid": os.getpid(), "started_utc": self.started_utc},
        )

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 2.0)
            request = orjson.loads(line or b"{}")
            if not isinstance(request, dict) or request.get("cmd") != "status":
                answer: dict[str, Any] = {"error": "unknown command"}
            else:
                answer = await self.status()
            writer.write(control.encode_answer(answer))
            await writer.drain()
        except Exception as exc:
            log.warning("control request failed: %r", exc)
        finally:
            writer.close()

    async def stop(self) -> None:
        self.stop_event.set()
        for task in self._watchers:
            task.cancel()
        if self._server is not None:
            self._server.close()
            self.config.control_socket.unlink(missing_ok=True)
        for runtime in reversed(list(self.runtimes.values())):
            await runtime.stop(self.config.runtime.shutdown_timeout_s)


async def run_single(config: SiteConfig, nodes: tuple[NodeSpec, ...] = DEFAULT_NODES) -> int:
    warn_unmanaged(config)
    site = SingleProcessSite(config, nodes)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, site.stop_event.set)
    try:
        await site.start()
    except Exception:
        log.exception("site did not start")
        return EXIT_START_FAILED
    log.info("site %s up (single process), control %s", config.name, config.control_socket)
    await site.stop_event.wait()
    with contextlib.suppress(Exception):
        await site.stop()
    if site.gave_up:
        log.critical("node restarts exhausted (%s): exiting for systemd", site.gave_up)
        return EXIT_NODES_GAVE_UP
    return EXIT_OK
