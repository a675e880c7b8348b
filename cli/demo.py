"""``python run.py`` with no ``--config``: the embedded demo site, with its simulated peers.

Picks free loopback ports, writes the demo site file (``config/demo-site.toml`` with the ports
filled in) to ``<demo dir>/site.toml``, starts the peers (``python -m sim.demo``) as a child that
dies with this process, waits until its meter and cloud answer (so the edge's first meter read
does not fail), prints where to look, and runs the runtime on that file. The demo dir is
``var/demo`` in the repository, or ``$EDGE_DEMO_DIR``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from config.schema import SiteConfig, load_site
from drivers.ports import free_tcp_port

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "config" / "demo-site.toml"


def demo_dir() -> Path:
    return Path(os.environ.get("EDGE_DEMO_DIR") or REPO / "var" / "demo").resolve()


def demo_site_file() -> Path:
    return demo_dir() / "site.toml"


def prepare(*, single_process: bool) -> tuple[SiteConfig, dict[str, int]]:
    ports = {
        "listener_port": free_tcp_port(),
        "meter_port": free_tcp_port(),
        "cloud_port": free_tcp_port(),
    }
    storage = demo_dir()
    storage.mkdir(parents=True, exist_ok=True)
    text = TEMPLATE.read_text(encoding="utf-8")
    for key, value in {
        **ports,
        "storage_dir": str(storage),
        "mode": "single-process" if single_process else "nodes",
    }.items():
        text = text.replace("{" + key + "}", str(value))
    demo_site_file().write_text(text, encoding="utf-8")
    return load_site(demo_site_file()), ports


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def start_peers(ports: dict[str, int], cloud_outage_s: float) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "sim.demo",
        "--listener-port",
        str(ports["listener_port"]),
        "--meter-port",
        str(ports["meter_port"]),
        "--cloud-port",
        str(ports["cloud_port"]),
    ]
    if cloud_outage_s:
        args += ["--cloud-outage", str(cloud_outage_s)]
    return subprocess.Popen(args, cwd=REPO, preexec_fn=_die_with_parent)


PEERS_READY_S = 20.0


def wait_for_peers(peers: subprocess.Popen[bytes], ports: dict[str, int]) -> None:
    """Until the simulated meter and cloud accept connections; an error if the peers exit or
    are not up within ``PEERS_READY_S``."""
    deadline = time.monotonic() + PEERS_READY_S
    for name in ("meter_port", "cloud_port"):
        while True:
            if peers.poll() is not None:
                raise RuntimeError(
                    f"the demo's peers (python -m sim.demo) exited: {peers.returncode}"
                )
            try:
                with socket.create_connection(("127.0.0.1", ports[name]), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the demo's peers did not open {name} {ports[name]} "
                        f"within {PEERS_READY_S:g} s"
                    ) from None
                time.sleep(0.05)  # polling a port that is not open yet


def _python() -> str:
    """The interpreter running the demo, as typed in the directory it runs in (make run:
    ``.venv/bin/python``, as README has it); a bare ``python`` may lack the requirements."""
    if not sys.executable:
        return "python"
    relative = os.path.relpath(sys.executable)
    return sys.executable if relative.startswith("..") else relative


def banner(config: SiteConfig, ports: dict[str, int], cloud_outage_s: float) -> str:
    python = _python()
    outage = (
        f"\n  The cloud goes away after 30 s for {cloud_outage_s:g} s: watch the queues fill and drain."
        if cloud_outage_s
        else "\n  Add --cloud-outage 60 to watch an outage: local answers, queueing, replay."
    )
    return (
        f"\nDemo site '{config.name}': 8 simulated charge points, an SDM630 meter and a CSMS on loopback.\n"
        f"  Charge points connect to ws://127.0.0.1:{ports['listener_port']}/ocpp/<id>\n"
        f"  Look at it:        {python} run.py status          (or: status --watch, status --json)\n"
        f"  Why a limit:       {python} run.py explain DEMO-CP-003\n"
        f"  The audit trail:   {python} run.py audit --since 10m\n"
        f"  Site file:         {demo_site_file()}{outage}\n"
        f"  Stop with Ctrl-C.\n"
    )


def run(*, single_process: bool, cloud_outage_s: float) -> int:
    config, ports = prepare(single_process=single_process)
    peers = start_peers(ports, cloud_outage_s)
    try:
        wait_for_peers(peers, ports)
        print(banner(config, ports, cloud_outage_s), file=sys.stderr, flush=True)
        if single_process:
            import asyncio

            from supervisors.single import run_single

            return asyncio.run(run_single(config))
        from supervisors.launcher import NodeLauncher

        return NodeLauncher(config).run()
    finally:
        with contextlib.suppress(ProcessLookupError):
            peers.terminate()
        try:
            peers.wait(10)
        except subprocess.TimeoutExpired:
            peers.kill()
            peers.wait()
