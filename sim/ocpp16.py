"""OCPP 1.6J for the simulated charge point: messages it sends and calls it answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sim.clock import ocpp_timestamp
from sim.connector import Connector, Sample, Transaction
from sim.dialect import Msg
from sim.ocpp_lib import v16_call

if TYPE_CHECKING:
    from sim.charge_point import SimChargePoint


def sampled_values(sample: Sample, context: str) -> dict[str, Any]:
    """One 1.6 MeterValue: energy register, current per phase, offered current, power."""
    values: list[dict[str, Any]] = [
        {
            "value": str(sample.energy_wh),
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unit": "Wh",
        }
    ]
    for phase, amps in zip(("L1", "L2", "L3"), sample.currents_a, strict=True):
        values.append(
            {
                "value": f"{amps:.2f}",
                "context": context,
                "measurand": "Current.Import",
                "phase": phase,
                "location": "Outlet",
                "unit": "A",
            }
        )
    values.append(
        {
            "value": f"{sample.offered_a:.1f}",
            "context": context,
            "measurand": "Current.Offered",
            "unit": "A",
        }
    )
    values.append(
        {
            "value": f"{sample.power_w:.0f}",
            "context": context,
            "measurand": "Power.Active.Import",
            "location": "Outlet",
            "unit": "W",
        }
    )
    return {"timestamp": ocpp_timestamp(sample.timestamp_utc), "sampled_value": values}


class V16Dialect:
    subprotocol = "ocpp1.6"
    call_module: Any = v16_call

    # -- outgoing ----------------------------------------------------------------------------------

    def boot(self, core: SimChargePoint, reason: str) -> Msg:
        cfg = core.config
        return Msg(
            action="BootNotification",
            payload={
                "charge_point_vendor": cfg.vendor,
                "charge_point_model": cfg.model,
                "charge_point_serial_number": cfg.serial_number,
                "firmware_version": cfg.firmware_version,
            },
        )

    def boot_answer(self, result: Any) -> tuple[str, float]:
        return str(result.status), float(result.interval)

    def authorize(self, id_tag: str) -> Msg:
        return Msg(action="Authorize", payload={"id_tag": id_tag})

    def authorize_answer(self, result: Any) -> str:
        return str(result.id_tag_info["status"])

    def status_key(self, connector: Connector, now_s: float) -> str:
        return connector.status_v16(now_s)

    def status_notification(self, core: SimChargePoint, connector_id: int, status: str) -> Msg:
        return Msg(
            action="StatusNotification",
            payload={
                "connector_id": connector_id,
                "error_code": "NoError",
                "status": status,
                "timestamp": ocpp_timestamp(core.clock.utc()),
            },
        )

    def mint_transaction_id(self, core: SimChargePoint) -> str | None:
        return None

    def tx_started(
        self,
        core: SimChargePoint,
        connector: Connector,
        tx: Transaction,
        sample: Sample,
        trigger: str,
    ) -> Msg:
        return Msg(
            action="StartTransaction",
            payload={
                "connector_id": connector.connector_id,
                "id_tag": tx.id_tag,
                "meter_start": tx.meter_start_wh,
                "timestamp": ocpp_timestamp(tx.start_utc),
            },
            local_tx=tx.local_id,
        )

    def tx_meter(
        self, core: SimChargePoint, connector: Connector, tx: Transaction, sample: Sample
    ) -> Msg:
        return Msg(
            action="MeterValues",
            payload={
                "connector_id": connector.connector_id,
                "transaction_id": 0,  # filled in at send time
                "meter_value": [sampled_values(sample, "Sample.Periodic")],
            },
            local_tx=tx.local_id,
        )

    def tx_state_changed(
        self,
        core: SimChargePoint,
        connector: Connector,
        tx: Transaction,
        sample: Sample,
        state: str,
    ) -> Msg | None:
        return None

    def tx_ended(
        self,
        core: SimChargePoint,
        connector: Connector,
        tx: Transaction,
        sample: Sample,
        reason: str,
    ) -> Msg:
        return Msg(
            action="StopTransaction",
            payload={
                "meter_stop": sample.energy_wh,
                "timestamp": ocpp_timestamp(sample.timestamp_utc),
                "transaction_id": 0,  # filled in at send time
                "reason": reason,
                "id_tag": tx.id_tag,
                "transaction_data": [sampled_values(sample, "Transaction.End")],
            },
            local_tx=tx.local_id,
        )

    def delivered(
        self, core: SimChargePoint, msg_action: str, local_tx: int | None, result: Any
    ) -> None:
        if msg_action != "StartTransaction" or local_tx is None:
            return
        transaction_id = int(result.transaction_id)
        core.outbox.set_transaction_id(local_tx, transaction_id)
        tx = core.transactions[local_tx]
        tx.transaction_id = str(transaction_id)
        core.transaction_ids.append(tx.transaction_id)
        status = str(result.id_tag_info["status"])
        if status == "Accepted":
            return
        stop = core.configuration["StopTransactionOnInvalidId"].value == "true"
        c = core.connector_of_transaction(tx.transaction_id)
        if stop and c is not None:
            core.end_transaction(c, "DeAuthorized")
            core.post_status(c)

    # -- incoming ----------------------------------------------------------------------------------

    def make_handler(self, core: SimChargePoint, connection: Any) -> Any:
        from sim.ocpp16_handlers import make_handler

        return make_handler(core, connection)
