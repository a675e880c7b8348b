"""Messages and reports of the actor layer itself (exits, supervision queries).

Exit reasons follow OTP: ``normal`` (the actor stopped itself), ``shutdown`` (its supervisor stopped
it), ``killed`` (its task was cancelled from outside, like ``exit(Pid, kill)``) and ``crashed`` (an
exception escaped ``receive`` or a linked task). Only the last two are abnormal for a ``transient``
child.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from supervisors.spec import ChildSpec

ExitKind = Literal["normal", "shutdown", "killed", "crashed"]
ChildState = Literal["starting", "running", "stopping", "stopped", "backoff", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitReason:
    kind: ExitKind
    detail: str = ""

    @property
    def abnormal(self) -> bool:
        return self.kind in ("killed", "crashed")

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


NORMAL = ExitReason(kind="normal")
SHUTDOWN = ExitReason(kind="shutdown")
KILLED = ExitReason(kind="killed")


def crashed(exc: BaseException) -> ExitReason:
    text = str(exc)
    return ExitReason(
        kind="crashed", detail=f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildExited:
    """Sent by the actor layer to a supervisor when one of its children's tasks ends."""

    child_id: str
    generation: int
    reason: ExitReason


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartChildren:
    """A supervisor's own timer: restart these children now that their backoff has passed."""

    child_ids: tuple[str, ...]
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WhichChildren:
    """Query: answered with a tuple of :class:`ChildReport`, nested supervisors included."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildReport:
    id: str
    path: str
    kind: Literal["worker", "supervisor"]
    restart: str
    state: ChildState
    restarts: int
    last_failure: str | None
    last_failure_utc: str | None
    started_utc: str | None
    mailbox_depth: int
    dead_letters: int
    info: dict[str, Any] = field(default_factory=dict)
    children: tuple[ChildReport, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True, kw_only=True)
class StartChild:
    """Ask a supervisor to add and start a child; answered with its ActorRef."""

    spec: ChildSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateChild:
    """Ask a supervisor to stop a child and forget it; answered with True if it existed."""

    child_id: str
