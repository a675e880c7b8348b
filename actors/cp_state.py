"""The state cache of one charge point, updated from the frames it sends (pure, JSON-able).

What the cloud would know, kept at the edge: boot info, per-connector status and error codes,
transactions (with the edge-minted and cloud ids of 1.6), last meter values, firmware and
diagnostics status, connect/disconnect history and link quality. ``now`` is always a parameter.
Persisted as one document with a version (``RECORD_VERSION``) and migrations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from actors.energy_messages import ConnectorReport
from actors.ocpp_rules import start_dedup_key, start_retry_key, utc_text

# 2: the 1.6 starts queued ("starts_queued": start key -> reference) are among the transaction
# messages sent ("sent"); a version-1 document's are read into it
# 3: a connector's meter record dates its currents apart ("currents_utc"); before, its
# "sampled_utc" (the newest sample's) did, and is taken for them in an older document
RECORD_VERSION = 3
HISTORY_MAX = 30
STOPPED_KEPT = 20  # ended transactions kept (stopped or superseded), the newest
# A transaction still "running" on a connector where a new one began: its end never came (a
# charge point runs one per connector; a 2.0.1 station that restarted without sending Ended)
SUPERSEDED = "superseded"
ENDED_STATES = frozenset({"stopped", SUPERSEDED})
START_KEYS_KEPT = 200
SENT_KEPT = START_KEYS_KEPT
PLUGGED = frozenset(
    {"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Occupied"}
)


def _num(value: Any) -> float | None:
    """A finite number ("NaN", "Infinity" and "1e309" parse as floats but measure nothing)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# The connector's sample of its car's draw: forgotten when a transaction begins.
SESSION_SAMPLE_KEYS = (
    "current_L1_a",
    "current_L2_a",
    "current_L3_a",
    "current_a",
    "offered_a",
    "power_w",
    "sampled_utc",
    "currents_utc",
)
# Read from a sampled value as the car's draw: dated by the sample that carried one.
_CURRENT_KEYS = ("current_L1_a", "current_L2_a", "current_L3_a", "current_a")


# Unit texts with a prefix, as stations send them (1.6's enum has kW and kWh; 2.0.1's unit is
# free text): the factor to the A, W and Wh the edge counts in
_PREFIXED = {"kW": 1e3, "kWh": 1e3, "mA": 1e-3, "kA": 1e3, "mW": 1e-3, "MW": 1e6, "MWh": 1e6}
_MULTIPLIERS = range(-9, 10)  # 2.0.1 unitOfMeasure.multiplier: a power of ten


def _scale(sv: Mapping[str, Any]) -> float | None:
    """What a sampled value is multiplied by to be in A, W or Wh: its unit's prefix and 2.0.1's
    ``unitOfMeasure.multiplier`` (a milliampere reading of 16000, multiplier -3, was taken as
    16000 A). None: a multiplier that makes no sense."""
    measure = sv.get("unitOfMeasure")
    measure = measure if isinstance(measure, Mapping) else {}
    unit = sv.get("unit") or measure.get("unit")
    factor = _PREFIXED.get(unit, 1.0) if isinstance(unit, str) else 1.0
    multiplier = measure.get("multiplier", 0)
    if isinstance(multiplier, bool) or not isinstance(multiplier, int):
        return None
    if multiplier not in _MULTIPLIERS:
        return None
    return factor * 10.0**multiplier


def read_sampled_values(meter_values: Any) -> dict[str, Any]:
    """The newest sample of each measurand/phase we use, in A, W and Wh. A value that is no
    finite number is left out and counted in ``unusable_values`` (shown in the status).
    ``sampled_utc``: the newest sample's time; ``currents_utc``: that of the newest sample with a
    Current.Import, there only if one came (a clock-aligned register reading carries none)."""
    out: dict[str, Any] = {}
    unusable = 0
    if not isinstance(meter_values, list):
        return out
    for mv in meter_values:
        if not isinstance(mv, Mapping):
            continue
        stamp = mv.get("timestamp")
        carried_current = False
        for sv in mv.get("sampledValue") or []:
            if not isinstance(sv, Mapping):
                continue
            value = _num(sv.get("value"))
            scale = _scale(sv)
            if value is None or scale is None:
                unusable += 1
                continue
            value *= scale
            measurand = sv.get("measurand") or "Energy.Active.Import.Register"
            phase = str(sv.get("phase") or "")[:2]
            if measurand == "Current.Import" and phase in ("L1", "L2", "L3"):
                out[f"current_{phase}_a"] = value
                carried_current = True
            elif measurand == "Current.Import" and not phase:
                out["current_a"] = value
                carried_current = True
            elif measurand == "Current.Offered":
                out["offered_a"] = value
            elif measurand == "Power.Active.Import" and not phase:
                out["power_w"] = value
            elif measurand == "Energy.Active.Import.Register" and not phase:
                out["energy_wh"] = value
            elif measurand == "SoC":
                out["soc_pct"] = value
        if stamp:
            out["sampled_utc"] = str(stamp)
        if carried_current:
            out["currents_utc"] = str(stamp) if stamp else None
    if unusable:
        out["unusable_values"] = unusable
    return out


class ChargePointState:
    def __init__(self, charge_point_id: str, doc: Mapping[str, Any] | None = None) -> None:
        d = dict(doc or {})
        self.charge_point_id = charge_point_id
        self.ocpp_version: str | None = d.get("ocpp_version")
        self.boot: dict[str, Any] | None = d.get("boot")
        self.registration: str | None = d.get("registration")
        self.connectors: dict[str, dict[str, Any]] = dict(d.get("connectors", {}))
        self.transactions: dict[str, dict[str, Any]] = dict(d.get("transactions", {}))
        self.start_keys: dict[str, str] = dict(d.get("start_keys", {}))
        # Transaction messages queued for the cloud whose answer may not have reached the
        # charge point, which sends one again as it was after its link dropped or the edge
        # restarted (1.6 4.8, 2.0.1 E): the copy queued is that message, never a second one for
        # the cloud. Retry key (ocpp_rules.retry_key) -> {"ref": the queued copy's reference (a
        # 1.6 start's EnqueueCall.start_ref, else its message id), "tx": its transaction's id
        # (None: a 1.6 start), "answer": the cloud's answer the edge passed on, if one came}.
        # A 1.6 start leaves when answered (start_keys then); the rest with their transaction
        # (_prune_stopped), or the oldest beyond SENT_KEPT.
        self.sent: dict[str, dict[str, Any]] = {
            k: dict(v) for k, v in dict(d.get("sent", {})).items()
        }
        for start_key, ref in dict(d.get("starts_queued", {})).items():  # a version-1 document
            self.sent.setdefault(start_retry_key(start_key), {"ref": ref, "tx": None})
        self.meter: dict[str, dict[str, Any]] = dict(d.get("meter", {}))
        for m in self.meter.values():  # a version-2 document's: dated by its newest sample
            if "currents_utc" not in m and any(k in m for k in _CURRENT_KEYS):
                m["currents_utc"] = m.get("sampled_utc")
        self.firmware_status: str | None = d.get("firmware_status")
        self.diagnostics_status: str | None = d.get("diagnostics_status")
        self.history: list[dict[str, Any]] = list(d.get("history", []))
        self.edge_tx_hwm: int | None = d.get("edge_tx_hwm")
        self.counters: dict[str, int] = dict(d.get("counters", {}))
        # The cloud's TxDefaultProfiles the charge point accepted (actors.cp_cloud_caps): each
        # a CloudProfile record with its "connector" (0: the station's)
        self.cloud_defaults: list[dict[str, Any]] = list(d.get("cloud_defaults", []))
        # The cloud's ChargePointMaxProfiles the charge point accepted: CloudProfile records
        self.cloud_max: list[dict[str, Any]] = list(d.get("cloud_max", []))
        # connector (as text; "0": any) -> the TxProfile of the cloud's accepted remote start
        # and when ({"profile", "utc"}, actors.cp_cloud_caps): the transaction it starts takes it
        self.remote_starts: dict[str, dict[str, Any]] = dict(d.get("remote_starts", {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "ocpp_version": self.ocpp_version,
            "boot": self.boot,
            "registration": self.registration,
            "connectors": self.connectors,
            "transactions": self.transactions,
            "start_keys": self.start_keys,
            "sent": self.sent,
            "meter": self.meter,
            "firmware_status": self.firmware_status,
            "diagnostics_status": self.diagnostics_status,
            "history": self.history,
            "edge_tx_hwm": self.edge_tx_hwm,
            "counters": self.counters,
            "cloud_defaults": self.cloud_defaults,
            "cloud_max": self.cloud_max,
            "remote_starts": self.remote_starts,
        }

    # -- link events ----------------------------------------------------------------------------
    def event(self, kind: str, now: datetime, detail: str = "") -> None:
        self.history.append({"event": kind, "utc": utc_text(now), "detail": detail})
        del self.history[:-HISTORY_MAX]

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # -- frames from the charge point -------------------------------------------------------------
    def on_call(self, action: str, payload: Mapping[str, Any], now: datetime) -> bool:
        """Update from a charge point CALL; True if something worth persisting changed."""
        if action == "BootNotification":
            self.boot = {"payload": dict(payload), "utc": utc_text(now)}
            return True
        if action == "StatusNotification":
            if "evseId" in payload:
                key = f"{payload.get('evseId')}:{payload.get('connectorId')}"
                status = payload.get("connectorStatus")
            else:
                key = str(payload.get("connectorId"))
                status = payload.get("status")
            self.connectors[key] = {
                "status": status,
                "error_code": payload.get("errorCode"),
                "info": payload.get("info"),
                "vendor_error_code": payload.get("vendorErrorCode"),
                "timestamp": payload.get("timestamp"),
                "updated_utc": utc_text(now),
            }
            return True
        if action == "StartTransaction":
            # As the charge point asks (the answer may take a while, and the new session's
            # first MeterValues may come before it); not again for a retried start, answered
            # or still queued (its first copy's answer lost with the link or a restart).
            start_key = start_dedup_key(payload).text()
            if start_key not in self.start_keys and start_retry_key(start_key) not in self.sent:
                self._new_session(str(payload.get("connectorId")))
            return False
        if action == "MeterValues":
            if "connectorId" in payload:
                connector = str(payload.get("connectorId"))
            else:
                connector = self._evse_connector(payload.get("evseId"))
            self._meter(connector, payload.get("meterValue"), now)
            return False  # frequent: persisted with the next meaningful change or on stop
        if action == "StopTransaction":
            tx_id = str(payload.get("transactionId"))
            if tx_id in self.transactions:
                self._ended(tx_id).update(
                    state="stopped",
                    stopped_utc=payload.get("timestamp"),
                    meter_stop_wh=payload.get("meterStop"),
                    stop_reason=payload.get("reason", "Local"),
                )
                self._prune_stopped()
            return True
        if action == "TransactionEvent":
            return self._transaction_event(payload, now)
        if action == "FirmwareStatusNotification":
            self.firmware_status = payload.get("status")
            return True
        if action == "DiagnosticsStatusNotification":
            self.diagnostics_status = payload.get("status")
            return True
        return False

    def _meter(self, connector: str, meter_values: Any, now: datetime) -> dict[str, Any]:
        values = read_sampled_values(meter_values)
        if "currents_utc" in values and values["currents_utc"] is None:
            # Currents without their sample's time (the schemas require one): dated as received,
            # once (undated, the energy node would take them as new each second).
            values["currents_utc"] = utc_text(now)
        if values:
            merged = {**self.meter.get(connector, {}), **values, "received_utc": utc_text(now)}
            self.meter[connector] = merged
        return values

    def _transaction_event(self, payload: Mapping[str, Any], now: datetime) -> bool:
        info = payload.get("transactionInfo") or {}
        tx_id = str(info.get("transactionId"))
        evse = payload.get("evse") or {}
        connector = f"{evse.get('id')}:{evse.get('connectorId', 1)}" if evse else None
        kind = payload.get("eventType")
        heard = tx_id in self.transactions
        if not heard:
            # heard_utc: its arrival, if its Started never came (actors.energy_inputs ranks by it)
            self.transactions[tx_id] = {
                "state": "running",
                "edge_minted": False,
                "heard_utc": utc_text(now),
            }
        tx = self.transactions[tx_id]
        if connector is not None and tx.get("connector") != connector:
            tx["connector"] = connector
            if tx.get("state") == "running" and kind != "Ended":
                if heard or kind == "Started":
                    self._supersede(connector, tx_id, now)
                else:
                    self._heard_late(connector, tx_id, now)
        id_token = payload.get("idToken")
        token = id_token.get("idToken") if isinstance(id_token, Mapping) else None
        changed = False
        if kind == "Started":
            if connector is not None and tx.get("state") == "running":
                self._new_session(connector)
            tx.update(started_utc=payload.get("timestamp"), id_tag=token or tx.get("id_tag"))
        elif token and tx.get("id_tag") is None:
            # Authorized after it started (TxStartPoint EVConnected, say): the first id presented
            # is the transaction's (a later one stops it), as the cloud's verdict on it is.
            tx["id_tag"] = token
            changed = True
        if kind == "Ended":
            self._ended(tx_id).update(
                state="stopped",
                stopped_utc=payload.get("timestamp"),
                stop_reason=info.get("stoppedReason"),
            )
            self._prune_stopped()
        # An event without its EVSE (a station names it once, in the first event after the EV
        # is known) samples the transaction's connector: its meter values were dropped.
        where = connector if connector is not None else tx.get("connector")
        if payload.get("meterValue") and where is not None:
            values = self._meter(str(where), payload.get("meterValue"), now)
            if (
                "energy_wh" in values
                and tx.get("state") == "running"
                and tx.get("meter_start_wh") is None
            ):
                # Its first register reading (the Started event's, as a rule; a transaction first
                # heard of in the middle counts from there): energy caps count from it.
                tx["meter_start_wh"] = values["energy_wh"]
                changed = True
        return changed or payload.get("eventType") != "Updated"

    def start_transaction(
        self,
        *,
        transaction_id: int,
        payload: Mapping[str, Any],
        message_id: str,
        edge_minted: bool,
        id_tag_info: Mapping[str, Any],
        start_key: str,
        now: datetime,
    ) -> None:
        self._supersede(str(payload.get("connectorId")), str(transaction_id), now)
        self.transactions[str(transaction_id)] = {
            "state": "running",
            "connector": str(payload.get("connectorId")),
            "id_tag": payload.get("idTag"),
            "meter_start_wh": payload.get("meterStart"),
            "started_utc": payload.get("timestamp"),
            "message_id": message_id,  # its queued copy's reference if it has one (start_ref)
            "edge_minted": edge_minted,
            "cloud_id": None if edge_minted else transaction_id,
            "id_tag_info": dict(id_tag_info),
        }
        self.start_keys[start_key] = str(transaction_id)
        if len(self.start_keys) > START_KEYS_KEPT:
            for key in list(self.start_keys)[: len(self.start_keys) - START_KEYS_KEPT]:
                del self.start_keys[key]
        self.sent.pop(start_retry_key(start_key), None)
        if edge_minted:
            self.edge_tx_hwm = transaction_id

    def queued(self, retry_key: str, ref: str, tx_id: str | None) -> None:
        """A transaction message went into the outbox as ``ref``; its answer has yet to reach
        the charge point."""
        self.sent.pop(retry_key, None)  # moved last: the oldest go first
        self.sent[retry_key] = {"ref": ref, "tx": tx_id}
        for key in list(self.sent)[: max(0, len(self.sent) - SENT_KEPT)]:
            del self.sent[key]

    def cloud_answered(self, retry_key: str, answer: Mapping[str, Any]) -> bool:
        """The cloud's answer to a queued transaction message, passed on to the charge point
        (which may not read it): a retry gets it too. True if kept."""
        record = self.sent.get(retry_key)
        if record is None:
            return False
        record["answer"] = dict(answer)
        return True

    def _evse_connector(self, evse_id: object) -> str:
        """2.0.1 MeterValues name the EVSE only; its connector is kept as "evse:connector" (as
        StatusNotification and TransactionEvent name it): the one with its newest running
        transaction, else its plugged one, else its only (or first) connector; EVSE 0 (the
        station's meter) stays "0" (connector_reports reads the same one)."""
        evse = str(evse_id)
        if evse == "0":
            return evse
        running = None  # the newest (connector_reports)
        for t in self.transactions.values():
            key = str(t.get("connector"))
            if t.get("state") == "running" and ":" in key and key.partition(":")[0] == evse:
                running = key
        if running is not None:
            return running
        keys = sorted(k for k in self.connectors if k.partition(":")[0] == evse and ":" in k)
        plugged = [k for k in keys if self.connectors[k].get("status") in PLUGGED]
        return (plugged or keys or [f"{evse}:1"])[0]

    def _new_session(self, connector: str) -> None:
        """A transaction begins: what the connector's last car drew is not the new car's (the
        energy node would count it so until the first sample of the new session)."""
        m = self.meter.get(connector)
        if m:
            for key in SESSION_SAMPLE_KEYS:
                m.pop(key, None)

    def _supersede(self, connector: str, tx_id: str, now: datetime) -> None:
        """Transaction ``tx_id`` runs on ``connector`` now: one still "running" there ended
        without its end reaching the edge. It is kept as superseded (its StopTransaction or
        Ended, should it come late, still stops it and goes to the cloud as any), and no limit,
        report or status follows it any longer."""
        ended = self._running_at(connector, tx_id)
        if not ended:
            return
        for key in ended:
            self._ended(key).update(
                state=SUPERSEDED, superseded_by=tx_id, superseded_utc=utc_text(now)
            )
        self.event(
            "transaction superseded",
            now,
            f"{', '.join(ended)} on connector {connector}: {tx_id} began there, "
            f"{'their ends' if len(ended) > 1 else 'its end'} never came",
        )
        self.count("transactions_superseded", len(ended))
        self._prune_stopped()

    def _heard_late(self, connector: str, tx_id: str, now: datetime) -> None:
        """A 2.0.1 transaction first heard of in the middle (an Updated event), where another
        runs: a late event of one that ended unseen and was forgotten since (pruned), or the
        running one is stale (its end never came) and the edge missed this one's start (it
        refused the Started, or its store was new). Nothing tells them apart for sure (the
        station's clock may have moved at its restart), and the wrong guess costs unequally:
        taking the EVSE from a car that charges would leave it at its last limit while the
        loop lowers a transaction that is gone (an overload not followed); leaving it means
        the other car draws under the edge's TxDefaultProfile (the safe default), counted by
        the meter as load the loop does not manage.
        So the running one keeps running, and this one is kept superseded ("late"), for good:
        letting it run once it had the EVSE alone brought back forgotten transactions whose
        late events came after their car had left (a ghost "charging" on an empty EVSE, and
        the next car started from 0 A; fourth review). The broker sends it no TxProfile
        (actors.cp_limits)."""
        running = self._running_at(connector, tx_id)
        if not running:
            return  # the edge did not hear its start (its store was new): it runs
        self._ended(tx_id).update(
            state=SUPERSEDED, superseded_by=running[-1], superseded_utc=utc_text(now), late=True
        )
        self.event(
            "transaction superseded",
            now,
            f"{tx_id} on connector {connector}: heard of late, {running[-1]} runs there",
        )
        self.count("transactions_superseded")
        self._prune_stopped()

    def _running_at(self, connector: str, tx_id: str) -> list[str]:
        """The transactions other than ``tx_id`` running on ``connector``, oldest first: on
        its EVSE for 2.0.1 ("evse:connector": one transaction per EVSE)."""
        evse = connector_number(connector) if ":" in connector else None
        return [
            key
            for key, t in self.transactions.items()
            if key != tx_id
            and t.get("state") == "running"
            and (
                t.get("connector") == connector
                or (evse is not None and connector_number(str(t.get("connector"))) == evse)
            )
        ]

    def _ended(self, tx_id: str) -> dict[str, Any]:
        """The transaction, moved last: the ended ones are pruned oldest end first."""
        tx = self.transactions[tx_id] = self.transactions.pop(tx_id)
        return tx

    def mapped(self, edge_id: int, cloud_id: int) -> None:
        tx = self.transactions.get(str(edge_id))
        if tx is not None:
            tx["cloud_id"] = cloud_id

    def _prune_stopped(self) -> None:
        """Keep the ``STOPPED_KEPT`` that ended last (stopped or superseded)."""
        stopped = [k for k, t in self.transactions.items() if t.get("state") in ENDED_STATES]
        gone = set(stopped[: max(0, len(stopped) - STOPPED_KEPT)])
        for key in gone:
            del self.transactions[key]
        if gone:  # ended STOPPED_KEPT transactions ago: none of their messages comes again
            self.sent = {k: r for k, r in self.sent.items() if r.get("tx") not in gone}

    def running_edge_ids(self) -> set[int]:
        """The edge-minted ids not to mint again: running ones, and superseded ones (a late
        StopTransaction may name them yet)."""
        return {
            int(k)
            for k, t in self.transactions.items()
            if t.get("state") in ("running", SUPERSEDED) and t.get("edge_minted") and k.isdigit()
        }

    # -- reports --------------------------------------------------------------------------------
    def connector_reports(
        self,
        *,
        connected: bool,
        now: datetime,
        cloud_caps: Mapping[int, float] | None = None,
        phases: int = 3,
    ) -> list[ConnectorReport]:
        """``cloud_caps``: connector -> the cloud's limit on its transaction now. ``phases``: how
        many the charge point is wired with; a current per phase is a measurement once each of
        those has one (a 1-phase charge point that names its phase L1 reports no L2 or L3).
        Without one, the connector is not measured (as one that sends no MeterValues)."""
        caps = cloud_caps or {}
        # One report per connector number: a 2.0.1 EVSE (what the edge manages: its TxProfiles
        # name it) with two connectors is one. Its transaction is the newest running there: a
        # new transaction supersedes an older one still "running" (_supersede), but a state
        # persisted before that may hold several, and limits go to the newest
        # (cp_cloud_caps._running_tx likewise). Its status is its plugged connector's.
        running: dict[int, tuple[str, dict[str, Any]]] = {}
        for tx_id, t in self.transactions.items():
            if t.get("state") == "running":
                running[connector_number(str(t.get("connector")))] = (tx_id, t)
        groups: dict[int, list[str]] = {}
        for key in sorted(self.connectors):
            groups.setdefault(connector_number(key), []).append(key)
        reports = []
        for connector_id, keys in groups.items():
            if connector_id == 0:
                continue
            tx = running.get(connector_id)
            tx_key = None if tx is None else str(tx[1].get("connector"))
            plugged = [k for k in keys if self.connectors[k].get("status") in PLUGGED]
            if tx_key in plugged or (tx_key in keys and not plugged):
                key = str(tx_key)
            else:
                key = plugged[0] if plugged else keys[0]
            c = self.connectors[key]
            m = self.meter.get(key if tx_key is None else tx_key, {})
            per_phase = tuple(m.get(f"current_L{i}_a") for i in (1, 2, 3))
            measured: tuple[float, float, float] | None = None
            if all(isinstance(p, float) for p in per_phase[: max(1, phases)]):
                a1, a2, a3 = (p if isinstance(p, float) else 0.0 for p in per_phase)
                measured = (a1, a2, a3)
            elif isinstance(m.get("current_a"), float) and phases == 1:
                # A current without a phase says which phases only where there is one: on three
                # it may be one phase's, their mean or their sum, and taken as L1's it would
                # teach the loop a 1-phase car (counted on one phase, its others handed out).
                measured = (float(m["current_a"]), 0.0, 0.0)
            reports.append(
                ConnectorReport(
                    charge_point_id=self.charge_point_id,
                    connector_id=connector_id,
                    connected=connected,
                    plugged=c.get("status") in PLUGGED,
                    charging=tx is not None,
                    transaction_id=None if tx is None else tx[0],
                    arrived_utc=None
                    if tx is None
                    else tx[1].get("started_utc") or tx[1].get("heard_utc"),
                    status=str(c.get("status")),
                    measured_a=measured,
                    offered_a=m.get("offered_a"),
                    power_w=m.get("power_w"),
                    energy_wh=m.get("energy_wh"),
                    # The currents' time, not the newest sample's: the energy node judges
                    # measured_a as sampled then (a register reading alone re-dated them).
                    sampled_utc=m.get("currents_utc"),
                    energy_blocked=bool(tx is not None and tx[1].get("energy_blocked")),
                    cloud_cap_a=None if tx is None else caps.get(connector_id),
                )
            )
        return reports

    def summary(self) -> dict[str, Any]:
        boot = (self.boot or {}).get("payload", {})
        return {
            "ocpp_version": self.ocpp_version,
            "vendor": boot.get("chargePointVendor")
            or (boot.get("chargingStation") or {}).get("vendorName"),
            "model": boot.get("chargePointModel")
            or (boot.get("chargingStation") or {}).get("model"),
            "registration": self.registration,
            "connectors": {k: v.get("status") for k, v in sorted(self.connectors.items())},
            "errors": {
                k: v.get("error_code")
                for k, v in self.connectors.items()
                if v.get("error_code") not in (None, "NoError")
            },
            "transactions": {
                k: {
                    "connector": t.get("connector"),
                    "edge_minted": t.get("edge_minted"),
                    "cloud_id": t.get("cloud_id"),
                }
                for k, t in self.transactions.items()
                if t.get("state") == "running"
            },
            "meter": self.meter,
            "firmware_status": self.firmware_status,
            "diagnostics_status": self.diagnostics_status,
            "last_events": self.history[-3:],
            "counters": self.counters,
        }


def connector_number(key: str) -> int:
    """``"2"`` (1.6 connector) or ``"1:1"`` (2.0.1 evse:connector; the evse is what we manage)."""
    head = key.split(":", 1)[0]
    try:
        return int(head)
    except ValueError:
        return -1
