"""The CloudLink's deadlines against a cloud that stops answering (a real websocket server that
reads every frame and answers only what it is told to).

- A charge point waiting for the cloud's answer is answered by the edge after answer_deadline_s.
- A relay queued behind an unanswered call is answered by the edge after answer_deadline_s too,
  while the call in flight still holds the session (one outstanding CALL per direction); so is a
  transaction message queued behind it (durable in the outbox, it goes up later).
- After call_timeout_s the call in flight has failed and the next one goes up.
- Three calls in a row timed out: the edge drops the session and connects again.
- A cloud that answers again: relays go through at once and no stale deadline answers a
  charge point that got the cloud's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from actors import cp_calls
from drivers.ports import free_tcp_port
from tests.helpers import timeout_s, wait_for
from tests.integration.broker.edge import Edge, start_edge
from tests.integration.broker.raw_cp import RawChargePoint

ANSWER_DEADLINE_S = 0.3
CALL_TIMEOUT_S = 1.0


class SilentCloud:
    """Accepts ocpp1.6 sessions; answers BootNotification, and other actions only while
    ``answering`` is set. Counts sessions and the frames it received."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.answering = False
        self.sessions = 0
        self.received: list[tuple[float, str, str]] = []  # (monotonic, message id, action)
        self.ws: ServerConnection | None = None
        self.answers: dict[str, list[Any]] = {}  # answers to our calls, by message id

    async def start(self) -> None:
        # a port outside the ephemeral range: the test brings this cloud back on it
        port = free_tcp_port()
        self.server = await serve(self._session, "127.0.0.1", port, subprotocols=["ocpp1.6"])  # type: ignore[list-item]

    async def _session(self, ws: ServerConnection) -> None:
        self.sessions += 1
        self.ws = ws
        async for text in ws:
            frame = orjson.loads(text)
            if frame[0] in (3, 4):
                self.answers[frame[1]] = frame
                continue
            self.received.append((time.monotonic(), frame[1], frame[2]))
            if frame[2] == "BootNotification":
                payload: dict[str, Any] = {
                    "status": "Accepted",
                    "currentTime": "2026-11-29T00:00:00Z",
                    "interval": 300,
                }
            elif self.answering:
                payload = {"currentTime": "2026-11-29T00:00:00Z"}
            else:
                continue
            await ws.send(orjson.dumps([3, frame[1], payload]).decode())

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ocpp"

    def actions(self, action: str) -> list[str]:
        return [message_id for _, message_id, a in self.received if a == action]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def silent_cloud() -> AsyncIterator[SilentCloud]:
    cloud = SilentCloud()
    await cloud.start()
    yield cloud
    await cloud.stop()


@pytest.fixture
async def edge(tmp_path: Path, silent_cloud: SilentCloud) -> AsyncIterator[Edge]:
    e = await start_edge(
        tmp_path,
        cloud_url=silent_cloud.url,
        cloud_extra=(
            f"answer_deadline_s = {ANSWER_DEADLINE_S}\ncall_timeout_s = {CALL_TIMEOUT_S}\n"
            "ping_interval_s = 0\n"
        ),
    )
    yield e
    await e.stop()


async def booted(edge: Edge, cloud: SilentCloud) -> RawChargePoint:
    cp = await RawChargePoint("CP1").connect(edge.url)
    boot = await cp.call("BootNotification", {"chargePointVendor": "T", "chargePointModel": "M"})
    assert boot[0] == 3, boot
    assert boot[2]["status"] == "Accepted", boot
    await wait_for(lambda: edge.cloud("CP1")["online"], what="the cloud session ready")
    return cp


async def test_unanswered_calls_are_answered_by_the_edge_then_fail_then_reconnect(
    edge: Edge, silent_cloud: SilentCloud
) -> None:
    cp = await booted(edge, silent_cloud)
    try:
        # 1. In flight and unanswered: the edge answers the charge point after the deadline.
        started = time.monotonic()
        first = await cp.call("Heartbeat", {}, timeout_s=timeout_s(5))
        waited = time.monotonic() - started
        assert first[0] == 3, first
        assert "currentTime" in first[2], first
        assert ANSWER_DEADLINE_S * 0.9 <= waited < ANSWER_DEADLINE_S + timeout_s(1), waited
        assert len(silent_cloud.actions("Heartbeat")) == 1

        # 2. Queued behind it (the first still holds the session): answered by the edge after
        # its own deadline, and not sent up while the first is in flight.
        started = time.monotonic()
        second = await cp.call("Heartbeat", {}, timeout_s=timeout_s(5))
        waited = time.monotonic() - started
        assert second[0] == 3, second
        assert "currentTime" in second[2], second
        assert ANSWER_DEADLINE_S * 0.9 <= waited < ANSWER_DEADLINE_S + timeout_s(1), waited
        assert len(silent_cloud.actions("Heartbeat")) == 1

        # 3. The first call fails after call_timeout_s (it held the session until then); the
        # next one goes up at once.
        first_sent = silent_cloud.received[-1][0]
        await wait_for(
            lambda: edge.cloud("CP1")["inflight"] is None,
            timeout=CALL_TIMEOUT_S + 3,
            what="the first call to time out",
        )
        assert time.monotonic() - first_sent >= CALL_TIMEOUT_S * 0.9
        third = await cp.call("Heartbeat", {}, timeout_s=timeout_s(5))
        assert third[0] == 3
        assert len(silent_cloud.actions("Heartbeat")) == 2

        # 4. The third call in a row unanswered: the edge drops the session, connects again.
        sessions = silent_cloud.sessions
        await wait_for(
            lambda: edge.cloud("CP1")["inflight"] is None,
            timeout=CALL_TIMEOUT_S + 3,
            what="the second call sent up to time out",
        )
        fourth = await cp.call("Heartbeat", {}, timeout_s=timeout_s(5))
        assert fourth[0] == 3
        assert len(silent_cloud.actions("Heartbeat")) == 3
        await wait_for(
            lambda: silent_cloud.sessions > sessions,
            timeout=CALL_TIMEOUT_S + 5,
            what="a new cloud session after three unanswered calls",
        )

        # 5. The cloud answers again: the answer is the cloud's, at once, and no deadline left
        # over from the silent calls answers a later call for the cloud.
        silent_cloud.answering = True
        await wait_for(lambda: edge.cloud("CP1")["online"], what="the new session ready")
        for _ in range(5):
            started = time.monotonic()
            answer = await cp.call("Heartbeat", {}, timeout_s=timeout_s(5))
            assert answer[2] == {"currentTime": "2026-11-29T00:00:00Z"}, answer
            assert time.monotonic() - started < ANSWER_DEADLINE_S
        assert not cp.other_frames.qsize()
    finally:
        await cp.close()


async def test_a_transaction_message_queued_behind_an_unanswered_call_is_answered_on_time(
    edge: Edge, silent_cloud: SilentCloud
) -> None:
    """Transaction messages go through the outbox, in order: one that waits behind a call the
    cloud does not answer is answered by the edge after answer_deadline_s too (it is durable
    already), not once the call in flight has failed and been retried (the charge point, given
    no answer, would time out and send it again: a second copy for the cloud)."""
    cp = await booted(edge, silent_cloud)
    stop = {"transactionId": 5, "meterStop": 1500, "timestamp": "2026-11-29T00:00:00Z"}
    try:
        first = await cp.call("StopTransaction", stop, timeout_s=timeout_s(5))
        assert first[0] == 3, first
        started = time.monotonic()
        second = await cp.call(
            "StopTransaction", {**stop, "transactionId": 6}, timeout_s=timeout_s(15)
        )
        waited = time.monotonic() - started
        assert second[0] == 3, second
        assert second[2] == {}, second
        assert ANSWER_DEADLINE_S * 0.9 <= waited < ANSWER_DEADLINE_S + timeout_s(1), waited
        assert len(silent_cloud.actions("StopTransaction")) == 1, "not sent up: the first holds"
        assert edge.cloud("CP1")["queue_depth"] == 2, "both kept for the cloud"
    finally:
        await cp.close()


METER = {
    "connectorId": 0,
    "meterValue": [
        {"timestamp": "2026-11-29T00:00:00Z", "sampledValue": [{"value": "1234", "unit": "Wh"}]}
    ],
}


async def test_an_unanswered_queue_message_is_queued_before_the_edge_answers_and_sent_again(
    edge: Edge, silent_cloud: SilentCloud
) -> None:
    """MeterValues without a transaction ride the live relay; unanswered, they are queued
    durably (the edge's answer waits for that commit) and reach the cloud once it answers."""
    cp = await booted(edge, silent_cloud)
    try:
        answer = await cp.call("MeterValues", METER, timeout_s=timeout_s(5))
        assert answer[0] == 3, answer
        assert answer[2] == {}, answer
        assert len(silent_cloud.actions("MeterValues")) == 1  # it did go up, live
        assert edge.cloud("CP1")["queue_depth"] == 1  # and, unanswered, it is queued
        silent_cloud.answering = True
        await wait_for(
            lambda: edge.cloud("CP1")["queue_depth"] == 0,
            timeout=CALL_TIMEOUT_S + 5,
            what="the queued copy delivered",
        )
        ids = silent_cloud.actions("MeterValues")
        assert len(ids) == 2, ids  # at least once: the live one and the queued copy
        assert ids[0] == ids[1]
    finally:
        await cp.close()


async def test_queue_messages_while_the_cloud_is_away_survive_a_restart(
    tmp_path: Path, silent_cloud: SilentCloud
) -> None:
    silent_cloud.answering = True
    extra = f"answer_deadline_s = {ANSWER_DEADLINE_S}\ncall_timeout_s = {CALL_TIMEOUT_S}\n"
    first = await start_edge(tmp_path, cloud_url=silent_cloud.url, cloud_extra=extra)
    cp = await booted(first, silent_cloud)
    url = silent_cloud.url
    await silent_cloud.stop()
    try:
        await wait_for(lambda: not first.cloud("CP1")["online"], what="the edge to see the outage")
        sent = []
        for i in range(3):
            answer = await cp.call("MeterValues", {**METER, "connectorId": i})
            assert answer[0] == 3, answer
            sent.append(answer[1])
        assert first.cloud("CP1")["queue_depth"] == 3
    finally:
        await cp.close()
        await first.stop()

    port = int(url.split(":")[2].split("/")[0])
    silent_cloud.server = await serve(
        silent_cloud._session,
        "127.0.0.1",
        port,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
    )
    second = await start_edge(tmp_path, cloud_url=url, cloud_extra=extra)
    try:
        cp = await booted(second, silent_cloud)
        await wait_for(
            lambda: len(silent_cloud.actions("MeterValues")) == 3,
            what="the three queued MeterValues delivered after the restart",
        )
        assert silent_cloud.actions("MeterValues") == sent
        await cp.close()
    finally:
        await second.stop()


async def test_a_call_the_charge_point_never_answers_fails_after_the_down_timeout(
    edge: Edge, silent_cloud: SilentCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One outstanding call towards the charge point: unanswered, it fails (a CALLERROR to the
    cloud) after the down timeout, and the next call goes down; an answered call is never failed
    by a timer left from an earlier one."""
    monkeypatch.setattr(cp_calls, "DOWN_TIMEOUT_S", 0.4)
    silent_cloud.answering = True
    cp = await booted(edge, silent_cloud)
    try:
        assert silent_cloud.ws is not None
        started = time.monotonic()
        await silent_cloud.ws.send(orjson.dumps([2, "c1", "GetConfiguration", {}]).decode())
        await silent_cloud.ws.send(orjson.dumps([2, "c2", "GetConfiguration", {}]).decode())
        await wait_for(lambda: "c1" in silent_cloud.answers, what="the first call failed")
        assert silent_cloud.answers["c1"][0] == 4, silent_cloud.answers["c1"]
        assert "no answer within 0.4 s" in silent_cloud.answers["c1"][3]
        assert time.monotonic() - started >= 0.4 * 0.9
        # The second went down only after the first failed; the charge point answers it now.
        await wait_for(lambda: len(cp.received_calls) == 2, what="the second call down")
        assert [c[1] for c in cp.received_calls] == ["c1", "c2"]
        assert cp.ws is not None
        await cp.ws.send(orjson.dumps([3, "c2", {"configurationKey": []}]).decode())
        await wait_for(lambda: "c2" in silent_cloud.answers, what="the second call answered")
        assert silent_cloud.answers["c2"][0] == 3, silent_cloud.answers["c2"]
        # Answered calls in a row, past the first call's deadline: never failed by a timer.
        cp.answers["GetConfiguration"] = {"configurationKey": []}
        for i in range(3, 8):
            await silent_cloud.ws.send(orjson.dumps([2, f"c{i}", "GetConfiguration", {}]).decode())
            await wait_for(lambda i=i: f"c{i}" in silent_cloud.answers, what=f"call c{i}")
            assert silent_cloud.answers[f"c{i}"][0] == 3, silent_cloud.answers[f"c{i}"]
            await asyncio.sleep(0.1)  # pacing, not settling: the calls span the first deadlines
        # Unanswered again: the timer armed for an earlier call fires while this one is in
        # flight, is armed again for it, and fails it on time.
        del cp.answers["GetConfiguration"]
        started = time.monotonic()
        await silent_cloud.ws.send(orjson.dumps([2, "c8", "GetConfiguration", {}]).decode())
        await wait_for(lambda: "c8" in silent_cloud.answers, what="the last call failed")
        assert silent_cloud.answers["c8"][0] == 4, silent_cloud.answers["c8"]
        assert 0.4 * 0.9 <= time.monotonic() - started < 0.4 + timeout_s(1)
    finally:
        await cp.close()


@pytest.mark.parametrize("first_action", ["Heartbeat", "MeterValues"])
async def test_an_answer_to_an_earlier_connections_call_does_not_answer_a_new_call_with_its_id(
    tmp_path: Path, silent_cloud: SilentCloud, first_action: str
) -> None:
    """Message ids are unique per connection: a charge point that reconnects may use an id again
    (its counter starts afresh). The cloud's late answer to the earlier connection's call went to
    the new call with that id (here a Heartbeat's currentTime; a StartTransaction's transactionId
    would have been another transaction's), and the new call's own answer was dropped."""
    e = await start_edge(
        tmp_path,
        cloud_url=silent_cloud.url,
        cloud_extra="answer_deadline_s = 5\ncall_timeout_s = 8\nping_interval_s = 0\n",
    )
    try:
        first = await booted(e, silent_cloud)
        payload = METER if first_action == "MeterValues" else {}
        held = asyncio.create_task(first.send_frame([2, "m2", first_action, payload], "m2"))
        await wait_for(lambda: "m2" in silent_cloud.actions(first_action), what="it went up")
        await first.close()  # its link drops before the cloud answers
        held.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held
        second = await RawChargePoint("CP1").connect(e.url)
        try:
            again = asyncio.create_task(second.send_frame([2, "m2", "Heartbeat", {}], "m2"))
            await wait_for(
                lambda: e.cloud("CP1")["relays_waiting"] == 1,
                what="the new call waiting behind the first, in flight",
            )
            # The cloud answers the first connection's call now, then answers everything.
            assert silent_cloud.ws is not None
            old = {"currentTime": "2001-01-01T00:00:00Z"}
            await silent_cloud.ws.send(orjson.dumps([3, "m2", old]).decode())
            silent_cloud.answering = True
            answer = await asyncio.wait_for(again, timeout_s(4))
            assert answer[2] == {"currentTime": "2026-11-29T00:00:00Z"}, answer
            assert silent_cloud.actions("Heartbeat")[-1] == "m2", "the new call went up too"
            if first_action == "MeterValues":
                # The earlier call must not be lost (a queue message): it went into the outbox
                # when the new call took its id, and goes up again (at least once).
                await wait_for(
                    lambda: silent_cloud.actions("MeterValues") == ["m2", "m2"],
                    timeout=CALL_TIMEOUT_S + 5,
                    what="the earlier MeterValues delivered from the outbox",
                )
                assert e.cloud("CP1")["queue_depth"] == 0
        finally:
            await second.close()
    finally:
        await e.stop()
