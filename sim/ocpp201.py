"""OCPP 2.0.1 for the simulated charge point: messages it sends and calls it answers.

Transactions are TransactionEvent Started/Updated/Ended with the station's own string id, a
``seqNo`` per transaction starting at 0 and ``offline`` true for events that happened while the
link was down."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sim.clock import ocpp_timestamp
from sim.connector import Connector, Sample, Transaction
from sim.dialect import Msg
from sim.ocpp_lib import v201_call

if TYPE_CHECKING:
    from sim.charge_point import SimChargePoint

_STOPPED = {"HardReset": "ImmediateReset", "SoftReset": "ImmediateReset"}
_END_TRIGGER = {
    "Local": "StopAuthorized",
    "Remote": "RemoteStop",
    "EVDisconnected": "EVCommunicationLost",
    "DeAuthorized": "Deauthorized",
    "ImmediateReset": "ResetCommand",
}


def meter_value(sample: Sample, context: str) -> dict[str, Any]:
    values: list[dict[str, Any]] = [
        {
            "value": sample.energy_wh,
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unit_of_measure": {"unit": "Wh"},
        }
    ]
    for phase, amps in zip(("L1", "L2", "L3"), sample.currents_a, strict=True):
        values.append(
            {
                "value": round(amps, 2),
                "context": context,
                "measurand": "Current.Import",
                "phase": phase,
                "location": "Outlet",
                "unit_of_measure": {"unit": "A"},
            }
        )
    values.append(
        {
            "value": round(sample.offered_a, 1),
            "context": context,
            "measurand": "Current.Offered",
            "unit_of_measure": {"unit": "A"},
        }
    )
    values.append(
        {
            "value": round(sample.power_w),
            "context": context,
            "measurand": "Power.Active.Import",
            "location": "Outlet",
            "unit_of_measure": {"unit": "W"},
        }
    )
    return {"timestamp": ocpp_timestamp(sample.timestamp_utc), "sampled_value": values}


def _id_token(id_tag: str) -> dict[str, str]:
    return {"id_token": id_tag, "type": "ISO14443"}


class V201Dialect:
    subprotocol = "ocpp2.0.1"
    call_module: Any = v201_call

    def boot(self, core: SimChargePoint, reason: str) -> Msg:
        cfg = core.config
        return Msg(
            action="BootNotification",
            payload={
                "charging_station": {
                    "model": cfg.model,
                    "vendor_name": cfg.vendor,
                    "serial_number": cfg.serial_number,
                    "firmware_version": cfg.firmware_version,
                },
                "reason": reason,
            },
        )

    def boot_answer(self, result: Any) -> tuple[str, float]:
        return str(result.status), float(result.interval)

    def authorize(self, id_tag: str) -> Msg:
        return Msg(action="Authorize", payload={"id_token": _id_token(id_tag)})

    def authorize_answer(self, result: Any) -> str:
        return str(result.id_token_info["status"])

    def status_key(self, connector: Connector, now_s: float) -> str:
        return connector.status_v201()

    def status_notification(self, core: SimChargePoint, connector_id: int, status: str) -> Msg:
        return Msg(
            action="StatusNotification",
            payload={
                "timestamp": ocpp_timestamp(core.clock.utc()),
                "connector_status": status,
                "evse_id": connector_id,
                "connector_id": 1,
            },
        )

    def mint_transaction_id(self, core: SimChargePoint) -> str | None:
        return str(uuid.uuid4())

    def _event(
        self,
        core: SimChargePoint,
        connector: Connector,
        tx: Transaction,
        *,
        event_type: str,
        trigger: str,
        info: dict[str, Any],
        sample: Sample,
        context: str | None,
    ) -> Msg:
        payload: dict[str, Any] = {
            "event_type": event_type,
            "timestamp": ocpp_timestamp(sample.timestamp_utc),
            "trigger_reason": trigger,
            "seq_no": tx.seq_no,
            "transaction_info": {"transaction_id": tx.transaction_id, **info},
            "offline": not core.connected,
            "evse": {"id": connector.connector_id, "connector_id": 1},
        }
        if context is not None:
            payload["meter_value"] = [meter_value(sample, context)]
        tx.seq_no += 1
        return Msg(action="TransactionEvent", payload=payload, local_tx=tx.local_id)

    def tx_started(
        self,
        core: SimChargePoint,
        connector: Connector,
        tx: Transaction,
        sample: Sample,
        trigger: str,
    ) -> Msg:
        info: dict[str, Any] = {"charging_state": tx.charging_state or "EVConnected"}
        if tx.remote_start_id is not None:
            info["remote_start_id"] = tx.remote_start_id
        msg = self._event(
            core,
            connector,
            tx,
            event_type="Started",
            trigger=trigger,
            info=info,
            sample=sample,
            context="Transaction.Begin",
        )
        msg.payload["id_token"] = _id_token(tx.id_tag)
        return msg

    def tx_meter(
        self, core: SimChargePoint, connector: Connector, tx: Transaction, sample: Sample
    ) -> Msg:
        return self._event(
            core,
            connector,
            tx,
            event_type="Updated",
            trigger="MeterValuePeriodic",
            info={},
            sample=sample,
            context="Sample.Periodic",
        )

    def tx_state_changed(
        self,
        core: SimChargePoint,
        connector: Connector,
        tx: Transaction,
        sample: Sample,
        state: str,
    ) -> Msg | None:
        return self._event(
            core,
            connector,
            tx,
            event_type="Updated",
            trigger="ChargingStateChanged",
            info={"charging_state": state},
            sample=sample,
            context=None,
        )

    def tx_ended(
        self,
        core: SimChargePoint,
        connector: Connector,
        tx: Transaction,
        sample: Sample,
        reason: str,
    ) -> Msg:
        stopped = _STOPPED.get(reason, reason)
        return self._event(
            core,
            connector,
            tx,
            event_type="Ended",
            trigger=_END_TRIGGER.get(stopped, "StopAuthorized"),
            info={"stopped_reason": stopped},
            sample=sample,
            context="Transaction.End",
        )

    def delivered(
        self, core: SimChargePoint, msg_action: str, local_tx: int | None, result: Any
    ) -> None:
        info = getattr(result, "id_token_info", None)
        if msg_action != "TransactionEvent" or not info or info.get("status") == "Accepted":
            return
        if core.configuration["StopTransactionOnInvalidId"].value != "true" or local_tx is None:
            return
        tx = core.transactions.get(local_tx)
        c = (
            None
            if tx is None or tx.transaction_id is None
            else (core.connector_of_transaction(tx.transaction_id))
        )
        if c is not None:
            core.end_transaction(c, "DeAuthorized")
            core.post_status(c)

    def make_handler(self, core: SimChargePoint, connection: Any) -> Any:
        from sim.ocpp201_handlers import make_handler

        return make_handler(core, connection)
