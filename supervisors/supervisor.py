"""A supervisor with OTP semantics, itself an actor.

- Strategies: ``one_for_one`` restarts the failed child; ``one_for_all`` stops the others (reverse
  order) and restarts all in order; ``rest_for_one`` does that for the failed child and the children
  started after it.
- Restart types: ``permanent`` children are always restarted, ``transient`` ones only after an
  abnormal exit (crashed or killed), ``temporary`` ones never (and are forgotten).
- Intensity: more than ``max_restarts`` restarts within ``period_s`` and the supervisor stops all its
  children and crashes with :class:`ReachedMaxRestartIntensity`: its parent decides (escalation).
  Children with a ``backoff`` restart after a growing, jittered delay and do not count towards
  intensity, so a dead cloud cannot burn the budget of the supervisor it sits under.
- Ordered start; stop in reverse order, each child within its ``shutdown_timeout_s``, then killed.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from supervisors.actor import Actor, ActorContext, ActorRef, Refused
from supervisors.cell import Cell
from supervisors.intensity import backoff_delay_s, next_attempt, restart_allowed
from supervisors.messages import (
    ChildExited,
    ChildReport,
    ChildState,
    ExitReason,
    RestartChildren,
    StartChild,
    TerminateChild,
    WhichChildren,
    crashed,
)
from supervisors.spec import ChildSpec, SpecError, SupervisorSpec, check_child, validate

log = logging.getLogger(__name__)


class ReachedMaxRestartIntensity(RuntimeError):
    pass


class ChildStartError(RuntimeError):
    pass


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    cell: Cell
    state: ChildState = "stopped"
    restarts: int = 0
    last_failure: str | None = None
    last_failure_utc: str | None = None
    started_at: float = 0.0
    backoff_attempt: int = 0
    plan_epoch: int = 0


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Supervisor(Actor):
    def __init__(self, ctx: ActorContext, spec: SupervisorSpec) -> None:
        super().__init__(ctx)
        validate(spec, ctx.path)
        self.spec = spec
        self.children: dict[str, _Child] = {}
        self.order: list[str] = []
        self.history: tuple[float, ...] = ()
        self.epoch = 0
        self.terminating = False
        self.random = random.Random()

    # -- start and stop -------------------------------------------------------------------------
    async def started(self) -> None:
        for child_spec in self.spec.children:
            try:
                await self._add(child_spec)
            except ChildStartError:
                await self._stop_all()  # a supervisor starts whole or not at all
                raise

    async def _add(self, spec: ChildSpec) -> _Child:
        cell = self.ctx.system.cell(
            f"{self.path}/{spec.id}",
            _factory(spec),
            self.ref,
            max_attempts=spec.max_attempts,
            terminate_timeout_s=spec.shutdown_timeout_s,
        )
        child = _Child(spec=spec, cell=cell)
        cell.on_exit = self._exited
        self.children[spec.id] = child
        self.order.append(spec.id)
        try:
            await self._start(child)
        except Exception as exc:
            del self.children[spec.id]
            self.order.remove(spec.id)
            self.ctx.system.forget(cell.path)
            raise ChildStartError(f"{cell.path} failed to start: {exc}") from exc
        return child

    async def _start(self, child: _Child) -> None:
        child.state = "starting"
        try:
            await child.cell.start()
        except Exception:
            child.state = "failed"
            raise
        child.state = "running"
        child.started_at = time.monotonic()

    async def _stop(self, child: _Child) -> None:
        if child.state in ("running", "starting", "stopping"):
            child.state = "stopping"
            await child.cell.stop(child.spec.shutdown_timeout_s)
        child.state = "stopped"

    async def _stop_all(self) -> None:
        for child_id in reversed(self.order):
            await self._stop(self.children[child_id])

    async def terminate(self, reason: object) -> None:
        self.terminating = True
        try:
            await self._stop_all()
        finally:
            # Cut short by our own shutdown timeout, we leave no child running under nobody:
            # the ones not stopped yet are killed with us (in OTP they are linked to us).
            for child in self.children.values():
                child.cell.kill()
                child.cell.retire(f"supervisor {self.path} ended ({reason})")

    def _exited(self, cell: Cell, reason: ExitReason) -> None:
        if self.terminating:
            return  # we are stopping them ourselves
        child_id = cell.path.rsplit("/", 1)[-1]
        self.ref.tell(ChildExited(child_id=child_id, generation=cell.generation, reason=reason))

    # -- messages -------------------------------------------------------------------------------
    async def receive(self, msg: object) -> Any:
        if isinstance(msg, ChildExited):
            await self._child_exited(msg)
            return None
        if isinstance(msg, RestartChildren):
            ids = [i for i in msg.child_ids if self._awaits_restart(i, msg.epoch)]
            await self._restart(ids)
            return None
        if isinstance(msg, WhichChildren):
            return self.reports()
        if isinstance(msg, StartChild):
            return await self._start_child(msg.spec)
        if isinstance(msg, TerminateChild):
            return await self._terminate_child(msg.child_id)
        return await super().receive(msg)

    def _awaits_restart(self, child_id: str, epoch: int) -> bool:
        child = self.children.get(child_id)
        return child is not None and child.state == "backoff" and child.plan_epoch == epoch

    async def _start_child(self, spec: ChildSpec) -> ActorRef:
        problems = check_child(spec, f"{self.path}: StartChild")
        if spec.id in self.children:
            problems.append(f"{self.path}: a child with id {spec.id!r} already exists")
        if problems:
            raise Refused(str(SpecError(problems)))
        try:
            child = await self._add(spec)
        except ChildStartError as exc:
            raise Refused(str(exc)) from exc
        return child.cell.ref

    async def _terminate_child(self, child_id: str) -> bool:
        child = self.children.pop(child_id, None)
        if child is None:
            return False
        self.order.remove(child_id)
        await self._stop(child)
        child.cell.retire("terminated by its supervisor")
        self.ctx.system.forget(child.cell.path)
        return True

    # -- failures -------------------------------------------------------------------------------
    async def _child_exited(self, msg: ChildExited) -> None:
        child = self.children.get(msg.child_id)
        if child is None or child.cell.generation != msg.generation or child.state != "running":
            return  # an exit we caused, or of an instance already replaced
        child.state = "stopped"
        await self._handle_exit(child, msg.reason)

    async def _handle_exit(self, child: _Child, reason: ExitReason) -> None:
        if reason.abnormal:
            child.last_failure = str(reason)
            child.last_failure_utc = _utc_now()
            log.warning("%s exited: %s", child.cell.path, reason)
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and not reason.abnormal):
            child.cell.retire(f"exited ({reason}), {restart} child not restarted")
            if restart == "temporary":
                self.children.pop(child.spec.id, None)
                self.order.remove(child.spec.id)
                self.ctx.system.forget(child.cell.path)
            return
        now = time.monotonic()
        delay = 0.0
        backoff = child.spec.backoff
        if backoff is not None:
            child.backoff_attempt = next_attempt(
                child.backoff_attempt, now - child.started_at, backoff
            )
            delay = backoff_delay_s(backoff, child.backoff_attempt, self.random.random())
        else:
            allowed, self.history = restart_allowed(
                self.history, now, max_restarts=self.spec.max_restarts, period_s=self.spec.period_s
            )
            if not allowed:
                self.ctx.system.restarted(
                    self.path,
                    "gave up",
                    f"more than {self.spec.max_restarts} restarts in "
                    f"{self.spec.period_s:g} s; last: {child.spec.id}: {reason}",
                )
                await self._stop_all()
                raise ReachedMaxRestartIntensity(
                    f"{self.path}: more than {self.spec.max_restarts} restarts in "
                    f"{self.spec.period_s:g} s (last: {child.spec.id}: {reason})"
                )
        affected = self._affected(child.spec.id)
        self.ctx.system.restarted(
            child.cell.path,
            f"restart {', '.join(affected)}" + (f" in {delay:.2f} s" if delay else ""),
            f"{reason} ({self.spec.strategy}, {child.spec.restart})",
        )

        for other_id in reversed(affected):
            if other_id != child.spec.id:
                await self._stop(self.children[other_id])
        if delay > 0:
            self.epoch += 1
            for child_id in affected:
                self.children[child_id].state = "backoff"
                self.children[child_id].plan_epoch = self.epoch
            self.send_after(delay, RestartChildren(child_ids=tuple(affected), epoch=self.epoch))
            log.info("%s: restarting %s in %.2f s", self.path, ", ".join(affected), delay)
        else:
            await self._restart(affected)

    def _affected(self, child_id: str) -> list[str]:
        if self.spec.strategy == "one_for_all":
            return list(self.order)
        if self.spec.strategy == "rest_for_one":
            return self.order[self.order.index(child_id) :]
        return [child_id]

    async def _restart(self, child_ids: list[str]) -> None:
        for child_id in child_ids:
            child = self.children.get(child_id)
            if child is None or child.state == "running":
                continue
            child.restarts += 1
            try:
                await self._start(child)
            except Exception as exc:
                # A restart that fails in its start hook is one more failure, with the same rules.
                log.warning("%s failed to restart: %r", child.cell.path, exc)
                await self._handle_exit(child, crashed(exc))
                return

    # -- reports --------------------------------------------------------------------------------
    def reports(self) -> tuple[ChildReport, ...]:
        system = self.ctx.system
        out = []
        for child_id in self.order:
            child = self.children[child_id]
            actor = child.cell.actor
            nested: tuple[ChildReport, ...] = ()
            if isinstance(actor, Supervisor) and child.state == "running":
                nested = actor.reports()
            info: dict[str, Any] = {}
            if actor is not None and child.state == "running":
                try:
                    info = actor.report()
                except Exception as exc:  # a report must never take the status down
                    info = {"report_error": repr(exc)}
            out.append(
                ChildReport(
                    id=child_id,
                    path=child.cell.path,
                    kind=child.spec.kind,
                    restart=child.spec.restart,
                    state=child.state,
                    restarts=child.restarts,
                    last_failure=child.last_failure,
                    last_failure_utc=child.last_failure_utc,
                    started_utc=child.cell.started_utc,
                    mailbox_depth=len(child.cell.mailbox),
                    dead_letters=system.dead_letters_by_path[child.cell.path],
                    info=info,
                    children=nested,
                )
            )
        return tuple(out)

    def child_ref(self, child_id: str) -> ActorRef | None:
        child = self.children.get(child_id)
        return None if child is None else child.cell.ref


def _factory(spec: ChildSpec) -> Any:
    start = spec.start
    if isinstance(start, SupervisorSpec):
        return lambda ctx: Supervisor(ctx, start)
    return start
