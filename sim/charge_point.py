"""A simulated OCPP charge point (1.6J or 2.0.1) for tests, demos and benchmarks.

One :class:`SimChargePoint` owns its connectors (cars, transactions, physics on an injected clock),
its charging profiles, its ordered outbox of transaction messages and one websocket session at a
time, reconnecting with backoff after a drop. Per session one sender task does every outgoing CALL,
so there is never more than one outstanding CALL, and transaction messages stay in order while other
messages may overtake them. Version specifics live in a dialect (``sim/ocpp16.py``,
``sim/ocpp201.py``); the connection loop is in ``sim/cp_session.py``.

Exceptions::

    SimChargePointError
    ├── NotConnectedError          the call needs a session that is not there (or went away)
    ├── CallFailedError            the cloud answered CALLERROR, an invalid answer, or not in time
    └── AuthorizationRejectedError start_transaction was refused by Authorize
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sim.car import Car, CarSpec
from sim.clock import Clock, SystemClock
from sim.connector import Connector, Transaction
from sim.cp_config import ChargePointConfig, ConfigKey, default_configuration
from sim.cp_operations import CloudOperations
from sim.cp_session import Session
from sim.dialect import Msg, make_dialect
from sim.errors import (
    AuthorizationRejectedError,
    CallFailedError,
    NotConnectedError,
    SimChargePointError,
)
from sim.outbox import Outbox
from sim.smart_charging import ChargingProfile, Electrical, ProfileStore
from sim.tasks import cancel_and_wait

LOGGER = logging.getLogger("sim.charge_point")

__all__ = [
    "AuthorizationRejectedError",
    "CallFailedError",
    "MessageStats",
    "NotConnectedError",
    "SimChargePoint",
    "SimChargePointError",
]


@dataclass(slots=True)
class MessageStats:
    """What went over the wire, per action, for tests to account for."""

    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    call_errors: Counter[str] = field(default_factory=Counter)
    timeouts: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    # (action, message id) of every CALL sent, in order, retries included.
    sent_ids: list[tuple[str, str]] = field(default_factory=list)


class SimChargePoint(CloudOperations):
    def __init__(self, config: ChargePointConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.id = config.charge_point_id
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.dialect = make_dialect(config.protocol)
        self.electrical = Electrical(phases=config.phases, voltage_v=config.voltage_v)
        self.connectors = {
            i: Connector(i, max_a=config.connector_max_a, voltage_v=config.voltage_v)
            for i in range(1, config.connectors + 1)
        }
        # What the charge point accepted and reports, and what actually drives its output; they
        # differ under the ignores_profiles and slow_apply quirks.
        self.profiles = ProfileStore()
        self.applied_profiles = ProfileStore()
        self.configuration: dict[str, ConfigKey] = default_configuration(config)
        self.changed_keys: set[str] = set()
        self.outbox = Outbox()
        self.stats = MessageStats()
        self.transaction_ids: list[str] = []
        self.transactions: dict[int, Transaction] = {}
        self.data_transfers: list[tuple[str, str | None, Any]] = []
        self.local_list_version = 0
        self.local_list: dict[str, str] = {}
        self.auth_cache: dict[str, str] = {}
        self.errors: list[str] = []
        self.reset_count = 0
        self._next_local_tx = 1
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tick_task: asyncio.Task[None] | None = None
        self.session = Session(self)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self.session.start()
        self._tick_task = asyncio.create_task(self._tick_loop(), name=f"sim-cp-tick-{self.id}")

    async def stop(self) -> None:
        tasks = [t for t in (self._tick_task, *self._tasks) if t is not None]
        await cancel_and_wait(tasks)
        await self.session.stop()

    async def __aenter__(self) -> SimChargePoint:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def drop_connection(self) -> None:
        """Close the websocket as a network fault would; it reconnects with backoff, no boot."""
        await self.session.drop()

    @property
    def connected(self) -> bool:
        """Online: the websocket is open and the cloud accepted the boot."""
        return self.session.online

    @property
    def boot_status(self) -> str | None:
        return self.session.boot_status

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A background task whose failure is recorded in ``errors`` (never lost)."""
        task: asyncio.Task[Any] = asyncio.create_task(coro, name=f"sim-cp-{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.record_error(f"task {task.get_name()}: {task.exception()!r}")

    def record_error(self, text: str) -> None:
        LOGGER.warning("%s: %s", self.id, text)
        self.errors.append(text)

    # -- observable state --------------------------------------------------------------------------

    def connector(self, connector_id: int) -> Connector:
        try:
            return self.connectors[connector_id]
        except KeyError:
            raise SimChargePointError(
                f"{self.id}: no connector {connector_id}; it has 1..{len(self.connectors)}"
            ) from None

    def offered_a(self, connector_id: int) -> float:
        self.refresh()
        return self.connector(connector_id).offered_a

    def drawn_a(self, connector_id: int) -> tuple[float, float, float]:
        self.refresh()
        return self.connector(connector_id).drawn_a(self.clock.monotonic())

    def energy_wh(self, connector_id: int) -> float:
        return self.connector(connector_id).energy_wh(self.clock.monotonic())

    def status(self, connector_id: int) -> str:
        return self.dialect.status_key(self.connector(connector_id), self.clock.monotonic())

    def transaction(self, connector_id: int) -> Transaction | None:
        return self.connector(connector_id).tx

    def phase_currents_a(self) -> tuple[float, float, float]:
        """What this charge point draws from the grid per phase now (for the simulated meter)."""
        self.refresh()
        now_s = self.clock.monotonic()
        total = [0.0, 0.0, 0.0]
        for c in self.connectors.values():
            for i, amps in enumerate(c.drawn_a(now_s)):
                total[i] += amps
        return (total[0], total[1], total[2])

    # -- what a driver does at the charger ---------------------------------------------------------

    async def plug_in(self, connector_id: int, car: Car | CarSpec) -> Car:
        c = self.connector(connector_id)
        now_s = self.clock.monotonic()
        plugged = car if isinstance(car, Car) else Car(car, now_s=now_s)
        c.plug(plugged, now_s)
        if c.pending_remote is not None:
            id_tag, remote_id, profile = c.pending_remote
            c.pending_remote = None
            self.begin_transaction(
                c, id_tag, remote_start_id=remote_id, profile=profile, trigger="RemoteStart"
            )
        self.refresh()
        await self.report_status(c)
        return plugged

    async def unplug(self, connector_id: int) -> None:
        c = self.connector(connector_id)
        if c.tx is not None:
            self.end_transaction(c, "EVDisconnected")
        c.unplug(self.clock.monotonic())
        await self.report_status(c)

    async def authorize(self, id_tag: str) -> str:
        """Ask the cloud when online, else decide by local list, cache and offline rules."""
        if self.connected:
            try:
                result = await self.session.call_direct(self.dialect.authorize(id_tag))
            except (NotConnectedError, CallFailedError):
                pass
            else:
                status = self.dialect.authorize_answer(result)
                self.auth_cache[id_tag] = status
                return status
        return self._offline_authorization(id_tag)

    def _offline_authorization(self, id_tag: str) -> str:
        if id_tag in self.local_list:
            return self.local_list[id_tag]
        if self.auth_cache.get(id_tag) == "Accepted":
            return "Accepted"
        allow = self.configuration["AllowOfflineTxForUnknownId"].value == "true"
        return "Accepted" if allow else "Invalid"

    async def start_transaction(
        self, connector_id: int, id_tag: str, *, authorize: bool = True
    ) -> Transaction:
        c = self.connector(connector_id)
        if c.tx is not None:
            raise SimChargePointError(
                f"{self.id}: connector {connector_id} already in a transaction"
            )
        if authorize:
            status = await self.authorize(id_tag)
            if status != "Accepted":
                raise AuthorizationRejectedError(id_tag, status)
        tx = self.begin_transaction(c, id_tag)
        await self.report_status(c)
        return tx

    async def stop_transaction(self, connector_id: int, *, reason: str = "Local") -> None:
        c = self.connector(connector_id)
        if c.tx is None:
            raise SimChargePointError(f"{self.id}: connector {connector_id} has no transaction")
        self.end_transaction(c, reason)
        await self.report_status(c)

    # -- transactions (synchronous: they only queue messages) --------------------------------------

    def begin_transaction(
        self,
        c: Connector,
        id_tag: str,
        *,
        remote_start_id: int | None = None,
        profile: ChargingProfile | None = None,
        trigger: str = "Authorized",
    ) -> Transaction:
        now_s = self.clock.monotonic()
        tx = Transaction(
            local_id=self._next_local_tx,
            id_tag=id_tag,
            start_utc=self.clock.utc(),
            meter_start_wh=c.register_wh(now_s),
            started_offline=not self.connected,
            remote_start_id=remote_start_id,
        )
        self._next_local_tx += 1
        self.transactions[tx.local_id] = tx
        tx.transaction_id = self.dialect.mint_transaction_id(self)
        if tx.transaction_id is not None:
            self.transaction_ids.append(tx.transaction_id)
        c.tx = tx
        c.finishing = False
        c.last_sample_s = asyncio.get_running_loop().time()
        if profile is not None:
            self.install_profile(profile)
        self.refresh()
        tx.charging_state = c.charging_state_v201(now_s)
        sample = c.sample(now_s, self.clock.utc())
        self.enqueue(self.dialect.tx_started(self, c, tx, sample, trigger))
        return tx

    def end_transaction(self, c: Connector, reason: str) -> None:
        tx = c.tx
        if tx is None:
            return
        now_s = self.clock.monotonic()
        sample = c.sample(now_s, self.clock.utc())
        self.enqueue(self.dialect.tx_ended(self, c, tx, sample, reason))
        c.tx = None
        c.finishing = c.car is not None
        self.profiles.end_transaction(c.connector_id)
        self.applied_profiles.end_transaction(c.connector_id)
        self.refresh()

    def enqueue(self, msg: Msg) -> None:
        self.outbox.append(
            msg.action, msg.payload, local_tx=msg.local_tx, offline=not self.connected
        )
        self.session.wake()

    def connector_of_transaction(self, transaction_id: str) -> Connector | None:
        for c in self.connectors.values():
            if c.tx is not None and c.tx.transaction_id == transaction_id:
                return c
        return None

    def lose_profiles(self) -> None:
        """What a restart of its controller does on many chargers: every charging profile gone,
        so each connector offers its maximum (the car keeps charging)."""
        self.profiles = ProfileStore()
        self.applied_profiles = ProfileStore()
        self.refresh()

    # -- physics and reporting ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Recompute what each connector offers from the applied profiles, now."""
        now_s = self.clock.monotonic()
        now_utc = self.clock.utc()
        active = [c for c in self.connectors.values() if c.tx is not None]
        station = self.applied_profiles.station_limit_a(now_utc, self.electrical)
        for c in self.connectors.values():
            if c.tx is None:
                offered = 0.0
            else:
                limit = self.applied_profiles.limit_a(
                    c.connector_id,
                    now_utc,
                    tx_start_utc=c.tx.start_utc,
                    tx_id=c.tx.transaction_id,
                    electrical=self.electrical,
                )
                offered = c.max_a if limit is None else min(c.max_a, limit)
                # The station limit caps the sum: share it equally among running transactions.
                if station is not None and len(active) > 1:
                    offered = min(offered, station / len(active))
            if offered != c.offered_a:
                c.set_offered(offered, now_s)

    async def report_status(self, c: Connector) -> None:
        """Send StatusNotification if the status changed and we are online; wait for the answer."""
        fut = self.post_status(c)
        if fut is not None:
            with contextlib.suppress(NotConnectedError, CallFailedError):
                await fut

    def post_status(self, c: Connector, *, force: bool = False) -> asyncio.Future[Any] | None:
        status = self.dialect.status_key(c, self.clock.monotonic())
        if not self.connected or (status == c.status_sent and not force):
            return None
        c.status_sent = status

        def failed() -> None:
            if c.status_sent == status:
                c.status_sent = None  # resend after reconnect

        return self.session.post(
            self.dialect.status_notification(self, c.connector_id, status), on_fail=failed
        )

    def _check_charging_state(self, c: Connector, now_s: float) -> None:
        tx = c.tx
        if tx is None:
            return
        state = c.charging_state_v201(now_s)
        if state == tx.charging_state:
            return
        msg = self.dialect.tx_state_changed(self, c, tx, c.sample(now_s, self.clock.utc()), state)
        tx.charging_state = state
        if msg is not None:
            self.enqueue(msg)

    def meter_interval_s(self) -> float:
        if "MeterValueSampleInterval" in self.changed_keys:
            return float(self.configuration["MeterValueSampleInterval"].value)
        return self.config.meter_interval_s

    def heartbeat_interval_s(self) -> float:
        if "HeartbeatInterval" in self.changed_keys or self.session.boot_status is not None:
            return max(1.0, float(self.configuration["HeartbeatInterval"].value))
        return self.config.heartbeat_interval_s

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.tick_s)
            try:
                self.tick(loop.time())
            except Exception as exc:
                self.record_error(f"tick: {exc!r}")

    def tick(self, loop_now: float) -> None:
        self.refresh()
        now_s = self.clock.monotonic()
        interval = self.meter_interval_s()
        for c in self.connectors.values():
            self.post_status(c)
            self._check_charging_state(c, now_s)
            if c.tx is not None and interval > 0 and loop_now - c.last_sample_s >= interval:
                c.last_sample_s = loop_now
                self.enqueue(
                    self.dialect.tx_meter(self, c, c.tx, c.sample(now_s, self.clock.utc()))
                )

    def mark_changed(self, key: str) -> None:
        self.changed_keys.add(key)
