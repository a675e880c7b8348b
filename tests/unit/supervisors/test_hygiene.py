"""What the launcher stops at the end (drivers/thespian/hygiene.stop_descendants): only what is
still running once those on their way out have had their grace, and it names them."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.nodes.site import REPO

# In a process of its own: stop_descendants stops every descendant of the caller.
SCRIPT = """
import json, subprocess, sys, time
import psutil
from drivers.thespian.hygiene import stop_descendants

leaving = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
staying = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # stays"])
stubborn = subprocess.Popen([
    sys.executable, "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)  # ignores SIGTERM",
], stdout=subprocess.PIPE, text=True)
assert stubborn.stdout.readline() == "ready\\n"
started = time.monotonic()
named = stop_descendants(timeout_s=0.5, grace_s=1.5)
print(json.dumps({
    "named": named,
    "pids": [leaving.pid, staying.pid, stubborn.pid],
    "left": [c.pid for c in psutil.Process().children(recursive=True)],
    "seconds": time.monotonic() - started,
}))
"""


def test_only_what_outlives_its_grace_is_stopped_and_named() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    _, staying, stubborn = result["pids"]
    # The child that exits within its grace is not counted; the other two are, by pid and
    # command; the one that ignores SIGTERM is killed. Nothing is left.
    assert sorted(result["named"]) == sorted(
        [
            f"{staying} ({sys.executable} -c import time; time.sleep(60)  # stays)",
            f"{stubborn} ({sys.executable} -c import signal, sys, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)  # ignores SIGTERM)",
        ]
    )
    assert result["left"] == []
    assert result["seconds"] < 1.5 + 0.5 + 0.5 + 5.0  # grace, SIGTERM's wait, SIGKILL's, slack
