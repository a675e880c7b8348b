"""What a simulated charge point does when its central system asks (the dialects' handlers call
these). Mixed into :class:`sim.charge_point.SimChargePoint`; split out to keep modules small.

Field quirks (``Behaviour``) act here: a profile above ``max_stack_level`` or in A on a
``watts_only`` charger is rejected; ``ignores_profiles`` accepts and reports a profile but never
applies it; ``slow_apply_s`` applies it that much later.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from sim.smart_charging import ChargingProfile, CompositePeriod, Purpose

if TYPE_CHECKING:
    from sim.clock import Clock
    from sim.connector import Connector, Transaction
    from sim.cp_config import ChargePointConfig, ConfigKey
    from sim.cp_session import Session
    from sim.smart_charging import Electrical, ProfileStore


class CloudOperations:
    if TYPE_CHECKING:
        config: ChargePointConfig
        clock: Clock
        connectors: dict[int, Connector]
        profiles: ProfileStore
        applied_profiles: ProfileStore
        electrical: Electrical
        configuration: dict[str, ConfigKey]
        reset_count: int
        session: Session

        def refresh(self) -> None: ...

        def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]: ...

        def connector(self, connector_id: int) -> Connector: ...

        def connector_of_transaction(self, transaction_id: str) -> Connector | None: ...

        async def authorize(self, id_tag: str) -> str: ...

        async def report_status(self, c: Connector) -> None: ...

        def begin_transaction(
            self,
            c: Connector,
            id_tag: str,
            *,
            remote_start_id: int | None = None,
            profile: ChargingProfile | None = None,
            trigger: str = "Authorized",
        ) -> Transaction: ...

        def end_transaction(self, c: Connector, reason: str) -> None: ...

    def install_profile(self, profile: ChargingProfile) -> str:
        b = self.config.behaviour
        if profile.stack_level > b.max_stack_level:
            return "Rejected"
        if b.watts_only and profile.rate_unit == "A":
            return "Rejected"
        if profile.purpose == Purpose.CHARGE_POINT_MAX and profile.connector_id != 0:
            return "Rejected"
        if profile.connector_id != 0 and profile.connector_id not in self.connectors:
            return "Rejected"
        if profile.purpose == Purpose.TX:
            c = self.connectors.get(profile.connector_id)
            if c is None or c.tx is None:
                return "Rejected"
            if profile.transaction_id not in (None, c.tx.transaction_id):
                return "Rejected"
        self.profiles.install(profile)
        self._apply(lambda store: store.install(profile))
        return "Accepted"

    def clear_profiles(
        self,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> bool:
        removed = self.profiles.clear(
            profile_id=profile_id,
            connector_id=connector_id,
            purpose=purpose,
            stack_level=stack_level,
        )
        self._apply(
            lambda store: store.clear(
                profile_id=profile_id,
                connector_id=connector_id,
                purpose=purpose,
                stack_level=stack_level,
            )
        )
        return removed > 0

    def _apply(self, op: Any) -> None:
        b = self.config.behaviour
        if b.ignores_profiles:
            return
        if b.slow_apply_s > 0:

            async def later() -> None:
                await asyncio.sleep(b.slow_apply_s)
                op(self.applied_profiles)
                self.refresh()

            self.spawn(later(), "slow-apply")
            return
        op(self.applied_profiles)
        self.refresh()

    def composite(self, connector_id: int, duration_s: int) -> list[CompositePeriod]:
        if connector_id == 0:
            default_a = max(c.max_a for c in self.connectors.values())
            tx_start, tx_id = None, None
        else:
            c = self.connector(connector_id)
            default_a = c.max_a
            tx_start = None if c.tx is None else c.tx.start_utc
            tx_id = None if c.tx is None else c.tx.transaction_id
        return self.profiles.composite(
            connector_id,
            self.clock.utc(),
            duration_s,
            tx_start_utc=tx_start,
            tx_id=tx_id,
            electrical=self.electrical,
            default_a=default_a,
        )

    def pick_connector(self, connector_id: int | None) -> Connector | None:
        """The connector a remote start goes to, or None when it must be rejected."""
        if connector_id is not None and connector_id > 0:
            c = self.connectors.get(connector_id)
            return c if c is not None and c.tx is None else None
        free = [c for c in self.connectors.values() if c.tx is None]
        with_car = [c for c in free if c.car is not None]
        candidates = with_car or free
        return candidates[0] if candidates else None

    def remote_start(
        self,
        c: Connector,
        id_tag: str,
        *,
        remote_start_id: int | None = None,
        profile: ChargingProfile | None = None,
    ) -> None:
        if c.car is None:
            c.pending_remote = (id_tag, remote_start_id, profile)
            return

        async def go() -> None:
            if self.configuration["AuthorizeRemoteTxRequests"].value == "true":
                status = await self.authorize(id_tag)
                if status != "Accepted":
                    return
            if c.tx is None:
                self.begin_transaction(
                    c,
                    id_tag,
                    remote_start_id=remote_start_id,
                    profile=profile,
                    trigger="RemoteStart",
                )
                await self.report_status(c)

        self.spawn(go(), "remote-start")

    def remote_stop(self, transaction_id: str) -> bool:
        c = self.connector_of_transaction(transaction_id)
        if c is None:
            return False

        async def go() -> None:
            self.end_transaction(c, "Remote")
            await self.report_status(c)

        self.spawn(go(), "remote-stop")
        return True

    def reset(self, reason: str, *, answer_id: str | None = None) -> None:
        """Stop every transaction with ``reason``, drop the connection and boot again, after the
        answer to the Reset call (``answer_id``) has gone out, as a real charger does."""
        answered = None if answer_id is None else self.session.when_answered(answer_id)

        async def go() -> None:
            if answered is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):
                        await answered
            for c in self.connectors.values():
                self.end_transaction(c, reason)
            self.reset_count += 1
            await self.session.reboot()

        self.spawn(go(), "reset")

    def composite_periods(
        self, connector_id: int, duration_s: int, unit: str | None
    ) -> tuple[str, list[dict[str, Any]]]:
        """(unit, snake_case periods) for GetCompositeSchedule, limits rounded to 0.1 as 1.6's
        schema requires; ``unit`` None means the charger's own preference."""
        chosen = unit or ("W" if self.config.behaviour.watts_only else "A")
        watts_per_a = self.electrical.voltage_v * self.electrical.phases
        periods = [
            {
                "start_period": p.start_s,
                "limit": round(p.limit_a * watts_per_a if chosen == "W" else p.limit_a, 1),
                "number_phases": self.electrical.phases,
            }
            for p in self.composite(connector_id, duration_s)
        ]
        return chosen, periods
