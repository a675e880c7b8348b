"""Child and supervisor specifications: data, checked whole before anything starts.

A supervisor refuses to start on an invalid spec and names every problem with its path, e.g.
``broker/children[2] (id 'cloud'): restart: expected one of permanent, transient, temporary, got
'perm'``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from supervisors.intensity import Backoff

if TYPE_CHECKING:
    from supervisors.actor import Actor, ActorContext

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
RestartType = Literal["permanent", "transient", "temporary"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """One child: ``start`` is a factory for a worker, or a nested :class:`SupervisorSpec`."""

    id: str
    start: Callable[[ActorContext], Actor] | SupervisorSpec
    restart: RestartType = "permanent"
    shutdown_timeout_s: float = 5.0
    backoff: Backoff | None = None  # network-facing children: delay restarts, outside intensity
    max_attempts: int = 3  # failed deliveries of one message before it is dead-lettered

    @property
    def kind(self) -> Literal["worker", "supervisor"]:
        return "supervisor" if isinstance(self.start, SupervisorSpec) else "worker"


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorSpec:
    strategy: Strategy = "one_for_one"
    max_restarts: int = 3
    period_s: float = 5.0
    children: tuple[ChildSpec, ...] = field(default_factory=tuple)


class SpecError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid supervision spec:\n  " + "\n  ".join(problems))


def check_child(child: object, where: str) -> list[str]:
    if not isinstance(child, ChildSpec):
        return [f"{where}: expected a ChildSpec, got {type(child).__name__}"]
    problems: list[str] = []
    here = f"{where} (id {child.id!r})"
    if not isinstance(child.id, str) or not child.id or "/" in child.id:
        problems.append(f"{here}: id: expected a non-empty name without '/'")
    if child.restart not in get_args(RestartType):
        problems.append(
            f"{here}: restart: expected one of {', '.join(get_args(RestartType))}, "
            f"got {child.restart!r}"
        )
    if not child.shutdown_timeout_s > 0:
        problems.append(
            f"{here}: shutdown_timeout_s: expected > 0, got {child.shutdown_timeout_s!r}"
        )
    if not isinstance(child.max_attempts, int) or child.max_attempts < 1:
        problems.append(
            f"{here}: max_attempts: expected an integer >= 1, got {child.max_attempts!r}"
        )
    if child.backoff is not None:
        b = child.backoff
        if not (0 < b.min_s <= b.max_s) or b.factor < 1 or not 0 <= b.jitter < 1:
            problems.append(
                f"{here}: backoff: expected 0 < min_s <= max_s, factor >= 1, 0 <= jitter < 1, "
                f"got {b!r}"
            )
    if isinstance(child.start, SupervisorSpec):
        problems.extend(check_supervisor(child.start, f"{where}.start"))
    elif not callable(child.start):  # specs may be built from data at run time
        problems.append(  # type: ignore[unreachable]
            f"{here}: start: expected an actor factory or a SupervisorSpec"
        )
    return problems


def check_supervisor(spec: object, where: str = "spec") -> list[str]:
    if not isinstance(spec, SupervisorSpec):
        return [f"{where}: expected a SupervisorSpec, got {type(spec).__name__}"]
    problems: list[str] = []
    if spec.strategy not in get_args(Strategy):
        problems.append(
            f"{where}: strategy: expected one of {', '.join(get_args(Strategy))}, "
            f"got {spec.strategy!r}"
        )
    if not isinstance(spec.max_restarts, int) or spec.max_restarts < 0:
        problems.append(
            f"{where}: max_restarts: expected an integer >= 0, got {spec.max_restarts!r}"
        )
    if not spec.period_s > 0:
        problems.append(f"{where}: period_s: expected > 0, got {spec.period_s!r}")
    seen: set[str] = set()
    for i, child in enumerate(spec.children):
        problems.extend(check_child(child, f"{where}.children[{i}]"))
        if isinstance(child, ChildSpec):
            if child.id in seen:
                problems.append(f"{where}.children[{i}]: id {child.id!r} is used twice")
            seen.add(child.id)
    return problems


def validate(spec: SupervisorSpec, where: str = "spec") -> None:
    problems = check_supervisor(spec, where)
    if problems:
        raise SpecError(problems)
