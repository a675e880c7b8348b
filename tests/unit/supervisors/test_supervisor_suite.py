"""Supervisor behaviour in the manner of OTP's supervisor_SUITE.

Children are made to exit with each kind of reason (normal, shutdown, crashed, killed) under each
strategy and restart type, and the tests assert what the supervisor did: who was restarted, in
which order, who was left alone, and when it gave up and escalated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from supervisors.actor import Actor, ActorCrashed, ActorRef, ActorStopped, AskTimeout, Refused
from supervisors.intensity import Backoff
from supervisors.messages import StartChild, TerminateChild, WhichChildren
from supervisors.spec import ChildSpec, SpecError, SupervisorSpec
from supervisors.supervisor import ChildStartError, Supervisor
from supervisors.system import ActorSystem
from tests.helpers import wait_for
from tests.unit.supervisors.probes import Journal, SlowStop, probe

ExitHow = Callable[[ActorSystem, str], None]


def exit_normal(system: ActorSystem, path: str) -> None:
    ref = system.lookup(path)
    assert ref is not None
    ref.tell("stop")


def exit_crashed(system: ActorSystem, path: str) -> None:
    ref = system.lookup(path)
    assert ref is not None
    ref.tell(("crash_at", system.cells[path].generation))


def exit_killed(system: ActorSystem, path: str) -> None:
    system.cells[path].kill()


def exit_shutdown(system: ActorSystem, path: str) -> None:
    # Stopped by someone other than its supervisor: exit reason "shutdown".
    asyncio.get_running_loop().create_task(system.cells[path].stop(1.0))


EXITS = {
    "normal": exit_normal,
    "shutdown": exit_shutdown,
    "crashed": exit_crashed,
    "killed": exit_killed,
}


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    system = ActorSystem("sup")
    yield system
    await system.stop(5.0)


async def start_tree(system: ActorSystem, spec: SupervisorSpec) -> ActorRef:
    return await system.start(spec)


def generation(system: ActorSystem, child: str) -> int:
    return system.cells[f"sup/{child}"].generation


# -- restart types x exit reasons ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        pytest.param("permanent", "normal", True, id="permanent-normal"),
        pytest.param("permanent", "shutdown", True, id="permanent-shutdown"),
        pytest.param("permanent", "crashed", True, id="permanent-crashed"),
        pytest.param("permanent", "killed", True, id="permanent-killed"),
        pytest.param("transient", "normal", False, id="transient-normal"),
        pytest.param("transient", "shutdown", False, id="transient-shutdown"),
        pytest.param("transient", "crashed", True, id="transient-crashed"),
        pytest.param("transient", "killed", True, id="transient-killed"),
        pytest.param("temporary", "normal", False, id="temporary-normal"),
        pytest.param("temporary", "shutdown", False, id="temporary-shutdown"),
        pytest.param("temporary", "crashed", False, id="temporary-crashed"),
        pytest.param("temporary", "killed", False, id="temporary-killed"),
    ],
)
async def test_restart_type_decides_on_exit_reason(
    system: ActorSystem, restart: str, how: str, restarted: bool
) -> None:
    journal = Journal()
    root = await start_tree(
        system,
        SupervisorSpec(
            max_restarts=5,
            children=(probe("a", journal, restart=restart), probe("b", journal)),  # type: ignore[arg-type]
        ),
    )
    EXITS[how](system, "sup/a")
    await wait_for(lambda: "a" in journal.of("terminate"), what="child a to end")
    reports = {r.id: r for r in await root.ask(WhichChildren())}
    if restarted:
        await wait_for(lambda: journal.starts("a") == 2, what="child a restarted")
        ref = system.lookup("sup/a")
        assert ref is not None
        assert await ref.ask("ping") == ("pong", 2)
        reports = {r.id: r for r in await root.ask(WhichChildren())}
        assert reports["a"].restarts == 1
        assert reports["a"].state == "running"
    else:
        # The supervisor has handled the exit once the report no longer shows "a" running.
        await wait_for(
            lambda: system.cells.get("sup/a") is None or not system.cells["sup/a"].accepting,
            what="child a retired",
        )
        assert journal.starts("a") == 1
        reports = {r.id: r for r in await root.ask(WhichChildren())}
        if restart == "temporary":
            assert "a" not in reports, "a temporary child is forgotten"
        else:
            assert reports["a"].state == "stopped"
            assert reports["a"].restarts == 0
    if how in ("crashed", "killed") and "a" in reports:
        assert reports["a"].last_failure is not None
        assert reports["a"].last_failure.startswith(how)
    # The sibling is never touched under one_for_one.
    assert journal.starts("b") == 1
    assert generation(system, "b") == 1


# -- strategies ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("strategy", "expect_restarted"),
    [
        pytest.param("one_for_one", ["b"], id="one_for_one"),
        pytest.param("one_for_all", ["a", "b", "c"], id="one_for_all"),
        pytest.param("rest_for_one", ["b", "c"], id="rest_for_one"),
    ],
)
@pytest.mark.parametrize("how", ["crashed", "killed"])
async def test_strategy_decides_who_restarts(
    system: ActorSystem, strategy: str, expect_restarted: list[str], how: str
) -> None:
    journal = Journal()
    await start_tree(
        system,
        SupervisorSpec(
            strategy=strategy,  # type: ignore[arg-type]
            children=(probe("a", journal), probe("b", journal), probe("c", journal)),
        ),
    )
    assert journal.of("start") == ["a", "b", "c"], "ordered start"
    journal.events.clear()
    EXITS[how](system, "sup/b")
    await wait_for(lambda: sorted(journal.of("start")) == sorted(expect_restarted), what="restarts")
    # Those stopped by the strategy stop in reverse order, then all restart in order.
    stopped_by_strategy = [c for c in journal.of("terminate") if c != "b"]
    assert stopped_by_strategy == sorted([c for c in expect_restarted if c != "b"], reverse=True)
    assert journal.of("start") == expect_restarted
    for child in ("a", "b", "c"):
        expected = 2 if child in expect_restarted else 1
        assert generation(system, child) == expected, child
        ref = system.lookup(f"sup/{child}")
        assert ref is not None
        assert await ref.ask("ping") == ("pong", expected)


# -- intensity and escalation --------------------------------------------------------------------
async def test_intensity_reached_stops_children_and_escalates(system: ActorSystem) -> None:
    journal = Journal()
    inner = SupervisorSpec(
        max_restarts=2, period_s=60, children=(probe("x", journal), probe("y", journal))
    )
    root = await start_tree(
        system,
        SupervisorSpec(max_restarts=5, children=(ChildSpec(id="inner", start=inner),)),
    )
    for expected_starts in (2, 3):
        exit_crashed(system, "sup/inner/x")
        await wait_for(lambda n=expected_starts: journal.starts("x") == n, what="x restarted")
    assert journal.starts("y") == 1
    # The third crash within the period exceeds max_restarts=2: the inner supervisor stops its
    # children (y in reverse order) and crashes; the outer one restarts it, children and all.
    exit_crashed(system, "sup/inner/x")
    await wait_for(lambda: journal.starts("y") == 2, what="inner supervisor restarted by outer")
    reports = {r.id: r for r in await root.ask(WhichChildren())}
    assert reports["inner"].restarts == 1
    assert reports["inner"].last_failure is not None
    assert "ReachedMaxRestartIntensity" in reports["inner"].last_failure
    assert {r.id: r.state for r in reports["inner"].children} == {"x": "running", "y": "running"}


async def test_root_exceeding_intensity_terminates_the_system(system: ActorSystem) -> None:
    journal = Journal()
    await start_tree(
        system, SupervisorSpec(max_restarts=1, period_s=60, children=(probe("a", journal),))
    )
    exit_crashed(system, "sup/a")
    await wait_for(lambda: journal.starts("a") == 2, what="first restart")
    exit_crashed(system, "sup/a")
    assert system.terminated is not None
    reason = await asyncio.wait_for(system.terminated, 5)
    assert reason.kind == "crashed"
    assert "ReachedMaxRestartIntensity" in reason.detail


async def test_restarts_outside_the_period_do_not_add_up(system: ActorSystem) -> None:
    journal = Journal()
    await start_tree(
        system, SupervisorSpec(max_restarts=1, period_s=0.2, children=(probe("a", journal),))
    )
    for n in range(2, 5):
        exit_crashed(system, "sup/a")
        await wait_for(lambda n=n: journal.starts("a") == n, what=f"restart {n}")
        t0 = time.monotonic()
        await wait_for(lambda t0=t0: time.monotonic() - t0 > 0.25, what="period to pass")
    assert system.terminated is not None
    assert not system.terminated.done()


# -- backoff ---------------------------------------------------------------------------------------
async def test_backoff_delays_grow_and_do_not_count_towards_intensity(system: ActorSystem) -> None:
    journal = Journal()
    times: list[float] = []
    backoff = Backoff(min_s=0.05, max_s=0.4, factor=2.0, jitter=0.0, reset_after_s=10)
    await start_tree(
        system,
        SupervisorSpec(
            max_restarts=1, period_s=60, children=(probe("net", journal, backoff=backoff),)
        ),
    )
    for n in range(2, 7):
        t0 = time.monotonic()
        exit_crashed(system, "sup/net")
        await wait_for(lambda n=n: journal.starts("net") == n, what=f"restart {n}")
        times.append(time.monotonic() - t0)
    expected = [0.1, 0.2, 0.4, 0.4, 0.4]  # attempt 1.. (attempt 0 only after a reset)
    for measured, want in zip(times, expected, strict=True):
        assert measured >= want * 0.95, (times, expected)
        assert measured < want + 0.5, (times, expected)
    assert system.terminated is not None
    assert not system.terminated.done(), (
        "5 restarts with max_restarts=1: backoff is outside intensity"
    )


async def test_backoff_resets_after_a_long_enough_run(system: ActorSystem) -> None:
    journal = Journal()
    backoff = Backoff(min_s=0.05, max_s=5.0, factor=10.0, jitter=0.0, reset_after_s=0.1)
    await start_tree(system, SupervisorSpec(children=(probe("net", journal, backoff=backoff),)))
    t0 = time.monotonic()
    exit_crashed(system, "sup/net")  # ran > reset_after_s? not yet: attempt 1 -> 0.5 s
    await wait_for(lambda: journal.starts("net") == 2, what="first restart")
    first = time.monotonic() - t0
    assert first >= 0.45
    restarted_at = time.monotonic()
    await wait_for(lambda: time.monotonic() - restarted_at > 0.15, what="run past reset_after_s")
    t1 = time.monotonic()
    exit_crashed(system, "sup/net")
    await wait_for(lambda: journal.starts("net") == 3, what="second restart")
    assert time.monotonic() - t1 < 0.4, "after a long run the delay is back to min_s"


async def test_restart_waiting_in_backoff_is_visible(system: ActorSystem) -> None:
    journal = Journal()
    backoff = Backoff(min_s=5.0, max_s=5.0, jitter=0.0)
    root = await start_tree(
        system, SupervisorSpec(children=(probe("net", journal, backoff=backoff),))
    )
    exit_crashed(system, "sup/net")
    await wait_for(lambda: "net" in journal.of("terminate"), what="net ended")

    async def in_backoff() -> bool:
        reports = await root.ask(WhichChildren())
        return bool(reports[0].state == "backoff")

    await wait_for(in_backoff, what="backoff state")


# -- ordered start and stop, shutdown timeout -----------------------------------------------------
async def test_stop_is_reverse_order_and_waits_at_most_the_shutdown_timeout() -> None:
    journal = Journal()
    system = ActorSystem("sup")
    slow = ChildSpec(id="slow", start=lambda ctx: SlowStop(ctx, journal), shutdown_timeout_s=0.2)
    await system.start(SupervisorSpec(children=(probe("a", journal), slow, probe("c", journal))))
    t0 = time.monotonic()
    await system.stop(5.0)
    elapsed = time.monotonic() - t0
    assert journal.of("terminate") == ["c", "slow", "a"]
    assert 0.2 <= elapsed < 2.0, elapsed
    assert system.terminated is not None
    assert system.terminated.done()
    assert system.terminated.result().kind == "shutdown"


async def test_a_supervisor_cut_short_by_its_shutdown_timeout_leaves_no_child_running() -> None:
    """Its children need longer to stop than it is given: those it had not stopped yet are
    killed with it (in OTP they are linked to it), not left running under nobody."""
    journal = Journal()
    system = ActorSystem("sup")

    def slow(child_id: str) -> ChildSpec:
        return ChildSpec(
            id=child_id, start=lambda ctx: SlowStop(ctx, journal), shutdown_timeout_s=0.2
        )

    inner = SupervisorSpec(children=(probe("a", journal), slow("s1"), slow("s2")))
    await system.start(
        SupervisorSpec(children=(ChildSpec(id="inner", start=inner, shutdown_timeout_s=0.3),))
    )
    await system.stop(5.0)
    cells = system.cells.values()
    await wait_for(lambda: not any(c.running for c in cells), what="every actor ended")
    assert journal.of("terminate")[:2] == ["s2", "s1"]
    assert "a" in journal.of("terminate")


@pytest.mark.slow
async def test_the_whole_stop_timeout_is_the_roots_not_only_its_first_five_seconds() -> None:
    """A node stops within ``[runtime] shutdown_timeout_s`` (15 s by default): a child that takes
    more than 5 s of it must not cost the children stopped after it (the store writer, last)
    their orderly stop."""
    journal = Journal()
    system = ActorSystem("sup")
    slow = ChildSpec(id="slow", start=lambda ctx: SlowStop(ctx, journal), shutdown_timeout_s=5.3)
    await system.start(SupervisorSpec(children=(probe("first", journal), slow)))
    await system.stop(8.0)
    reasons = {cid: reason for kind, cid, reason in journal.events if kind == "terminate"}
    assert reasons == {"slow": "shutdown", "first": "shutdown"}


async def test_a_child_that_fails_to_start_fails_the_supervisor_start(system: ActorSystem) -> None:
    journal = Journal()
    spec = SupervisorSpec(
        children=(probe("a", journal), probe("b", journal, fail_start=1), probe("c", journal))
    )
    with pytest.raises(ChildStartError, match="sup/b failed to start"):
        await system.start(spec)
    assert journal.of("start") == ["a"]
    assert journal.of("terminate") == ["a"], "already started children are stopped again"


async def test_a_restart_that_fails_to_start_counts_as_another_failure(system: ActorSystem) -> None:
    journal = Journal()

    spec = SupervisorSpec(
        max_restarts=10, children=(ChildSpec(id="a", start=_flaky_start(journal, fail_times=2)),)
    )
    await start_tree(system, spec)
    exit_crashed(system, "sup/a")
    await wait_for(lambda: journal.starts("a") == 2, what="restart after two failed starts")
    assert journal.of("start_failed") == ["a", "a"]


def _flaky_start(journal: Journal, *, fail_times: int) -> Callable[..., Supervisor]:
    from tests.unit.supervisors.probes import Probe

    failures = {"left": fail_times}
    first = {"done": False}

    def make(ctx):  # type: ignore[no-untyped-def]
        actor = Probe(ctx, journal)
        if first["done"] and failures["left"] > 0:
            failures["left"] -= 1
            actor.fail_start = 10**6
        first["done"] = True
        return actor

    return make  # type: ignore[return-value]


# -- messages and mailboxes ---------------------------------------------------------------------------
async def test_mail_sent_during_a_restart_is_kept(system: ActorSystem) -> None:
    journal = Journal()
    backoff = Backoff(min_s=0.1, max_s=0.1, jitter=0.0)
    await start_tree(system, SupervisorSpec(children=(probe("a", journal, backoff=backoff),)))
    ref = system.lookup("sup/a")
    assert ref is not None
    exit_crashed(system, "sup/a")
    await wait_for(lambda: "a" in journal.of("terminate"), what="a ended")
    for i in range(5):
        ref.tell(("record", i))
    await wait_for(lambda: len(journal.of("got")) == 5, what="messages after restart")
    assert [v for k, _, v in journal.events if k == "got"] == [0, 1, 2, 3, 4]


async def test_poison_message_is_dead_lettered_after_max_attempts(system: ActorSystem) -> None:
    journal = Journal()
    await start_tree(
        system, SupervisorSpec(max_restarts=10, children=(probe("a", journal, max_attempts=3),))
    )
    ref = system.lookup("sup/a")
    assert ref is not None
    ref.tell("crash")
    ref.tell(("record", "after"))
    await wait_for(lambda: journal.of("got") == ["a"], what="the next message handled")
    assert journal.starts("a") == 4, "3 failed attempts, 3 restarts"
    assert system.dead_letters_by_path["sup/a"] == 1
    assert system.recent_dead_letters[-1]["reason"].startswith("failed 3 time(s)")


async def test_ask_errors(system: ActorSystem) -> None:
    journal = Journal()
    await start_tree(system, SupervisorSpec(children=(probe("a", journal, restart="transient"),)))
    ref = system.lookup("sup/a")
    assert ref is not None
    with pytest.raises(AskTimeout, match=r"sup/a did not answer str within 0\.05 s"):
        await ref.ask("hang", timeout_s=0.05)
    system.cells["sup/a"].kill()
    await wait_for(lambda: journal.starts("a") == 2, what="restart after kill")
    with pytest.raises(ActorCrashed):
        await ref.ask("crash")
    await wait_for(lambda: journal.starts("a") == 3, what="restart after crash")
    ref.tell("stop")
    await wait_for(lambda: not ref.alive, what="transient child retired after normal exit")
    with pytest.raises(ActorStopped):
        await ref.ask("ping")
    ref.tell("ping")
    assert system.dead_letters_by_path["sup/a"] == 1


async def test_linked_task_failure_crashes_the_actor(system: ActorSystem) -> None:
    journal = Journal()
    await start_tree(system, SupervisorSpec(children=(probe("a", journal),)))
    actor = system.actor("sup/a")
    assert actor is not None

    async def fail() -> None:
        raise ValueError("linked task failed")

    actor.spawn(fail(), name="failing")
    await wait_for(lambda: journal.starts("a") == 2, what="restart after linked task failure")
    assert journal.events[-2][2].startswith("crashed: ValueError: linked task failed")


# -- dynamic children and specs --------------------------------------------------------------------
class Linked(Actor):
    """On "fail_linked" it starts a linked task that fails, then waits (for an ask's answer)."""

    async def receive(self, msg: object) -> Any:
        if msg == "fail_linked":

            async def fail() -> None:
                raise RuntimeError("linked task failed on purpose")

            self.spawn(fail(), name="fail")
            await asyncio.Event().wait()
        if msg == "ping":
            return "pong"
        return await super().receive(msg)


async def test_an_ask_in_hand_when_a_linked_task_fails_is_answered_with_the_crash(
    system: ActorSystem,
) -> None:
    await start_tree(system, SupervisorSpec(children=(ChildSpec(id="l", start=Linked),)))
    ref = system.lookup("sup/l")
    assert ref is not None
    t0 = time.monotonic()
    with pytest.raises(ActorCrashed):
        await ref.ask("fail_linked", timeout_s=5.0)
    assert time.monotonic() - t0 < 2.0, "answered at the crash, not at the ask's timeout"
    assert await ref.ask("ping") == "pong"


async def test_start_and_terminate_child(system: ActorSystem) -> None:
    journal = Journal()
    root = await start_tree(system, SupervisorSpec(children=(probe("a", journal),)))
    ref = await root.ask(StartChild(spec=probe("cp1", journal)))
    assert await ref.ask("ping") == ("pong", 1)
    with pytest.raises(Refused, match="already exists"):
        await root.ask(StartChild(spec=probe("cp1", journal)))
    assert await root.ask(TerminateChild(child_id="cp1")) is True
    assert await root.ask(TerminateChild(child_id="cp1")) is False
    assert [r.id for r in await root.ask(WhichChildren())] == ["a"]
    assert not ref.alive


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        pytest.param(
            SupervisorSpec(strategy="one_for_most"),  # type: ignore[arg-type]
            "strategy: expected one of one_for_one, one_for_all, rest_for_one, got 'one_for_most'",
            id="strategy",
        ),
        pytest.param(
            SupervisorSpec(max_restarts=-1),
            "max_restarts: expected an integer >= 0",
            id="max_restarts",
        ),
        pytest.param(SupervisorSpec(period_s=0), "period_s: expected > 0", id="period"),
        pytest.param(
            SupervisorSpec(children=(ChildSpec(id="a", start=lambda c: None, restart="perm"),)),  # type: ignore[arg-type, return-value]
            "children[0] (id 'a'): restart: expected one of permanent, transient, temporary, got 'perm'",
            id="restart-type",
        ),
        pytest.param(
            SupervisorSpec(
                children=(
                    ChildSpec(id="a", start=lambda c: None),  # type: ignore[arg-type, return-value]
                    ChildSpec(id="a", start=lambda c: None),  # type: ignore[arg-type, return-value]
                )
            ),
            "children[1]: id 'a' is used twice",
            id="duplicate-id",
        ),
        pytest.param(
            SupervisorSpec(children=(ChildSpec(id="a/b", start=lambda c: None),)),  # type: ignore[arg-type, return-value]
            "id: expected a non-empty name without '/'",
            id="slash-in-id",
        ),
        pytest.param(
            SupervisorSpec(
                children=(ChildSpec(id="a", start=lambda c: None, shutdown_timeout_s=0),)
            ),  # type: ignore[arg-type, return-value]
            "shutdown_timeout_s: expected > 0",
            id="shutdown-timeout",
        ),
        pytest.param(
            SupervisorSpec(
                children=(
                    ChildSpec(
                        id="a",
                        start=SupervisorSpec(children=(ChildSpec(id="b", start="nope"),)),  # type: ignore[arg-type]
                    ),
                )
            ),
            "children[0].start.children[0] (id 'b'): start: expected an actor factory",
            id="nested",
        ),
        pytest.param(
            SupervisorSpec(
                children=(
                    ChildSpec(id="a", start=lambda c: None, backoff=Backoff(min_s=2, max_s=1)),
                )  # type: ignore[arg-type, return-value]
            ),
            "backoff: expected 0 < min_s <= max_s",
            id="backoff",
        ),
    ],
)
async def test_invalid_specs_are_refused_before_anything_starts(
    system: ActorSystem, spec: SupervisorSpec, problem: str
) -> None:
    with pytest.raises(SpecError) as info:
        await system.start(spec)
    assert any(problem in p for p in info.value.problems), info.value.problems
    assert list(system.cells) == ["sup"], "no child was created"


async def test_a_dynamic_child_that_fails_to_start_leaves_the_others_running(
    system: ActorSystem,
) -> None:
    journal = Journal()
    root = await start_tree(system, SupervisorSpec(children=(probe("a", journal),)))
    with pytest.raises(Refused, match="sup/bad failed to start"):
        await root.ask(StartChild(spec=probe("bad", journal, fail_start=1)))
    assert journal.of("terminate") == []
    assert [r.id for r in await root.ask(WhichChildren())] == ["a"]
