"""The energy side of one charge point, kept by its ChargePoint actor (pure: returns the calls).

- On every (re)connection: learn what the charge point takes (1.6 GetConfiguration
  ChargeProfileMaxStackLevel / ChargingScheduleAllowedChargingRateUnit, 2.0.1 GetVariables), then
  install the safe TxDefaultProfile and, where supported, the ChargePointMaxProfile. A charge point
  that reboots (BootNotification) gets them again. One that reconnects without a boot also gets
  the TxProfile of each transaction still running, at its last limit: its controller may have
  restarted and lost them (it would give the car its full current), and the energy node sends a
  limit again only when it changes (or in its periodic full batch).
- Each limit from the energy node becomes a TxProfile for the running transaction it was decided
  for (fixed profile id per connector: a new one replaces the old); a newer limit replaces a queued
  one (``replace_key``), so a slow charge point never holds up the loop. A limit decided before
  the transaction began (the last car's, or the 0 A of "no car") is not its limit: a new
  transaction gets a TxProfile at the safe default at its start, until the energy node's first
  decision for it, which it sends at once (actors.site_state). Sent at the transaction's start,
  the "no car" 0 A paused every car arriving at a connector used before, and some cars do not
  resume after a pause. Increases below the hysteresis are not sent,
  decreases always are, and a resume from 0 A always is.
- The station's profiles' answers are kept (the status's ``station_profiles``): a refused max
  profile is not sent again under the same capabilities ("where supported"); a refused
  TxDefaultProfile goes to the energy node as a rejection (connector 0).
- The edge's stack level (:meth:`EnergySide.level`) is the highest the charge point takes as far
  as the edge knows, and above the cloud's profiles it accepted: within a purpose a charge point
  follows the highest level alone, so one of the cloud's above the edge's would override its
  limit, and at the same level, where 1.6 has the later replace the other (3.13.2), a 2.0.1
  station refuses the second of two ids (K01.FR.39 for a transaction's TxProfiles, K01.FR.06
  for the other purposes; EVerest's libocpp answers InvalidStackLevel / DuplicateProfile). So the
  edge goes one above the cloud's where the charge point took the cloud's above what it reports
  (it takes more than it says); where the cloud's sit at the top it reports, the edge's go at it
  (1.6 replaces; a 2.0.1 station may refuse them: :attr:`EnergySide.shared_level`).
- A charge point that rejects a profile teaches us: stack level above 0 rejected -> retry at 0
  (at the level of the cloud's profiles it accepted, if higher: below it, a cloud profile would
  override the edge's; and no higher again on this connection); amperes rejected -> retry in
  watts. A 2.0.1 charge point says why (``statusInfo.reasonCode``):
  UnsupportedRateUnit teaches watts at once (for the TxDefaultProfile too); InvalidStackLevel
  teaches stack level 0 after the retry, alone (EVerest says it also for a TxProfile of the
  transaction at that level already, e.g. the cloud's: not always "too high"); one that names
  another cause teaches nothing about what it takes (TxNotFound: the transaction is not on the
  EVSE, e.g. it ended without the edge hearing; the stack level or unit would not help, and
  changing them would change every later profile). What it finally answered goes back to the
  energy node, with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from actors.control_types import IEC_MIN_CURRENT_A
from actors.energy_messages import ConnectorLimit, ProfileOutcome
from actors.messages import CallChargePoint
from actors.ocpp_rules import utc_text
from actors.profiles import (
    ChargePointCapabilities,
    TxProfileTemplate,
    boot_profiles,
    capabilities_from_v16,
    capabilities_from_v201,
    is_edge_profile_id,
    tx_profile_request,
    tx_profile_template,
    worth_sending,
)
from drivers.ocpp.codes import OcppVersion

CAPS_KEYS_16 = ["ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit"]
RETRY_AFTER_S = 1.0  # a rejected TxProfile is tried once more, as it was, after this
SAFE_DEFAULT_A = IEC_MIN_CURRENT_A  # TxDefaultProfile of a site without [allocation]
DEFAULT_SOURCE = "safe default"  # what binds a new transaction's first TxProfile
# The station's profiles' call tags (actors.profiles.boot_profiles' order) -> their purpose
STATION_PROFILES = {"boot:0": "TxDefaultProfile", "boot:1": "max profile"}
# 2.0.1 reasonCodes (case-insensitive, OCPP 2.0.1 part 2 appendix; EVerest's libocpp uses these
# for a refused SetChargingProfile): the lesson each names (alone) ...
LESSON_OF = {"unsupportedrateunit": "unit", "invalidstacklevel": "stack level"}
AT_ONCE = frozenset({"unit"})  # ... taken without the retry (no race makes a unit refused)
# ... and the causes that no stack level or rate unit would cure: nothing to learn from them.
NO_LESSON = frozenset({"txnotfound", "unknownevse", "invalidschedule", "missingparam"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TxRetry:
    """A refused TxProfile, to try again (:meth:`EnergySide.retry`) ``RETRY_AFTER_S`` later."""

    connector_id: int
    tx_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    tag: str
    ok: bool
    payload: dict[str, Any]
    error: str


class EnergySide:
    def __init__(
        self,
        cp_id: str,
        *,
        reply_to: str,
        max_current_a: float,
        phases: int,
        nominal_voltage_v: float = 230.0,
        default_limit_a: float = SAFE_DEFAULT_A,
    ) -> None:
        self.cp_id = cp_id
        self.reply_to = reply_to
        self.max_current_a = max_current_a
        self.phases = phases
        # the site's ([allocation] nominal_voltage_v): amperes to watts where only W is taken
        self.nominal_voltage_v = nominal_voltage_v
        self.caps = ChargePointCapabilities(nominal_voltage_v=nominal_voltage_v)
        self.caps_known = False
        # What the charge point's last answer on its capabilities had that could not be read
        # (each such key keeps its default): the actor logs it
        self.caps_unread: tuple[str, ...] = ()
        self.version = OcppVersion.V16
        self.limits: dict[int, ConnectorLimit] = {}
        self.sent: dict[int, float] = {}
        # connector -> the TxProfile value last handed to the queue, until its answer: what the
        # charge point will hold once the calls before the next limit are through, so what that
        # limit is compared with (against ``sent``, a limit back to the accepted value while an
        # increase waited was not sent, and the increase was then taken)
        self.asked: dict[int, float] = {}
        # the site's safe TxDefaultProfile current (BrokerContext.default_limit_a), then each
        # batch's
        self.default_limit_a = default_limit_a
        self.boot_installed = False
        # The charge point's answers to the station's profiles (TxDefaultProfile, the max
        # profile), for the status; and the capabilities it refused the max profile under: not
        # sent again with them ("where supported"), again once a lesson changed them; all
        # forgotten at a boot (new firmware may take it).
        self.station: dict[str, str] = {}
        self.max_refused: set[ChargePointCapabilities] = set()
        self.resume_tx = False  # once the capabilities are known: TxProfiles of a reconnect
        # Connectors whose transaction's TxProfile a boot took: a charge point may carry a
        # transaction on through a reboot (no stop, no new start), and then gives it what the
        # TxDefaultProfile says; its TxProfile goes again once it shows it running
        # (:meth:`shown_running`), unless one went since.
        self.booted_tx: set[int] = set()
        self.rejected: dict[int, int] = {}  # connector -> TxProfile rejections in a row
        # connectors whose TxProfile went again under a lesson learned before its refusal (once
        # until one is taken: a charge point that refuses it anyway is not asked in a loop)
        self.relearned: set[int] = set()
        # connector -> the transaction whose refused TxProfile is tried again, until the retry
        # is answered (or one of its TxProfiles taken)
        self.retrying: dict[int, str] = {}
        # connectors whose retry has gone to the queue: a newer limit for the transaction goes
        # as the retry too (it replaces it there, and its answer is the retry's)
        self.retry_sent: set[int] = set()
        # connector -> the cloud's limit on its transaction now, A (actors.cloud_profiles): the
        # TxProfile carries the lower of it and the energy node's
        self.cloud_caps: dict[int, float] = {}
        # the cloud's TxDefaultProfiles' limit on new transactions now, A: the edge's
        # TxDefaultProfile carries the lower of it and default_limit_a
        self.cloud_default_a: float | None = None
        # the cloud's ChargePointMaxProfiles' limit now, A: the edge's max profile carries the
        # lower of it and max_current_a
        self.cloud_max_a: float | None = None
        # the highest stack level of the cloud's profiles the broker keeps, each accepted by
        # the charge point (actors.cp_cloud_caps; None: it keeps none): the edge's go above it
        # where the charge point takes that (level)
        self.cloud_level: int | None = None
        # the stack level the charge point reports it takes (0 when it reports none)
        self.reported_level = 0
        # the highest a refusal left the edge's at, on this connection (None: no such lesson)
        self.taught_level: int | None = None
        # connector -> (what its template depends on, the template)
        self.templates: dict[int, tuple[tuple[Any, ...], TxProfileTemplate | None]] = {}

    def report(self) -> dict[str, Any]:
        return {
            "caps": {
                "max_stack_level": self.caps.max_stack_level,
                "rate_units": list(self.caps.rate_units),
            },
            "cloud_level": self.cloud_level,
            # the stack level the edge's share with the cloud's kept profiles, as the top the
            # charge point takes (None: they do not): a 2.0.1 station may refuse the edge's there
            "shared_level": self.shared_level,
            "limits_a": {str(c): lim.limit_a for c, lim in self.limits.items()},
            "sent_a": {str(c): a for c, a in self.sent.items()},
            "cloud_caps_a": {str(c): a for c, a in self.cloud_caps.items()},
            "cloud_default_a": self.cloud_default_a,
            "cloud_max_a": self.cloud_max_a,
            "default_limit_a": self.default_limit_a,
            # connector -> the transaction whose refused TxProfile goes once more
            "retrying": {str(c): tx for c, tx in self.retrying.items()},
            # purpose -> what the charge point answered ("Accepted", "Rejected: ...", "error:")
            "station_profiles": dict(self.station),
        }

    def _call(
        self,
        action: str,
        payload: dict[str, Any],
        tag: str,
        replace_key: str = "",
        payload_json: str = "",
    ) -> CallChargePoint:
        return CallChargePoint(
            action=action,
            payload=payload,
            reply_to=self.reply_to,
            tag=tag,
            replace_key=replace_key,
            payload_json=payload_json,
        )

    # -- the link -------------------------------------------------------------------------------
    def connected(self, version: OcppVersion, *, rebooted: bool = False) -> list[CallChargePoint]:
        """A new connection: what it had installed may be gone (reboot) or stale. ``rebooted``:
        it began with a BootNotification (its transactions ended with the reboot: their
        TxProfiles are not installed again)."""
        self.version = version
        self.sent.clear()
        self.asked.clear()
        self.rejected.clear()  # what it refuses is learned again with its capabilities
        self.taught_level = None
        self.relearned.clear()
        self.retrying.clear()
        self.retry_sent.clear()
        self.boot_installed = False
        self.resume_tx = not rebooted
        self.booted_tx = set(self.limits) if rebooted else set()
        if version is OcppVersion.V16:
            return [self._call("GetConfiguration", {"key": CAPS_KEYS_16}, "caps")]
        return [
            self._call(
                "GetVariables",
                {
                    "getVariableData": [
                        {
                            "component": {"name": "SmartChargingCtrlr"},
                            "variable": {"name": "ProfileStackLevel"},
                        },
                        {
                            "component": {"name": "SmartChargingCtrlr"},
                            "variable": {"name": "RateUnit"},
                        },
                    ]
                },
                "caps",
            )
        ]

    def booted(self, now: datetime) -> list[CallChargePoint]:
        """BootNotification: a rebooted charge point forgot its profiles (and may run new
        firmware: the max profile it refused goes once more)."""
        self.max_refused.clear()
        self.sent.clear()
        self.asked.clear()
        self.rejected.clear()
        self.relearned.clear()
        self.retrying.clear()
        self.retry_sent.clear()
        self.boot_installed = False
        self.resume_tx = False
        self.booted_tx = set(self.limits)
        return self._boot_profiles(now) if self.caps_known else []

    def shown_running(self, connector_id: int, tx_id: str | None) -> list[CallChargePoint]:
        """After a boot, the charge point shows the connector's transaction ``tx_id`` running
        (charging or suspended in its status, its MeterValues or events naming it): it carried
        it on through the reboot, which took its TxProfile; that goes again at its last limit
        (a transaction the reboot ended is heard of ending first, as a rule; a TxProfile for
        one ending meanwhile is refused and its retry dropped with it)."""
        if connector_id not in self.booted_tx or not self.caps_known:
            return []
        self.booted_tx.discard(connector_id)
        limit = self.limit_of(connector_id, tx_id)
        if limit is None or tx_id is None:
            return []
        return self._tx_profile(limit, tx_id, force=True)

    def _boot_profiles(self, now: datetime) -> list[CallChargePoint]:
        self.boot_installed = True
        caps = self.caps
        if caps in self.max_refused:
            caps = replace(caps, supports_max_profile=False)
        payloads = boot_profiles(
            version=self.version,
            caps=caps,
            default_limit_a=self._default_a(),
            max_limit_a=self._max_a(),
            phases=self.phases,
            now_utc=now,
        )
        return [
            self._call("SetChargingProfile", p, f"boot:{i}", replace_key=f"boot:{i}")
            for i, p in enumerate(payloads)
        ]

    # -- limits ---------------------------------------------------------------------------------
    def limit(
        self,
        limit: ConnectorLimit,
        default_limit_a: float,
        tx_id: str | None,
        now: Callable[[], datetime],
    ) -> list[CallChargePoint]:
        """``now``: the clock, read only when the TxDefaultProfile is re-installed (not once per
        limit of a batch)."""
        calls: list[CallChargePoint] = []
        if abs(default_limit_a - self.default_limit_a) > 1e-6:
            before = self._default_a()
            self.default_limit_a = default_limit_a
            # The TxDefaultProfile again if what it offers changed (not while the cloud's lower
            # default holds it where it was).
            if self.caps_known and abs(self._default_a() - before) > 1e-6:
                calls += self._boot_profiles(now())[:1]
        if self.keep(limit, tx_id) and tx_id is not None:
            calls += self._tx_profile(limit, tx_id)
        return calls

    def keep(self, limit: ConnectorLimit, tx_id: str | None) -> bool:
        """Keep ``limit`` as its connector's (``tx_id``: the transaction running there), unless
        it was decided before that transaction (for no car, or the last one: a batch under way
        when it began) and the transaction has its own. True: it is the transaction's."""
        if tx_id is not None and limit.transaction_id != tx_id:
            if self.limit_of(limit.connector_id, tx_id) is None:
                self.limits[limit.connector_id] = limit
            return False
        self.limits[limit.connector_id] = limit
        return True

    def limit_of(self, connector_id: int, tx_id: str | None) -> ConnectorLimit | None:
        """The connector's last limit from the energy node, if it was decided for transaction
        ``tx_id`` (None: no transaction runs, so none is)."""
        limit = self.limits.get(connector_id)
        if limit is None or tx_id is None or limit.transaction_id != tx_id:
            return None
        return limit

    def transaction_started(self, connector_id: int, tx_id: str) -> list[CallChargePoint]:
        """Its TxProfile: at the energy node's limit for it if that came first (it is reported
        once the transaction exists), else at the edge's safe default (what the energy node
        counts a new car at, actors.control_types.beginning) until that limit comes. Not left to
        the TxDefaultProfile: a cloud's TxProfile (a remote start's) or connector TxDefaultProfile
        would override that one, up to the car's full current. Only where the edge installed its
        station profiles (it manages this charge point's energy and knows what it takes)."""
        self.sent.pop(connector_id, None)
        self.asked.pop(connector_id, None)
        self.booted_tx.discard(connector_id)
        self.rejected.pop(connector_id, None)
        self.relearned.discard(connector_id)
        self._retry_done(connector_id)
        limit = self.limit_of(connector_id, tx_id)
        if limit is None:
            if not self.boot_installed:
                return []
            limit = self.limits[connector_id] = ConnectorLimit(
                charge_point_id=self.cp_id,
                connector_id=connector_id,
                limit_a=self._default_a(),
                phases=self.phases,
                binding_source=DEFAULT_SOURCE,
                reason="the safe default until the energy node decides for the transaction",
                transaction_id=tx_id,
            )
        return self._tx_profile(limit, tx_id)

    def _tx_profile(
        self, limit: ConnectorLimit, tx_id: str, force: bool = False
    ) -> list[CallChargePoint]:
        """Once the retry of a refused one has gone to the queue (:meth:`retry`), the
        transaction's TxProfiles go as that retry (tagged ``txr:``, so its answer is told from
        the others'; a newer one replaces it where it waits, never goes before it)."""
        cap_a = self.cloud_caps.get(limit.connector_id)
        if cap_a is not None and cap_a < limit.limit_a:
            limit = replace(limit, limit_a=cap_a)
        c = limit.connector_id
        last = self.asked.get(c, self.sent.get(c))
        if not force and not worth_sending(limit.limit_a, last):
            return []
        self.asked[c] = limit.limit_a
        if self.booted_tx:
            self.booted_tx.discard(c)
        retry = c in self.retry_sent and self.retrying.get(c) == tx_id
        kind = "txr" if retry else "tx"
        tag = f"{kind}:{limit.connector_id}:{limit.limit_a}:{tx_id}"
        replace_key = f"{kind}:{limit.connector_id}"
        template = self._template(limit, tx_id)
        if template is None:
            payload = tx_profile_request(
                limit, version=self.version, caps=self.caps, transaction_id=tx_id
            )
            return [self._call("SetChargingProfile", payload, tag, replace_key=replace_key)]
        return [
            self._call(
                "SetChargingProfile",
                {},
                tag,
                replace_key=replace_key,
                payload_json=template.json(limit.limit_a),
            )
        ]

    def cloud_capped(
        self, connector_id: int, cap_a: float | None, tx_id: str | None, *, force: bool
    ) -> list[CallChargePoint]:
        """The cloud's limit on the connector's transaction is now ``cap_a`` (None: none): its
        TxProfile again, if the energy node has given the connector a limit. ``force``: even if
        the value is the one sent last (the cloud's own profile may have replaced the edge's)."""
        if cap_a is None:
            self.cloud_caps.pop(connector_id, None)
        else:
            self.cloud_caps[connector_id] = cap_a
        limit = self.limit_of(connector_id, tx_id)
        if limit is None or tx_id is None:
            return []
        return self._tx_profile(limit, tx_id, force=force)

    def cloud_default_capped(
        self, cap_a: float | None, now: datetime, *, force: bool
    ) -> list[CallChargePoint]:
        """The cloud's limit on new transactions is now ``cap_a`` (None: none): the edge's
        TxDefaultProfile again if that changes it (``force``: even if not: the cloud's may have
        replaced it), once the charge point's capabilities are known."""
        before = self._default_a()
        self.cloud_default_a = cap_a
        if not self.caps_known or not (force or self._default_a() != before):
            return []
        return self._boot_profiles(now)[:1]

    def cloud_max_capped(
        self, cap_a: float | None, now: datetime, *, force: bool
    ) -> list[CallChargePoint]:
        """The cloud's ChargePointMaxProfiles' limit is now ``cap_a`` (None: none): the edge's max
        profile again if that changes it (``force``: even if not: its stack level was raised, or
        the cloud's may have replaced it), where it is sent at all."""
        before = self._max_a()
        self.cloud_max_a = cap_a
        if not self.caps_known or not (force or self._max_a() != before):
            return []
        return self._boot_profiles(now)[1:]

    def _max_a(self) -> float:
        """What the edge's max profile allows: the charge point's maximum, or the cloud's if
        lower."""
        cloud_a = self.cloud_max_a
        return self.max_current_a if cloud_a is None else min(self.max_current_a, cloud_a)

    def _default_a(self) -> float:
        """What the edge's TxDefaultProfile offers: its default, or the cloud's if lower."""
        cloud_a = self.cloud_default_a
        return self.default_limit_a if cloud_a is None else min(self.default_limit_a, cloud_a)

    def _template(self, limit: ConnectorLimit, tx_id: str) -> TxProfileTemplate | None:
        """The connector's TxProfile template, made again when what it depends on changed."""
        key = (tx_id, self.version, self.caps, limit.phases, limit.car_phases)
        kept = self.templates.get(limit.connector_id)
        if kept is None or kept[0] != key:
            template = tx_profile_template(
                limit, version=self.version, caps=self.caps, transaction_id=tx_id
            )
            kept = self.templates[limit.connector_id] = (key, template)
        return kept[1]

    # -- answers --------------------------------------------------------------------------------
    def answered(
        self,
        answer: Answer,
        now: datetime,
        running_tx: Callable[[int], str | None] | None = None,
    ) -> tuple[list[CallChargePoint], ProfileOutcome | None, TxRetry | None]:
        """Calls to send now, the outcome for the energy node, and a TxProfile to try again
        ``RETRY_AFTER_S`` later (:meth:`retry`). ``running_tx``: the transaction running on a
        connector, if any."""
        if answer.tag == "caps":
            self._learn(answer)
            station = self._boot_profiles(now) if not self.boot_installed else []
            if self.resume_tx and running_tx is not None:
                self.resume_tx = False
                station += self._running_profiles(running_tx)
            return station, None, None
        if answer.tag in STATION_PROFILES:
            return self._station_answered(answer, now)
        if not answer.tag.startswith(("tx:", "txr:")):
            return [], None, None
        kind, connector, limit_a, tx_id = answer.tag.split(":", 3)
        connector_id, value = int(connector), float(limit_a)
        status = str(answer.payload.get("status")) if answer.ok else f"error: {answer.error}"
        reason = reason_code(answer.payload) if answer.ok else None
        calls: list[CallChargePoint] = []
        later: TxRetry | None = None
        if kind == "txr" and self.retrying.get(connector_id) == tx_id:
            self._retry_done(connector_id)  # the retry is answered
        if self.asked.get(connector_id) == value:
            del self.asked[connector_id]  # the last one asked is answered: ``sent`` tells
        if status == "Accepted":
            self.sent[connector_id] = value
            self.rejected.pop(connector_id, None)
            self.relearned.discard(connector_id)
            self._retry_done(connector_id)
        elif status == "Rejected" and self.limit_of(connector_id, tx_id) is None:
            pass  # for a transaction that is no longer the connector's: nothing to learn
        elif status == "Rejected" and self.retrying.get(connector_id) == tx_id:
            # Refused for the reason the pending retry tells (a transaction's first TxProfiles,
            # its start's and the energy node's first limit, often both arrive before the
            # charge point has taken in the transaction).
            pass
        elif status == "Rejected":
            # Once more, a moment later: a charge point often refuses a TxProfile that arrives
            # before it has taken in its own transaction. Only then adapt.
            count = self.rejected.get(connector_id, 0) + 1
            self.rejected[connector_id] = count
            lesson = lesson_of(reason)
            if count == 1 and lesson not in AT_ONCE:
                self.retrying[connector_id] = tx_id
                later = TxRetry(connector_id=connector_id, tx_id=tx_id)
            elif (reason or "").lower() not in NO_LESSON:
                caps = self.caps
                calls = self._adapt(connector_id, tx_id, lesson)
                if self.caps != caps and self.boot_installed:
                    # What it refused, it refused in the station's profiles too (sent first,
                    # their answers not read): they go again as it takes them.
                    calls = self._boot_profiles(now) + calls
        retrying = bool(calls) or later is not None or connector_id in self.retrying
        told = f"{status}: {reason}" if reason else status
        outcome = ProfileOutcome(
            charge_point_id=self.cp_id,
            connector_id=connector_id,
            limit_a=value,
            status=f"{told} (retrying)" if status == "Rejected" and retrying else told,
            written_utc=utc_text(now),
        )
        return calls, outcome, later

    def _station_answered(
        self, answer: Answer, now: datetime
    ) -> tuple[list[CallChargePoint], ProfileOutcome | None, None]:
        """A station profile's answer: kept for the status. The max profile refused ("where
        supported"): not sent again under these capabilities, and no rejection to count. The
        safe TxDefaultProfile refused: a new transaction draws what the charge point gives
        until its TxProfile comes; an outcome for connector 0, counted as a rejection (and one
        when it is taken again); refused in amperes with UnsupportedRateUnit, the station's
        profiles go again in watts at once."""
        purpose = STATION_PROFILES[answer.tag]
        if answer.ok:
            status = str(answer.payload.get("status"))
            reason = reason_code(answer.payload)
            refused = status != "Accepted"
        else:
            status, reason = f"error: {answer.error}", None
            refused = answer.error.startswith(("NotSupported", "NotImplemented"))
        told = f"{status}: {reason}" if reason else status
        before = self.station.get(purpose)
        self.station[purpose] = told
        if answer.tag == "boot:1":
            if refused:
                self.max_refused.add(self.caps)
            elif status == "Accepted":
                # taken under these: a refusal read late (sent under others) does not hold them
                self.max_refused.discard(self.caps)
            return [], None, None
        calls: list[CallChargePoint] = []
        if refused and lesson_of(reason) == "unit" and self.caps.rate_units[0] == "A":
            self.caps = replace(self.caps, rate_units=("W",))
            calls = self._boot_profiles(now)
        if status == "Accepted" and (before is None or before == "Accepted"):
            return [], None, None
        outcome = ProfileOutcome(
            charge_point_id=self.cp_id,
            connector_id=0,
            limit_a=self._default_a(),
            status=f"{purpose} {told}" + (" (retrying)" if calls else ""),
            written_utc=utc_text(now),
        )
        return calls, outcome, None

    def retry(self, r: TxRetry) -> list[CallChargePoint]:
        """The refused TxProfile again, at the transaction's limit now (not the one refused: a
        newer one may have come meanwhile); nothing if one was taken since, or the connector's
        transaction is another now. The refusals until its answer teach nothing."""
        if self.retrying.get(r.connector_id) != r.tx_id:
            return []
        limit = self.limit_of(r.connector_id, r.tx_id)
        if limit is None:
            self._retry_done(r.connector_id)
            return []
        self.retry_sent.add(r.connector_id)
        return self._tx_profile(limit, r.tx_id, force=True)

    def drop_retry(self, r: TxRetry) -> None:
        """The retry is not sent (its transaction ended, or the link is down: a reconnection
        sends the running transactions' TxProfiles again)."""
        if self.retrying.get(r.connector_id) == r.tx_id:
            self._retry_done(r.connector_id)

    def _retry_done(self, connector_id: int) -> None:
        self.retrying.pop(connector_id, None)
        self.retry_sent.discard(connector_id)

    def cloud_cleared(
        self,
        request: Mapping[str, Any],
        now: datetime,
        running_tx: Callable[[int], str | None],
    ) -> list[CallChargePoint]:
        """The charge point accepted the cloud's ClearChargingProfile ``request``: the edge's
        profiles it may have removed, again. Not when it named a profile id or a stack level
        that is not the edge's (the cloud clearing its own). An id names that profile alone,
        its criteria not read (1.6 3.13.5, 2.0.1 K10, as actors.cloud_profiles.clears): the
        edge's id with another stack level clears the edge's profile all the same."""
        criteria = request.get("chargingProfileCriteria")
        if not isinstance(criteria, Mapping):
            criteria = request
        named = request.get("id", request.get("chargingProfileId"))
        if isinstance(named, int):
            if not is_edge_profile_id(self.caps, named):
                return []
            return self.all_again(now, running_tx)
        level = criteria.get("stackLevel")
        if isinstance(level, int) and level != self.caps.stack_level:
            return []
        return self.all_again(now, running_tx)

    def all_again(
        self, now: datetime, running_tx: Callable[[int], str | None]
    ) -> list[CallChargePoint]:
        """The edge's profiles, each of which the charge point may no longer hold: the
        station's and each running transaction's TxProfile, at their values now."""
        self.sent.clear()
        self.asked.clear()
        calls = self._boot_profiles(now) if self.caps_known else []
        return calls + self._running_profiles(running_tx)

    def _running_profiles(self, running_tx: Callable[[int], str | None]) -> list[CallChargePoint]:
        """The TxProfile of each running transaction, at its connector's last limit."""
        calls: list[CallChargePoint] = []
        for held in sorted(self.limits):
            running = running_tx(held)
            last = self.limit_of(held, running)
            if running is not None and last is not None:
                calls += self._tx_profile(last, running)
        return calls

    def _adapt(self, connector_id: int, tx_id: str, lesson: str | None) -> list[CallChargePoint]:
        """Rejected: try what charge points commonly need instead, once each; ``lesson``: the
        one the charge point named (:data:`LESSON_OF`), alone."""
        limit = self.limit_of(connector_id, tx_id)
        if limit is None:
            return []
        floor = self.cloud_level or 0
        if self.caps.max_stack_level > floor and lesson in (None, "stack level"):
            # Down to 0, yet not below the cloud's profiles it took: a cloud profile above the
            # edge's overrides it within its purpose (level). No higher again on this
            # connection: at the cloud's level if that is where it stops.
            self.taught_level = floor
            self.caps = replace(self.caps, max_stack_level=floor)
        elif self.caps.rate_units[0] == "A" and (
            lesson == "unit" or (lesson is None and "W" in self.caps.rate_units)
        ):
            self.caps = replace(self.caps, rate_units=("W",))  # named: whatever it said before
        elif lesson is not None and connector_id not in self.relearned:
            # The lesson it names is learned already (from another profile's refusal, e.g. the
            # TxDefaultProfile's before this TxProfile, sent under the old capabilities, was
            # answered): this one goes again as it takes them, once until one is taken.
            self.relearned.add(connector_id)
        else:
            return []
        return self._tx_profile(limit, tx_id, force=True)

    def level(self) -> int:
        """The stack level for the edge's profiles: the top the charge point takes as far as
        the edge knows (what it reports, or what a refusal taught), above the cloud's kept
        profiles. Where it took the cloud's above that top, it takes more than it says: one
        above the cloud's (at the cloud's, a 2.0.1 station refuses a second id, K01.FR.39 and
        K01.FR.06; a refusal there teaches the cloud's level, :meth:`_adapt`). Where the cloud's
        sit at the top, the edge's go at it too: a 1.6 charge point has them replace the
        cloud's of their purpose (the cloud's kept as a cap); a 2.0.1 one may refuse them
        (:attr:`shared_level`)."""
        top = self.reported_level if self.taught_level is None else self.taught_level
        cloud = self.cloud_level
        return top if cloud is None or cloud <= top else cloud + 1

    @property
    def shared_level(self) -> int | None:
        """The edge's stack level, when the cloud's kept profiles reach it (None otherwise)."""
        if not self.caps_known or self.cloud_level is None:
            return None
        edge = self.caps.max_stack_level
        return edge if self.cloud_level >= edge else None

    def cloud_level_at(self, level: int | None) -> bool:
        """The cloud's kept profiles reach stack ``level`` (None: none kept), which the charge
        point took: the edge's profiles go above it from now on if theirs is not (whether they
        were raised; never lowered here: the cloud's cleared, the edge's stay where they are
        taken)."""
        self.cloud_level = level
        if not self.caps_known:
            return False
        raised = self.level()
        if raised <= self.caps.max_stack_level:
            return False
        self.caps = replace(self.caps, max_stack_level=raised)
        return True

    def _learn(self, answer: Answer) -> None:
        self._learn_caps(answer)
        level = self.level()
        if level != self.caps.max_stack_level:
            # It reports no more than it took from the cloud (or nothing): above that.
            self.caps = replace(self.caps, max_stack_level=level)

    def _learn_caps(self, answer: Answer) -> None:
        if not answer.ok:
            self.caps_known = True  # keep the safe defaults (stack level 0, A or W)
            return
        volts = self.nominal_voltage_v
        self.caps_unread = ()
        try:
            if self.version is OcppVersion.V16:
                self.caps, self.caps_unread = capabilities_from_v16(
                    answer.payload.get("configurationKey") or [], nominal_voltage_v=volts
                )
            else:
                variables = {
                    f"{r['component']['name']}.{r['variable']['name']}": str(
                        r.get("attributeValue")
                    )
                    for r in answer.payload.get("getVariableResult") or []
                    if r.get("attributeStatus") == "Accepted"
                }
                self.caps, self.caps_unread = capabilities_from_v201(
                    variables, nominal_voltage_v=volts
                )
        except (ValueError, KeyError, TypeError):
            self.caps = ChargePointCapabilities(nominal_voltage_v=volts)
        self.reported_level = self.caps.max_stack_level
        self.caps_known = True


def reason_code(payload: Mapping[str, Any]) -> str | None:
    """A 2.0.1 answer's ``statusInfo.reasonCode`` (1.6 answers have none)."""
    info = payload.get("statusInfo")
    code = info.get("reasonCode") if isinstance(info, Mapping) else None
    return code if isinstance(code, str) and code else None


def lesson_of(reason: str | None) -> str | None:
    """What a refusal's reasonCode teaches (:data:`LESSON_OF`; codes are case-insensitive)."""
    return None if reason is None else LESSON_OF.get(reason.lower())
