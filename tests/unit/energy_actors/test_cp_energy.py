"""The energy side of one charge point (actors.cp_energy), pure: which calls it makes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actors.cp_downstream import DownCall, DownQueue
from actors.cp_energy import Answer, EnergySide, TxRetry
from actors.energy_messages import ConnectorLimit
from actors.messages import CallChargePoint
from actors.profiles import (
    DEFAULT_PROFILE_ID_BASE,
    ChargePointCapabilities,
    is_edge_profile_id,
    max_profile_id,
    tx_default_profile_id,
    tx_profile_id,
)
from drivers.ocpp.codes import OcppVersion

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CAPS_16 = {"configurationKey": [{"key": "ChargeProfileMaxStackLevel", "value": "5"}]}


def limit(connector: int, limit_a: float, tx: str | None = "7") -> ConnectorLimit:
    """A limit the energy node decided for transaction ``tx`` (None: no car)."""
    return ConnectorLimit(
        charge_point_id="CP1",
        connector_id=connector,
        limit_a=limit_a,
        phases=3,
        binding_source="grid_limit:fuse/L1",
        reason="test",
        transaction_id=tx,
    )


def caps_answer() -> Answer:
    return Answer(tag="caps", ok=True, payload=CAPS_16, error="")


def tags(calls: list[CallChargePoint]) -> list[str]:
    return [c.tag for c in calls]


def charging_side() -> EnergySide:
    """Connected, capabilities known (stack level 5), connector 1 charging at 10 A (tx "7"),
    connector 2 without a car (0 A, no transaction)."""
    side = EnergySide("CP1", reply_to="x", max_current_a=32.0, phases=3)
    side.connected(OcppVersion.V16, rebooted=True)
    side.answered(caps_answer(), NOW)
    side.limit(limit(1, 10.0), 6.0, "7", lambda: NOW)
    side.limit(limit(2, 0.0, tx=None), 6.0, None, lambda: NOW)
    side.sent[1] = 10.0
    return side


def running(connector: int) -> str | None:
    return "7" if connector == 1 else None


def test_the_edges_profile_ids() -> None:
    caps = ChargePointCapabilities()
    for pid in (tx_default_profile_id(caps), max_profile_id(caps), tx_profile_id(caps, 1)):
        assert is_edge_profile_id(caps, pid)
    for pid in (1, 7, DEFAULT_PROFILE_ID_BASE - 1, DEFAULT_PROFILE_ID_BASE + 2):
        assert not is_edge_profile_id(caps, pid)


@pytest.mark.parametrize(
    ("cloud_default_a", "new_default_a", "again"),
    [
        pytest.param(None, 8.0, True, id="no-cloud-default"),
        pytest.param(4.0, 8.0, False, id="the-clouds-lower-default-holds"),
        pytest.param(4.0, 3.0, True, id="below-the-clouds"),
        pytest.param(7.0, 8.0, True, id="up-to-the-clouds"),
    ],
)
def test_the_tx_default_profile_again_when_what_it_offers_changes(
    cloud_default_a: float | None, new_default_a: float, again: bool
) -> None:
    side = charging_side()
    side.cloud_default_a = cloud_default_a
    before = side.report()["default_limit_a"]
    calls = side.limit(limit(1, 10.0), new_default_a, "7", lambda: NOW)
    assert tags(calls) == (["boot:0"] if again else [])
    assert (before, side.report()["default_limit_a"]) == (6.0, new_default_a)
    if again:
        offered = min(new_default_a, cloud_default_a or new_default_a)
        schedule = calls[0].payload["csChargingProfiles"]["chargingSchedule"]
        assert schedule["chargingSchedulePeriod"][0]["limit"] == offered


def test_back_without_a_boot_the_running_transactions_profile_follows() -> None:
    side = charging_side()
    assert tags(side.connected(OcppVersion.V16)) == ["caps"]
    calls, _, _ = side.answered(caps_answer(), NOW, running_tx=running)
    assert tags(calls) == ["boot:0", "boot:1", "tx:1:10.0:7"]


def test_after_a_reboot_no_profile_for_the_transactions_it_ended() -> None:
    side = charging_side()
    assert tags(side.connected(OcppVersion.V16, rebooted=True)) == ["caps"]
    calls, _, _ = side.answered(caps_answer(), NOW, running_tx=running)
    assert tags(calls) == ["boot:0", "boot:1"]


@pytest.mark.parametrize(
    ("request_", "again"),
    [
        pytest.param({}, True, id="all"),
        pytest.param({"connectorId": 1}, True, id="connector"),
        pytest.param({"chargingProfilePurpose": "TxProfile"}, True, id="purpose"),
        pytest.param({"stackLevel": 5}, True, id="the-edges-stack-level"),
        pytest.param({"stackLevel": 0}, False, id="another-stack-level"),
        pytest.param({"id": DEFAULT_PROFILE_ID_BASE + 101}, True, id="the-edges-id"),
        pytest.param({"id": 7}, False, id="the-clouds-id"),
        pytest.param({"chargingProfileCriteria": {"stackLevel": 5}}, True, id="201-edges-level"),
        pytest.param({"chargingProfileCriteria": {"stackLevel": 1}}, False, id="201-other-level"),
        pytest.param({"chargingProfileId": 7}, False, id="201-the-clouds-id"),
        # An id names that profile alone, whatever the criteria beside it (1.6 3.13.5, K10)
        pytest.param(
            {"id": DEFAULT_PROFILE_ID_BASE + 101, "stackLevel": 0}, True, id="the-edges-id-alone"
        ),
        pytest.param({"id": 7, "stackLevel": 5}, False, id="the-clouds-id-alone"),
        pytest.param(
            {
                "chargingProfileId": DEFAULT_PROFILE_ID_BASE,
                "chargingProfileCriteria": {"stackLevel": 1},
            },
            True,
            id="201-the-edges-id-alone",
        ),
    ],
)
def test_a_clear_from_the_cloud_brings_the_edges_profiles_back_if_it_may_have_removed_them(
    request_: dict[str, object], again: bool
) -> None:
    side = charging_side()
    calls = side.cloud_cleared(request_, NOW, running)
    assert tags(calls) == (["boot:0", "boot:1", "tx:1:10.0:7"] if again else [])
    assert side.sent == ({} if again else {1: 10.0})


def refused(tag: str) -> Answer:
    return Answer(tag=tag, ok=True, payload={"status": "Rejected"}, error="")


def test_a_lesson_from_a_refused_tx_profile_sends_the_station_profiles_again() -> None:
    side = charging_side()
    calls, outcome, later = side.answered(refused("tx:1:10.0:7"), NOW, running_tx=running)
    assert (calls, later) == ([], TxRetry(connector_id=1, tx_id="7"))  # once more, later
    assert outcome is not None
    assert outcome.status == "Rejected (retrying)"
    assert tags(side.retry(TxRetry(connector_id=1, tx_id="7"))) == ["txr:1:10.0:7"]
    calls, _, later = side.answered(refused("txr:1:10.0:7"), NOW, running_tx=running)
    assert side.caps.max_stack_level == 0
    assert (tags(calls), later) == (["boot:0", "boot:1", "tx:1:10.0:7"], None)


@pytest.mark.parametrize(
    ("cloud_level", "edge_level", "shared"),
    [
        pytest.param(None, 5, None, id="no-cloud-profile: the reported 5"),
        pytest.param(2, 5, None, id="below: shadowed, capped"),
        pytest.param(5, 5, 5, id="at the top it reports: shared, a 2.0.1 station may refuse"),
        pytest.param(7, 8, None, id="above what it reports: one above, not at it (K01.FR.39)"),
    ],
)
def test_the_edges_stack_level_beside_the_clouds(
    cloud_level: int | None, edge_level: int, shared: int | None
) -> None:
    side = charging_side()
    assert side.cloud_level_at(cloud_level) == (edge_level != 5)
    assert (side.caps.max_stack_level, side.shared_level) == (edge_level, shared)
    assert side.report()["shared_level"] == shared
    # A reconnection reads what it reports again: the same level beside the cloud's.
    side.connected(OcppVersion.V16)
    side.answered(caps_answer(), NOW)
    assert side.caps.max_stack_level == edge_level


def test_a_refusal_above_the_clouds_level_teaches_it_for_the_connection() -> None:
    """One above the cloud's 7 refused (as too high): the edge's go at the cloud's 7, no
    further, and the cloud's next profile at 7 does not take them up to 8 again; a reconnection
    tries 8 once more."""
    side = charging_side()
    side.cloud_level_at(7)
    side.answered(refused("tx:1:10.0:7"), NOW, running_tx=running)
    side.retry(TxRetry(connector_id=1, tx_id="7"))
    side.answered(refused("txr:1:10.0:7"), NOW, running_tx=running)
    assert (side.caps.max_stack_level, side.shared_level) == (7, 7)
    assert not side.cloud_level_at(7)
    assert side.caps.max_stack_level == 7
    side.connected(OcppVersion.V16)
    side.answered(caps_answer(), NOW)
    assert side.caps.max_stack_level == 8


def refused_for(tag: str, reason: str) -> Answer:
    """A 2.0.1 refusal that says why."""
    payload = {"status": "Rejected", "statusInfo": {"reasonCode": reason}}
    return Answer(tag=tag, ok=True, payload=payload, error="")


@pytest.mark.parametrize(
    ("reason", "stack_level", "units", "again"),
    [
        pytest.param("InvalidStackLevel", 0, ("A", "W"), True, id="stack-level-after-the-retry"),
        pytest.param("UnsupportedRateUnit", 5, ("W",), True, id="unit-at-once"),
        pytest.param("InvalidSchedule", 5, ("A", "W"), False, id="no-lesson"),
        pytest.param("TxNotFound", 5, ("A", "W"), False, id="not-its-transaction"),
        pytest.param("SomeVendorCode", 0, ("A", "W"), True, id="unknown: the usual guess"),
    ],
)
def test_a_refusal_that_says_why(
    reason: str, stack_level: int, units: tuple[str, ...], again: bool
) -> None:
    """A named lesson is taken at once, alone; a cause no stack level or unit cures teaches
    nothing after the retry (a stale transaction's TxNotFound taught watts for every later
    profile); an unknown code, what a refusal without a reason would teach. The outcome
    carries the reason."""
    side = charging_side()
    at_once = reason == "UnsupportedRateUnit"  # InvalidStackLevel may be a conflict: retried
    calls, outcome, later = side.answered(refused_for("tx:1:10.0:7", reason), NOW, running)
    if not at_once:
        assert (calls, later) == ([], TxRetry(connector_id=1, tx_id="7"))
        assert tags(side.retry(later)) == ["txr:1:10.0:7"]
        calls, outcome, later = side.answered(refused_for("txr:1:10.0:7", reason), NOW, running)
    assert later is None
    assert (side.caps.max_stack_level, side.caps.rate_units) == (stack_level, units)
    assert tags(calls) == (["boot:0", "boot:1", "tx:1:10.0:7"] if again else [])
    assert outcome is not None
    assert outcome.status == f"Rejected: {reason}" + (" (retrying)" if again else "")


def test_refusals_before_the_retry_teach_nothing_and_the_retry_carries_the_latest_limit() -> None:
    """A transaction's first TxProfiles (its start's and the energy node's first limit) can both
    arrive before the charge point has taken in the transaction: the second refusal is the
    first one's reason again, not a lesson (it taught stack level 0 from a mere race). The
    retry goes at the transaction's limit then (the refused one may be stale: a decrease
    since), and not at all if one was taken meanwhile."""
    side = charging_side()
    (start,) = side.transaction_started(2, "9")
    (first,) = side.limit(limit(2, 12.0, tx="9"), 6.0, "9", lambda: NOW)
    _, _, later = side.answered(refused(start.tag), NOW, running_tx=running)
    assert later == TxRetry(connector_id=2, tx_id="9")
    calls, outcome, again = side.answered(refused(first.tag), NOW, running_tx=running)
    assert (calls, again, side.caps.max_stack_level) == ([], None, 5)
    assert outcome is not None
    assert outcome.status == "Rejected (retrying)"
    side.limit(limit(2, 8.0, tx="9"), 6.0, "9", lambda: NOW)  # a decrease, also refused
    side.answered(refused("tx:2:8.0:9"), NOW, running_tx=running)
    assert tags(side.retry(later)) == ["txr:2:8.0:9"]
    side.answered(refused("tx:2:8.0:9"), NOW)  # sent before the retry, answered after it went
    assert side.caps.max_stack_level == 5, "the retry's own answer tells"
    side.answered(Answer(tag="txr:2:8.0:9", ok=True, payload={"status": "Accepted"}, error=""), NOW)
    assert (side.sent[2], side.retrying) == (8.0, {})
    side.answered(refused("tx:1:10.0:7"), NOW, running_tx=running)
    side.answered(Answer(tag="tx:1:10.0:7", ok=True, payload={"status": "Accepted"}, error=""), NOW)
    assert side.retry(TxRetry(connector_id=1, tx_id="7")) == [], "taken meanwhile"


@pytest.mark.parametrize("version", [OcppVersion.V16, OcppVersion.V201])
def test_a_charge_point_that_takes_only_watts_gets_them_at_the_sites_voltage(
    version: OcppVersion,
) -> None:
    """The site's nominal voltage (``[allocation] nominal_voltage_v``) survives learning the
    capabilities (and their failing), for the TxProfile and the station's profiles alike."""
    side = EnergySide("CP1", reply_to="x", max_current_a=32.0, phases=3, nominal_voltage_v=220.0)
    side.connected(version, rebooted=True)
    if version is OcppVersion.V16:
        payload = {
            "configurationKey": [
                {"key": "ChargingScheduleAllowedChargingRateUnit", "value": "Power"}
            ]
        }
    else:
        payload = {
            "getVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": "SmartChargingCtrlr"},
                    "variable": {"name": "RateUnit"},
                    "attributeValue": "W",
                }
            ]
        }
    boot, _, _ = side.answered(Answer(tag="caps", ok=True, payload=payload, error=""), NOW)
    assert side.caps.rate_units == ("W",)
    assert side.caps.nominal_voltage_v == 220.0
    key = "csChargingProfiles" if version is OcppVersion.V16 else "chargingProfile"
    default = boot[0].payload[key]["chargingSchedule"]
    default = default if version is OcppVersion.V16 else default[0]
    assert default["chargingSchedulePeriod"][0]["limit"] == float(int(6.0 * 3 * 220.0))
    (call,) = side.limit(limit(1, 10.0), 6.0, "7", lambda: NOW)
    assert '"limit":6600.0' in call.payload_json
    # A broken answer keeps the site's voltage with the safe defaults.
    side.connected(version, rebooted=True)
    side.answered(Answer(tag="caps", ok=True, payload={"configurationKey": 5}, error=""), NOW)
    assert side.caps.nominal_voltage_v == 220.0


def test_a_rate_unit_not_understood_keeps_the_stack_level_read() -> None:
    """A GetConfiguration answer whose rate unit cannot be read ("Current Power") reset the
    stack level read beside it (20) to 0: the edge's profiles went at level 0, under the
    cloud's. The level stands, the unit falls back to A or W, and what was not read is kept
    for the actor's log line; a later answer read in full clears it."""
    side = EnergySide("CP1", reply_to="x", max_current_a=32.0, phases=3)
    side.connected(OcppVersion.V16, rebooted=True)
    payload = {
        "configurationKey": [
            {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "20"},
            {"key": "ChargingScheduleAllowedChargingRateUnit", "value": "Current Power"},
        ]
    }
    boot, _, _ = side.answered(Answer(tag="caps", ok=True, payload=payload, error=""), NOW)
    assert side.caps.max_stack_level == 20
    assert side.caps.rate_units == ("A", "W")
    assert boot[0].payload["csChargingProfiles"]["stackLevel"] == 20
    (note,) = side.caps_unread
    assert "ChargingScheduleAllowedChargingRateUnit" in note
    assert "'Current Power'" in note
    side.connected(OcppVersion.V16, rebooted=True)
    side.answered(caps_answer(), NOW)
    assert (side.caps.max_stack_level, side.caps_unread) == (5, ())


def test_a_new_transaction_gets_the_safe_default_not_a_limit_decided_before_it() -> None:
    """At its start a transaction's TxProfile says the safe default (what the energy node
    counts a new car at), not the connector's "no car" 0 A (that paused every car arriving at a
    connector used before) nor the last car's limit, and not a cloud's TxProfile left to
    override the TxDefaultProfile; a limit decided before it that arrives late (a batch under
    way when it began) changes nothing, also after a reconnect; its own limit goes at once."""
    side = charging_side()
    (call,) = side.transaction_started(2, "9")
    assert call.tag == "tx:2:6.0:9"
    assert side.limit(limit(2, 0.0, tx=None), 6.0, "9", lambda: NOW) == []  # decided before
    assert side.limit(limit(1, 4.0, tx="5"), 6.0, "7", lambda: NOW) == []  # the last car's
    (capped,) = side.cloud_capped(2, 5.0, "9", force=False)
    assert capped.tag == "tx:2:5.0:9"  # the default, under the cloud's cap
    side.connected(OcppVersion.V16)
    calls, _, _ = side.answered(caps_answer(), NOW, running_tx=lambda c: {1: "7", 2: "9"}[c])
    assert tags(calls) == ["boot:0", "boot:1", "tx:1:10.0:7", "tx:2:5.0:9"]
    # Its own limit, under the cloud's cap: the 5 A on its way already (not asked twice).
    assert side.limit(limit(2, 12.0, tx="9"), 6.0, "9", lambda: NOW) == []
    assert side.limits[2].limit_a == 12.0
    side.limit(limit(2, 0.0, tx=None), 6.0, None, lambda: NOW)  # it ended meanwhile
    calls, _, later = side.answered(refused("tx:2:5.0:9"), NOW, running_tx=lambda c: None)
    assert (calls, later) == ([], None)


def test_without_the_edges_station_profiles_a_transaction_start_sends_nothing() -> None:
    """A charge point whose energy the edge does not manage (no energy node: the station's
    profiles never installed) gets no TxProfile at a transaction's start."""
    side = EnergySide("CP1", reply_to="x", max_current_a=32.0, phases=3)
    assert side.transaction_started(1, "9") == []


def test_a_limit_that_came_before_the_transactions_start_goes_at_its_start() -> None:
    """The energy node hears of a transaction from the broker's reports, which can leave before
    the broker has taken its start in (answered the charge point): a limit for it that arrived
    first goes as its TxProfile then, however the transaction is known meanwhile."""
    side = charging_side()
    side.limit(limit(2, 12.0, tx="9"), 6.0, None, lambda: NOW)
    assert tags(side.transaction_started(2, "9")) == ["tx:2:12.0:9"]


def accepted(tag: str) -> Answer:
    return Answer(tag=tag, ok=True, payload={"status": "Accepted"}, error="")


def test_refusals_for_another_transaction_teach_nothing() -> None:
    """A charge point restarting its transaction: a TxProfile for the old one refused as it
    ends (on the wire as the new one began), and the old one's pending retry firing after the
    new one began, neither counts against the new one, whose first refusal is retried."""
    side = charging_side()
    side.limit(limit(1, 12.0, tx="7"), 6.0, "7", lambda: NOW)  # on the wire
    _, _, retry_old = side.answered(refused("tx:1:12.0:7"), NOW)
    assert retry_old == TxRetry(connector_id=1, tx_id="7")
    (start,) = side.transaction_started(1, "8")
    _, _, later = side.answered(refused("tx:1:10.0:7"), NOW)  # the old one's, read late
    assert later is None
    assert side.rejected == {}
    _, _, retry_new = side.answered(refused(start.tag), NOW)
    assert retry_new == TxRetry(connector_id=1, tx_id="8")
    assert side.retry(retry_old) == [], "the old transaction's retry"
    side.limit(limit(1, 10.0, tx="8"), 6.0, "8", lambda: NOW)
    side.answered(refused("tx:1:10.0:8"), NOW)
    assert side.caps.max_stack_level == 5
    assert tags(side.retry(retry_new)) == ["txr:1:10.0:8"]


def test_a_dropped_retry_is_not_sent() -> None:
    """The transaction ended (or the link went down) before the retry's time: the actor drops
    it (cp_limits._tx_retry), and nothing goes."""
    side = charging_side()
    _, _, later = side.answered(refused("tx:1:10.0:7"), NOW)
    assert later is not None
    side.drop_retry(later)
    assert side.retry(later) == []


def test_a_newer_limit_after_the_retry_went_replaces_it_where_it_waits() -> None:
    """A slow charge point: a limit waits in the queue, the retry of a refused one is queued
    behind it, then a decrease comes. The decrease goes as the retry (it replaces the retry
    where it waits), so the last TxProfile the charge point takes is the decrease, not the
    retry's older value going after it."""
    side = charging_side()  # connector 1, transaction "7", 10 A taken
    queue = DownQueue()
    queue.add(DownCall(origin="edge", message_id="busy", action="X", text=""))
    assert queue.next() is not None  # a call outstanding: the others wait

    def enqueue(calls: list[CallChargePoint]) -> None:
        for c in calls:
            queue.add(
                DownCall(
                    origin="edge",
                    message_id=c.tag,
                    action=c.action,
                    text="",
                    tag=c.tag,
                    replace_key=c.replace_key,
                )
            )

    side.limit(limit(1, 16.0), 6.0, "7", lambda: NOW)
    _, _, later = side.answered(refused("tx:1:16.0:7"), NOW)
    assert later is not None
    enqueue(side.limit(limit(1, 20.0), 6.0, "7", lambda: NOW))
    enqueue(side.retry(later))
    enqueue(side.limit(limit(1, 8.0), 6.0, "7", lambda: NOW))  # a decrease
    order = [c.tag for c in queue.queue]
    assert order == ["tx:1:20.0:7", "txr:1:8.0:7"]
    for tag in order:
        side.answered(accepted(tag), NOW)
    assert (side.limits[1].limit_a, side.sent[1]) == (8.0, 8.0)
    assert side.retrying == {}


def reconnected(side: EnergySide) -> list[str]:
    """The station's profiles a reconnect without a boot sends (capabilities learned again)."""
    side.connected(OcppVersion.V16)
    calls, _, _ = side.answered(caps_answer(), NOW, running_tx=running)
    return [t for t in tags(calls) if t.startswith("boot:")]


def test_the_station_profiles_answers() -> None:
    """A refused max profile is not sent again under the same capabilities ("where supported"),
    across reconnects, and counts as no rejection; again once a lesson changed them, and after
    a boot (new firmware). A refused TxDefaultProfile is an outcome for connector 0 (a rejection
    the status counts), and one when taken again. Both answers in the report."""
    side = charging_side()
    boot = side.booted(NOW)
    assert tags(boot) == ["boot:0", "boot:1"]
    _, outcome, _ = side.answered(
        Answer(tag="boot:1", ok=True, payload={"status": "Rejected"}, error=""), NOW
    )
    assert outcome is None
    _, outcome, _ = side.answered(accepted("boot:0"), NOW)
    assert outcome is None
    assert side.report()["station_profiles"] == {
        "TxDefaultProfile": "Accepted",
        "max profile": "Rejected",
    }
    assert reconnected(side) == ["boot:0"], "not again under the same capabilities"
    # A lesson from a refused TxProfile changes the capabilities: the max profile goes again,
    # is refused under those too, and neither goes on the next connections.
    side.answered(refused("tx:1:10.0:7"), NOW, running_tx=running)
    side.retry(TxRetry(connector_id=1, tx_id="7"))
    calls, _, _ = side.answered(refused("txr:1:10.0:7"), NOW, running_tx=running)
    assert tags(calls) == ["boot:0", "boot:1", "tx:1:10.0:7"]
    error = Answer(tag="boot:1", ok=False, payload={}, error="NotImplemented: no such profile")
    side.answered(error, NOW)
    assert reconnected(side) == ["boot:0"], "learned again: stack level 5, refused under it"
    assert tags(side.booted(NOW)) == ["boot:0", "boot:1"], "a boot: perhaps new firmware"
    side.answered(accepted("boot:1"), NOW)
    assert side.report()["station_profiles"]["max profile"] == "Accepted"
    side.answered(Answer(tag="boot:0", ok=False, payload={}, error="timeout"), NOW)
    _, outcome, _ = side.answered(refused_for("boot:0", "InvalidSchedule"), NOW)
    assert outcome is not None
    assert (outcome.connector_id, outcome.limit_a) == (0, 6.0)
    assert outcome.status == "TxDefaultProfile Rejected: InvalidSchedule"
    _, outcome, _ = side.answered(accepted("boot:0"), NOW)
    assert outcome is not None
    assert outcome.status == "TxDefaultProfile Accepted", "the energy node's entry cleared"


def test_a_safe_default_refused_in_amperes_goes_again_in_watts() -> None:
    """2.0.1 UnsupportedRateUnit for the TxDefaultProfile: the station's profiles go again in
    watts at once (before, only a TxProfile's refusal taught it: the first car of each
    connection started without a safe default)."""
    side = charging_side()
    side.booted(NOW)
    calls, outcome, _ = side.answered(refused_for("boot:0", "UnsupportedRateUnit"), NOW)
    assert side.caps.rate_units == ("W",)
    assert tags(calls) == ["boot:0", "boot:1"]
    units = {c.payload["csChargingProfiles"]["chargingSchedule"]["chargingRateUnit"] for c in calls}
    assert units == {"W"}
    assert outcome is not None
    assert outcome.status == "TxDefaultProfile Rejected: UnsupportedRateUnit (retrying)"


def test_a_tx_profile_refused_for_a_lesson_learned_meanwhile_goes_again_once() -> None:
    """The TxDefaultProfile's UnsupportedRateUnit taught watts while the TxProfile, sent in
    amperes, was on its way: its own refusal for the same reason sends it again in watts (it had
    nothing left to learn, and the transaction ran without its limit until the next one); once:
    refused again, it is not asked in a loop (second review of 1781172)."""
    side = charging_side()
    side.booted(NOW)
    side.answered(refused_for("boot:0", "UnsupportedRateUnit"), NOW)
    assert side.caps.rate_units == ("W",)
    calls, _, _ = side.answered(refused_for("tx:1:10.0:7", "UnsupportedRateUnit"), NOW, running)
    assert tags(calls) == ["tx:1:10.0:7"]
    assert '"chargingRateUnit":"W"' in calls[0].payload_json
    again, _, later = side.answered(refused_for("tx:1:10.0:7", "UnsupportedRateUnit"), NOW, running)
    assert (again, later) == ([], None)
    side.answered(accepted("tx:1:10.0:7"), NOW)
    assert side.relearned == set(), "taken: the next refusal may send it again"


def test_a_max_profile_taken_clears_a_refusal_read_late() -> None:
    """The max profile in amperes was on the wire when the TxDefaultProfile's refusal taught
    watts: its refusal, read under the new capabilities, does not keep the watts one (taken)
    from going after a cloud's clear (second review of 1781172)."""
    side = charging_side()
    side.booted(NOW)
    side.answered(refused_for("boot:0", "UnsupportedRateUnit"), NOW)
    side.answered(refused_for("boot:1", "UnsupportedRateUnit"), NOW)  # the amperes one, late
    side.answered(accepted("boot:1"), NOW)  # the watts one
    calls = side.cloud_cleared({}, NOW, running)
    assert [t for t in tags(calls) if t.startswith("boot:")] == ["boot:0", "boot:1"]


def test_a_new_transaction_starts_with_its_own_resend() -> None:
    """The re-send under a lesson learned meanwhile is per transaction: one the last car's used
    up does not keep the next car's (third review of d479336)."""
    side = charging_side()
    side.booted(NOW)
    side.answered(refused_for("boot:0", "UnsupportedRateUnit"), NOW)
    side.answered(refused_for("tx:1:10.0:7", "UnsupportedRateUnit"), NOW, running)
    side.answered(refused_for("tx:1:10.0:7", "UnsupportedRateUnit"), NOW, running)  # used up
    assert side.relearned == {1}
    side.transaction_started(1, "8")
    assert side.relearned == set()
