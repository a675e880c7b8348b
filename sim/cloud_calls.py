"""Calls the simulated cloud sends to a charge point, in the charge point's OCPP version.

Mixed into :class:`sim.cloud.SimCloud`, which provides ``call()`` (camelCase payload in, camelCase
answer out) and ``charge_points``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.cloud_handlers import CloudChargePoint


class CloudError(Exception):
    pass


class CloudNotConnectedError(CloudError):
    pass


class CloudCallError(CloudError):
    def __init__(self, action: str, code: str, description: str) -> None:
        super().__init__(f"{action}: {code}: {description}")
        self.action = action
        self.code = code
        self.description = description


class CloudCalls:
    if TYPE_CHECKING:
        charge_points: dict[str, CloudChargePoint]

        async def call(
            self, charge_point_id: str, action: str, payload: Mapping[str, Any]
        ) -> Any: ...

    def _is_v16(self, charge_point_id: str) -> bool:
        cp = self.charge_points.get(charge_point_id)
        if cp is None:
            raise CloudNotConnectedError(f"charge point {charge_point_id!r} never connected")
        return cp.subprotocol == "ocpp1.6"

    async def remote_start(
        self,
        charge_point_id: str,
        id_tag: str,
        *,
        connector_id: int | None = None,
        charging_profile: Mapping[str, Any] | None = None,
        remote_start_id: int = 1,
    ) -> Any:
        if self._is_v16(charge_point_id):
            payload: dict[str, Any] = {"idTag": id_tag}
            if connector_id is not None:
                payload["connectorId"] = connector_id
            if charging_profile is not None:
                payload["chargingProfile"] = dict(charging_profile)
            return await self.call(charge_point_id, "RemoteStartTransaction", payload)
        payload = {
            "idToken": {"idToken": id_tag, "type": "ISO14443"},
            "remoteStartId": remote_start_id,
        }
        if connector_id is not None:
            payload["evseId"] = connector_id
        if charging_profile is not None:
            payload["chargingProfile"] = dict(charging_profile)
        return await self.call(charge_point_id, "RequestStartTransaction", payload)

    async def remote_stop(self, charge_point_id: str, transaction_id: str) -> Any:
        if self._is_v16(charge_point_id):
            return await self.call(
                charge_point_id, "RemoteStopTransaction", {"transactionId": int(transaction_id)}
            )
        return await self.call(
            charge_point_id, "RequestStopTransaction", {"transactionId": transaction_id}
        )

    async def set_charging_profile(
        self, charge_point_id: str, connector_id: int, profile: Mapping[str, Any]
    ) -> Any:
        """``profile`` in the charge point's version (see ``sim.profile_payloads``)."""
        if self._is_v16(charge_point_id):
            payload = {"connectorId": connector_id, "csChargingProfiles": dict(profile)}
        else:
            payload = {"evseId": connector_id, "chargingProfile": dict(profile)}
        return await self.call(charge_point_id, "SetChargingProfile", payload)

    async def send_local_list(
        self,
        charge_point_id: str,
        version: int,
        entries: Mapping[str, str],
        *,
        update_type: str = "Full",
    ) -> Any:
        """``entries`` maps id tag to status (Accepted, Blocked, ...)."""
        if self._is_v16(charge_point_id):
            items = [{"idTag": tag, "idTagInfo": {"status": s}} for tag, s in entries.items()]
            payload: dict[str, Any] = {
                "listVersion": version,
                "updateType": update_type,
                "localAuthorizationList": items,
            }
        else:
            items = [
                {"idToken": {"idToken": tag, "type": "ISO14443"}, "idTokenInfo": {"status": s}}
                for tag, s in entries.items()
            ]
            payload = {
                "versionNumber": version,
                "updateType": update_type,
                "localAuthorizationList": items,
            }
        return await self.call(charge_point_id, "SendLocalList", payload)

    async def data_transfer(
        self,
        charge_point_id: str,
        vendor_id: str,
        *,
        message_id: str | None = None,
        data: Any = None,
    ) -> Any:
        """In 1.6 ``data`` must be a string (serialize a rules bundle to JSON first)."""
        payload: dict[str, Any] = {"vendorId": vendor_id}
        if message_id is not None:
            payload["messageId"] = message_id
        if data is not None:
            payload["data"] = data
        return await self.call(charge_point_id, "DataTransfer", payload)

    async def trigger_message(self, charge_point_id: str, requested_message: str) -> Any:
        return await self.call(
            charge_point_id, "TriggerMessage", {"requestedMessage": requested_message}
        )
