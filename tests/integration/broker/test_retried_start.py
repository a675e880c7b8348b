"""A 1.6 StartTransaction whose answer never reached the charge point (its link dropped while
the cloud was slow to answer, or the edge restarted meanwhile) is retried by the charge point
with the same payload: the copy the edge already queued is the transaction, and the cloud
gets ONE StartTransaction for it (a second one would open a second transaction there, the first
never stopped), the retry answered under an id mapped to the cloud's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from tests.helpers import timeout_s, wait_for
from tests.integration.broker.edge import Edge, start_edge
from tests.integration.broker.raw_cp import RawChargePoint

CLOUD_TX_ID = 77
START = {
    "connectorId": 1,
    "idTag": "TAG-1",
    "meterStart": 1000,
    "timestamp": "2026-11-28T10:00:00Z",
}
# The edge answers a charge point the cloud keeps waiting after this long: well after the
# charge point in these tests gave up and came back.
EXTRA = "answer_deadline_s = 1\ncall_timeout_s = 30\nping_interval_s = 0\n"


class HeldCloud:
    """A cloud that answers the ``held`` actions (StartTransaction unless told) only once
    ``release`` is set, and everything else at once; 1.6 unless told. Records every CALL. Each
    start it has not seen before opens a transaction of its own (CLOUD_TX_ID, then 78, ...) with
    ``status``; the same message again (id and payload) is given the same one. ``answers``: the
    payload it answers an action with (empty unless told)."""

    def __init__(
        self, *, held: tuple[str, ...] = ("StartTransaction",), subprotocol: str = "ocpp1.6"
    ) -> None:
        self.held = held
        self.subprotocol = subprotocol
        self.server: Server | None = None
        self.release = asyncio.Event()
        self.status = "Accepted"
        self.received: list[list[Any]] = []
        self.tx_ids: dict[bytes, int] = {}
        self.answers: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        self.server = await serve(
            self._session,
            "127.0.0.1",
            0,
            subprotocols=[self.subprotocol],  # type: ignore[list-item]
        )

    async def _session(self, ws: ServerConnection) -> None:
        async for text in ws:
            frame = orjson.loads(text)
            if frame[0] != 2:
                continue
            self.received.append(frame)
            action = frame[2]
            payload: dict[str, Any] = dict(self.answers.get(action, {}))
            if action == "BootNotification":
                payload = {"status": "Accepted", "currentTime": "2026-11-28T10:00:00Z"}
                payload["interval"] = 300
            if action in self.held:
                await self.release.wait()
            if action == "StartTransaction":
                seen = orjson.dumps(frame[1:])
                tx_id = self.tx_ids.setdefault(seen, CLOUD_TX_ID + len(self.tx_ids))
                payload = {"transactionId": tx_id, "idTagInfo": {"status": self.status}}
            await ws.send(orjson.dumps([3, frame[1], payload]).decode())

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/ocpp"

    def calls(self, action: str) -> list[list[Any]]:
        return [f for f in self.received if f[2] == action]

    async def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def held_cloud() -> AsyncIterator[HeldCloud]:
    cloud = HeldCloud()
    await cloud.start()
    yield cloud
    await cloud.stop()


async def booted(edge: Edge) -> RawChargePoint:
    cp = await RawChargePoint("CP1").connect(edge.url)
    await cp.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    await wait_for(lambda: edge.cloud("CP1")["online"], what="the cloud session")
    return cp


async def start_then_drop(edge: Edge, cloud: HeldCloud) -> None:
    """The charge point asks to start and loses its link before any answer."""
    cp = await booted(edge)
    assert cp.ws is not None
    await cp.ws.send(orjson.dumps([2, "start-1", "StartTransaction", START]).decode())
    await wait_for(lambda: len(cloud.calls("StartTransaction")) == 1, what="the start sent up")
    await cp.close()
    await wait_for(lambda: not edge.cp("CP1")["connected"], what="the edge sees it gone")


async def retry_and_stop(edge: Edge, cloud: HeldCloud) -> int:
    """It comes back and retries the start (its own new message id), then stops; the cloud
    answers the start. Returns the id the charge point was given."""
    cp = await booted(edge)
    again = await cp.call("StartTransaction", START, timeout_s=10)
    assert again[0] == 3, again
    tx_id = again[2]["transactionId"]
    stop = await cp.call(
        "StopTransaction",
        {"transactionId": tx_id, "meterStop": 1500, "timestamp": "2026-11-28T10:30:00Z"},
    )
    assert stop[0] == 3, stop
    cloud.release.set()
    await wait_for(
        lambda: edge.cloud("CP1")["queue_depth"] == 0, timeout=15, what="everything delivered"
    )
    await cp.close()
    return int(tx_id)


def assert_one_transaction_at_the_cloud(cloud: HeldCloud) -> None:
    """One StartTransaction message (the same message again after a restart: at least once,
    under its message id), with the payload the charge point sent."""
    starts = cloud.calls("StartTransaction")
    assert {s[1] for s in starts} == {"start-1"}, f"one transaction, one StartTransaction: {starts}"
    assert all(s[3] == START for s in starts), "as the charge point sent it"
    stops = cloud.calls("StopTransaction")
    assert [s[3]["transactionId"] for s in stops] == [CLOUD_TX_ID], stops
    assert stops[0][3]["meterStop"] == 1500


async def test_a_start_retried_after_the_link_dropped_reaches_the_cloud_once(
    tmp_path: Path, held_cloud: HeldCloud
) -> None:
    edge = await start_edge(tmp_path, cloud_url=held_cloud.url, cloud_extra=EXTRA)
    try:
        await start_then_drop(edge, held_cloud)
        tx_id = await retry_and_stop(edge, held_cloud)
        assert_one_transaction_at_the_cloud(held_cloud)
        assert tx_id != CLOUD_TX_ID, "answered by the edge: the cloud kept it waiting"
    finally:
        await edge.stop()


async def test_a_start_retried_after_the_edge_restarted_reaches_the_cloud_once(
    tmp_path: Path, held_cloud: HeldCloud
) -> None:
    first = await start_edge(tmp_path, cloud_url=held_cloud.url, cloud_extra=EXTRA)
    try:
        await start_then_drop(first, held_cloud)
    finally:
        await first.stop()
    second = await start_edge(tmp_path, cloud_url=held_cloud.url, cloud_extra=EXTRA)
    try:
        await retry_and_stop(second, held_cloud)
        assert_one_transaction_at_the_cloud(held_cloud)
    finally:
        await second.stop()


async def test_the_clouds_refusal_of_the_first_copy_reaches_the_retried_transaction(
    tmp_path: Path, held_cloud: HeldCloud
) -> None:
    """The cloud answered the first copy (Invalid) while the charge point was away; the edge
    accepts the retry by its fallback: the cloud's verdict is the transaction's all the same,
    and it is stopped (StopTransactionOnInvalidId) under the id the charge point knows."""
    edge = await start_edge(
        tmp_path,
        cloud_url=held_cloud.url,
        cloud_extra=EXTRA,
        extra='[authorization]\nunknown_id_offline = "accept"\n',
    )
    try:
        await start_then_drop(edge, held_cloud)
        held_cloud.status = "Invalid"
        held_cloud.release.set()
        await wait_for(lambda: edge.cloud("CP1")["queue_depth"] == 0, what="the copy answered")
        cp = await booted(edge)
        cp.answers["RemoteStopTransaction"] = {"status": "Accepted"}
        again = await cp.call("StartTransaction", START)
        tx_id = again[2]["transactionId"]
        assert again[2]["idTagInfo"]["status"] == "Accepted", again
        await wait_for(
            lambda: (
                edge.cp("CP1")["transactions"].get(str(tx_id), {}).get("cloud_id") == CLOUD_TX_ID
            ),
            what="mapped to the cloud's id",
        )
        await wait_for(
            lambda: any(c[2] == "RemoteStopTransaction" for c in cp.received_calls),
            what="the edge stops the transaction the cloud refused",
        )
        stop = next(c for c in cp.received_calls if c[2] == "RemoteStopTransaction")
        assert stop[3] == {"transactionId": tx_id}
        await cp.close()
    finally:
        await edge.stop()


# The charge point in these tests gives up before the edge answers for the cloud (10 s by
# default; a charge point's own timeout may well be shorter) and sends the start again.
SLOW_EXTRA = "answer_deadline_s = 3\ncall_timeout_s = 30\nping_interval_s = 0\n"


async def start_waiting(edge: Edge, cloud: HeldCloud) -> RawChargePoint:
    """The charge point asks to start; the cloud holds its answer."""
    cp = await booted(edge)
    assert cp.ws is not None
    await cp.ws.send(orjson.dumps([2, "start-1", "StartTransaction", START]).decode())
    await wait_for(lambda: len(cloud.calls("StartTransaction")) == 1, what="the start sent up")
    return cp


async def stop_and_deliver(edge: Edge, cloud: HeldCloud, cp: RawChargePoint, tx_id: int) -> None:
    stop = await cp.call(
        "StopTransaction",
        {"transactionId": tx_id, "meterStop": 1500, "timestamp": "2026-11-28T10:30:00Z"},
    )
    assert stop[0] == 3, stop
    cloud.release.set()
    await wait_for(
        lambda: edge.cloud("CP1")["queue_depth"] == 0, timeout=15, what="everything delivered"
    )
    assert edge.cp("CP1")["transactions"] == {}, "nothing left running at the edge"


@pytest.mark.parametrize(
    "retry_id",
    [pytest.param("m2", id="its-next-message-id"), pytest.param("start-1", id="the-same-id")],
)
async def test_a_start_retried_on_the_same_connection_while_its_first_copy_waits_is_that_one(
    tmp_path: Path, held_cloud: HeldCloud, retry_id: str
) -> None:
    """The charge point times out before the edge answers (answer_deadline_s) and sends the
    start again on the same connection (a new message id, or the same frame again), its first
    copy still waiting for the cloud: the retry takes the first copy's place, answered when that
    one is (here by the edge, at the first copy's deadline), not queued as a second start for
    the cloud."""
    edge = await start_edge(tmp_path, cloud_url=held_cloud.url, cloud_extra=SLOW_EXTRA)
    try:
        cp = await start_waiting(edge, held_cloud)
        again = await cp.send_frame(
            [2, retry_id, "StartTransaction", START], retry_id, timeout_s=timeout_s(10)
        )
        assert again[0] == 3, again
        assert edge.cloud("CP1")["queue_depth"] == 1, "the retry is not queued a second time"
        tx_id = int(again[2]["transactionId"])
        assert tx_id != CLOUD_TX_ID, "answered by the edge: the cloud kept it waiting"
        await stop_and_deliver(edge, held_cloud, cp, tx_id)
        assert_one_transaction_at_the_cloud(held_cloud)
        assert len(held_cloud.calls("StartTransaction")) == 1, "not even under one id"
        await cp.close()
    finally:
        await edge.stop()


async def test_the_clouds_answer_to_the_first_copy_answers_the_retry_on_the_same_connection(
    tmp_path: Path, held_cloud: HeldCloud
) -> None:
    """As above, the cloud answering the first copy after the retry came (before the deadline):
    the charge point gets the cloud's own transaction id in answer to its retry."""
    edge = await start_edge(tmp_path, cloud_url=held_cloud.url, cloud_extra=SLOW_EXTRA)
    try:
        cp = await start_waiting(edge, held_cloud)
        retry = asyncio.create_task(cp.call("StartTransaction", START, timeout_s=timeout_s(10)))
        await wait_for(
            lambda: edge.cp("CP1")["counters"].get("frames_in") == 3, what="the retry read"
        )
        held_cloud.release.set()
        again = await retry
        assert again[0] == 3, again
        assert again[2]["transactionId"] == CLOUD_TX_ID, again
        await stop_and_deliver(edge, held_cloud, cp, CLOUD_TX_ID)
        assert_one_transaction_at_the_cloud(held_cloud)
        await cp.close()
    finally:
        await edge.stop()


# Another start, on connector 2, by a charge point whose message ids begin again at each
# connection (unique per connection only, as OCPP-J asks): it comes as "m2" as START did.
START_2 = {
    "connectorId": 2,
    "idTag": "TAG-2",
    "meterStart": 2000,
    "timestamp": "2026-11-28T10:05:00Z",
}


async def start_answered_by_the_edge(edge: Edge) -> int:
    """A connection whose start (message "m2") the edge answers at answer_deadline_s, the cloud
    holding it; then the charge point reconnects (its next connection counts from "m1")."""
    cp = await booted(edge)
    first = await cp.call("StartTransaction", START, timeout_s=timeout_s(5))
    assert first[0] == 3, first
    await cp.close()
    await wait_for(lambda: not edge.cp("CP1")["connected"], what="the edge sees it gone")
    return int(first[2]["transactionId"])


async def stop_both(edge: Edge, cloud: HeldCloud, cp: RawChargePoint, first: int, second: int):
    for tx_id, meter_stop in ((first, 1500), (second, 2500)):
        stop = await cp.call(
            "StopTransaction",
            {"transactionId": tx_id, "meterStop": meter_stop, "timestamp": "2026-11-28T10:30:00Z"},
        )
        assert stop[0] == 3, stop
    cloud.release.set()
    await wait_for(
        lambda: edge.cloud("CP1")["queue_depth"] == 0, timeout=15, what="everything delivered"
    )
    assert edge.cloud("CP1")["dead_letters"] == 0, "no stop without its transaction"
    assert edge.cp("CP1")["transactions"] == {}, "nothing left running at the edge"


def assert_each_stop_reached_its_own_transaction(cloud: HeldCloud) -> None:
    starts = cloud.calls("StartTransaction")
    assert [(s[1], s[3]) for s in starts] == [("m2", START), ("m2", START_2)], starts
    stops = sorted(
        (s[3]["transactionId"], s[3]["meterStop"]) for s in cloud.calls("StopTransaction")
    )
    assert stops == [(CLOUD_TX_ID, 1500), (CLOUD_TX_ID + 1, 2500)], stops


async def test_a_message_id_used_again_on_a_later_connection_maps_its_own_start(
    tmp_path: Path, held_cloud: HeldCloud
) -> None:
    """The edge answered a start ("m2") and the cloud's id for it came later; the charge point
    reconnects and a new start has "m2" again, answered by the cloud at once: the new start's
    cloud id is its own, not the earlier transaction's too (that one's stop went up under the
    new id: the cloud's first transaction never stopped, the second stopped while it ran)."""
    edge = await start_edge(tmp_path, cloud_url=held_cloud.url, cloud_extra=EXTRA)
    try:
        first = await start_answered_by_the_edge(edge)
        held_cloud.release.set()
        await wait_for(
            lambda: edge.cp("CP1")["transactions"][str(first)]["cloud_id"] == CLOUD_TX_ID,
            what="the first mapped to the cloud's id",
        )
        cp = await booted(edge)
        second = await cp.call("StartTransaction", START_2, timeout_s=timeout_s(5))
        assert second[1] == "m2", "the same message id as the first start's"
        assert second[2]["transactionId"] == CLOUD_TX_ID + 1, second
        await stop_both(edge, held_cloud, cp, first, CLOUD_TX_ID + 1)
        assert_each_stop_reached_its_own_transaction(held_cloud)
        await cp.close()
    finally:
        await edge.stop()


async def test_two_starts_with_one_message_id_answered_by_the_edge_keep_their_own_ids(
    tmp_path: Path, held_cloud: HeldCloud
) -> None:
    """Both starts ("m2" on two connections) answered by the edge while the cloud holds the
    first: each edge id is mapped to its own start's cloud id (the second mint took the first's
    place in the map: the cloud's id for the first start went to the second transaction, and the
    first one's stop was dead-lettered, never given a cloud id)."""
    edge = await start_edge(tmp_path, cloud_url=held_cloud.url, cloud_extra=EXTRA)
    try:
        first = await start_answered_by_the_edge(edge)
        cp = await booted(edge)
        second = await cp.call("StartTransaction", START_2, timeout_s=timeout_s(5))
        assert second[1] == "m2", "the same message id as the first start's"
        assert second[2]["transactionId"] != first, second
        await stop_both(edge, held_cloud, cp, first, int(second[2]["transactionId"]))
        assert_each_stop_reached_its_own_transaction(held_cloud)
        await cp.close()
    finally:
        await edge.stop()


# The new session's first sample, on the start's connector before its transaction id is known
# (1.6 MeterValues may come without one).
SAMPLE = {
    "connectorId": 1,
    "meterValue": [
        {
            "timestamp": "2026-11-28T10:00:05Z",
            "sampledValue": [
                {"value": "7400", "measurand": "Power.Active.Import", "unit": "W"},
                {"value": "10.5", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            ],
        }
    ],
}


def sampled(edge: Edge) -> dict[str, Any]:
    meter: dict[str, Any] = edge.cp("CP1")["meter"].get("1", {})
    return {k: meter.get(k) for k in ("power_w", "current_L1_a", "sampled_utc")}


SAMPLED = {"power_w": 7400.0, "current_L1_a": 10.5, "sampled_utc": "2026-11-28T10:00:05Z"}


async def sample_taken(edge: Edge, cp: RawChargePoint) -> None:
    assert cp.ws is not None
    await cp.ws.send(orjson.dumps([2, "mv-1", "MeterValues", SAMPLE]).decode())
    await wait_for(lambda: sampled(edge) == SAMPLED, what="the sample taken")


async def test_a_start_retried_on_the_same_connection_keeps_the_sample_taken_since_its_first(
    tmp_path: Path, held_cloud: HeldCloud
) -> None:
    """The connector's sample is forgotten when a session starts (its last car's draw is not the
    new car's), at the first copy of its start: a retry is the same session, and the new car's
    sample that came in between is kept (the energy node would count the car as unmeasured)."""
    edge = await start_edge(tmp_path, cloud_url=held_cloud.url, cloud_extra=SLOW_EXTRA)
    try:
        cp = await start_waiting(edge, held_cloud)
        await sample_taken(edge, cp)
        assert cp.ws is not None
        await cp.ws.send(orjson.dumps([2, "m3", "StartTransaction", START]).decode())
        await wait_for(
            lambda: edge.cp("CP1")["counters"].get("frames_in") == 4, what="the retry read"
        )
        assert sampled(edge) == SAMPLED
        held_cloud.release.set()
        await wait_for(
            lambda: edge.cloud("CP1")["queue_depth"] == 0, timeout=15, what="the start delivered"
        )
        assert sampled(edge) == SAMPLED
        await cp.close()
    finally:
        await edge.stop()


async def test_a_start_retried_after_the_link_dropped_keeps_the_sample_taken_since_its_first(
    tmp_path: Path, held_cloud: HeldCloud
) -> None:
    """As above, the retry on the charge point's next connection (its first copy still queued)."""
    edge = await start_edge(tmp_path, cloud_url=held_cloud.url, cloud_extra=EXTRA)
    try:
        await start_then_drop(edge, held_cloud)
        cp = await booted(edge)
        await sample_taken(edge, cp)
        again = await cp.call("StartTransaction", START, timeout_s=timeout_s(10))
        assert again[0] == 3, again
        assert sampled(edge) == SAMPLED
        held_cloud.release.set()
        await wait_for(
            lambda: edge.cloud("CP1")["queue_depth"] == 0, timeout=15, what="the start delivered"
        )
        await cp.close()
    finally:
        await edge.stop()
