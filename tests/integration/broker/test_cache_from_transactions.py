"""The edge's authorization cache learns the cloud's verdict from every answer that carries one
(OCPP 1.6 3.5.1: the IdTagInfo of Authorize, StartTransaction and StopTransaction answers; 2.0.1:
a TransactionEvent's idTokenInfo), not from Authorize answers alone.

Learned from Authorize alone, a tag the cloud revoked and answered Invalid at a StartTransaction
was still accepted offline from its last Authorize, and a charge point that starts without an
Authorize (a locally pre-authorized tag) taught the cache nothing, its driver unknown offline.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import wait_for
from tests.integration.broker.edge import cloud_and_edge, start_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_clear_cache import BOOT, authorize, cache_entries
from tests.integration.broker.test_retried_start import HeldCloud
from tests.integration.broker.test_retried_transaction_messages import STARTED
from tests.integration.sim.conftest import GOOD_TAG

START = {"connectorId": 1, "idTag": GOOD_TAG, "meterStart": 0, "timestamp": "2025-01-06T12:00:00Z"}


async def test_a_tag_the_cloud_refused_at_a_start_is_not_accepted_offline(tmp_path: Path) -> None:
    async with cloud_and_edge(tmp_path) as (cloud, edge):
        cp = await RawChargePoint("CP1").connect(edge.url)
        try:
            await cp.call("BootNotification", BOOT["ocpp1.6"])
            assert await authorize(cp, "ocpp1.6") == "Accepted"
            await wait_for(lambda: cache_entries(edge) == 1, what="the tag cached")
            assert cloud.id_tags is not None
            cloud.id_tags.discard(GOOD_TAG)  # revoked at the cloud
            started = await cp.call("StartTransaction", START)
            assert started[2]["idTagInfo"]["status"] == "Invalid", started
            await cloud.stop()
            await wait_for(lambda: not edge.cloud("CP1")["online"], what="the cloud gone")
            assert await authorize(cp, "ocpp1.6") != "Accepted", (
                "a tag the cloud refused at its start accepted offline from the cache"
            )
        finally:
            await cp.close()


async def test_a_tag_started_without_an_authorize_is_known_offline(tmp_path: Path) -> None:
    async with cloud_and_edge(tmp_path) as (cloud, edge):
        cp = await RawChargePoint("CP1").connect(edge.url)
        try:
            await cp.call("BootNotification", BOOT["ocpp1.6"])
            started = await cp.call("StartTransaction", START)
            assert started[2]["idTagInfo"]["status"] == "Accepted", started
            await wait_for(lambda: cache_entries(edge) == 1, what="the start's tag cached")
            await cloud.stop()
            await wait_for(lambda: not edge.cloud("CP1")["online"], what="the cloud gone")
            assert await authorize(cp, "ocpp1.6") == "Accepted"
        finally:
            await cp.close()


async def test_a_201_token_started_without_an_authorize_is_known_offline(tmp_path: Path) -> None:
    """2.0.1: the idTokenInfo the cloud answers to a TransactionEvent that carries the id."""
    async with cloud_and_edge(tmp_path) as (cloud, edge):
        cp = await RawChargePoint("CP1", version="ocpp2.0.1").connect(edge.url)
        try:
            await cp.call("BootNotification", BOOT["ocpp2.0.1"])
            started = await cp.call(
                "TransactionEvent",
                {**STARTED, "idToken": {"idToken": GOOD_TAG, "type": "ISO14443"}},
            )
            assert started[2]["idTokenInfo"]["status"] == "Accepted", started
            await wait_for(lambda: cache_entries(edge) == 1, what="the event's token cached")
            await cloud.stop()
            await wait_for(lambda: not edge.cloud("CP1")["online"], what="the cloud gone")
            assert await authorize(cp, "ocpp2.0.1") == "Accepted"
        finally:
            await cp.close()


async def test_a_start_answered_concurrent_tx_leaves_the_cached_verdict(tmp_path: Path) -> None:
    """ConcurrentTx at a start is about that transaction (the tag charges elsewhere), not about
    the tag: cached, the driver was refused offline once the other transaction had ended."""
    cloud = HeldCloud(held=())
    cloud.answers["Authorize"] = {"idTagInfo": {"status": "Accepted"}}
    cloud.status = "ConcurrentTx"
    await cloud.start()
    edge = await start_edge(tmp_path, cloud_url=cloud.url)
    try:
        cp = await RawChargePoint("CP1").connect(edge.url)
        await cp.call("BootNotification", BOOT["ocpp1.6"])
        await wait_for(lambda: edge.cloud("CP1")["online"], what="the cloud session")
        assert await authorize(cp, "ocpp1.6") == "Accepted"
        await wait_for(lambda: cache_entries(edge) == 1, what="the tag cached")
        started = await cp.call("StartTransaction", START)
        assert started[2]["idTagInfo"]["status"] == "ConcurrentTx", started
        await cloud.stop()
        await wait_for(lambda: not edge.cloud("CP1")["online"], what="the cloud gone")
        assert await authorize(cp, "ocpp1.6") == "Accepted"
        await cp.close()
    finally:
        await edge.stop()
        await cloud.stop()
