"""The broker node dies between its answer to the cloud and the commit of what the answer is
about: a local list (SendLocalList, full or differential) or central rules (DataTransfer
``RulesBundle``) the cloud was told were Accepted must be in force after the restart, or the
cloud must not have been told.

The cloud does not send an update again once the edge accepted it: a lost full list leaves the
edge on the list before; a lost differential update leaves the version wrong or entries missing,
and the next differential update builds on it.

Likewise a call the edge relays to a charge point and keeps a record of once the charge point
accepted it: the cloud's TxProfile (SetChargingProfile), kept as a cap on the edge's own profiles.
Lost, the edge's next TxProfile lifts the car above the cloud's limit.

Fault injection, deterministic (``Dying``): from the commit of the update on, nothing reaches LMDB
in the node's life (the store takes the submissions and never writes them, as when the node is
killed before the writer's fsync); once the actors involved have done all they can without the
disk (an answer sent before the commit written to the cloud), the commits fail and the node is
stopped, then started again on its LMDB. Every actor is the project's own, every socket real. The
window is a few ms in a real node (the commit follows the handler, the answer is on the wire
first); from outside (kill -9 of a run.py broker node) it cannot be hit reliably.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from actors.energy_messages import SiteRulesChanged
from actors.messages import AuthorityShared
from config.schema import parse_site
from drivers.store.env import Op, StoreError, state_key
from sim.charge_point import SimChargePoint
from sim.cloud import CloudNotConnectedError, SimCloud
from sim.profile_payloads import profile_for
from supervisors.node_messages import NodeSpec
from supervisors.single import SingleProcessSite
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, site_text, start_edge
from tests.integration.broker.test_profile_batches import ENERGY, batch, charge
from tests.integration.sim.conftest import fast_config
from tests.integration.store.test_commit_behind import writer_held

EDGE = "SITE-EDGE"
AUTHORIZER = "broker/authorizer"
CLOUD_LINK = f"broker/cloud/{EDGE}"
CP = "broker/charge_points/CP1"


async def make_edge(tmp_path: Path, cloud: SimCloud) -> Edge:
    return await start_edge(
        tmp_path,
        cloud_url=cloud.url,
        cloud_extra=f'edge_identity = "{EDGE}"\nanswer_deadline_s = 2',
    )


class Dying:
    """From the first commit that ``trigger`` picks, the node is dying: that commit and every
    one after it are taken and never written (the writer's fsync never happens), until
    :meth:`died` fails them all, and any after them."""

    def __init__(self, edge: Edge, trigger: Callable[[Op], bool]) -> None:
        self.store = edge.system.require_store()
        self.trigger = trigger
        self.held: list[asyncio.Future[None]] = []
        self.dead = False
        self.submit = self.store.submit
        self.store.submit = self._submit

    @property
    def dying(self) -> bool:
        return bool(self.held)

    def _submit(self, ops: list[Op]) -> Any:
        if not self.held and not any(self.trigger(op) for op in ops):
            return self.submit(ops)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.dead:
            future.set_exception(StoreError("the node is dead"))
        else:
            self.held.append(future)
        return future

    def blocked(self, edge: Edge, path: str) -> bool:
        """``path`` has nothing left to do without the disk: idle, or waiting for a commit
        that will not land."""
        cell = edge.system.cells[path]
        if cell.current is not None:
            return False
        # _inflight: the commit the cell awaits (or the last it did not wait for).
        return len(cell.mailbox) == 0 or cell._inflight in self.held

    def died(self) -> None:
        self.dead = True
        for future in self.held:
            if not future.done():
                future.set_exception(StoreError("the node died before this commit"))


def puts(path: str, key: str, containing: bytes = b"") -> Callable[[Op], bool]:
    """A commit that writes ``key`` of ``path``'s state (with ``containing`` in it)."""
    wanted = state_key(path, key)
    return lambda op: op[0] == "put" and op[2] == wanted and containing in op[3]


async def answer_or_death(
    edge: Edge, call: Awaitable[Any], dying: Dying, paths: tuple[str, ...]
) -> dict[str, Any] | None:
    """Send the cloud's call; kill the node once its store stopped writing (the commit of what
    the call changes) and ``paths`` (the actor that handles it, the session's cloud link) have
    nothing left to do: an answer they send before the commit is then written to the cloud, and
    reaches it ahead of the close. The cloud's answer, None if it got none."""
    task = asyncio.ensure_future(call)
    await wait_for(lambda: dying.dying, timeout=10, what="the update's commit submitted")
    await wait_for(
        lambda: task.done() or all(dying.blocked(edge, p) for p in paths),
        timeout=10,
        what=f"{paths} done without the disk",
    )
    dying.died()
    await edge.stop()
    try:
        return dict(await task)
    except CloudNotConnectedError:
        return None


def authorizer(edge: Edge) -> dict[str, Any]:
    report: dict[str, Any] = edge.system.actor(AUTHORIZER).report()
    return report


def local_list(version: int, update: str, tags: list[str]) -> dict[str, Any]:
    return {
        "listVersion": version,
        "updateType": update,
        "localAuthorizationList": [{"idTag": t, "idTagInfo": {"status": "Accepted"}} for t in tags],
    }


CASES = [
    pytest.param(
        "local_list",
        "SendLocalList",
        local_list(7, "Full", ["A", "B", "C"]),
        {"local_list_version": 7, "local_list_entries": 3},
        id="full-local-list",
    ),
    pytest.param(
        "local_list",
        "SendLocalList",
        local_list(7, "Differential", ["C"]),
        {"local_list_version": 7, "local_list_entries": 3},
        id="differential-local-list",
    ),
    pytest.param(
        "rules",
        "RulesBundle",
        {"kind": "edge-rules", "version": 5, "site": {"max_current_a": 30.0}},
        {"rules_version": 5, "rules_previous": 4},
        id="rules-bundle",
    ),
]


@pytest.mark.parametrize(("key", "action", "update", "applied"), CASES)
async def test_an_update_the_cloud_was_told_was_accepted_survives_the_brokers_death(
    tmp_path: Path,
    cloud: SimCloud,
    key: str,
    action: str,
    update: dict[str, Any],
    applied: dict[str, Any],
) -> None:
    edge: Edge | None = await make_edge(tmp_path, cloud)
    assert edge is not None

    def send(what: dict[str, Any]) -> Awaitable[Any]:
        if action == "SendLocalList":
            return cloud.call(EDGE, "SendLocalList", what)
        return cloud.data_transfer(
            EDGE, "site-edge", message_id=action, data=orjson.dumps(what).decode()
        )

    # What the edge holds before: list version 6 (A, B), rules version 4.
    before = (
        local_list(6, "Full", ["A", "B"])
        if key == "local_list"
        else {"kind": "edge-rules", "version": 4, "site": {"max_current_a": 35.0}}
    )
    try:
        await wait_for(lambda: cloud.connected(EDGE), timeout=10, what="the edge session")
        first = await send(before)
        assert first["status"] == "Accepted", first
        was = {k: authorizer(edge)[k] for k in applied}

        dying = Dying(edge, puts(AUTHORIZER, key))
        answer = await answer_or_death(edge, send(update), dying, (AUTHORIZER, CLOUD_LINK))
        edge = await make_edge(tmp_path, cloud)
        after = {k: authorizer(edge)[k] for k in applied}
        if answer is not None and answer.get("status") == "Accepted":
            assert after == applied, (
                f"the cloud was told {answer}, but after the broker's death the edge has {after}"
            )
        else:
            assert after == was, f"not accepted ({answer}), yet the edge has {after}"
            # The cloud, told nothing, sends it again; now it is kept.
            await wait_for(lambda: cloud.connected(EDGE), timeout=10, what="the edge session")
            again = await send(update)
            assert again["status"] == "Accepted", again
            await edge.stop()
            edge = await make_edge(tmp_path, cloud)
            assert {k: authorizer(edge)[k] for k in applied} == applied
    finally:
        if edge is not None:
            await edge.stop()


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_cloud_cap_the_cloud_was_told_was_accepted_survives_the_brokers_death(
    tmp_path: Path, cloud: SimCloud, protocol: str
) -> None:
    """CP1 charges at the site's 10 A; the cloud sets a TxProfile of 7 A below the edge's stack
    level and CP1 accepts it. If the cloud got that Accepted, the edge must still cap CP1 at
    7 A after the broker's death."""
    edge: Edge | None = await start_edge(tmp_path, cloud_url=cloud.url, extra=ENERGY)
    assert edge is not None
    cp = SimChargePoint(fast_config(edge.url, protocol, meter_interval_s=60.0))
    try:
        await charge(edge, cp)
        edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=1_000))
        await wait_for(
            lambda: (
                edge.cp("CP1")["energy"]["sent_a"] == {"1": 10.0}
                and edge.cp("CP1")["down_queue"] == 0
            ),
            what="the edge's TxProfile at 10 A, accepted",
        )
        dying = Dying(edge, puts(CP, "state", containing=b"cloud_profiles"))
        profile = profile_for(protocol, limit=7.0, profile_id=42, stack_level=1)
        answer = await answer_or_death(
            edge, cloud.set_charging_profile("CP1", 1, profile), dying, (CP, "broker/cloud/CP1")
        )
        edge = await start_edge(tmp_path, cloud_url=cloud.url, extra=ENERGY)
        caps = edge.cp("CP1")["energy"]["cloud_caps_a"]
        if answer is not None and answer.get("status") == "Accepted":
            assert caps == {"1": 7.0}, (
                f"the cloud was told {answer}, but after the broker's death the caps are {caps}"
            )
        else:
            assert caps == {}, f"not accepted ({answer}), yet the edge has the caps {caps}"
    finally:
        await cp.stop()
        if edge is not None:
            await edge.stop()


async def test_answers_that_change_nothing_do_not_wait_for_a_commit(
    tmp_path: Path, cloud: SimCloud
) -> None:
    """The fast path: with the store's writer held (no commit can land), the edge still answers
    the cloud's GetLocalListVersion, and relays CP1's answer to the cloud's GetConfiguration."""
    edge = await make_edge(tmp_path, cloud)
    cp = SimChargePoint(fast_config(edge.url, "ocpp1.6"))
    try:
        await cp.start()
        await wait_for(lambda: cp.connected and cloud.connected("CP1"), what="CP1 online")
        await wait_for(lambda: cloud.connected(EDGE), timeout=10, what="the edge session")
        with writer_held(edge.system.require_store()):
            version = await asyncio.wait_for(cloud.call(EDGE, "GetLocalListVersion", {}), 5)
            assert version == {"listVersion": 0}
            config = await asyncio.wait_for(cloud.call("CP1", "GetConfiguration", {}), 5)
            assert "configurationKey" in config, config
    finally:
        await cp.stop()
        await edge.stop()


def outbound(edge: Edge) -> list[tuple[str, object]]:
    """What the broker node sends to other nodes from now on (this site has none: they are
    dropped after this record, where a real site's node link carries them)."""
    sent: list[tuple[str, object]] = []
    route = edge.system.remote
    assert route is not None

    def record(path: str, msg: object) -> None:
        sent.append((path, msg))
        route(path, msg)

    edge.system.remote = record
    return sent


async def sent_while_rules_commit(edge: Edge, cloud: SimCloud) -> list[tuple[str, object]]:
    """What the broker node sent to other nodes from a cloud RulesBundle until its authorizer
    can do nothing more without the rules' commit (which never lands: ``Dying``); the edge is
    stopped after."""
    task: asyncio.Future[Any] | None = None
    dying: Dying | None = None
    try:
        await wait_for(lambda: cloud.connected(EDGE), timeout=10, what="the edge session")
        sent = outbound(edge)
        bundle = {"kind": "edge-rules", "version": 5, "site": {"max_current_a": 30.0}}
        dying = Dying(edge, puts(AUTHORIZER, "rules"))
        task = asyncio.ensure_future(
            cloud.data_transfer(
                EDGE, "site-edge", message_id="RulesBundle", data=orjson.dumps(bundle).decode()
            )
        )
        await wait_for(lambda: dying.dying, timeout=10, what="the rules' commit submitted")
        await wait_for(
            lambda: dying.blocked(edge, AUTHORIZER), timeout=10, what="the authorizer done"
        )
        return list(sent)
    finally:
        if dying is not None:
            dying.died()
        await edge.stop()
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def test_rules_reach_the_energy_node_only_once_the_broker_has_them(
    tmp_path: Path, cloud: SimCloud
) -> None:
    """A broker node killed between sending new rules to the energy node and committing them
    left the energy node (which stores them) on rules the broker lost and the cloud was never
    told were accepted; a broker with no rules after its restart sends none, so nothing
    corrected it."""
    sent = await sent_while_rules_commit(await make_edge(tmp_path, cloud), cloud)
    rules = [m for p, m in sent if isinstance(m, SiteRulesChanged)]
    assert rules == [], f"sent to the energy node before the broker kept them: {rules}"


async def test_rules_reach_the_other_broker_nodes_only_once_the_front_has_them(
    tmp_path: Path, cloud: SimCloud
) -> None:
    """With broker shards, the front's authorizer shares its rules and local list with the other
    broker nodes' (AuthorityShared), which keep them: sent before its commit, a front killed in
    between left the other nodes on rules it lost and the cloud was never told were accepted
    (each node answering charge points by other rules than the front's after its restart)."""
    text = site_text(
        tmp_path,
        cloud_url=cloud.url,
        cloud_extra=f'edge_identity = "{EDGE}"\nanswer_deadline_s = 2',
    )
    config = parse_site(text, source="test site", base_dir=tmp_path)
    config = replace(config, runtime=replace(config.runtime, broker_shards=2))
    site = SingleProcessSite(config, (NodeSpec(name="broker", kind="broker"),))
    await site.start()
    sent = await sent_while_rules_commit(Edge(site=site, tmp_path=tmp_path), cloud)
    shared = [(p, m) for p, m in sent if isinstance(m, AuthorityShared)]
    assert shared == [], f"shared before the front kept them: {shared}"
