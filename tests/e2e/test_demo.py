"""`python run.py` with no arguments: the embedded demo site comes up whole within 10 s, its two
nodes talk over their direct links and link up again after a kill -9 of the broker node, and
SIGTERM stops everything with exit 0 and no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers import timeout_s, wait_for_sync

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.nodes, pytest.mark.slow]


def status(env: dict[str, str]) -> dict[str, Any] | None:
    result = subprocess.run(
        [sys.executable, "run.py", "status", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s(20),
    )
    if result.returncode != 0:
        return None
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def site(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    node = next(n for n in doc["nodes"] if n["kind"] == kind)
    return dict(node.get("site") or {})


def node_doc(doc: dict[str, Any] | None, name: str) -> dict[str, Any]:
    if doc is None or doc["stale"]:
        return {}
    return next((n for n in doc["nodes"] if n["name"] == name), {})


def links_up(doc: dict[str, Any] | None, a: str, b: str) -> bool:
    """Each of the two nodes has sent the other something over its direct link."""
    la, lb = (node_doc(doc, a).get("links") or {}), (node_doc(doc, b).get("links") or {})
    return bool(
        b in la.get("peers", ())
        and a in lb.get("peers", ())
        and la.get("sent_direct", 0) > 0
        and lb.get("sent_direct", 0) > 0
    )


def test_the_demo_comes_up_whole_and_stops_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "EDGE_DEMO_DIR": str(tmp_path / "demo")}
    started = time.monotonic()
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "run.py"], cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        seen: dict[str, Any] = {}

        def whole() -> bool:
            if proc.poll() is not None:  # it will not come up: say why now, not after the timeout
                log.flush()
                tail = (tmp_path / "demo.log").read_text(errors="replace")[-3000:]
                raise AssertionError(
                    f"run.py exited {proc.returncode} before the demo was up:\n{tail}"
                )
            doc = status(env)
            if doc is None or doc["stale"]:
                return False
            broker, energy = site(doc, "broker"), site(doc, "energy")
            meters = energy.get("meters") or {}
            ok = (
                broker.get("charge_points_connected") == 8
                and broker.get("cloud_sessions_online") == 8
                and any(m.get("current_a") and not m.get("stale") for m in meters.values())
            )
            if ok:
                seen.update(doc)
            return ok

        wait_for_sync(
            whole, timeout=30, interval_s=0.2, what="8 charge points, the cloud, a meter reading"
        )
        elapsed = time.monotonic() - started
        print(f"demo whole after {elapsed:.1f} s")
        assert elapsed < timeout_s(10), f"the demo took {elapsed:.1f} s to come up whole"
        assert [n["state"] for n in seen["nodes"]] == ["running", "running"]
        # The nodes talk over their direct links (supervisors/node_links.py), both ways: demand
        # batches every second up, profile batches down.
        wait_for_sync(
            lambda: links_up(status(env), "broker", "energy"),
            timeout=20,
            what="direct links both ways",
        )
        # kill -9 of the broker node: the energy node falls back to the root while it is away
        # and links up to the restarted node.
        old = node_doc(status(env), "broker")
        os.kill(int(old["pid"]), signal.SIGKILL)

        def back() -> bool:
            doc = status(env)
            broker = node_doc(doc, "broker")
            return bool(
                broker.get("pid") not in (None, old["pid"])
                and broker.get("state") == "running"
                and links_up(doc, "broker", "energy")
            )

        wait_for_sync(back, timeout=30, interval_s=0.2, what="the broker back, linked both ways")
        pids = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(pids) >= 6, "launcher, admin, logger, root, two nodes (and the peers)"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout_s(60)) == 0, (tmp_path / "demo.log").read_text()[-3000:]

        def gone() -> bool:
            alive = []
            for pid in pids:
                try:
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        alive.append(pid)
                except psutil.NoSuchProcess:
                    pass
            return not alive

        wait_for_sync(gone, timeout=10, what="every process of the demo gone")
        text = (tmp_path / "demo.log").read_text()
        killed = f"node broker (pid {old['pid']}) exited: process exited without notice"
        warnings = [
            line
            for line in text.splitlines()
            if (" WARNING " in line or " ERROR " in line) and killed not in line
        ]
        assert not warnings, "a newcomer's first run shows no warnings:\n" + "\n".join(warnings)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
