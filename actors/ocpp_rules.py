"""The OCPP broker's pure rules: offline delivery classes, the edge's own answers, the 1.6
transaction id mapping on raw frames, edge-minted ids. No I/O, no clock: ``now`` is a parameter.

Sources: OCPP 1.6 section 4.7 (transaction-related messages, queued in order while offline),
the 1.6 security whitepaper (SecurityEventNotification needs guaranteed delivery), 2.0.1 Part 2
E04/E13 (TransactionEvent, thinning only intermediate Updated events) and Part 4 section 6.4
(a Local Controller's own message ids must not collide with the CSMS's).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

import orjson

from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.framing import MAX_MESSAGE_ID_CHARS, Call, call_text

V16, V201 = OcppVersion.V16, OcppVersion.V201

# Actions a charge point initiates (the rest come from the CSMS; DataTransfer goes both ways).
CHARGE_POINT_ACTIONS: Final[dict[OcppVersion, frozenset[str]]] = {
    V16: frozenset(
        [
            "Authorize",
            "BootNotification",
            "DataTransfer",
            "DiagnosticsStatusNotification",
            "FirmwareStatusNotification",
            "Heartbeat",
            "MeterValues",
            "StartTransaction",
            "StatusNotification",
            "StopTransaction",
            "SecurityEventNotification",
            "SignCertificate",
            "SignedFirmwareStatusNotification",
            "LogStatusNotification",
        ]
    ),
    V201: frozenset(
        [
            "Authorize",
            "BootNotification",
            "ClearedChargingLimit",
            "DataTransfer",
            "FirmwareStatusNotification",
            "Get15118EVCertificate",
            "GetCertificateStatus",
            "Heartbeat",
            "LogStatusNotification",
            "MeterValues",
            "NotifyChargingLimit",
            "NotifyCustomerInformation",
            "NotifyDisplayMessages",
            "NotifyEVChargingNeeds",
            "NotifyEVChargingSchedule",
            "NotifyEvent",
            "NotifyMonitoringReport",
            "NotifyReport",
            "PublishFirmwareStatusNotification",
            "ReportChargingProfiles",
            "ReservationStatusUpdate",
            "SecurityEventNotification",
            "SignCertificate",
            "StatusNotification",
            "TransactionEvent",
        ]
    ),
}


class Delivery(Enum):
    """What to do with a charge point's CALL while the cloud is away."""

    TRANSACTION = "transaction"  # queue in order, never drop; later ones wait for earlier ones
    LATEST = "latest"  # keep only the newest per coalesce key
    DROP = "drop"  # worthless when late (Heartbeat; Authorize was answered locally)
    QUEUE = "queue"  # queue in order, best effort: may be dead-lettered after retries


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflinePolicy:
    delivery: Delivery
    coalesce_key: tuple[str | int, ...] = ()  # set for LATEST only


_STATUS_REPORTS: Final = frozenset(
    {
        "FirmwareStatusNotification",
        "DiagnosticsStatusNotification",
        "SignedFirmwareStatusNotification",
        "LogStatusNotification",
        "PublishFirmwareStatusNotification",
    }
)


def offline_policy(version: OcppVersion, action: str, payload: Mapping[str, Any]) -> OfflinePolicy:
    if action in ("StartTransaction", "StopTransaction", "TransactionEvent"):
        return OfflinePolicy(delivery=Delivery.TRANSACTION)
    if action == "SecurityEventNotification":
        return OfflinePolicy(delivery=Delivery.TRANSACTION)
    if action == "MeterValues" and version is V16 and "transactionId" in payload:
        return OfflinePolicy(delivery=Delivery.TRANSACTION)
    if action in ("Heartbeat", "Authorize"):
        return OfflinePolicy(delivery=Delivery.DROP)
    if action == "BootNotification" or action in _STATUS_REPORTS:
        return OfflinePolicy(delivery=Delivery.LATEST, coalesce_key=(action,))
    if action == "StatusNotification":
        if version is V16:
            key: tuple[str | int, ...] = (action, _int(payload.get("connectorId")))
        else:
            key = (action, _int(payload.get("evseId")), _int(payload.get("connectorId")))
        return OfflinePolicy(delivery=Delivery.LATEST, coalesce_key=key)
    return OfflinePolicy(delivery=Delivery.QUEUE)


def is_transaction_related(version: OcppVersion, action: str, payload: Mapping[str, Any]) -> bool:
    return offline_policy(version, action, payload).delivery is Delivery.TRANSACTION


def may_thin(version: OcppVersion, action: str, payload: Mapping[str, Any]) -> bool:
    """Under memory pressure only 2.0.1's intermediate Updated events may go, never Started/Ended."""
    return (
        version is V201 and action == "TransactionEvent" and payload.get("eventType") == "Updated"
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


# ---- the edge's own answers while the cloud is away ---------------------------------------------

AUTHORIZATION_STATUSES: Final[dict[OcppVersion, frozenset[str]]] = {
    V16: frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"}),
    V201: frozenset(
        {
            "Accepted",
            "Blocked",
            "ConcurrentTx",
            "Expired",
            "Invalid",
            "NoCredit",
            "NotAllowedTypeEVSE",
            "NotAtThisLocation",
            "NotAtThisTime",
            "Unknown",
        }
    ),
}

# Charge point CALLs whose answer is an empty object (every field of the response is optional).
EMPTY_ANSWER_ACTIONS: Final[dict[OcppVersion, frozenset[str]]] = {
    V16: frozenset(
        [
            "StatusNotification",
            "MeterValues",
            "StopTransaction",
            "FirmwareStatusNotification",
            "DiagnosticsStatusNotification",
            "SecurityEventNotification",
            "SignedFirmwareStatusNotification",
            "LogStatusNotification",
        ]
    ),
    V201: frozenset(
        [
            "StatusNotification",
            "MeterValues",
            "TransactionEvent",
            "FirmwareStatusNotification",
            "SecurityEventNotification",
            "LogStatusNotification",
            "NotifyEvent",
            "NotifyReport",
            "NotifyMonitoringReport",
            "NotifyChargingLimit",
            "NotifyCustomerInformation",
            "NotifyDisplayMessages",
            "ClearedChargingLimit",
            "ReportChargingProfiles",
            "ReservationStatusUpdate",
            "PublishFirmwareStatusNotification",
        ]
    ),
}


def utc_text(now: datetime) -> str:
    """OCPP's dateTime: UTC with milliseconds and a Z, e.g. ``2024-05-01T12:00:00.000Z``."""
    if now.tzinfo is None:
        raise ValueError(f"a naive datetime is ambiguous, give one with a timezone: {now!r}")
    # isoformat, not strftime: the same text (milliseconds truncated) at 1.4 instead of 2.3 us;
    # the broker writes several per frame (state, meter values, connector reports).
    return now.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def boot_notification_answer(
    now: datetime, *, interval_s: int, status: str = "Accepted"
) -> dict[str, Any]:
    """The same shape in 1.6 and 2.0.1; ``interval_s`` is the heartbeat interval to use."""
    if status not in ("Accepted", "Pending", "Rejected"):
        raise ValueError(f"BootNotification status {status!r} is not Accepted, Pending or Rejected")
    return {"status": status, "currentTime": utc_text(now), "interval": int(interval_s)}


def heartbeat_answer(now: datetime) -> dict[str, Any]:
    return {"currentTime": utc_text(now)}


def empty_answer() -> dict[str, Any]:
    return {}


def data_transfer_answer(status: str = "UnknownVendorId") -> dict[str, Any]:
    # Offline the edge has no implementation of the vendor's extension; the cloud might have.
    if status not in ("Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId"):
        raise ValueError(f"DataTransfer status {status!r} is not a DataTransferStatus")
    return {"status": status}


@dataclass(frozen=True, slots=True, kw_only=True)
class IdTokenVerdict:
    """The local authorization decision, as the Authorize callback returns it."""

    status: str
    expiry_utc: datetime | None = None
    parent_id_tag: str | None = None  # 1.6 parentIdTag, 2.0.1 groupIdToken.idToken


def id_token_info(version: OcppVersion, verdict: IdTokenVerdict) -> dict[str, Any]:
    if verdict.status not in AUTHORIZATION_STATUSES[version]:
        raise ValueError(f"{verdict.status!r} is not an OCPP {version} authorization status")
    info: dict[str, Any] = {"status": verdict.status}
    if version is V16:
        if verdict.expiry_utc is not None:
            info["expiryDate"] = utc_text(verdict.expiry_utc)
        if verdict.parent_id_tag is not None:
            info["parentIdTag"] = verdict.parent_id_tag
        return {"idTagInfo": info}
    if verdict.expiry_utc is not None:
        info["cacheExpiryDateTime"] = utc_text(verdict.expiry_utc)
    if verdict.parent_id_tag is not None:
        info["groupIdToken"] = {"idToken": verdict.parent_id_tag, "type": "Central"}
    return {"idTokenInfo": info}


def authorize_answer(version: OcppVersion, verdict: IdTokenVerdict) -> dict[str, Any]:
    return id_token_info(version, verdict)


def start_transaction_answer(transaction_id: int, verdict: IdTokenVerdict) -> dict[str, Any]:
    """1.6 StartTransaction.conf with an edge-minted id (persist the id before answering)."""
    check_edge_transaction_id(transaction_id)
    return {"transactionId": transaction_id, **id_token_info(V16, verdict)}


# ---- 1.6 transaction ids: edge-minted range and rewriting on raw frames -------------------------

INT32_MAX: Final = 2**31 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeIdRange:
    """Where the edge mints 1.6 transaction ids: agree it with the cloud so that they never meet.

    Positive only (charger stacks read -1 and 0 as "no transaction"), within int32 (the type
    most charge points and CSMS store it in).
    """

    first: int = 2_000_000_000
    last: int = INT32_MAX

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.last <= INT32_MAX:
            raise ValueError(
                f"edge transaction id range must satisfy 1 <= first <= last <= {INT32_MAX}, "
                f"got {self.first}..{self.last}"
            )

    def __contains__(self, transaction_id: object) -> bool:
        return isinstance(transaction_id, int) and self.first <= transaction_id <= self.last


class EdgeIdsExhausted(RuntimeError):
    pass


def check_edge_transaction_id(transaction_id: int) -> None:
    if isinstance(transaction_id, bool) or not 1 <= transaction_id <= INT32_MAX:
        raise ValueError(f"transaction id {transaction_id!r} is not a positive int32")


def next_edge_transaction_id(
    previous: int | None, id_range: EdgeIdRange, in_use: Container[int] = ()
) -> int:
    """The id after ``previous`` (the persisted high-water mark), wrapping, skipping ids in use."""
    size = id_range.last - id_range.first + 1
    start = previous + 1 if previous is not None and previous in id_range else id_range.first
    for step in range(size):
        candidate = id_range.first + (start - id_range.first + step) % size
        if candidate not in in_use:
            return candidate
    raise EdgeIdsExhausted(f"every id in {id_range.first}..{id_range.last} is in use")


# Where a 1.6 transaction id sits, by direction: up (charge point to cloud: edge id -> cloud id)
# and down (cloud to charge point: cloud id -> edge id). GetCompositeSchedule and the other CSMS
# calls carry none (checked against the schemas in tests).
TRANSACTION_ID_PATHS_UP: Final[dict[str, tuple[str, ...]]] = {
    "MeterValues": ("transactionId",),
    "StopTransaction": ("transactionId",),
}
TRANSACTION_ID_PATHS_DOWN: Final[dict[str, tuple[str, ...]]] = {
    "RemoteStopTransaction": ("transactionId",),
    "SetChargingProfile": ("csChargingProfiles", "transactionId"),
    "RemoteStartTransaction": ("chargingProfile", "transactionId"),
}

_TX_NUMBER = re.compile(r'"transactionId"\s*:\s*(-?\d+)(?![\d.eE])')


def transaction_id_of(call: Call) -> int | None:
    path = TRANSACTION_ID_PATHS_UP.get(call.action) or TRANSACTION_ID_PATHS_DOWN.get(call.action)
    return None if path is None else _transaction_id_at(call.payload, path)


def rewrite_up(call: Call, edge_to_cloud: Mapping[int, int]) -> str:
    """The frame text to send to the cloud: the edge-minted id replaced by the cloud's."""
    return _rewrite(call, TRANSACTION_ID_PATHS_UP.get(call.action), edge_to_cloud)


def rewrite_down(call: Call, cloud_to_edge: Mapping[int, int]) -> str:
    """The frame text to send to the charge point: the cloud's id replaced by the edge's."""
    return _rewrite(call, TRANSACTION_ID_PATHS_DOWN.get(call.action), cloud_to_edge)


def _transaction_id_at(payload: Mapping[str, Any], path: tuple[str, ...]) -> int | None:
    node: Any = payload
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, int) and not isinstance(node, bool) else None


def _rewrite(call: Call, path: tuple[str, ...] | None, mapping: Mapping[int, int]) -> str:
    if path is None:
        return call.raw
    old = _transaction_id_at(call.payload, path)
    if old is None or old not in mapping:
        return call.raw
    new = mapping[old]
    payload = _replaced(call.payload, path, new)
    # Splice the number into the text so everything else goes out byte for byte as it came;
    # keep the splice only if it parses to exactly the intended frame.
    matches = list(_TX_NUMBER.finditer(call.raw))
    if len(matches) == 1 and int(matches[0].group(1)) == old:
        start, end = matches[0].span(1)
        spliced = call.raw[:start] + str(new) + call.raw[end:]
        try:
            if orjson.loads(spliced) == [2, call.message_id, call.action, payload]:
                return spliced
        except orjson.JSONDecodeError:
            pass
    return call_text(call.message_id, call.action, payload)


def _replaced(node: Mapping[str, Any], path: tuple[str, ...], value: int) -> dict[str, Any]:
    copy = dict(node)
    copy[path[0]] = value if len(path) == 1 else _replaced(node[path[0]], path[1:], value)
    return copy


# ---- retried starts and the edge's own message ids ----------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartKey:
    """Identifies one 1.6 StartTransaction across a charge point's retries."""

    connector_id: int
    id_tag: str
    meter_start_wh: int
    timestamp_utc: str

    def text(self) -> str:
        """A stable text form, for a store key."""
        return orjson.dumps(
            [self.connector_id, self.id_tag, self.meter_start_wh, self.timestamp_utc]
        ).decode()


def start_dedup_key(payload: Mapping[str, Any]) -> StartKey:
    """Key of a (valid) 1.6 StartTransaction payload; the timestamp normalised to UTC ms."""
    stamp = str(payload["timestamp"])
    try:
        parsed = datetime.fromisoformat(stamp)
        if parsed.tzinfo is not None:
            stamp = utc_text(parsed)
    except ValueError:
        pass  # kept as sent: a retry sends the same text
    return StartKey(
        connector_id=int(payload["connectorId"]),
        id_tag=str(payload["idTag"]),
        meter_start_wh=int(payload["meterStart"]),
        timestamp_utc=stamp,
    )


def retry_key(version: OcppVersion, action: str, payload: Mapping[str, Any]) -> str | None:
    """What makes a transaction-related call the same message as one the charge point sent
    before (it stopped waiting for the answer and sent it again), or None: not one the edge
    takes for another. A 1.6 start: its StartKey (a retry may spell its timestamp otherwise).
    The rest (a stop, transaction meter values, a 2.0.1 TransactionEvent): the payload to the
    letter but for the order of keys, as a charge point resends a message as it was. The same
    transactionId (and seqNo, timestamps) with anything else different is another message (the
    next sample), or a charge point's fault the cloud should see: never swallowed. The action
    and a 128-bit digest: kept with the charge point's state (ChargePointState.sent), a sample
    of a few kB would be kept whole."""
    if offline_policy(version, action, payload).delivery is not Delivery.TRANSACTION:
        return None
    if action == "StartTransaction" and version is V16:
        return start_retry_key(start_dedup_key(payload).text())
    return _retry_digest(action, orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))


def kept_across_links(version: OcppVersion, action: str, payload: Mapping[str, Any]) -> bool:
    """A transaction message whose copy the charge point's state remembers (ChargePointState.sent)
    so that the same message sent again after its link dropped or the edge restarted is that
    copy: what opens or closes a transaction, which the cloud bills by (a 1.6 start or stop, a
    2.0.1 Started or Ended event). Not a sample (1.6 MeterValues, an Updated event): sent again
    on a later link it reaches the cloud twice, the same readings under the same transaction
    (seqNo); remembered, each sample rewrote the state document in the commit that queued it and
    again at its answer (bench/broker.py --quick, alternating on a quiet host: transaction
    MeterValues 1262-1274 -> 1059-1135 msg/s, broker CPU 0.75-0.80 -> 0.90-0.95 ms a message,
    bench/RESULTS.md). A same sample sent again on the same link, while its first copy waits,
    is that copy (retry_key)."""
    if action in ("StartTransaction", "StopTransaction"):
        return version is V16
    if action == "TransactionEvent":
        return payload.get("eventType") in ("Started", "Ended")
    return False


def start_retry_key(start_key: str) -> str:
    """The retry key of the 1.6 start whose StartKey.text() is ``start_key``."""
    return _retry_digest("StartTransaction", start_key.encode())


def _retry_digest(action: str, data: bytes) -> str:
    return f"{action} {hashlib.blake2b(data, digest_size=16).hexdigest()}"


EDGE_MESSAGE_ID_PREFIX: Final = "edge-"
_BASE36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    if n < 0:
        raise ValueError(f"expected a non-negative integer, got {n}")
    digits = ""
    while True:
        n, r = divmod(n, 36)
        digits = _BASE36[r] + digits
        if n == 0:
            return digits


def edge_message_id(epoch: int, counter: int) -> str:
    """``edge-<epoch>-<counter>`` in base 36: unique across restarts given a persisted epoch,
    and never a CSMS's id as long as the CSMS does not use the ``edge-`` prefix."""
    message_id = f"{EDGE_MESSAGE_ID_PREFIX}{_base36(epoch)}-{_base36(counter)}"
    if len(message_id) > MAX_MESSAGE_ID_CHARS:
        raise ValueError(f"epoch {epoch} and counter {counter} make an id over 36 characters")
    return message_id


def is_edge_message_id(message_id: str) -> bool:
    return message_id.startswith(EDGE_MESSAGE_ID_PREFIX)
