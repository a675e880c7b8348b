"""The actor trees of each node kind, built from the site configuration.

A node kind is data: how to build its supervision tree and how to summarise its site state for
``run.py status``. The launcher's node list names a kind per node; tests may register more kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from actors.store_writer import StoreWriter
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeContext:
    name: str
    config: Any
    system: ActorSystem


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeKind:
    build: Callable[[NodeContext], SupervisorSpec]
    summary: Callable[[ActorSystem], dict[str, Any]]
    # The same summary in steps (a generator that yields between pieces and returns the dict),
    # for a node whose summary is long enough to stall its event loop; None: ``summary`` whole.
    summary_steps: Callable[[ActorSystem], Generator[None, None, dict[str, Any]]] | None = None
    # Whether an actor may start at ``path`` after the node's start (a charge point
    # auto-registered when it connects): its durable mail is kept for it. Mail for any other
    # path the started tree does not have goes to the dead letters (node_runtime). None: no
    # actor starts later.
    starts_later: Callable[[NodeContext, str], bool] | None = None


def store_writer_spec() -> ChildSpec:
    """First child of every node: the group-commit writer (rest_for_one puts it under the rest)."""
    return ChildSpec(id="store", start=StoreWriter, shutdown_timeout_s=10.0)


def _broker_build(ctx: NodeContext) -> SupervisorSpec:
    from actors.broker_tree import build_broker  # late: actors import this module

    return build_broker(ctx)


def _broker_summary(system: ActorSystem) -> dict[str, Any]:
    from actors.broker_tree import broker_summary

    return broker_summary(system)


def _broker_summary_steps(system: ActorSystem) -> Generator[None, None, dict[str, Any]]:
    from actors.broker_tree import broker_summary_steps

    return broker_summary_steps(system)


def _broker_starts_later(ctx: NodeContext, path: str) -> bool:
    from actors.broker_tree import starts_later

    return starts_later(ctx, path)


def _build_energy(ctx: NodeContext) -> SupervisorSpec:
    # Imported when used: actors.energy_tree imports this module.
    from actors.energy_tree import build_energy

    return build_energy(ctx)


def _energy_summary(system: ActorSystem) -> dict[str, Any]:
    from actors.energy_tree import energy_summary

    return energy_summary(system)


NODE_KINDS: dict[str, NodeKind] = {
    "broker": NodeKind(
        build=_broker_build,
        summary=_broker_summary,
        summary_steps=_broker_summary_steps,
        starts_later=_broker_starts_later,
    ),
    "energy": NodeKind(build=_build_energy, summary=_energy_summary),
}


def register_node_kind(name: str, kind: NodeKind) -> None:
    NODE_KINDS[name] = kind
