"""A 2.0.1 station says why it refuses a TxProfile (``statusInfo.reasonCode``, as EVerest's
libocpp does), through the real broker and a raw 2.0.1 station: the lesson it names is taken at
once, and a refusal for a transaction it does not have (TxNotFound: its end never reached the
edge) teaches nothing: before, the second refusal taught watts, and every later profile of the
station went in watts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.broker.edge import Edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.station_201 import station_on_broker
from tests.integration.broker.test_cloud_profiles import calls
from tests.integration.broker.test_profile_batches import batch

Station = tuple[RawChargePoint, Edge]
Refusal = Callable[[dict[str, Any]], dict[str, Any]]


def tx_profiles(cp: RawChargePoint) -> list[tuple[str, str]]:
    """(transaction, rate unit) of each TxProfile the station got, in order."""
    return [
        (
            str(c[3]["chargingProfile"].get("transactionId")),
            str(c[3]["chargingProfile"]["chargingSchedule"][0]["chargingRateUnit"]),
        )
        for c in calls(cp, "SetChargingProfile")
        if c[3]["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
    ]


def rejection(edge: Edge) -> str | None:
    last: str | None = edge.system.actor("broker/profiles").report()["last_rejection"]
    return last


@pytest.fixture
async def station(tmp_path: Path) -> AsyncIterator[tuple[RawChargePoint, Edge]]:
    """A 2.0.1 station booted on the broker, transaction "A" started on EVSE 1."""
    async with station_on_broker(tmp_path) as s:
        await s.event("A", "Started")
        await wait_for(lambda: tx_profiles(s.cp) == [("A", "A")], what="A's TxProfile at start")
        yield s.cp, s.edge


def refusing(reason: str, refused: Callable[[dict[str, Any]], bool]) -> Refusal:
    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        if refused(payload["chargingProfile"]):
            return {"status": "Rejected", "statusInfo": {"reasonCode": reason}}
        return {"status": "Accepted"}

    return answer


async def test_a_transaction_the_station_does_not_have_teaches_nothing(station: Station) -> None:
    """A's end never reached the edge (the station restarted): the station refuses its TxProfiles
    with TxNotFound. Tried once more (it may be the start's race), then left: no lesson (watts
    here: the station's capabilities are the safe defaults, A or W), the refusal and its reason
    in the status."""
    cp, edge = station
    cp.answers["SetChargingProfile"] = refusing(
        "TxNotFound", lambda p: p["chargingProfilePurpose"] == "TxProfile"
    )
    edge.system.send("broker/profiles", batch(edge, 8.0, sent_ns=1_000))
    await wait_for(
        lambda: rejection(edge) == "CP1/1: Rejected: TxNotFound",
        what="the retry refused too, with its reason",
    )
    edge.system.send("broker/profiles", batch(edge, 7.0, sent_ns=2_000))
    await wait_for(lambda: len(tx_profiles(cp)) == 4, what="the next limit's TxProfile")
    assert tx_profiles(cp) == [("A", "A")] * 4  # start, 8 A, its retry, 7 A: all in amperes
    assert edge.cp("CP1")["energy"]["caps"]["rate_units"] == ["A", "W"]
    assert not [c for c in calls(cp, "SetChargingProfile") if "W" in str(c[3])], "no watts"


@pytest.mark.parametrize(
    ("reason", "learned"),
    [
        pytest.param("UnsupportedRateUnit", ["W"], id="unit"),
        pytest.param("unsupportedRateUnit", ["W"], id="case-insensitive"),
    ],
)
async def test_a_named_lesson_is_taken_at_once(
    station: Station, reason: str, learned: list[str]
) -> None:
    """The station refuses amperes and says so: the TxProfile goes again in watts at once
    (not after a retry a second later in amperes), and the station's profiles with it."""
    cp, edge = station
    cp.answers["SetChargingProfile"] = refusing(
        reason, lambda p: p["chargingSchedule"][0]["chargingRateUnit"] == "A"
    )
    before = len(calls(cp, "SetChargingProfile"))
    edge.system.send("broker/profiles", batch(edge, 8.0, sent_ns=1_000))
    await wait_for(lambda: tx_profiles(cp)[-1:] == [("A", "W")], what="the TxProfile in watts")
    assert tx_profiles(cp) == [("A", "A"), ("A", "A"), ("A", "W")]  # start, 8 A, 8 A in W
    assert edge.cp("CP1")["energy"]["caps"]["rate_units"] == learned
    again = calls(cp, "SetChargingProfile")[before:]
    units = {c[3]["chargingProfile"]["chargingSchedule"][0]["chargingRateUnit"] for c in again[1:]}
    assert units == {"W"}, "the station's profiles went again, in watts"
    assert [c[3]["chargingProfile"]["chargingProfilePurpose"] for c in again[1:]][:1] == [
        "TxDefaultProfile"
    ]
