"""Messages between the launcher, the Thespian root supervisor and the node actors.

They cross process boundaries as pickles over Thespian's loopback TCP, so they are plain frozen
dataclasses of importable types. A node's own actors never see these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from supervisors.node_runtime import NodeHistory


def _name_only(self: object) -> str:
    """Thespian formats ``str(message)`` of every message it sends whatever its log level
    (``TransmitIntent.identify`` for a DEBUG line): the full repr of a 900-charge-point status
    held the node's GIL 30-50 ms per status query (py-spy on bench/energy.py), stalling its
    loop. Its logs get the type; ``repr`` stays whole for debugging."""
    return type(self).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    name: str
    kind: str
    cpus: tuple[int, ...] = ()  # the CPUs its process runs on; empty: anywhere (affinity.py)
    realtime: bool = False  # its loop at real-time priority (priority.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePolicy:
    """Node restart intensity: more than ``max_restarts`` in ``period_s`` and the runtime exits
    non-zero, so systemd restarts everything (the Thespian admin cannot be restarted in place)."""

    max_restarts: int = 10
    period_s: float = 60.0
    # A node not up this long after its launch is ended: a failure like any other (restarted
    # within the intensity). Without it a start that hangs showed "restarting" for ever.
    start_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSite:
    nodes: tuple[NodeSpec, ...]
    config: Any
    storage_dir: str
    policy: NodePolicy = field(default_factory=NodePolicy)
    log_level: int = 20

    __str__ = _name_only


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteStarted:
    ok: bool
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartNode:
    spec: NodeSpec
    config: Any
    storage_dir: str
    history: NodeHistory
    log_level: int = 20

    __str__ = _name_only


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStarting:
    """Sent by a node as it takes its StartNode: its pid, so the root can end it if it hangs."""

    name: str
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeUp:
    name: str
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFailed:
    """Sent by a node whose actor tree gave up (or failed to start), just before it exits."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """A message for an actor in another node; ``path`` starts with the node's name."""

    path: str
    message: Any

    def __str__(self) -> str:  # see _name_only
        return f"Route({self.path}, {type(self.message).__name__})"


def transient(message: object) -> bool:
    """Whether the root may drop ``message`` while it holds it for a node that is down: only if
    its type says so (``TRANSIENT = True``: a snapshot or batch its sender repeats, bookkeeping
    a restarted node learns again). Anything else may stand for something already acknowledged
    (a cloud grid limit the broker answered Accepted, a rules bundle or local list it stored)
    and is kept until the node is back."""
    return getattr(type(message), "TRANSIENT", False) is True


@dataclass(frozen=True, slots=True, kw_only=True)
class Routes:
    """What the root held for a node while it was down, delivered in one message when it is
    back: one Thespian hop each (1-2 ms of the root's time, more under load) delivering 1000 of
    them kept the root from its pings for over 4 s, and the launcher tore the runtime down."""

    routes: tuple[Route, ...]

    def __str__(self) -> str:  # see _name_only
        return f"Routes({len(self.routes)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    root_pid: int
    admin_pid: int
    nodes: dict[str, dict[str, Any]]
    gave_up: str | None

    __str__ = _name_only


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusQuery:
    timeout_s: float = 0.8


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatusQuery:
    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatusReply:
    request_id: int
    name: str
    status: dict[str, Any]

    __str__ = _name_only


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteStatus:
    root_pid: int
    nodes: list[dict[str, Any]]

    __str__ = _name_only


# A node's stop deadline at the root: its tree's stop timeout (``[runtime] shutdown_timeout_s``)
# plus this, for what the node does around the tree's stop (its last status snapshot, closing its
# links and its store). A node still there at its deadline is killed and the stop moves on.
STOP_GRACE_S = 2.0


def stop_deadline_s(timeout_s: float) -> float:
    """How long the root waits for one node's stop before it kills it."""
    return timeout_s + STOP_GRACE_S


@dataclass(frozen=True, slots=True, kw_only=True)
class StopSite:
    """Stop the nodes one at a time, each given ``timeout_s`` for its tree (and the root's
    deadline, :func:`stop_deadline_s`, before it is killed)."""

    timeout_s: float = 15.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StopNode:
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStopped:
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteStopped:
    stopped: tuple[str, ...]
