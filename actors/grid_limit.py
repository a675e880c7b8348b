"""Grid-limit actors: one per ``[[grid_limits]]`` source; each tells the allocator its limit.

The decisions are the pure functions of :mod:`actors.grid_limits` and
:mod:`actors.grid_limits_schedule`; these actors only feed them time and input:

- static: reports its value at start and on every heartbeat;
- modbus: polls the EMS registers (network-facing: restarted with backoff), the heartbeat
  register proves the EMS alive, stale -> its fail-safe;
- schedule: re-evaluated at each step edge (a timer to the next boundary) and on heartbeats;
- contact: polls the contact file (:mod:`drivers.contact`);
- cloud: takes :class:`CloudLimitPushed` (routed here by the allocator), keeps it, persisted,
  until it expires, then reports what applies after expiry; when it starts it asks the broker for
  the last push the edge accepted (:class:`CloudLimitWanted`): one that died with this node
  before it was stored here comes again.

Each sends :class:`GridLimitReported` when its limit changes and on a slow heartbeat, so a
restarted allocator converges. ``fallback`` in the report is what the allocator applies if the
source falls silent (its actor crashed and sits in backoff).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from actors.energy_messages import CloudLimitPushed, CloudLimitWanted
from actors.grid_limits import (
    CloudState,
    ContactState,
    GridLimit,
    LimitValue,
    RegisterState,
    cloud_limit,
    contact_limit,
    contact_update,
    register_limit,
    register_update,
)
from actors.grid_limits_schedule import _next_boundary, schedule_limit
from actors.utc import format_utc, parse_utc
from config.energy_limits import (
    CloudLimitConfig,
    ContactLimitConfig,
    GridLimitConfig,
    ModbusLimitConfig,
    ScheduleLimitConfig,
    StaticLimitConfig,
)
from drivers.contact import ContactReader, ContactReadError
from drivers.modbus import MeterError, ModbusMeter
from supervisors.actor import Actor, ActorContext

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Clock:
    monotonic: Callable[[], float] = time.monotonic
    utc_now: Callable[[], datetime] = _utc_now


@dataclass(frozen=True, slots=True, kw_only=True)
class GridLimitReported:
    source: str
    node: str
    limit: GridLimit | None  # None: this source imposes nothing right now
    fallback: LimitValue | None  # what applies if the source falls silent
    heartbeat_s: float
    reported_monotonic_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluate:
    """Re-evaluate now (a heartbeat, a step edge, a poll)."""

    poll: bool = False


def child_id(name: str) -> str:
    """A supervision child id for a configured name (ids may not contain '/')."""
    return name.replace("/", "_") or "_"


class _LimitActor(Actor):
    def __init__(
        self,
        ctx: ActorContext,
        *,
        name: str,
        node: str,
        allocator_path: str,
        fallback: LimitValue | None,
        heartbeat_s: float = HEARTBEAT_S,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(ctx)
        self.name = name
        self.node = node
        self.allocator_path = allocator_path
        self.fallback = fallback
        self.heartbeat_s = heartbeat_s
        self.clock = clock or Clock()
        self.current: GridLimit | None = None
        self.reports = 0
        self._reported = False
        self._last: GridLimit | None = None
        self._wakeups: set[datetime] = set()
        self._last_report_s = 0.0

    async def started(self) -> None:
        self.ref.tell(Evaluate(poll=True))
        self.send_after(self.heartbeat_s, _Heartbeat())

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, _Heartbeat):
            self.send_after(self.heartbeat_s, _Heartbeat())
            await self.evaluate(poll=False)
            self._publish(force=True)
            return None
        if isinstance(msg, Evaluate):
            await self.evaluate(poll=msg.poll)
            self._publish(force=False)
            return None
        if isinstance(msg, _WakeUp):
            self._wakeups.discard(msg.at_utc)
            await self.evaluate(poll=False)
            self._publish(force=False)
            return None
        return await super().receive(msg)

    def wake_at(self, at_utc: datetime, now_utc: datetime) -> None:
        """Evaluate again at ``at_utc`` (a step edge, an expiry). One timer per instant, never
        cancelled: a timer that fires early re-arms for the same instant, a stale one only
        causes an evaluation that changes nothing."""
        if at_utc in self._wakeups:
            return
        self._wakeups.add(at_utc)
        delay = max(0.001, (at_utc - now_utc).total_seconds() + 0.001)
        self.send_after(delay, _WakeUp(at_utc=at_utc))

    async def evaluate(self, *, poll: bool) -> None:
        """Set ``self.current``; ``poll`` says it is time to read the input (if any)."""

    def _publish(self, *, force: bool) -> None:
        if not force and self._reported and self.current == self._last:
            return
        now = self.clock.monotonic()
        self._reported = True
        self._last = self.current
        self._last_report_s = now
        self.reports += 1
        self.ctx.system.send(
            self.allocator_path,
            GridLimitReported(
                source=self.name,
                node=self.node,
                limit=self.current,
                fallback=self.fallback,
                heartbeat_s=self.heartbeat_s,
                reported_monotonic_s=now,
            ),
        )

    def report(self) -> dict[str, Any]:
        c = self.current
        return {
            "source": self.name,
            "node": self.node,
            "limit": None if c is None else c.value.describe(),
            "stale": None if c is None else c.stale,
            "detail": None if c is None else c.detail,
            "expires_utc": None
            if c is None or c.expires_utc is None
            else format_utc(c.expires_utc),
            "reports": self.reports,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class _Heartbeat:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class _WakeUp:
    at_utc: datetime


class StaticLimitActor(_LimitActor):
    def __init__(self, ctx: ActorContext, *, config: StaticLimitConfig, **kw: Any) -> None:
        s = config.source
        super().__init__(ctx, name=s.name, node=s.node, fallback=s.value, **kw)
        self.config = config

    async def evaluate(self, *, poll: bool) -> None:
        self.current = self.config.source.limit()


class ScheduleLimitActor(_LimitActor):
    def __init__(self, ctx: ActorContext, *, config: ScheduleLimitConfig, **kw: Any) -> None:
        s = config.source
        super().__init__(ctx, name=s.name, node=s.node, fallback=None, **kw)
        self.config = config

    async def evaluate(self, *, poll: bool) -> None:
        now = self.clock.utc_now()
        self.current = schedule_limit(self.config.source, now_utc=now)
        boundary = None if self.current is None else self.current.expires_utc
        if boundary is None:
            boundary = _next_edge(self.config, now)
        if boundary is not None:
            self.wake_at(boundary, now)


def _next_edge(config: ScheduleLimitConfig, now: datetime) -> datetime | None:
    """The next step boundary while no step is in force (``schedule_limit`` gives it only with
    a step in force); the schedule module's own rule, so the two never disagree."""
    zone = ZoneInfo(config.source.timezone)
    return _next_boundary(config.source, zone, now.astimezone(zone))


class ContactLimitActor(_LimitActor):
    def __init__(self, ctx: ActorContext, *, config: ContactLimitConfig, **kw: Any) -> None:
        s = config.source
        super().__init__(ctx, name=s.name, node=s.node, fallback=s.fail_safe, **kw)
        self.config = config
        self.state = ContactState()
        self.reader = ContactReader(Path(config.path), timeout_s=1.0)

    async def evaluate(self, *, poll: bool) -> None:
        if poll:
            text: str | None = None
            read_error = ""
            try:
                text = await self.reader.read()
            except ContactReadError as exc:
                read_error = str(exc)
            before = self.state.error
            self.state = contact_update(
                self.state, text=text, now_s=self.clock.monotonic(), error=read_error
            )
            # Each new error once (a bad content, then a missing file...), and the recovery.
            if self.state.error and self.state.error != before:
                log.warning("grid limit %r: %s", self.name, self.state.error)
            elif before and not self.state.error:
                log.info(
                    "grid limit %r: the contact file %s reads again", self.name, self.config.path
                )
            self.send_after(self.config.poll_interval_s, Evaluate(poll=True))
        self.current = contact_limit(self.config.source, self.state, now_s=self.clock.monotonic())

    def report(self) -> dict[str, Any]:
        out = super().report()
        out.update(path=self.config.path, closed=self.state.closed, error=self.state.error or None)
        return out


class RegisterLimitActor(_LimitActor):
    """An EMS writes a limit and a heartbeat counter into registers; polled over Modbus/TCP."""

    def __init__(self, ctx: ActorContext, *, config: ModbusLimitConfig, **kw: Any) -> None:
        s = config.source
        super().__init__(ctx, name=s.name, node=s.node, fallback=s.fail_safe, **kw)
        self.config = config
        self.state = RegisterState()
        self.client: ModbusMeter | None = None
        self.last_error = ""
        self.stale_logged = False

    async def started(self) -> None:
        e = self.config.endpoint
        self.client = ModbusMeter(
            name=f"grid limit {self.name}",
            host=e.host,
            port=e.port,
            unit_id=e.unit_id,
            framer=e.framer,
            timeout_s=e.timeout_s,
            register_maps=(self.config.register_map,),
            monotonic=self.clock.monotonic,
        )
        await super().started()

    async def terminate(self, reason: object) -> None:
        if self.client is not None:
            await self.client.close()

    async def evaluate(self, *, poll: bool) -> None:
        if poll:
            assert self.client is not None
            try:
                values = await self.client.read_values()
            except MeterError as exc:
                if not self.last_error:
                    log.warning("grid limit %r: %s", self.name, exc)
                self.last_error = str(exc)
            else:
                value, heartbeat = values.get("limit"), values.get("heartbeat")
                if value is not None and heartbeat is not None:
                    self.last_error = ""
                    self.state = register_update(
                        self.state,
                        value=value,
                        heartbeat=int(heartbeat),
                        now_s=self.clock.monotonic(),
                    )
            self.send_after(self.config.poll_interval_s, Evaluate(poll=True))
        self.current = register_limit(self.config.source, self.state, now_s=self.clock.monotonic())
        # Its fail-safe in force (often pausing cars) and its return, once each, as a contact's
        # or a meter's fault is; before the first good read a read error (above) says it.
        if self.current.stale and not self.stale_logged and self.state.value is not None:
            log.warning("grid limit %r: %s applies", self.name, self.current.detail)
            self.stale_logged = True
        elif not self.current.stale and self.stale_logged:
            log.info("grid limit %r: live again (%s)", self.name, self.current.value.describe())
            self.stale_logged = False

    def report(self) -> dict[str, Any]:
        out = super().report()
        out.update(heartbeat=self.state.heartbeat, error=self.last_error or None)
        return out


class CloudLimitActor(_LimitActor):
    """Keeps the last limit the cloud pushed until it expires; persisted, so a restart keeps it.
    ``kept_at``: the broker's actor that keeps what the edge accepted (None: the site has no
    edge session, nothing to ask)."""

    STATE_KEY = "pushed"

    def __init__(
        self,
        ctx: ActorContext,
        *,
        config: CloudLimitConfig,
        kept_at: str | None = None,
        **kw: Any,
    ) -> None:
        s = config.source
        super().__init__(ctx, name=s.name, node=s.node, fallback=s.fail_safe, **kw)
        self.config = config
        self.kept_at = kept_at
        self.state = CloudState()
        self.seq = 0  # of the last push taken in this run (CloudLimitPushed.seq)
        self.stale_pushes = 0

    async def started(self) -> None:
        self.state = _cloud_state(self.load(self.STATE_KEY, None))
        if self.kept_at is not None:
            # The broker answers the cloud once a push is in its store; the energy node may have
            # died before this one stored it (or before it even arrived).
            self.ctx.system.send(
                self.kept_at, CloudLimitWanted(source=self.name, reply_to=self.path)
            )
        await super().started()

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, CloudLimitPushed):
            self._pushed(msg)
            await self.evaluate(poll=False)
            self._publish(force=False)
            return None
        return await super().receive(msg)

    def _pushed(self, msg: CloudLimitPushed) -> None:
        if msg.node and msg.node != self.node:
            log.warning(
                "cloud limit %r: pushed for node %r, but this source limits node %r; ignored",
                self.name,
                msg.node,
                self.node,
            )
            return
        if msg.seq < self.seq:
            # Sent again (asked for at start, or by a restarted broker) and overtaken on the way
            # by a newer push this source has taken already.
            self.stale_pushes += 1
            return
        try:
            value = None
            if msg.limit_a is not None or msg.power_w is not None:
                a = msg.limit_a
                current = None if a is None else (a, a, a)
                value = LimitValue(current_a=current, power_w=msg.power_w)
            expires = (
                None if msg.expires_utc is None else parse_utc(msg.expires_utc, where="expires_utc")
            )
        except ValueError as exc:
            log.warning("cloud limit %r: bad push ignored: %s", self.name, exc)
            return
        self.state = CloudState(value=value, valid_until_utc=expires)
        self.seq = msg.seq
        self.persist(self.STATE_KEY, _cloud_doc(self.state))

    def report(self) -> dict[str, Any]:
        out = super().report()
        out.update(seq=self.seq, stale_pushes=self.stale_pushes)
        return out

    async def evaluate(self, *, poll: bool) -> None:
        now = self.clock.utc_now()
        self.current = cloud_limit(self.config.source, self.state, now_utc=now)
        until = self.state.valid_until_utc
        if self.state.value is not None and until is not None and until > now:
            self.wake_at(until, now)


def _cloud_doc(state: CloudState) -> dict[str, Any]:
    v = state.value
    return {
        "current_a": None if v is None or v.current_a is None else list(v.current_a),
        "power_w": None if v is None else v.power_w,
        "valid_until_utc": None
        if state.valid_until_utc is None
        else format_utc(state.valid_until_utc),
    }


def _cloud_state(doc: Any) -> CloudState:
    """The kept push; one that cannot be read again (a NaN stored as null by an older edge, a
    damaged record) is dropped with a warning: the source then applies its fail-safe, where a
    crash here would stop every restart of the source."""
    if not isinstance(doc, dict):
        return CloudState()
    current = doc.get("current_a")
    power = doc.get("power_w")
    if current is None and power is None:
        return CloudState()
    try:
        value = LimitValue(
            current_a=None if current is None else (current[0], current[1], current[2]),
            power_w=power,
        )
        until = doc.get("valid_until_utc")
        return CloudState(
            value=value,
            valid_until_utc=None
            if until is None
            else parse_utc(until, where="persisted cloud limit"),
        )
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        log.warning("the kept cloud limit %r cannot be read (%s): dropped", doc, exc)
        return CloudState()


def limit_actor_factory(
    config: GridLimitConfig,
    *,
    allocator_path: str,
    heartbeat_s: float = HEARTBEAT_S,
    clock: Clock | None = None,
    cloud_kept_at: str | None = None,
) -> Callable[[ActorContext], Actor]:
    """The factory of the actor for one configured source (a registry by kind).
    ``cloud_kept_at``: where a cloud source asks for the push the edge accepted."""
    kw: dict[str, Any] = {
        "allocator_path": allocator_path,
        "heartbeat_s": heartbeat_s,
        "clock": clock,
    }
    if isinstance(config, StaticLimitConfig):
        return lambda ctx: StaticLimitActor(ctx, config=config, **kw)
    if isinstance(config, ScheduleLimitConfig):
        return lambda ctx: ScheduleLimitActor(ctx, config=config, **kw)
    if isinstance(config, ContactLimitConfig):
        return lambda ctx: ContactLimitActor(ctx, config=config, **kw)
    if isinstance(config, ModbusLimitConfig):
        return lambda ctx: RegisterLimitActor(ctx, config=config, **kw)
    if isinstance(config, CloudLimitConfig):
        return lambda ctx: CloudLimitActor(ctx, config=config, kept_at=cloud_kept_at, **kw)
    raise TypeError(f"no grid-limit actor for {type(config).__name__}")


def network_facing(config: GridLimitConfig) -> bool:
    return isinstance(config, ModbusLimitConfig)
