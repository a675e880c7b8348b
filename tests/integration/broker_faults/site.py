"""Site files for broker fault tests, the broker in-process, and the whole runtime as a subprocess.

``site_toml`` writes a site with a ``[listener]``, an optional ``[cloud]`` (timers short enough
for tests) and ``[[charge_points]]`` with their keys. ``start_edge`` runs the broker node in this
process (single-process mode, as ``tests/integration/broker/edge.py``); :class:`NodesRuntime` runs
``python run.py --config FILE`` (nodes mode: launcher, Thespian admin, broker and energy node
processes) and drives it from outside: status over the control socket, SIGKILL of the broker node
or of the launcher, start again on the same storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from config.schema import parse_site
from drivers import control
from supervisors.node_messages import NodeSpec
from supervisors.single import SingleProcessSite
from tests.helpers import timeout_s, wait_for
from tests.integration.broker.edge import Edge
from tests.integration.nodes.site import wait_gone

REPO = Path(__file__).resolve().parents[3]

TEST_CLOUD = {
    "reconnect_min_s": 0.1,
    "reconnect_max_s": 0.5,
    "answer_deadline_s": 2,
    "call_timeout_s": 5,
    "retry_backoff_min_s": 0.1,
    "retry_backoff_max_s": 0.5,
    "linger_s": 30,
}


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()  # a JSON string is a valid TOML basic string
    raise TypeError(f"no TOML form for {value!r} ({type(value).__name__})")


def _table(header: str, keys: Mapping[str, object]) -> str:
    body = "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items())
    return f"{header}\n{body}"


def site_toml(
    tmp_path: Path,
    *,
    mode: str = "single-process",
    port: int = 0,
    cloud_url: str | None = None,
    cloud: Mapping[str, object] | None = None,
    listener: Mapping[str, object] | None = None,
    charge_points: Mapping[str, Mapping[str, object]] | tuple[str, ...] = ("CP1",),
    runtime: Mapping[str, object] | None = None,
    authorization: Mapping[str, object] | None = None,
) -> str:
    parts = [
        _table("[site]", {"name": "faults", "storage_dir": str(tmp_path / "var")}),
        _table(
            "[runtime]",
            {"mode": mode, "log_level": "WARNING", "node_max_restarts": 100, **(runtime or {})},
        ),
        _table("[listener]", {"port": port, **(listener or {})}),
    ]
    if cloud_url is not None:
        parts.append(_table("[cloud]", {"url": cloud_url, **TEST_CLOUD, **(cloud or {})}))
    if authorization is not None:
        parts.append(_table("[authorization]", authorization))
    cps = {c: {} for c in charge_points} if isinstance(charge_points, tuple) else charge_points
    for cp_id, keys in cps.items():
        parts.append(_table("[[charge_points]]", {"id": cp_id, **keys}))
    return "\n".join(parts)


async def start_edge(tmp_path: Path, text: str) -> Edge:
    config = parse_site(text, source="test site", base_dir=tmp_path)
    site = SingleProcessSite(config, (NodeSpec(name="broker", kind="broker"),))
    await site.start()
    return Edge(site=site, tmp_path=tmp_path)


def runtime_env() -> dict[str, str]:
    """The environment for ``run.py`` (the repository importable)."""
    paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


@dataclass
class NodesRuntime:
    """``python run.py --config FILE`` as a subprocess, in nodes mode."""

    tmp_path: Path
    text: str
    port: int  # the listener's, as written in ``text``
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    config: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config = self.tmp_path / "site.toml"
        self.config.write_text(self.text)

    @property
    def control_socket(self) -> Path:
        return self.tmp_path / "var" / "control.sock"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.tmp_path / f"run{self.runs}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "run.py", "--config", str(self.config)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=runtime_env(),
            )

    async def start(self) -> None:
        self.runs += 1
        self.proc = await asyncio.to_thread(self._spawn)
        await wait_for(self._broker_answers, timeout=30, what="the broker node to answer status")

    async def _broker_answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"run.py exited with {self.proc.returncode}: {self.log_text()}")
        return await self.broker() is not None

    async def status(self) -> dict[str, Any]:
        return await asyncio.to_thread(
            control.ask, self.control_socket, {"cmd": "status"}, timeout_s=2.0
        )

    async def broker(self) -> dict[str, Any] | None:
        """The broker node's status, None while it does not answer (restarting, or all down)."""
        try:
            doc = await self.status()
        except control.ControlUnavailable:
            return None
        node = next((n for n in doc.get("nodes", []) if n.get("name") == "broker"), None)
        if node is None or not node.get("answered") or node.get("state") != "running":
            return None
        return dict(node)

    async def cloud_state(self, cp_id: str) -> dict[str, Any] | None:
        """The broker node's view of one charge point's cloud link (None: not answering)."""
        node = await self.broker()
        cp = None if node is None else node["site"].get("charge_points", {}).get(cp_id)
        return None if cp is None else dict(cp["cloud"])

    async def queued(self) -> int | None:
        node = await self.broker()
        return None if node is None else int(node["site"]["queued_for_cloud"])

    async def kill_broker(self) -> int:
        """SIGKILL the broker node process; its supervisor (the Thespian root) restarts it."""
        node = await self.broker()
        assert node is not None, "the broker node is not running"
        pid = int(node["pid"])
        os.kill(pid, signal.SIGKILL)
        return pid

    async def wait_broker_back(self, old_pid: int) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def back() -> bool:
            node = await self.broker()
            if node is not None and node.get("pid") not in (None, old_pid):
                found.update(node)
                return True
            return False

        await wait_for(back, timeout=30, what="the broker node restarted")
        return found

    def threads(self, pid: int) -> list[str]:
        """What each thread of a process is blocked in (for a hang's diagnosis)."""
        out = []
        for t in psutil.Process(pid).threads():
            base = f"/proc/{pid}/task/{t.id}"
            with contextlib.suppress(OSError):
                name = Path(f"{base}/comm").read_text().strip()
                out.append(f"{name}:{Path(f'{base}/wchan').read_text()}")
        return out

    def processes(self) -> list[psutil.Process]:
        assert self.proc is not None
        me = psutil.Process(self.proc.pid)
        return [me, *me.children(recursive=True)]

    async def kill_everything(self) -> None:
        """SIGKILL the launcher: every process of the runtime dies with it."""
        assert self.proc is not None
        pids = [p.pid for p in self.processes()]
        self.proc.kill()
        await asyncio.to_thread(self.proc.wait, timeout_s(10))
        alive = await asyncio.to_thread(wait_gone, pids)
        assert alive == [], f"processes left after kill -9 of the launcher: {alive}"

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, timeout_s(30))

    def log_text(self) -> str:
        path = self.tmp_path / f"run{self.runs}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for p in self.processes()[::-1]:
                    p.kill()
            self.proc.wait(10)
