"""One lazily re-armed timer for an actor's earliest deadline.

For deadlines of the form ``now + a constant`` (a call's answer deadline, its timeout): instead of
a timer per call, which is nearly always cancelled and lingers in the loop's heap until its time
(measured at 500 charge points: those were what the young-generation collections walked, 8-14 ms
pauses every ~8 s), one timer is armed for the earliest deadline. A newer deadline is almost never
earlier than the armed one; when the timer fires, the actor handles what is due, calls
:meth:`fired` and arms it again for what is pending then.
"""

from __future__ import annotations

import asyncio
import math
import time

from supervisors.actor import Actor


class DeadlineTimer:
    def __init__(self) -> None:
        self.handle: asyncio.TimerHandle | None = None
        self.at = math.inf  # monotonic time it is armed for; inf: not armed

    def arm(self, actor: Actor, at: float, msg: object) -> None:
        """Deliver ``msg`` to ``actor`` at ``at`` (monotonic) unless armed for earlier already."""
        if at >= self.at:
            return
        if self.handle is not None:
            self.handle.cancel()
        self.at = at
        self.handle = actor.send_after(max(0.0, at - time.monotonic()), msg)

    def fired(self) -> None:
        self.handle, self.at = None, math.inf
