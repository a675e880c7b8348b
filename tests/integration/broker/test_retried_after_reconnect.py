"""A transaction message the charge point sends again after its connection dropped, or after the
edge restarted, its first copy's answer never read (OCPP 1.6 4.8, 2.0.1 E: a transaction message
not answered is sent again): a 1.6 StopTransaction, a 2.0.1 TransactionEvent Ended. The first
copy is that message, whether it still waits in the outbox (the cloud holding it, or away) or
the cloud answered it already (its answer lost on the way to the charge point): the cloud gets it
once (two stops for one session: billed twice; two Ended events with one seqNo), and the retry
gets the cloud's answer if it came, else the edge's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import timeout_s, wait_for
from tests.integration.broker.edge import Edge, start_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_retried_start import SLOW_EXTRA, HeldCloud
from tests.integration.broker.test_retried_transaction_messages import (
    POWER_SAMPLE,
    STARTED,
    STOP,
    booted_201,
    delivered,
    event,
    evse_power_w,
    first_copy_waiting,
    started_16,
)

ENDED = event(1, "Ended")
# What the cloud answers, unlike the edge's own answer to these ({}).
CLOUD_ANSWERS = {
    "StopTransaction": {"idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET-1"}},
    "TransactionEvent": {"totalCost": 4.2},
}
MESSAGES = [
    pytest.param("ocpp1.6", "StopTransaction", STOP, id="1.6-StopTransaction"),
    pytest.param("ocpp2.0.1", "TransactionEvent", ENDED, id="2.0.1-TransactionEvent-Ended"),
]
HOW = ["link-dropped", "edge-restarted"]


@pytest.fixture
async def cloud(request: pytest.FixtureRequest) -> AsyncIterator[HeldCloud]:
    version, action = (
        request.node.callspec.params["version"],
        request.node.callspec.params["action"],
    )
    held = HeldCloud(held=(action,), subprotocol=version)
    held.answers = CLOUD_ANSWERS
    await held.start()
    yield held
    await held.stop()


async def connected(edge: Edge, version: str) -> RawChargePoint:
    """The charge point's session: 1.6 with its transaction started, 2.0.1 booted."""
    return await (started_16(edge) if version == "ocpp1.6" else booted_201(edge))


async def dropped(edge: Edge, cp: RawChargePoint, how: str, tmp_path: Path, url: str) -> Edge:
    """The charge point's connection drops, and the edge restarts too if ``how`` says so; the
    charge point connects again (no BootNotification: it did not reboot). Returns the edge."""
    await cp.close()
    await wait_for(lambda: not edge.cp("CP1")["connected"], what="the edge sees it gone")
    if how == "edge-restarted":
        await edge.stop()
        edge = await start_edge(tmp_path, cloud_url=url, cloud_extra=SLOW_EXTRA)
    return edge


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    "answered", [pytest.param(False, id="first-copy-queued"), pytest.param(True, id="answered")]
)
@pytest.mark.parametrize(("version", "action", "payload"), MESSAGES)
async def test_a_transaction_message_retried_after_the_link_dropped_reaches_the_cloud_once(
    tmp_path: Path,
    cloud: HeldCloud,
    how: str,
    answered: bool,
    version: str,
    action: str,
    payload: dict[str, Any],
) -> None:
    """The first copy waits for the cloud (it holds it) when the link drops, or the cloud
    answered it and the edge passed the answer on, but the charge point never read it. It comes
    back and sends the message again under its next message id: the edge answers, with the
    cloud's answer if one came (else as while the cloud is away: the copy is durable, queued),
    and the message goes up once."""
    edge = await start_edge(tmp_path, cloud_url=cloud.url, cloud_extra=SLOW_EXTRA)
    try:
        cp = await connected(edge, version)
        await first_copy_waiting(cloud, cp, "first", action, payload)
        expected: dict[str, Any] = {}
        if answered:
            cloud.release.set()
            lost = orjson.loads(await cp.other_frames.get())  # it stopped waiting for it
            expected = CLOUD_ANSWERS[action]
            assert lost == [3, "first", expected], lost
        edge = await dropped(edge, cp, how, tmp_path, cloud.url)
        cp = await RawChargePoint("CP1", version=version).connect(edge.url)
        again = await cp.send_frame([2, "m9", action, payload], "m9", timeout_s=timeout_s(10))
        assert again == [3, "m9", expected], "the cloud's answer if it came, else the edge's"
        assert edge.cloud("CP1")["queue_depth"] == (0 if answered else 1), "not queued again"
        await delivered(edge, cloud)
        sent = cloud.calls(action)
        # After a restart the copy in flight goes again under its own id (at least once).
        assert {f[1] for f in sent} == {"first"}, "one message, not two"
        assert all(f[3] == payload for f in sent), sent
        if answered or how == "link-dropped":
            assert len(sent) == 1, sent
        await cp.close()
    finally:
        await edge.stop()


@pytest.fixture
async def answering_cloud_201() -> AsyncIterator[HeldCloud]:
    cloud = HeldCloud(held=(), subprotocol="ocpp2.0.1")
    await cloud.start()
    yield cloud
    await cloud.stop()


async def test_a_started_event_retried_after_it_was_answered_keeps_the_sample_since(
    tmp_path: Path, answering_cloud_201: HeldCloud
) -> None:
    """The cloud answered the Started event (the station did not read it, say) and the new car's
    sample came; the station sends the event again on the same connection: the same event,
    answered by the edge with the cloud's answer, not sent up again, and the sample is kept (a
    Started event forgets the EVSE's last sample: the energy node counted the charging car as
    unmeasured until its next one)."""
    cloud = answering_cloud_201
    edge = await start_edge(tmp_path, cloud_url=cloud.url, cloud_extra=SLOW_EXTRA)
    try:
        cp = await booted_201(edge)
        first = await cp.call("TransactionEvent", STARTED)
        assert first[0] == 3, first
        assert (await cp.call("MeterValues", POWER_SAMPLE))[0] == 3
        assert evse_power_w(edge) == 7400.0
        again = await cp.call("TransactionEvent", STARTED, timeout_s=timeout_s(10))
        assert again == [3, again[1], first[2]], again
        assert evse_power_w(edge) == 7400.0, "the retried Started forgot the new car's sample"
        assert edge.cloud("CP1")["queue_depth"] == 0
        assert len(cloud.calls("TransactionEvent")) == 1, "one Started event, not two"
        await cp.close()
    finally:
        await edge.stop()
