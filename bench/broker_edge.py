"""The edge and the cloud as processes for bench/broker.py.

:class:`EdgeProcess`: ``python run.py --config FILE`` in nodes mode (launcher, Thespian admin,
broker and energy nodes), a site that accepts any charge point id (``auto_register``), asked for
its status over the control socket. :class:`CloudProcess`: ``bench/broker_cloud.py``.
``extra_toml`` appends sections to the site (bench/energy.py adds a meter, a grid limit, the
allocation and its charge points).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

from actors.shards import broker_node
from drivers import control
from drivers.ports import free_tcp_port

REPO = Path(__file__).resolve().parents[1]


def site_text(
    storage: Path,
    port: int,
    cloud_url: str,
    extra_toml: str = "",
    cpu_affinity: str = "off",
    broker_shards: int = 1,
    realtime_nodes: tuple[str, ...] = (),
) -> str:
    # Reconnects capped at 2 s: the replay figure is the replay, not a reconnect backoff grown
    # during the outage. No websocket pings: they would add traffic the figures do not ask for.
    return f"""
[site]
name = "bench-broker"
storage_dir = "{storage}"

[runtime]
mode = "nodes"
log_level = "WARNING"
cpu_affinity = "{cpu_affinity}"
broker_shards = {broker_shards}
realtime_nodes = [{", ".join(f'"{n}"' for n in realtime_nodes)}]

[listener]
port = {port}
auto_register = true
ping_interval_s = 0

[cloud]
url = "{cloud_url}"
reconnect_min_s = 0.2
reconnect_max_s = 2
ping_interval_s = 0
answer_deadline_s = 10
call_timeout_s = 30

[authorization]
unknown_id_offline = "accept"
{extra_toml}"""


class EdgeProcess:
    def __init__(
        self,
        cloud_url: str,
        *,
        extra_toml: str = "",
        prefix: str = "bench-broker-",
        cpu_affinity: str = "off",
        broker_shards: int = 1,
        realtime_nodes: tuple[str, ...] = (),
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.port = free_tcp_port()
        self.config = self.dir / "site.toml"
        self.config.write_text(
            site_text(
                self.dir / "var",
                self.port,
                cloud_url,
                extra_toml,
                cpu_affinity,
                broker_shards,
                realtime_nodes,
            )
        )
        # The broker nodes (actors/shards.py): the first listens on the port.
        self.brokers = [broker_node(k) for k in range(broker_shards)]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def _spawn(self) -> subprocess.Popen[bytes]:
        paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        with open(self.dir / "run.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "run.py", "--config", str(self.config)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    async def start(self, timeout_s: float = 60.0) -> None:
        self.proc = await asyncio.to_thread(self._spawn)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any([await self.node(name) is None for name in self.brokers]):
            if self.proc.poll() is not None:
                raise RuntimeError(f"run.py exited with {self.proc.returncode}: {self.log()}")
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"the broker nodes did not answer in {timeout_s:g} s")
            await asyncio.sleep(0.1)

    def log(self) -> str:
        return (self.dir / "run.log").read_text(errors="replace")[-3000:]

    async def broker(self, timeout_s: float = 5.0) -> dict[str, Any] | None:
        return await self.node("broker", timeout_s)

    async def node(self, name: str, timeout_s: float = 5.0) -> dict[str, Any] | None:
        """The node's part of ``run.py status --json`` (None if it does not answer)."""
        try:
            doc = await asyncio.to_thread(
                control.ask,
                self.dir / "var" / "control.sock",
                {"cmd": "status"},
                timeout_s=timeout_s,
            )
        except control.ControlUnavailable:
            return None
        node = next((n for n in doc.get("nodes", []) if n.get("name") == name), None)
        if node is None or not node.get("answered"):
            return None
        return dict(node)

    async def site(self) -> dict[str, Any]:
        node = await self.broker()
        if node is None:
            raise RuntimeError("the broker node does not answer")
        return dict(node["site"])

    async def rss_kb(self) -> tuple[float, float]:
        """(RSS, USS) of the broker node process, in KB."""
        node = await self.broker()
        if node is None:
            raise RuntimeError("the broker node does not answer")
        info = psutil.Process(int(node["pid"])).memory_full_info()
        return info.rss / 1024.0, info.uss / 1024.0

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                for p in psutil.Process(self.proc.pid).children(recursive=True):
                    p.kill()
                self.proc.kill()


class CloudProcess:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "bench" / "broker_cloud.py"),
            "--kind",
            self.kind,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.port = int((await self._line())["port"])

    async def _line(self) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"the {self.kind} cloud process ended")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def command(self, cmd: str) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._line()

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"quit\n")
            await self.proc.stdin.drain()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
