"""OCPP 1.6 calls a simulated charge point answers (from its central system or the edge)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sim.clock import ocpp_timestamp
from sim.cp_config import valid_value
from sim.dialect import Msg
from sim.ocpp16 import sampled_values
from sim.ocpp_lib import V16ChargePoint, answer_later, bind, v16_call_result
from sim.smart_charging import ProfileError, Purpose, profile_from_v16

if TYPE_CHECKING:
    from sim.charge_point import SimChargePoint

R = v16_call_result
_TRIGGERS = {
    "BootNotification",
    "Heartbeat",
    "StatusNotification",
    "MeterValues",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
}


def make_handler(core: SimChargePoint, connection: Any) -> Any:
    h = _Handlers(core)
    return bind(
        V16ChargePoint,
        core.id,
        connection,
        response_timeout_s=core.config.response_timeout_s,
        handlers={
            "RemoteStartTransaction": h.remote_start,
            "RemoteStopTransaction": h.remote_stop,
            "SetChargingProfile": h.set_charging_profile,
            "ClearChargingProfile": h.clear_charging_profile,
            "GetCompositeSchedule": h.get_composite_schedule,
            "Reset": h.reset,
            "ChangeConfiguration": h.change_configuration,
            "GetConfiguration": h.get_configuration,
            "TriggerMessage": h.trigger_message,
            "DataTransfer": h.data_transfer,
            "SendLocalList": h.send_local_list,
            "GetLocalListVersion": h.get_local_list_version,
            "ClearCache": h.clear_cache,
            "ChangeAvailability": h.change_availability,
            "UnlockConnector": h.unlock_connector,
        },
    )


class _Handlers:
    """Answers to the central system's calls. They only decide and schedule: a handler that awaited
    a call of its own would deadlock the ``ocpp`` receive loop it runs in."""

    def __init__(self, core: SimChargePoint) -> None:
        self.core = core

    def _seen(self, action: str) -> None:
        self.core.stats.received[action] += 1

    def remote_start(
        self, id_tag: str, connector_id: int | None = None, charging_profile: Any = None, **_: Any
    ) -> Any:
        self._seen("RemoteStartTransaction")
        core = self.core
        c = core.pick_connector(connector_id)
        if c is None:
            return R.RemoteStartTransaction(status="Rejected")
        profile = None
        if charging_profile is not None:
            try:
                profile = profile_from_v16(
                    c.connector_id, charging_profile, installed_utc=core.clock.utc()
                )
            except (ProfileError, KeyError, ValueError):
                return R.RemoteStartTransaction(status="Rejected")
            if profile.purpose != Purpose.TX:
                return R.RemoteStartTransaction(status="Rejected")
        core.remote_start(c, id_tag, profile=profile)
        return R.RemoteStartTransaction(status="Accepted")

    def remote_stop(self, transaction_id: int, **_: Any) -> Any:
        self._seen("RemoteStopTransaction")
        found = self.core.remote_stop(str(transaction_id))
        return R.RemoteStopTransaction(status="Accepted" if found else "Rejected")

    def set_charging_profile(self, connector_id: int, cs_charging_profiles: Any, **_: Any) -> Any:
        self._seen("SetChargingProfile")
        delay_s = self.core.config.behaviour.profile_answer_delay_s
        core = self.core
        try:
            profile = profile_from_v16(
                connector_id, cs_charging_profiles, installed_utc=core.clock.utc()
            )
        except (ProfileError, KeyError, ValueError):
            return answer_later(R.SetChargingProfile(status="Rejected"), delay_s)
        return answer_later(R.SetChargingProfile(status=core.install_profile(profile)), delay_s)

    def clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
        **_: Any,
    ) -> Any:
        self._seen("ClearChargingProfile")
        purpose = None if charging_profile_purpose is None else Purpose(charging_profile_purpose)
        removed = self.core.clear_profiles(
            profile_id=id, connector_id=connector_id, purpose=purpose, stack_level=stack_level
        )
        return R.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    def get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        self._seen("GetCompositeSchedule")
        core = self.core
        if connector_id != 0 and connector_id not in core.connectors:
            return R.GetCompositeSchedule(status="Rejected")
        unit, periods = core.composite_periods(connector_id, duration, charging_rate_unit)
        start = ocpp_timestamp(core.clock.utc())
        return R.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=start,
            charging_schedule={
                "duration": duration,
                "start_schedule": start,
                "charging_rate_unit": unit,
                "charging_schedule_period": periods,
            },
        )

    def reset(self, type: str, call_unique_id: str = "", **_: Any) -> Any:
        self._seen("Reset")
        self.core.reset(
            "HardReset" if type == "Hard" else "SoftReset", answer_id=call_unique_id or None
        )
        return R.Reset(status="Accepted")

    def change_configuration(self, key: str, value: str, **_: Any) -> Any:
        self._seen("ChangeConfiguration")
        core = self.core
        entry = core.configuration.get(key)
        if entry is None:
            return R.ChangeConfiguration(status="NotSupported")
        if entry.readonly or not valid_value(entry, value):
            return R.ChangeConfiguration(status="Rejected")
        core.configuration[key] = dataclasses.replace(entry, value=value)
        core.mark_changed(key)
        return R.ChangeConfiguration(status="Accepted")

    def get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        self._seen("GetConfiguration")
        config = self.core.configuration
        wanted = key if key else list(config)
        known = [
            {"key": k, "readonly": config[k].readonly, "value": config[k].value}
            for k in wanted
            if k in config and not config[k].secret
        ]
        unknown = [k for k in wanted if k not in config or config[k].secret]
        return R.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    def trigger_message(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> Any:
        self._seen("TriggerMessage")
        core = self.core
        if requested_message not in _TRIGGERS:
            return R.TriggerMessage(status="NotImplemented")
        if connector_id is not None and connector_id != 0 and connector_id not in core.connectors:
            return R.TriggerMessage(status="Rejected")
        dialect = core.dialect
        if requested_message == "BootNotification":
            core.session.post(dialect.boot(core, "Triggered"))
        elif requested_message == "Heartbeat":
            core.session.post(Msg(action="Heartbeat", payload={}))
        elif requested_message == "StatusNotification":
            for c in core.connectors.values():
                if connector_id in (None, 0, c.connector_id):
                    core.post_status(c, force=True)
        elif requested_message == "MeterValues":
            for c in core.connectors.values():
                if connector_id in (None, 0, c.connector_id):
                    sample = c.sample(core.clock.monotonic(), core.clock.utc())
                    payload: dict[str, Any] = {
                        "connector_id": c.connector_id,
                        "meter_value": [sampled_values(sample, "Trigger")],
                    }
                    if c.tx is not None and c.tx.transaction_id is not None:
                        payload["transaction_id"] = int(c.tx.transaction_id)
                    core.session.post(Msg(action="MeterValues", payload=payload))
        elif requested_message == "DiagnosticsStatusNotification":
            core.session.post(
                Msg(action="DiagnosticsStatusNotification", payload={"status": "Idle"})
            )
        else:
            core.session.post(Msg(action="FirmwareStatusNotification", payload={"status": "Idle"}))
        return R.TriggerMessage(status="Accepted")

    def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None, **_: Any
    ) -> Any:
        self._seen("DataTransfer")
        self.core.data_transfers.append((vendor_id, message_id, data))
        return R.DataTransfer(status="Accepted")

    def send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        self._seen("SendLocalList")
        core = self.core
        entries = local_authorization_list or []
        if update_type == "Full":
            core.local_list = {}
        for entry in entries:
            info = entry.get("id_tag_info")
            if info is None:
                core.local_list.pop(entry["id_tag"], None)
            else:
                core.local_list[entry["id_tag"]] = str(info["status"])
        core.local_list_version = list_version
        return R.SendLocalList(status="Accepted")

    def get_local_list_version(self, **_: Any) -> Any:
        self._seen("GetLocalListVersion")
        return R.GetLocalListVersion(list_version=self.core.local_list_version)

    def clear_cache(self, **_: Any) -> Any:
        self._seen("ClearCache")
        self.core.auth_cache.clear()
        return R.ClearCache(status="Accepted")

    def change_availability(self, connector_id: int, type: str, **_: Any) -> Any:
        self._seen("ChangeAvailability")
        return R.ChangeAvailability(status="Accepted")

    def unlock_connector(self, connector_id: int, **_: Any) -> Any:
        self._seen("UnlockConnector")
        return R.UnlockConnector(status="Unlocked")
