"""The authorizer's answer goes to the call it was asked about, never to a later call that reused
its message id.

Message ids are unique per connection only: a charge point that reconnects may start its counter
again. An Authorize (or a 1.6 start's authorization) asked of the authorizer on one connection,
whose answer is still on its way when the charge point comes back and sends another Authorize with
the same id, must not answer that new call: its tag is another one.

The delay: the authorizer's mailbox holds its AuthorizeLocally messages until the test lets them in
(``delayed``), as a busy authorizer would take them later; every actor is the project's own,
every socket real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from actors.messages import AuthorizeLocally
from supervisors.actor import Envelope, Mailbox
from tests.helpers import timeout_s, wait_for
from tests.integration.broker.edge import Edge, cloud_and_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.sim.conftest import GOOD_TAG

AUTHORIZER = "broker/authorizer"
STRANGER = "NOT-KNOWN"  # neither listed nor cached: Invalid offline (unknown_id_offline reject)
BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


def delayed(edge: Edge) -> tuple[list[Envelope], Callable[[], None]]:
    """The authorizer's AuthorizeLocally messages wait (the list) until ``release()`` puts them
    in its mailbox, in the order they came."""
    waiting: list[Envelope] = []
    mailbox = edge.system.cells[AUTHORIZER].mailbox

    class Delaying(type(mailbox)):  # type: ignore[misc]
        __slots__ = ()

        def put(self, env: Envelope) -> None:
            if isinstance(env.msg, AuthorizeLocally):
                waiting.append(env)
                return
            super().put(env)

    mailbox.__class__ = Delaying

    def release() -> None:
        mailbox.__class__ = Mailbox
        for env in waiting:
            mailbox.put(env)

    return waiting, release


def start(tag: str) -> dict[str, object]:
    return {
        "connectorId": 1,
        "idTag": tag,
        "meterStart": 100,
        "timestamp": "2026-11-30T10:00:00Z",
    }


@pytest.mark.parametrize(
    ("action", "first", "again"),
    [
        pytest.param("Authorize", {"idTag": GOOD_TAG}, {"idTag": STRANGER}, id="Authorize"),
        pytest.param("StartTransaction", start(GOOD_TAG), start(STRANGER), id="StartTransaction"),
    ],
)
async def test_an_earlier_connections_authorization_does_not_answer_a_new_call_with_its_id(
    tmp_path: Path, action: str, first: dict[str, object], again: dict[str, object]
) -> None:
    async with cloud_and_edge(tmp_path) as (cloud, edge):
        cp = await RawChargePoint("CP1").connect(edge.url)
        try:
            await cp.call("BootNotification", BOOT)
            # The cloud accepts GOOD_TAG once: the edge's cache knows it from then on.
            known = await cp.call("Authorize", {"idTag": GOOD_TAG})
            assert known[2]["idTagInfo"]["status"] == "Accepted"
            await wait_for(
                lambda: edge.system.actor(AUTHORIZER).report()["cache_entries"] == 1,
                what="GOOD_TAG cached",
            )
            await cloud.stop()
            await wait_for(lambda: not edge.cloud("CP1")["online"], what="the cloud gone")

            waiting, release = delayed(edge)
            held = asyncio.create_task(cp.send_frame([2, "a1", action, first], "a1"))
            await wait_for(lambda: len(waiting) == 1, what="the first call's authorization asked")
            await cp.close()
            held.cancel()
            await wait_for(lambda: not edge.cp("CP1")["connected"], what="the edge sees it gone")
        finally:
            await cp.close()
        back = await RawChargePoint("CP1").connect(edge.url)
        try:
            answer = asyncio.create_task(back.send_frame([2, "a1", action, again], "a1"))
            await wait_for(lambda: len(waiting) == 2, what="the new call's authorization asked")
            release()  # the first connection's answer (Accepted) comes first
            frame = await asyncio.wait_for(answer, timeout_s(5))
            assert frame[2]["idTagInfo"]["status"] == "Invalid", (
                f"{STRANGER} must not get {GOOD_TAG}'s verdict: {frame}"
            )
        finally:
            await back.close()
