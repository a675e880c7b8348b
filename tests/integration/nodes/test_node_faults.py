"""Faults injected into the node layer on real Thespian nodes (OS processes): a node killed while
the site stops, a node that hangs in its start, the status between a kill -9 and Thespian's exit
report, and what the root holds for a node that is down.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import timeout_s, wait_for_sync
from tests.integration.nodes.site import ProbeSite, wait_gone

pytestmark = [pytest.mark.nodes, pytest.mark.slow]

SHUTDOWN_TIMEOUT_S = 5  # per node; the launcher waits this per node plus 5 s for the whole stop


def test_a_node_killed_while_the_site_stops_moves_the_stop_on(tmp_path: Path) -> None:
    """The nodes stop one at a time in reverse start order: 'other' first, then 'probe'. 'other'
    is frozen so it cannot answer its stop, then killed -9 once the root has asked it to stop:
    the root goes on to 'probe' at once (an orderly stop of it, exit 0), where it used to wait
    for a NodeStopped that never came until the launcher's whole wait ran out (2 x 5 + 5 s), and
    'probe' was then only torn down by Thespian's shutdown."""
    site = ProbeSite(tmp_path, log_level="INFO", extra=f"shutdown_timeout_s = {SHUTDOWN_TIMEOUT_S}")
    site.start()
    try:
        assert site.proc is not None
        pids = [p.pid for p in site.processes()]
        other = int(site.node("other")["pid"])
        os.kill(other, signal.SIGSTOP)
        started = time.monotonic()
        site.proc.send_signal(signal.SIGTERM)
        wait_for_sync(
            lambda: f"stopping node other (pid {other})" in site.log_text(),
            timeout=10,
            what="the root to ask node other to stop",
        )
        os.kill(other, signal.SIGKILL)
        code = site.proc.wait(timeout_s(30))
        took_s = time.monotonic() - started
        log = site.log_text()
        assert code == 0, log
        assert "orderly stop did not complete in time" not in log, log
        assert "node probe stopped in" in log, "probe got its orderly stop"
        assert took_s < SHUTDOWN_TIMEOUT_S, f"the stop took {took_s:.1f} s: {log}"
        assert wait_gone(pids) == []
    finally:
        site.cleanup()
