"""OCPP 2.0.1 calls a simulated charge point answers (from its central system or the edge).

Device-model variables map onto the 1.6 configuration keys the core keeps.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sim.clock import ocpp_timestamp
from sim.cp_config import valid_value
from sim.dialect import Msg
from sim.ocpp201 import meter_value
from sim.ocpp_lib import V201ChargePoint, answer_later, bind, v201_call_result
from sim.smart_charging import ProfileError, Purpose, profile_from_v201

if TYPE_CHECKING:
    from sim.charge_point import SimChargePoint

R = v201_call_result

# (component, variable) -> the core's 1.6 configuration key
VARIABLES = {
    ("OCPPCommCtrlr", "HeartbeatInterval"): "HeartbeatInterval",
    ("OCPPCommCtrlr", "MessageAttempts"): "TransactionMessageAttempts",
    ("OCPPCommCtrlr", "MessageAttemptInterval"): "TransactionMessageRetryInterval",
    ("SampledDataCtrlr", "TxUpdatedInterval"): "MeterValueSampleInterval",
    ("AuthCtrlr", "LocalAuthorizeOffline"): "LocalAuthorizeOffline",
    ("AuthCtrlr", "OfflineTxForUnknownIdEnabled"): "AllowOfflineTxForUnknownId",
    ("AuthCtrlr", "AuthorizeRemoteStart"): "AuthorizeRemoteTxRequests",
    ("TxCtrlr", "StopTxOnInvalidId"): "StopTransactionOnInvalidId",
    ("SmartChargingCtrlr", "ProfileStackLevel"): "ChargeProfileMaxStackLevel",
    ("SmartChargingCtrlr", "RateUnit"): "ChargingScheduleAllowedChargingRateUnit",
}
_TRIGGERS = {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues"}


def make_handler(core: SimChargePoint, connection: Any) -> Any:
    h = _Handlers(core)
    return bind(
        V201ChargePoint,
        core.id,
        connection,
        response_timeout_s=core.config.response_timeout_s,
        handlers={
            "RequestStartTransaction": h.request_start,
            "RequestStopTransaction": h.request_stop,
            "SetChargingProfile": h.set_charging_profile,
            "ClearChargingProfile": h.clear_charging_profile,
            "GetCompositeSchedule": h.get_composite_schedule,
            "Reset": h.reset,
            "GetVariables": h.get_variables,
            "SetVariables": h.set_variables,
            "TriggerMessage": h.trigger_message,
            "DataTransfer": h.data_transfer,
            "SendLocalList": h.send_local_list,
            "GetLocalListVersion": h.get_local_list_version,
            "ClearCache": h.clear_cache,
        },
    )


class _Handlers:
    """Answers to the CSMS's calls; they decide and schedule, never await a call of their own."""

    def __init__(self, core: SimChargePoint) -> None:
        self.core = core

    def _seen(self, action: str) -> None:
        self.core.stats.received[action] += 1

    def request_start(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None = None,
        charging_profile: Any = None,
        **_: Any,
    ) -> Any:
        self._seen("RequestStartTransaction")
        core = self.core
        c = core.pick_connector(evse_id)
        if c is None:
            return R.RequestStartTransaction(status="Rejected")
        profile = None
        if charging_profile is not None:
            try:
                profile = profile_from_v201(
                    c.connector_id, charging_profile, installed_utc=core.clock.utc()
                )
            except (ProfileError, KeyError, ValueError):
                return R.RequestStartTransaction(status="Rejected")
            if profile.purpose != Purpose.TX:
                return R.RequestStartTransaction(status="Rejected")
        core.remote_start(
            c, str(id_token["id_token"]), remote_start_id=remote_start_id, profile=profile
        )
        return R.RequestStartTransaction(status="Accepted")

    def request_stop(self, transaction_id: str, **_: Any) -> Any:
        self._seen("RequestStopTransaction")
        found = self.core.remote_stop(transaction_id)
        return R.RequestStopTransaction(status="Accepted" if found else "Rejected")

    def set_charging_profile(self, evse_id: int, charging_profile: Any, **_: Any) -> Any:
        self._seen("SetChargingProfile")
        delay_s = self.core.config.behaviour.profile_answer_delay_s
        core = self.core
        try:
            profile = profile_from_v201(evse_id, charging_profile, installed_utc=core.clock.utc())
        except (ProfileError, KeyError, ValueError):
            return answer_later(R.SetChargingProfile(status="Rejected"), delay_s)
        taken = core.profiles.taken_level(profile)
        if taken is not None and core.config.behaviour.refuses_taken_level:
            refused = R.SetChargingProfile(status="Rejected", status_info={"reason_code": taken})
            return answer_later(refused, delay_s)
        return answer_later(R.SetChargingProfile(status=core.install_profile(profile)), delay_s)

    def clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        self._seen("ClearChargingProfile")
        # K10: a chargingProfileId clears that profile, the criteria not read (as EVerest's
        # libocpp does, K10.FR.03)
        criteria = {} if charging_profile_id is not None else charging_profile_criteria or {}
        purpose = criteria.get("charging_profile_purpose")
        removed = self.core.clear_profiles(
            profile_id=charging_profile_id,
            connector_id=criteria.get("evse_id"),
            purpose=None
            if purpose is None
            else Purpose(
                "ChargePointMaxProfile" if purpose == "ChargingStationMaxProfile" else purpose
            ),
            stack_level=criteria.get("stack_level"),
        )
        return R.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    def get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None, **_: Any
    ) -> Any:
        self._seen("GetCompositeSchedule")
        core = self.core
        if evse_id != 0 and evse_id not in core.connectors:
            return R.GetCompositeSchedule(status="Rejected")
        unit, periods = core.composite_periods(evse_id, duration, charging_rate_unit)
        return R.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": evse_id,
                "duration": duration,
                "schedule_start": ocpp_timestamp(core.clock.utc()),
                "charging_rate_unit": unit,
                "charging_schedule_period": periods,
            },
        )

    def reset(
        self, type: str, evse_id: int | None = None, call_unique_id: str = "", **_: Any
    ) -> Any:
        self._seen("Reset")
        self.core.reset("ImmediateReset", answer_id=call_unique_id or None)
        return R.Reset(status="Accepted")

    def get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        self._seen("GetVariables")
        results = []
        for item in get_variable_data:
            component, variable = item["component"], item["variable"]
            key = VARIABLES.get((component["name"], variable["name"]))
            entry = None if key is None else self.core.configuration.get(key)
            result: dict[str, Any] = {"component": component, "variable": variable}
            if entry is None:
                result["attribute_status"] = "UnknownVariable"
            else:
                result["attribute_status"] = "Accepted"
                result["attribute_value"] = entry.value
            results.append(result)
        return R.GetVariables(get_variable_result=results)

    def set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        self._seen("SetVariables")
        core = self.core
        results = []
        for item in set_variable_data:
            component, variable = item["component"], item["variable"]
            key = VARIABLES.get((component["name"], variable["name"]))
            entry = None if key is None else core.configuration.get(key)
            value = str(item["attribute_value"])
            if key is None or entry is None:
                status = "UnknownVariable"
            elif entry.readonly or not valid_value(entry, value):
                status = "Rejected"
            else:
                core.configuration[key] = dataclasses.replace(entry, value=value)
                core.mark_changed(key)
                status = "Accepted"
            results.append(
                {"attribute_status": status, "component": component, "variable": variable}
            )
        return R.SetVariables(set_variable_result=results)

    def trigger_message(self, requested_message: str, evse: Any = None, **_: Any) -> Any:
        self._seen("TriggerMessage")
        core = self.core
        if requested_message not in _TRIGGERS:
            return R.TriggerMessage(status="NotImplemented")
        evse_id = None if not evse else evse.get("id")
        if requested_message == "BootNotification":
            core.session.post(core.dialect.boot(core, "Triggered"))
        elif requested_message == "Heartbeat":
            core.session.post(Msg(action="Heartbeat", payload={}))
        else:
            for c in core.connectors.values():
                if evse_id not in (None, 0, c.connector_id):
                    continue
                if requested_message == "StatusNotification":
                    core.post_status(c, force=True)
                else:
                    sample = c.sample(core.clock.monotonic(), core.clock.utc())
                    core.session.post(
                        Msg(
                            action="MeterValues",
                            payload={
                                "evse_id": c.connector_id,
                                "meter_value": [meter_value(sample, "Trigger")],
                            },
                        )
                    )
        return R.TriggerMessage(status="Accepted")

    def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any
    ) -> Any:
        self._seen("DataTransfer")
        self.core.data_transfers.append((vendor_id, message_id, data))
        return R.DataTransfer(status="Accepted")

    def send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        self._seen("SendLocalList")
        core = self.core
        if update_type == "Full":
            core.local_list = {}
        for entry in local_authorization_list or []:
            tag = str(entry["id_token"]["id_token"])
            info = entry.get("id_token_info")
            if info is None:
                core.local_list.pop(tag, None)
            else:
                core.local_list[tag] = str(info["status"])
        core.local_list_version = version_number
        return R.SendLocalList(status="Accepted")

    def get_local_list_version(self, **_: Any) -> Any:
        self._seen("GetLocalListVersion")
        return R.GetLocalListVersion(version_number=self.core.local_list_version)

    def clear_cache(self, **_: Any) -> Any:
        self._seen("ClearCache")
        self.core.auth_cache.clear()
        return R.ClearCache(status="Accepted")
