"""Free TCP ports for servers that another process (or a later start) binds.

Everything that binds a port it was told (the demo's simulated peers, the Thespian admin, the
simulated cloud and meter when brought back on the same port, the tests' sites) gets it from
:func:`free_tcp_port`.
"""

from __future__ import annotations

import collections
import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL = (32768, 60999)  # the kernel's default, when the file cannot be read
PICKED_FROM = 20000  # below: ports services are configured on (and ports below 1024)
PICK_TRIES = 50
HANDED_OUT_KEPT = 512

# The ports this process picked lately: a port handed out is bound by its user a moment later,
# and free until then, so a second pick in that moment could give it again.
_handed_out: collections.deque[int] = collections.deque(maxlen=HANDED_OUT_KEPT)


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (and ``bind(0)``), inclusive."""
    try:
        low, high = (int(x) for x in path.read_text(encoding="ascii").split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL
    return low, high


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_tcp_port(
    host: str = "127.0.0.1",
    *,
    rng: random.Random | None = None,
    ephemeral: tuple[int, int] | None = None,
    admin: bool = False,
) -> int:
    """A TCP port free on ``host`` now, for a server that another process binds a moment later.

    Not one ``bind(0)`` picks: those come from the ephemeral range, where every outgoing
    connection takes its local port, and a connection opened between the pick and the bind takes
    the port (seen in a fresh-clone ``make test``: the demo's meter simulator failed with
    EADDRINUSE on its port). A random port outside that range, from ``PICKED_FROM`` up, that
    binds now and that this process has not handed out lately. ``admin``: for the Thespian
    admin, which the launcher picks in a process of its own while the process that started it
    may hold a pick of its own not bound yet (a fresh-clone ``make test`` saw a test's probe
    server and the admin of the site it started get the same port): the admin's come from above
    the ephemeral range, every other pick from below it, where the kernel leaves room for both
    (Linux's default 32768-60999 does: 20000-32767 and 61000-65535). Falls back to ``bind(0)``
    when the range leaves no room (a kernel configured for 1024-65535)."""
    pick = rng or random.SystemRandom()
    low, high = ephemeral or ephemeral_range()
    below, above = (PICKED_FROM, low - 1), (high + 1, 65535)
    spans = [(a, b) for a, b in (below, above) if b - a >= 1000]
    if len(spans) == 2:
        spans = [above if admin else below]
    for _ in range(PICK_TRIES if spans else 0):
        a, b = pick.choice(spans)
        port = pick.randint(a, b)
        if port not in _handed_out and _bindable(host, port):
            _handed_out.append(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        bound: int = s.getsockname()[1]
        return bound
