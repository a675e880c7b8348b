"""The ChargePoint's record of the cloud's TxProfiles and TxDefaultProfiles, and the cap they put
on the edge's profiles.

What the cloud sets for a transaction (a TxProfile that the charge point accepted, in a
SetChargingProfile or in a remote start) is kept with the transaction in the actor's persisted
state (``cloud_profiles``), its TxDefaultProfiles with the state (``cloud_defaults``); the edge's
TxProfile for a connector then carries min(the energy node's limit, the cloud's limit now: its
TxProfiles', else its TxDefaultProfiles'), and its TxDefaultProfile min(its default, the cloud's
on the station) (:mod:`actors.cloud_profiles` says why). They go again when the cloud's schedule
changes its value, when the cloud clears a profile, and after a restart of this actor; the energy
node is told with the connector's report (its maximum while the cap holds). Each change of a cap
is an audit record (kind ``limit``, binding source ``cloud profile``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from actors.audit import audit
from actors.audit_records import AuditKind
from actors.cloud_profiles import (
    MAX_PROFILE,
    TX_DEFAULT,
    TX_PROFILE,
    CloudProfile,
    CloudSet,
    cap_at,
    clears,
    default_cap_at,
    earliest,
    profile_id_of,
    profile_set,
)
from actors.cp_base import CloudCapDue
from actors.cp_calls import DownstreamCalls
from actors.cp_state import connector_number
from actors.energy_messages import CLOUD_PROFILE
from actors.messages import CallChargePoint
from actors.profiles import is_edge_profile_id
from actors.utc import format_utc, parse_utc
from drivers.ocpp.codes import OcppVersion

log = logging.getLogger(__name__)

TIMER_SLACK_S = 0.01  # a timer may fire up to the clock's resolution early

PROFILES_KEY = "cloud_profiles"
# A remote start's TxProfile waits this long for its transaction (the driver plugs in; 1.6's
# ConnectionTimeOut is typically 30-180 s).
REMOTE_START_KEPT_S = 300.0


class CloudProfiles(DownstreamCalls):
    cloud_cap_due: datetime | None = None  # when the armed CloudCapDue comes (None: none)

    async def _cloud_profile_set(self, request: Mapping[str, Any]) -> None:
        """The charge point accepted the cloud's SetChargingProfile ``request``."""
        level = self.energy.caps.stack_level
        found = self._keep_cloud_profile(request)
        if found is not None:
            await self._cloud_profile_kept(found, raised=self.energy.caps.stack_level != level)
        profile_id = profile_id_of(self.version, request)  # whatever its purpose
        if profile_id is None or not self.energy_ready:
            return
        if is_edge_profile_id(self.energy.caps, profile_id):
            await self._edge_ids_taken(profile_id)

    async def _cloud_profile_kept(self, found: CloudSet, *, raised: bool) -> None:
        """The cloud's TxProfile, TxDefaultProfile or max profile, kept: the edge's profiles it
        caps go again (``raised``: it took the edge's stack level up, see
        EnergySide.cloud_level_at: all of them, the max profile too)."""
        # Above the edge's level, it would override the edge's: theirs go at its level now.
        # On the station at the edge's level, it replaced the edge's of its purpose.
        replaced = (found.connector_id, found.profile.stack_level) == (
            0,
            self.energy.caps.stack_level,
        )
        if found.purpose == TX_PROFILE:
            await self._cloud_caps_again(
                force=True, only=found.connector_id, station_again=raised, max_again=raised
            )
        elif found.purpose == TX_DEFAULT:
            await self._cloud_caps_again(
                force=raised, station_again=replaced or raised, max_again=raised
            )
        else:
            await self._cloud_caps_again(
                force=raised, station_again=raised, max_again=replaced or raised
            )

    async def _edge_ids_taken(self, profile_id: int) -> None:
        """Nothing keeps the cloud from the ids the edge's profiles take: the charge point
        replaced the edge's with that id (same id replaces, whatever its purpose, level or
        connector; a ChargePointMaxProfile with the TxDefaultProfile's id leaves new cars
        without the safe default), so all of the edge's go again (the cloud's is kept as a
        cap)."""
        log.warning(
            "%s: the cloud's charging profile %d has the id of one of the edge's, which it "
            "replaced; the edge's installed again",
            self.cp_id,
            profile_id,
        )
        for c in self.energy.all_again(self.broker.now(), self._running_tx):
            await self._edge_call(c)

    async def _remote_start_accepted(self, request: Mapping[str, Any]) -> None:
        """The charge point accepted the cloud's RemoteStartTransaction (1.6) or
        RequestStartTransaction (2.0.1): a TxProfile in it is for the transaction it starts
        (taken when that starts; at once if it already runs there: a charge point refuses a
        remote start on a connector that is busy, so it is this one)."""
        profile = request.get("chargingProfile")
        if not isinstance(profile, Mapping) or profile.get("chargingProfilePurpose") != "TxProfile":
            return
        connector = request.get("connectorId" if self.version is OcppVersion.V16 else "evseId")
        key = connector if isinstance(connector, int) else 0
        # Kept with the state: a restart before its transaction starts does not lose it.
        self.state.remote_starts[str(key)] = {
            "profile": dict(profile),
            "utc": format_utc(self.broker.now()),
        }
        self.dirty = True
        level = self.energy.caps.stack_level
        if key and self._running_tx(key) is not None and self._take_remote_start_profile(key):
            raised = self.energy.caps.stack_level != level
            await self._cloud_caps_again(
                force=True, only=key, station_again=raised, max_again=raised
            )

    def _take_remote_start_profile(self, connector: int) -> bool:
        """A transaction started on ``connector``: the TxProfile of a remote start for it (or
        for any connector) becomes its own; whether there was one."""
        now = self.broker.now()
        for key in (connector, 0):
            found = self.state.remote_starts.pop(str(key), None)
            if found is None:
                continue
            self.dirty = True
            try:
                when = parse_utc(found.get("utc"), where="utc")
            except ValueError:
                continue
            profile = found.get("profile")
            if not isinstance(profile, dict) or (now - when).total_seconds() > REMOTE_START_KEPT_S:
                continue
            if self.version is OcppVersion.V16:
                request = {"connectorId": connector, "csChargingProfiles": profile}
            else:
                request = {"evseId": connector, "chargingProfile": profile}
            return self._keep_cloud_profile(request) is not None
        return False

    def _keep_cloud_profile(self, request: Mapping[str, Any]) -> CloudSet | None:
        """The TxProfile a SetChargingProfile ``request`` of the cloud's sets, kept with its
        transaction, or the TxDefaultProfile, kept with the state (None: neither, unreadable,
        or a TxProfile for no running transaction)."""
        now = self.broker.now()
        try:
            found = profile_set(self.version, request, now)
        except ValueError as e:
            log.warning(
                "%s: the cloud's charging profile cannot be read, so the edge does not follow it: %s",
                self.cp_id,
                e,
            )
            return None
        if found is None:
            return None
        new = found.profile
        if found.purpose == MAX_PROFILE:
            # Same id replaces, wherever it was; same stack level too (connector 0 alone).
            self._drop_id(new.profile_id)
            self.state.cloud_max = [
                d for d in self.state.cloud_max if d.get("stack_level") != new.stack_level
            ] + [new.to_doc()]
            self.dirty = True
            self._cloud_level_at()
            return found
        if found.purpose == TX_DEFAULT:
            # Same id replaces, wherever it was; same stack level on the same connector too.
            self._drop_id(new.profile_id)
            self.state.cloud_defaults = [
                d
                for d in self.state.cloud_defaults
                if (d.get("connector"), d.get("stack_level"))
                != (found.connector_id, new.stack_level)
            ] + [{**new.to_doc(), "connector": found.connector_id}]
            self.dirty = True
            self._cloud_level_at()
            return found
        tx_id = found.transaction_id or self._running_tx(found.connector_id)
        tx = None if tx_id is None else self.state.transactions.get(tx_id)
        if tx is None or tx.get("state") != "running":
            return None
        # Same id replaces, wherever it was; same stack level replaces within the transaction.
        self._drop_id(new.profile_id)
        tx[PROFILES_KEY] = [
            d for d in tx.get(PROFILES_KEY, []) if d.get("stack_level") != new.stack_level
        ] + [new.to_doc()]
        self.dirty = True
        self._cloud_level_at()
        return found

    def _kept_level(self) -> int | None:
        """The highest stack level of the cloud's profiles kept (the running transactions', the
        TxDefaultProfiles and the max profiles), None if none."""
        docs = self.state.cloud_defaults + self.state.cloud_max
        for tx in self.state.transactions.values():
            if tx.get("state") == "running":
                docs += tx.get(PROFILES_KEY, [])
        levels = [d.get("stack_level") for d in docs]
        return max((lv for lv in levels if isinstance(lv, int)), default=None)

    def _cloud_level_at(self) -> None:
        """The edge's stack level beside the cloud's kept profiles (EnergySide.level), and a
        warning when they come to share it on a 2.0.1 station (1.6 has the later of one purpose
        replace the other there): the cloud's at the top the charge point takes, it may refuse
        the edge's (K01.FR.39, K01.FR.06) and follow the cloud's limit alone."""
        before = self.energy.shared_level
        self.energy.cloud_level_at(self._kept_level())
        shared = self.energy.shared_level
        if shared is not None and shared != before and self.version is not OcppVersion.V16:
            log.warning(
                "%s: the cloud's charging profiles reach stack level %d, the highest the "
                "charge point takes as far as the edge knows: the edge's go at it too, which "
                "a 2.0.1 charge point may refuse (another id at that level), following the "
                "cloud's limit there instead of the site's",
                self.cp_id,
                shared,
            )

    def _drop_id(self, profile_id: int) -> None:
        for other in self.state.transactions.values():
            kept = other.get(PROFILES_KEY)
            if kept:
                other[PROFILES_KEY] = [d for d in kept if d.get("id") != profile_id]
        self.state.cloud_defaults = [
            d for d in self.state.cloud_defaults if d.get("id") != profile_id
        ]
        self.state.cloud_max = [d for d in self.state.cloud_max if d.get("id") != profile_id]

    def _running_tx(self, connector: int) -> str | None:
        """The newest transaction running on the connector (see cp_state.connector_reports)."""
        for tx_id, tx in reversed(self.state.transactions.items()):
            if tx.get("state") == "running" and _connector(tx) == connector:
                return tx_id
        return None

    def _cloud_profiles_cleared(self, request: Mapping[str, Any]) -> set[int]:
        """The charge point answered the cloud's ClearChargingProfile ``request`` (whatever it
        said: a cloud profile the edge's replaced is unknown to it, yet the cloud wants it gone):
        the kept profiles it names are dropped. Returns the connectors that lost one."""
        changed: set[int] = set()
        for tx in self.state.transactions.values():
            kept = tx.get(PROFILES_KEY)
            if not kept:
                continue
            connector = _connector(tx)
            left = [
                d
                for d, profile in zip(kept, self._kept_profiles(kept), strict=True)
                if profile is None or not clears(self.version, request, profile, connector)
            ]
            if len(left) != len(kept):
                tx[PROFILES_KEY] = left
                self.dirty = True
                changed.add(connector)
        defaults = self.state.cloud_defaults
        left = [
            d
            for d, profile in zip(defaults, self._kept_profiles(defaults), strict=True)
            if profile is None
            or not clears(self.version, request, profile, int(d.get("connector", 0)), TX_DEFAULT)
        ]
        if len(left) != len(defaults):
            changed |= {int(d.get("connector", 0)) for d in defaults if d not in left}
            self.state.cloud_defaults = left
            self.dirty = True
        maxes = self.state.cloud_max
        left = [
            d
            for d, profile in zip(maxes, self._kept_profiles(maxes), strict=True)
            if profile is None or not clears(self.version, request, profile, 0, MAX_PROFILE)
        ]
        if len(left) != len(maxes):
            changed.add(0)
            self.state.cloud_max = left
            self.dirty = True
        return changed

    async def _cloud_cap_due(self, msg: CloudCapDue) -> None:
        if self.cloud_cap_due is not None and msg.at_utc == format_utc(self.cloud_cap_due):
            self.cloud_cap_due = None
        await self._cloud_caps_again(force=False)

    async def _cloud_caps_again(
        self,
        *,
        force: bool,
        only: int | None = None,
        send: bool = True,
        restored: bool = False,
        station_again: bool = False,
        max_again: bool = False,
    ) -> list[CallChargePoint]:
        """Each running transaction's cap from the cloud's profiles now (its TxProfiles', else
        the TxDefaultProfiles'), and the station's (the cloud's TxDefaultProfiles' on connector
        0: the edge's own TxDefaultProfile carries the lower of it and its default); a TxProfile
        for each connector whose cap changed (``force``: for ``only``, or all, even if not),
        the TxDefaultProfile if the station's did (``station_again``: even if not), the max
        profile if the cloud's max profiles' cap did (``max_again``: even if not), and the timer
        for the next change. ``send`` False: the calls are returned, not sent.
        ``restored``: the caps of a restarted actor (not audited again)."""
        held: list[CallChargePoint] = []
        now = self.broker.now()
        if restored:
            self._cloud_level_at()
        caps = self.energy.cloud_caps
        volts = self.energy.caps.nominal_voltage_v
        defaults = [
            (int(d.get("connector", 0)), p)
            for d, p in zip(
                self.state.cloud_defaults,
                self._kept_profiles(self.state.cloud_defaults),
                strict=True,
            )
            if p is not None
        ]
        station = default_cap_at(
            defaults, 0, now, tx_started=None, nominal_voltage_v=volts, phases=self.energy.phases
        )
        next_due = station.until
        calls: list[CallChargePoint] = []
        if station.limit_a != self.energy.cloud_default_a and not restored:
            self._audit_cap(0, "", station.limit_a, station.profile_id, self.energy.cloud_default_a)
        calls += self.energy.cloud_default_capped(station.limit_a, now, force=station_again)
        top = cap_at(
            [p for p in self._kept_profiles(self.state.cloud_max) if p is not None],
            now,
            tx_started=None,
            nominal_voltage_v=volts,
            phases=self.energy.phases,
        )
        next_due = earliest(next_due, top.until)
        if top.limit_a != self.energy.cloud_max_a and not restored:
            self._audit_cap(
                0, "", top.limit_a, top.profile_id, self.energy.cloud_max_a, MAX_PROFILE
            )
        calls += self.energy.cloud_max_capped(top.limit_a, now, force=max_again)
        reported = False
        running: dict[int, str] = {}
        for key, t in self.state.transactions.items():
            if t.get("state") == "running":
                running[_connector(t)] = key
        for connector in sorted(set(running) | set(caps)):
            tx_id = running.get(connector)
            tx = {} if tx_id is None else self.state.transactions[tx_id]
            started = _started(tx)
            cap = cap_at(
                [p for p in self._kept_profiles(tx.get(PROFILES_KEY, [])) if p is not None],
                now,
                tx_started=started,
                nominal_voltage_v=volts,
                phases=self.energy.phases,
            )
            purpose = TX_PROFILE
            if cap.limit_a is None and tx_id is not None:
                fallback = default_cap_at(
                    defaults,
                    connector,
                    now,
                    tx_started=started,
                    nominal_voltage_v=volts,
                    phases=self.energy.phases,
                )
                cap = replace(fallback, until=earliest(cap.until, fallback.until))
                purpose = TX_DEFAULT
            next_due = earliest(next_due, cap.until)
            before = caps.get(connector)
            changed = before != cap.limit_a
            if changed and tx_id is not None and not restored:
                self._audit_cap(connector, tx_id, cap.limit_a, cap.profile_id, before, purpose)
            if changed and tx_id is not None:
                reported = True  # after the loop: the energy node counts it as its maximum
            if not (changed or (force and only in (None, connector))):
                continue
            calls += self.energy.cloud_capped(
                connector, cap.limit_a, tx_id, force=force and only in (None, connector)
            )
        if not self.energy_ready:
            calls = []  # its capabilities first: the profiles follow them (cp_energy)
        if not send:
            held = calls
        else:
            for c in calls:
                await self._edge_call(c)
        if reported:
            self._report_connectors(urgent=False)
        if next_due is not None and (self.cloud_cap_due is None or next_due < self.cloud_cap_due):
            self.cloud_cap_due = next_due
            delay_s = max(0.0, (next_due - now).total_seconds()) + TIMER_SLACK_S
            self.send_after(delay_s, CloudCapDue(at_utc=format_utc(next_due)))
        return held

    def _kept_profiles(self, docs: list[dict[str, Any]]) -> list[CloudProfile | None]:
        """The kept records read (None: one that cannot be, named in the log: it no longer caps;
        a record this actor cannot read must not stop it from starting)."""
        profiles: list[CloudProfile | None] = []
        for doc in docs:
            try:
                profiles.append(CloudProfile.from_doc(doc))
            except (ValueError, KeyError, TypeError) as e:
                log.warning(
                    "%s: a kept cloud charging profile is unreadable, ignored: %r (%s)",
                    self.cp_id,
                    doc,
                    e,
                )
                profiles.append(None)
        return profiles

    def _audit_cap(
        self,
        connector: int,
        tx_id: str,
        cap_a: float | None,
        profile_id: int | None,
        before: float | None,
        purpose: str = TX_DEFAULT,
    ) -> None:
        """``connector`` 0: the station's cap, on the edge's TxDefaultProfile (``purpose``
        MAX_PROFILE: on its max profile)."""
        top = purpose == MAX_PROFILE
        what = f"connector {connector}" if connector else "new transactions"
        if top:
            what = "the charge point"
        if cap_a is None:
            decision = "no cloud cap"
            reason = f"the cloud's {purpose}s no longer limit {what}"
            if before is not None:
                reason += f" (they held it at {before:.1f} A)"
        else:
            decision = f"at most {cap_a:.1f} A"
            edge = "TxProfile" if connector else "TxDefaultProfile"
            own = "the site's limit" if connector else "its own default"
            if top:
                edge, own = MAX_PROFILE, "the charge point's maximum"
            reason = (
                f"the cloud's {purpose} {profile_id} limits {what} to {cap_a:.1f} A: the "
                f"edge's {edge} carries the lower of it and {own}"
            )
        log.info("%s: %s", self.cp_id, reason)
        audit(
            self,
            AuditKind.LIMIT,
            decision=decision,
            charge_point_id=self.cp_id,
            reason=reason,
            inputs={
                "cloud_cap_a": cap_a,
                "binding_source": CLOUD_PROFILE,
                "profile_id": profile_id,
                "connector_id": connector,
                "transaction_id": tx_id,
            },
            now=self.broker.now(),
        )


def _connector(tx: Mapping[str, Any]) -> int:
    return connector_number(str(tx.get("connector", "")))


def _started(tx: Mapping[str, Any]) -> datetime | None:
    try:
        return parse_utc(tx.get("started_utc"), where="started_utc")
    except ValueError:
        return None
