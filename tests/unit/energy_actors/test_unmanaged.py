"""A site without load-management sections still runs an allocator: it takes the broker's
messages and decides nothing, so they never become dead letters."""

from __future__ import annotations

from actors.energy_messages import DemandBatch, ProfileOutcomes
from actors.energy_tree import energy_summary
from actors.site_allocator import SiteAllocator
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem


async def test_unmanaged_allocator_takes_messages_and_reports_it() -> None:
    system = ActorSystem("energy")
    sent: list[object] = []
    system.remote = lambda path, msg: sent.append(msg)
    try:
        await system.start(
            SupervisorSpec(
                children=(
                    ChildSpec(
                        id="allocator",
                        start=lambda ctx: SiteAllocator(ctx, energy=None, charge_points={}),
                    ),
                )
            )
        )
        ref = system.lookup("energy/allocator")
        assert ref is not None
        # Asked, so the test knows each was handled (an ask to a crashing handler raises).
        assert await ref.ask(DemandBatch(reports=(), sent_utc="2025-01-01T00:00:00Z")) is None
        assert await ref.ask(ProfileOutcomes(outcomes=())) is None
        assert system.cells["energy/allocator"].generation == 1
    finally:
        summary = energy_summary(system)
        dead = system.dead_letters_total
        await system.stop(5.0)
    assert summary["mode"] == "unmanaged"
    assert dead == 0
    assert sent == []
