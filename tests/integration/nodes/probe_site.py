"""Run a site whose nodes are probes (``python -m tests.integration.nodes.probe_site CONFIG PORT
[--single-process] [--realtime=NODE,...]``).

Node "probe" takes messages on PORT; node "other" is a second, idle probe (any port), so the
site has two node processes like the real one. ``--realtime`` stands for ``[runtime]
realtime_nodes``, which the site file cannot hold: it may only name the real site's nodes.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

from config.schema import load_site
from supervisors.launcher import NodeLauncher
from supervisors.node_messages import NodeSpec
from supervisors.trees import register_node_kind
from tests.integration.nodes.probe import probe_kind


def main() -> int:
    config = load_site(Path(sys.argv[1]))
    port = int(sys.argv[2])
    options = sys.argv[3:]
    single = "--single-process" in options
    realtime = [o.removeprefix("--realtime=") for o in options if o.startswith("--realtime=")]
    if realtime:
        runtime = replace(config.runtime, realtime_nodes=tuple(realtime[0].split(",")))
        config = replace(config, runtime=runtime)
    register_node_kind("probe", probe_kind(port))
    register_node_kind("probe2", probe_kind(0))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s launcher %(levelname)s %(name)s: %(message)s"
    )
    nodes = (NodeSpec(name="probe", kind="probe"), NodeSpec(name="other", kind="probe2"))
    if single:
        import asyncio

        from supervisors.single import run_single

        return asyncio.run(run_single(config, nodes))
    return NodeLauncher(config, nodes).run()


if __name__ == "__main__":
    sys.exit(main())
