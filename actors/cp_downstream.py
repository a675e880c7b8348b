"""Calls towards a charge point: one outstanding at a time (OCPP-J), the rest queued in order.

A queued edge call with a ``replace_key`` is replaced by a newer one with the same key (the latest
charging limit wins; a slow charge point never accumulates stale profiles).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass


@dataclass(slots=True, kw_only=True)
class DownCall:
    origin: str  # "cloud" | "edge"
    message_id: str
    action: str
    text: str
    session: int = 0  # the cloud session the call came on (answers to an old session are dropped)
    reply_to: str = ""
    tag: str = ""
    replace_key: str = ""


class DownQueue:
    def __init__(self) -> None:
        self.queue: collections.deque[DownCall] = collections.deque()
        self.inflight: DownCall | None = None

    def __len__(self) -> int:
        return len(self.queue) + (self.inflight is not None)

    def add(self, call: DownCall) -> None:
        if call.replace_key:
            for i, queued in enumerate(self.queue):
                if queued.replace_key == call.replace_key:
                    self.queue[i] = call
                    return
        self.queue.append(call)

    def next(self) -> DownCall | None:
        """The call to send now, if none is outstanding."""
        if self.inflight is not None or not self.queue:
            return None
        self.inflight = self.queue.popleft()
        return self.inflight

    def complete(self, message_id: str) -> DownCall | None:
        if self.inflight is None or self.inflight.message_id != message_id:
            return None
        call, self.inflight = self.inflight, None
        return call

    def drain(self) -> list[DownCall]:
        calls = ([self.inflight] if self.inflight is not None else []) + list(self.queue)
        self.inflight = None
        self.queue.clear()
        return calls
