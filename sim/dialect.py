"""What differs between OCPP 1.6J and 2.0.1 for a simulated charge point.

The charge point core (``sim/charge_point.py``) keeps the state, the connection, the outbox and the
physics; a dialect turns that into the version's messages and turns incoming calls into core
operations. Payloads are snake_case keyword arguments for the ``ocpp`` package's call dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sim.charge_point import SimChargePoint
    from sim.connector import Connector, Sample, Transaction


@dataclass(frozen=True, slots=True, kw_only=True)
class Msg:
    action: str
    payload: dict[str, Any]
    # 1.6: the local transaction whose cloud id fills payload["transaction_id"] at send time.
    local_tx: int | None = None


class Dialect(Protocol):
    subprotocol: str
    # The ``ocpp`` package's call module (``ocpp.v16.call`` or ``ocpp.v201.call``).
    call_module: Any

    def make_handler(self, core: SimChargePoint, connection: Any) -> Any:
        """An ``ocpp`` ChargePoint bound to one websocket connection, routing calls to ``core``."""
        ...

    def boot(self, core: SimChargePoint, reason: str) -> Msg: ...

    def boot_answer(self, result: Any) -> tuple[str, float]:
        """(status, heartbeat interval in seconds) from a BootNotification answer."""
        ...

    def authorize(self, id_tag: str) -> Msg: ...

    def authorize_answer(self, result: Any) -> str: ...

    def status_key(self, connector: Connector, now_s: float) -> str:
        """The status this version reports for the connector (what StatusNotification says)."""
        ...

    def status_notification(self, core: SimChargePoint, connector_id: int, status: str) -> Msg: ...

    def mint_transaction_id(self, core: SimChargePoint) -> str | None:
        """2.0.1: the station's own id; 1.6: None (the cloud chooses it)."""
        ...

    def tx_started(
        self,
        core: SimChargePoint,
        connector: Connector,
        tx: Transaction,
        sample: Sample,
        trigger: str,
    ) -> Msg: ...

    def tx_meter(
        self, core: SimChargePoint, connector: Connector, tx: Transaction, sample: Sample
    ) -> Msg: ...

    def tx_state_changed(
        self,
        core: SimChargePoint,
        connector: Connector,
        tx: Transaction,
        sample: Sample,
        state: str,
    ) -> Msg | None:
        """2.0.1: TransactionEvent Updated/ChargingStateChanged; 1.6: None (status covers it)."""
        ...

    def tx_ended(
        self,
        core: SimChargePoint,
        connector: Connector,
        tx: Transaction,
        sample: Sample,
        reason: str,
    ) -> Msg: ...

    def delivered(
        self, core: SimChargePoint, msg_action: str, local_tx: int | None, result: Any
    ) -> None:
        """React to the cloud's answer to a queued transaction message."""
        ...


def make_dialect(protocol: str) -> Dialect:
    if protocol == "ocpp1.6":
        from sim.ocpp16 import V16Dialect

        return V16Dialect()
    if protocol == "ocpp2.0.1":
        from sim.ocpp201 import V201Dialect

        return V201Dialect()
    raise ValueError(f"unknown OCPP protocol {protocol!r}; known: ocpp1.6, ocpp2.0.1")
