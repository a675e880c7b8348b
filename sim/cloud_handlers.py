"""How the simulated cloud answers charge points, per OCPP version.

The cloud issues its own integer transaction ids for 1.6 (a counter from 1, kept across its own
restarts) and answers a replayed StartTransaction (same connector, id tag, meterStart and timestamp)
with the id it gave the first time, as a careful CSMS does with at-least-once delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim.clock import ocpp_timestamp
from sim.ocpp_lib import Handler, v16_call_result, v201_call_result

if TYPE_CHECKING:
    from sim.cloud import SimCloud


@dataclass(slots=True, kw_only=True)
class CloudTransaction:
    transaction_id: str
    connector_id: int
    id_tag: str
    meter_start_wh: int | None
    start_timestamp: str
    meter_stop_wh: int | None = None
    stop_reason: str | None = None
    ended: bool = False
    meter_values: int = 0
    seq_nos: list[int] = field(default_factory=list)
    offline_events: int = 0


@dataclass(slots=True, kw_only=True)
class CloudChargePoint:
    """What the cloud knows about one charge point; kept across reconnects and cloud restarts."""

    charge_point_id: str
    subprotocol: str = ""
    connected: bool = False
    connect_count: int = 0
    boot: dict[str, Any] | None = None
    statuses: dict[int, str] = field(default_factory=dict)
    transactions: dict[str, CloudTransaction] = field(default_factory=dict)
    data_transfers: list[tuple[str, str | None, Any]] = field(default_factory=list)
    heartbeats: int = 0
    # The live ``ocpp`` ChargePoint of the current connection, for calls to the charge point.
    peer: Any = None


class _Base:
    def __init__(self, cloud: SimCloud, cp: CloudChargePoint) -> None:
        self.cloud = cloud
        self.cp = cp

    def _now(self) -> str:
        return ocpp_timestamp(self.cloud.clock.utc())

    def _status(self, id_tag: str) -> str:
        return self.cloud.id_tag_status(id_tag)


class V16Cloud(_Base):
    def handlers(self) -> dict[str, Handler]:
        return {
            "BootNotification": self.boot,
            "Heartbeat": self.heartbeat,
            "StatusNotification": self.status,
            "Authorize": self.authorize,
            "StartTransaction": self.start_transaction,
            "StopTransaction": self.stop_transaction,
            "MeterValues": self.meter_values,
            "DataTransfer": self.data_transfer,
            "DiagnosticsStatusNotification": self.empty("DiagnosticsStatusNotification"),
            "FirmwareStatusNotification": self.empty("FirmwareStatusNotification"),
        }

    def empty(self, action: str) -> Handler:
        def answer(**_: Any) -> Any:
            return getattr(v16_call_result, action)()

        return answer

    def boot(self, **payload: Any) -> Any:
        self.cp.boot = payload
        return v16_call_result.BootNotification(
            current_time=self._now(),
            interval=int(self.cloud.heartbeat_interval_s),
            status=self.cloud.boot_status,
        )

    def heartbeat(self, **_: Any) -> Any:
        self.cp.heartbeats += 1
        return v16_call_result.Heartbeat(current_time=self._now())

    def status(self, connector_id: int, status: str, **_: Any) -> Any:
        self.cp.statuses[connector_id] = status
        return v16_call_result.StatusNotification()

    def authorize(self, id_tag: str, **_: Any) -> Any:
        return v16_call_result.Authorize(id_tag_info={"status": self._status(id_tag)})

    def start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> Any:
        for tx in self.cp.transactions.values():
            if (tx.connector_id, tx.id_tag, tx.meter_start_wh, tx.start_timestamp) == (
                connector_id,
                id_tag,
                meter_start,
                timestamp,
            ):
                transaction_id = int(tx.transaction_id)
                break
        else:
            transaction_id = self.cloud.next_transaction_id()
            self.cp.transactions[str(transaction_id)] = CloudTransaction(
                transaction_id=str(transaction_id),
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start_wh=meter_start,
                start_timestamp=timestamp,
            )
        return v16_call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info={"status": self._status(id_tag)}
        )

    def stop_transaction(
        self,
        meter_stop: int,
        transaction_id: int,
        reason: str | None = None,
        id_tag: str | None = None,
        **_: Any,
    ) -> Any:
        tx = self.cp.transactions.get(str(transaction_id))
        if tx is not None:
            tx.meter_stop_wh = meter_stop
            tx.stop_reason = reason or "Local"
            tx.ended = True
        info = None if id_tag is None else {"status": self._status(id_tag)}
        return v16_call_result.StopTransaction(id_tag_info=info)

    def meter_values(self, connector_id: int, transaction_id: int | None = None, **_: Any) -> Any:
        tx = None if transaction_id is None else self.cp.transactions.get(str(transaction_id))
        if tx is not None:
            tx.meter_values += 1
        return v16_call_result.MeterValues()

    def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None, **_: Any
    ) -> Any:
        self.cp.data_transfers.append((vendor_id, message_id, data))
        return v16_call_result.DataTransfer(status="Accepted")


class V201Cloud(_Base):
    def handlers(self) -> dict[str, Handler]:
        return {
            "BootNotification": self.boot,
            "Heartbeat": self.heartbeat,
            "StatusNotification": self.status,
            "Authorize": self.authorize,
            "TransactionEvent": self.transaction_event,
            "MeterValues": self.empty("MeterValues"),
            "DataTransfer": self.data_transfer,
            "NotifyReport": self.empty("NotifyReport"),
            "FirmwareStatusNotification": self.empty("FirmwareStatusNotification"),
            "SecurityEventNotification": self.empty("SecurityEventNotification"),
        }

    def empty(self, action: str) -> Handler:
        def answer(**_: Any) -> Any:
            return getattr(v201_call_result, action)()

        return answer

    def boot(self, **payload: Any) -> Any:
        self.cp.boot = payload
        return v201_call_result.BootNotification(
            current_time=self._now(),
            interval=int(self.cloud.heartbeat_interval_s),
            status=self.cloud.boot_status,
        )

    def heartbeat(self, **_: Any) -> Any:
        self.cp.heartbeats += 1
        return v201_call_result.Heartbeat(current_time=self._now())

    def status(self, evse_id: int, connector_status: str, **_: Any) -> Any:
        self.cp.statuses[evse_id] = connector_status
        return v201_call_result.StatusNotification()

    def authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        status = self._status(str(id_token["id_token"]))
        return v201_call_result.Authorize(id_token_info={"status": status})

    def transaction_event(
        self,
        event_type: str,
        timestamp: str,
        seq_no: int,
        transaction_info: dict[str, Any],
        offline: bool | None = None,
        evse: dict[str, Any] | None = None,
        id_token: dict[str, Any] | None = None,
        meter_value: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        tx_id = str(transaction_info["transaction_id"])
        tx = self.cp.transactions.get(tx_id)
        if tx is None:
            tx = CloudTransaction(
                transaction_id=tx_id,
                connector_id=0 if evse is None else int(evse["id"]),
                id_tag="" if id_token is None else str(id_token["id_token"]),
                meter_start_wh=_energy(meter_value),
                start_timestamp=timestamp,
            )
            self.cp.transactions[tx_id] = tx
        tx.seq_nos.append(seq_no)
        if offline:
            tx.offline_events += 1
        if meter_value:
            tx.meter_values += 1
        if event_type == "Ended":
            tx.ended = True
            tx.meter_stop_wh = _energy(meter_value)
            tx.stop_reason = transaction_info.get("stopped_reason", "Local")
        if id_token is None:
            return v201_call_result.TransactionEvent()
        status = self._status(str(id_token["id_token"]))
        return v201_call_result.TransactionEvent(id_token_info={"status": status})

    def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any
    ) -> Any:
        self.cp.data_transfers.append((vendor_id, message_id, data))
        return v201_call_result.DataTransfer(status="Accepted")


def _energy(meter_value: list[dict[str, Any]] | None) -> int | None:
    for mv in meter_value or []:
        for sv in mv.get("sampled_value", []):
            if sv.get("measurand") == "Energy.Active.Import.Register":
                return int(float(sv["value"]))
    return None
