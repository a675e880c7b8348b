"""The commands read stores that a running node holds: in another process, or in this one."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from actors.audit import audit
from actors.audit_records import AuditKind
from actors.store_writer import StoreWriter
from cli import audit_query
from drivers.store.env import Store, open_store
from supervisors.actor import Actor
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem
from tests.helpers import timeout_s
from tests.integration.audit_cli.trail import (
    CP,
    REPO,
    auth,
    run_main,
    run_process,
    t,
    write,
    write_site,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decide:
    seconds: float
    limit_a: float


class Allocator(Actor):
    """Each message is one limit decision, audited through the real path."""

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, Decide):
            audit(
                self,
                AuditKind.LIMIT,
                decision=f"{msg.limit_a:g} A",
                reason="grid limit",
                charge_point_id=CP,
                inputs={"limit_a": msg.limit_a, "binding_source": "grid_limit:dso"},
                now=t(msg.seconds),
            )
            return None
        return await super().receive(msg)


@dataclass
class EnergyNode:
    store: Store
    system: ActorSystem

    async def decide(self, seconds: float, limit_a: float) -> None:
        ref = self.system.lookup("energy/allocator")
        assert ref is not None
        await ref.ask(Decide(seconds=seconds, limit_a=limit_a))  # answered after the commit


@pytest.fixture
async def energy_node(tmp_path: Path) -> AsyncIterator[EnergyNode]:
    store = open_store(tmp_path / "var" / "energy")
    system = ActorSystem("energy", store=store)
    await system.start(
        SupervisorSpec(
            strategy="rest_for_one",
            children=(
                ChildSpec(id="store", start=StoreWriter),
                ChildSpec(id="allocator", start=Allocator),
            ),
        )
    )
    yield EnergyNode(store=store, system=system)
    await system.stop(timeout_s(5))
    store.close()


async def test_a_node_running_in_this_process_is_read_through_its_open_store(
    tmp_path: Path, energy_node: EnergyNode
) -> None:
    write(tmp_path / "var", "broker", [auth(-120)])
    site = write_site(tmp_path)
    await energy_node.decide(-60, 10)
    r = run_main(["explain", CP, "--at", "2025-06-01T12:00:00Z", "--config", str(site)])
    assert r.code == 0, r.err
    assert "Limit: 10 A since 2025-06-01T11:59:00Z" in r.out
    assert "via fallback:accept_capped" in r.out
    assert not energy_node.store.closed, "the node's store is reused, not closed"
    await energy_node.decide(-30, 8)  # the node still commits
    r = run_main(["audit", "--json", "--kind", "limit", "--config", str(site)])
    assert [orjson.loads(line)["decision"] for line in r.out.splitlines()] == ["10 A", "8 A"]


class Holder:
    """tests.integration.audit_cli.holder in a subprocess, driven line by line."""

    def __init__(self, store_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.audit_cli.holder", str(store_dir)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.expect("ready")

    def expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s(20))
        assert ready, f"holder did not say {word!r} in time"
        assert self.proc.stdout.readline().strip() == word

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        self.expect("ok")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("exit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout_s(20))
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    h = Holder(tmp_path / "var" / "energy")
    yield h
    h.close()


def limits_seen(site: Path) -> list[str]:
    r = run_main(["audit", "--json", "--kind", "limit", "--config", str(site)])
    return [orjson.loads(line)["decision"] for line in r.out.splitlines()]


def test_a_store_held_open_by_another_process_is_read_while_it_writes(
    tmp_path: Path, holder: Holder
) -> None:
    site = write_site(tmp_path)
    holder.command("write -60 10")
    assert limits_seen(site) == ["10 A"]
    holder.command("write -30 12")
    assert limits_seen(site) == ["10 A", "12 A"]
    r = run_process(["explain", CP, "--at", "2025-06-01T12:00:00Z", "--config", str(site)])
    assert r.code == 0, r.err
    assert "Limit: 12 A since 2025-06-01T11:59:30Z" in r.out
    holder.command("write 0 14")  # the reader left nothing behind that blocks the writer
    assert limits_seen(site)[-1] == "14 A"


def test_a_map_grown_by_the_node_while_the_reader_has_it_open(
    tmp_path: Path, holder: Holder
) -> None:
    holder.command("write -60 10")
    with audit_query.open_stores(tmp_path / "var") as stores:
        [(_, store)] = stores
        mapped = store.env.info()["map_size"]
        before, _ = audit_query.audit_rows(
            stores, since=None, until=None, charge_point_id=None, kinds=None, limit=None
        )
        holder.command("grow")
        holder.command("grow")
        holder.command("fill 2000")  # about 1.5 MB: past the 1 MiB map this reader opened with
        after, _ = audit_query.audit_rows(
            stores, since=None, until=None, charge_point_id=None, kinds=None, limit=None
        )
        assert store.env.info()["map_size"] > mapped, "the reader adopted the grown map"
    assert [r.decision for _, r in before] == ["10 A"]
    assert len(after) == 2001
