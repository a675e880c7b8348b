"""Test actors that record what happens to them, shared by the supervisor suites."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from supervisors.actor import Actor, ActorContext
from supervisors.spec import ChildSpec, RestartType


@dataclass
class Journal:
    """What every probe did, in order: ("start", id, generation), ("terminate", id, reason)..."""

    events: list[tuple[str, str, Any]] = field(default_factory=list)

    def starts(self, child_id: str) -> int:
        return sum(1 for kind, cid, _ in self.events if kind == "start" and cid == child_id)

    def of(self, kind: str) -> list[str]:
        return [cid for k, cid, _ in self.events if k == kind]


class Probe(Actor):
    """Answers "ping", stops itself on "stop", hangs on "hang".

    "crash" crashes every time (a poison message); ``("crash_at", g)`` crashes only the instance of
    generation ``g``, so redelivery after the restart is harmless (one crash per test step).
    """

    def __init__(self, ctx: ActorContext, journal: Journal, *, fail_start: int = 0) -> None:
        super().__init__(ctx)
        self.journal = journal
        self.fail_start = fail_start

    async def started(self) -> None:
        if self.journal.starts(self.ctx.name) < self.fail_start:
            self.journal.events.append(("start_failed", self.ctx.name, self.ctx.cell.generation))
            raise RuntimeError("start refused on purpose")
        self.journal.events.append(("start", self.ctx.name, self.ctx.cell.generation))

    async def receive(self, msg: object) -> Any:
        if msg == "ping":
            return ("pong", self.ctx.cell.generation)
        if msg == "crash":
            raise RuntimeError("crashed on purpose")
        if isinstance(msg, tuple) and msg[0] == "crash_at":
            if msg[1] == self.ctx.cell.generation:
                raise RuntimeError("crashed on purpose")
            return None
        if msg == "stop":
            self.stop()
            return None
        if msg == "hang":
            await asyncio.Event().wait()
        if isinstance(msg, tuple) and msg[0] == "record":
            self.journal.events.append(("got", self.ctx.name, msg[1]))
            return None
        return await super().receive(msg)

    async def terminate(self, reason: object) -> None:
        self.journal.events.append(("terminate", self.ctx.name, str(reason)))


class SlowStop(Probe):
    """Its terminate hook never returns: the supervisor must kill it after the shutdown timeout."""

    async def terminate(self, reason: object) -> None:
        self.journal.events.append(("terminate", self.ctx.name, str(reason)))
        await asyncio.Event().wait()


def probe(
    child_id: str,
    journal: Journal,
    *,
    restart: RestartType = "permanent",
    fail_start: int = 0,
    **kwargs: Any,
) -> ChildSpec:
    return ChildSpec(
        id=child_id,
        start=lambda ctx: Probe(ctx, journal, fail_start=fail_start),
        restart=restart,
        **kwargs,
    )
