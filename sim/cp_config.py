"""Configuration of a simulated charge point, its field quirks and its OCPP 1.6 configuration keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.car import NOMINAL_VOLTAGE_V

PROTOCOLS = ("ocpp1.6", "ocpp2.0.1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Behaviour:
    """Field quirks seen on real charge points (see ENERGY-NOTES.md, users' complaints)."""

    # Answers Accepted to SetChargingProfile and ClearChargingProfile but never changes its output.
    ignores_profiles: bool = False
    # Highest stack level accepted; some chargers report and accept only 0.
    max_stack_level: int = 20
    # What it reports as ChargeProfileMaxStackLevel when that is not what it accepts (None: the
    # truth); some report 20 and refuse anything above 0.
    reported_max_stack_level: int | None = None
    # Rejects profiles in A (ChargingScheduleAllowedChargingRateUnit = Power).
    watts_only: bool = False
    # Applies an accepted profile only after this many seconds.
    slow_apply_s: float = 0.0
    # Sends BootNotification again on every reconnect (most chargers do not).
    boot_on_reconnect: bool = False
    # 2.0.1 as EVerest's libocpp: a profile whose purpose and stack level another id holds (a
    # TxProfile of the same transaction, K01.FR.39; another purpose on the same EVSE, K01.FR.06)
    # is Rejected, with its reasonCode (sim.smart_charging.ProfileStore.taken_level). Off, and
    # always in 1.6: it replaces that one (1.6 3.13.2).
    refuses_taken_level: bool = False
    # Answers SetChargingProfile only after this many seconds (a busy controller); it reads
    # nothing else meanwhile.
    profile_answer_delay_s: float = 0.0


QUIRKS: dict[str, Behaviour] = {
    "none": Behaviour(),
    "ignores_profiles": Behaviour(ignores_profiles=True),
    "max_stack_level_0": Behaviour(max_stack_level=0),
    "watts_only": Behaviour(watts_only=True),
    "slow_apply": Behaviour(slow_apply_s=5.0),
}


def quirk(name: str) -> Behaviour:
    try:
        return QUIRKS[name]
    except KeyError:
        raise ValueError(f"unknown charge point quirk {name!r}; known: {sorted(QUIRKS)}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePointConfig:
    charge_point_id: str
    # Base URL; the charge point id is appended as the last path segment.
    url: str
    protocol: str = "ocpp1.6"
    password: str | None = None
    connectors: int = 1
    connector_max_a: float = 32.0
    phases: int = 3
    voltage_v: float = NOMINAL_VOLTAGE_V
    vendor: str = "SimVendor"
    model: str = "SimCharger"
    serial_number: str = "SIM-0001"
    firmware_version: str = "1.0.0-sim"
    behaviour: Behaviour = field(default_factory=Behaviour)
    meter_interval_s: float = 10.0
    heartbeat_interval_s: float = 60.0
    tick_s: float = 0.5
    response_timeout_s: float = 10.0
    open_timeout_s: float = 5.0
    ping_interval_s: float | None = 20.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 10.0
    transaction_message_attempts: int = 3
    transaction_message_retry_interval_s: float = 1.0
    allow_offline_tx_for_unknown_id: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"charge point {self.charge_point_id!r}: protocol must be one of {PROTOCOLS}, "
                f"got {self.protocol!r}"
            )
        if not self.charge_point_id or "/" in self.charge_point_id:
            raise ValueError(
                f"charge point id must be a non-empty path segment, got {self.charge_point_id!r}"
            )
        if self.connectors < 1:
            raise ValueError(
                f"charge point {self.charge_point_id!r}: connectors must be >= 1, "
                f"got {self.connectors!r}"
            )

    @property
    def full_url(self) -> str:
        return self.url.rstrip("/") + "/" + self.charge_point_id


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigKey:
    value: str
    readonly: bool = False
    # "int", "bool", "csl" (comma separated list) or "str"; ChangeConfiguration checks it.
    kind: str = "str"
    # Never returned by GetConfiguration (AuthorizationKey).
    secret: bool = False


def default_configuration(config: ChargePointConfig) -> dict[str, ConfigKey]:
    """The OCPP 1.6 keys a typical Core + SmartCharging + LocalAuthList charger reports."""
    b = config.behaviour
    rate_units = "Power" if b.watts_only else "Current,Power"
    keys: dict[str, ConfigKey] = {
        "AllowOfflineTxForUnknownId": ConfigKey(
            value=str(config.allow_offline_tx_for_unknown_id).lower(), kind="bool"
        ),
        "AuthorizationCacheEnabled": ConfigKey(value="true", kind="bool"),
        "AuthorizationKey": ConfigKey(value="", secret=True),
        "AuthorizeRemoteTxRequests": ConfigKey(value="false", kind="bool"),
        "ClockAlignedDataInterval": ConfigKey(value="0", kind="int"),
        "ConnectionTimeOut": ConfigKey(value="60", kind="int"),
        "GetConfigurationMaxKeys": ConfigKey(value="50", kind="int", readonly=True),
        "HeartbeatInterval": ConfigKey(value=str(int(config.heartbeat_interval_s)), kind="int"),
        "LocalAuthorizeOffline": ConfigKey(value="true", kind="bool"),
        "LocalPreAuthorize": ConfigKey(value="false", kind="bool"),
        "MeterValuesAlignedData": ConfigKey(value="Energy.Active.Import.Register", kind="csl"),
        "MeterValuesSampledData": ConfigKey(
            value="Energy.Active.Import.Register,Current.Import,Current.Offered,"
            "Power.Active.Import",
            kind="csl",
        ),
        "MeterValueSampleInterval": ConfigKey(value=_seconds(config.meter_interval_s), kind="int"),
        "NumberOfConnectors": ConfigKey(value=str(config.connectors), kind="int", readonly=True),
        "ResetRetries": ConfigKey(value="3", kind="int"),
        "StopTransactionOnEVSideDisconnect": ConfigKey(value="true", kind="bool"),
        "StopTransactionOnInvalidId": ConfigKey(value="true", kind="bool"),
        "StopTxnAlignedData": ConfigKey(value="", kind="csl"),
        "StopTxnSampledData": ConfigKey(value="Energy.Active.Import.Register", kind="csl"),
        "SupportedFeatureProfiles": ConfigKey(
            value="Core,FirmwareManagement,LocalAuthListManagement,RemoteTrigger,SmartCharging",
            readonly=True,
            kind="csl",
        ),
        "TransactionMessageAttempts": ConfigKey(
            value=str(config.transaction_message_attempts), kind="int"
        ),
        "TransactionMessageRetryInterval": ConfigKey(
            value=_seconds(config.transaction_message_retry_interval_s), kind="int"
        ),
        "UnlockConnectorOnEVSideDisconnect": ConfigKey(value="true", kind="bool"),
        "WebSocketPingInterval": ConfigKey(value=str(int(config.ping_interval_s or 0)), kind="int"),
        "LocalAuthListEnabled": ConfigKey(value="true", kind="bool"),
        "LocalAuthListMaxLength": ConfigKey(value="1000", kind="int", readonly=True),
        "SendLocalListMaxLength": ConfigKey(value="100", kind="int", readonly=True),
        "ChargeProfileMaxStackLevel": ConfigKey(
            value=str(
                b.max_stack_level
                if b.reported_max_stack_level is None
                else b.reported_max_stack_level
            ),
            kind="int",
            readonly=True,
        ),
        "ChargingScheduleAllowedChargingRateUnit": ConfigKey(
            value=rate_units, kind="csl", readonly=True
        ),
        "ChargingScheduleMaxPeriods": ConfigKey(value="24", kind="int", readonly=True),
        "MaxChargingProfilesInstalled": ConfigKey(value="10", kind="int", readonly=True),
    }
    return keys


def _seconds(value: float) -> str:
    # Integer keys cannot say 0.2 s; tests that want faster sampling set the config field, which
    # the charge point reads in preference when the key still holds its default.
    return str(max(1, round(value)))


def valid_value(key: ConfigKey, value: str) -> bool:
    if key.kind == "int":
        try:
            return int(value) >= 0
        except ValueError:
            return False
    if key.kind == "bool":
        return value.lower() in ("true", "false")
    return True
