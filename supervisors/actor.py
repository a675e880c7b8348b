"""Light actors: an asyncio task with a mailbox, ``receive(msg)`` and state.

An :class:`ActorRef` is the stable address of an actor: its mailbox outlives restarts of the actor
instance, so messages sent while a supervisor restarts it are kept. The instance is made by its
child spec's factory, restores itself in :meth:`Actor.started` and handles one message at a time.

Durable messages: an actor lists the message classes it takes durably in ``DURABLE``. Sending one
with :meth:`ActorRef.tell_durable` returns only after the message is committed to the node's LMDB
mailbox (so it may then be acknowledged to a peer). Consuming it, the state updates made with
:meth:`Actor.persist` and the durable messages sent with :meth:`Actor.send_durable` while handling it
commit in ONE transaction, after ``receive`` returns: nothing lost, nothing applied twice. Messages
that queued up while the actor was busy are handled as a batch that commits as one transaction
(a busy actor costs one fsync per batch); asks are answered after that commit, so an answer never
shows state that is not on disk. An answer to a peer that is not an ask (a reply to the cloud,
sent on to the actor that owns the session) goes the same way with :meth:`Actor.send_once_committed`:
after the commit of what its handling changed, at once if it changed nothing. A message whose handling raises is retried after the restart (none
of its batch is applied); after ``max_attempts`` failures it goes to the dead-letter table instead
of crash-looping.

Exceptions: :class:`ActorError` > :class:`ActorStopped` (no such running actor),
:class:`AskTimeout` (also a ``TimeoutError``), :class:`ActorCrashed` (the handler raised while
answering an ask; the original exception is ``__cause__``), :class:`Refused` (raised BY a handler to
turn a request down: the asker gets it, the actor does not crash, nothing it staged is applied).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from supervisors.cell import Cell
    from supervisors.system import ActorSystem

log = logging.getLogger(__name__)


class ActorError(Exception):
    pass


class ActorStopped(ActorError):
    pass


class AskTimeout(ActorError, TimeoutError):
    pass


class ActorCrashed(ActorError):
    pass


class Refused(ActorError):
    """A handler's answer "no" to a bad request: not a crash (the actor's state is intact)."""


@dataclass(slots=True)
class Envelope:
    msg: object
    reply: asyncio.Future[Any] | None = None
    attempts: int = 0
    durable_key: bytes | None = None


class Mailbox:
    """FIFO of envelopes with a single waiting consumer."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[Envelope] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, env: Envelope) -> None:
        self._items.append(env)
        self.wake()

    def put_front(self, envs: list[Envelope]) -> None:
        self._items.extendleft(reversed(envs))
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def pop(self) -> Envelope | None:
        return self._items.popleft() if self._items else None

    async def wait(self) -> None:
        """Return when something was put or :meth:`wake` was called."""
        if not self._items:
            await self.waiter(asyncio.get_running_loop())

    def waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """:meth:`wait` as a future to await, for the one consumer (the cell's loop, which
        awaits it directly: one coroutine fewer per message that wakes an idle actor)."""
        waiter = self._waiter = loop.create_future()
        return waiter

    def remove_durable(self) -> list[Envelope]:
        """Take out durable envelopes (they are reloaded from LMDB on restart)."""
        kept = [e for e in self._items if e.durable_key is None]
        removed = [e for e in self._items if e.durable_key is not None]
        self._items = collections.deque(kept)
        return removed

    def drain(self) -> list[Envelope]:
        items = list(self._items)
        self._items.clear()
        return items


class ActorRef:
    """Address of an actor. Cheap to copy; valid across restarts."""

    __slots__ = ("_cell", "path")

    def __init__(self, cell: Cell) -> None:
        self._cell = cell
        self.path = cell.path

    def __repr__(self) -> str:
        return f"<ActorRef {self.path}>"

    @property
    def alive(self) -> bool:
        return self._cell.accepting

    @property
    def mailbox_depth(self) -> int:
        return len(self._cell.mailbox)

    def tell(self, msg: object) -> None:
        cell = self._cell
        if cell.accepting:
            cell.mailbox.put(Envelope(msg))
        else:
            cell.system.dead_letter(self.path, msg, "actor is not running")

    async def ask(self, msg: object, *, timeout_s: float = 5.0) -> Any:
        cell = self._cell
        if not cell.accepting:
            raise ActorStopped(f"{self.path} is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        cell.mailbox.put(Envelope(msg, reply=fut))
        timer = loop.call_later(timeout_s, _expire, fut, self.path, msg, timeout_s)
        try:
            return await fut
        finally:
            timer.cancel()

    async def tell_durable(self, msg: object) -> None:
        """Commit ``msg`` to this actor's durable mailbox; return once it is on disk."""
        await self._cell.append_durable(msg)


def _expire(fut: asyncio.Future[Any], path: str, msg: object, timeout_s: float) -> None:
    if not fut.done():
        fut.set_exception(
            AskTimeout(f"{path} did not answer {type(msg).__name__} within {timeout_s:g} s")
        )


class Actor:
    """Base class. Subclasses override :meth:`receive` and optionally the lifecycle hooks."""

    DURABLE: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self._uow: list[Any] | None = None
        self._after_commit: list[Callable[[], None]] | None = None
        self._stop_requested = False

    # -- lifecycle hooks ------------------------------------------------------------------------
    async def started(self) -> None:
        """Restore state (from the store) before the first message."""

    async def receive(self, msg: object) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not handle {type(msg).__name__}")

    async def terminate(self, reason: object) -> None:
        """Called once when the actor ends, for any reason. Must not take long."""

    def report(self) -> dict[str, Any]:
        """Extra state shown by ``run.py status`` (JSON-able)."""
        return {}

    # -- services -------------------------------------------------------------------------------
    @property
    def ref(self) -> ActorRef:
        return self.ctx.ref

    @property
    def path(self) -> str:
        return self.ctx.path

    def stop(self) -> None:
        """End normally after the current message (exit reason ``normal``)."""
        self._stop_requested = True
        self.ctx.cell.mailbox.wake()

    def send_after(
        self, delay_s: float, msg: object, to: ActorRef | None = None
    ) -> asyncio.TimerHandle:
        """Deliver ``msg`` later (to self by default); cancelled when this actor ends."""
        return self.ctx.cell.send_after(delay_s, msg, to or self.ref)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str = "") -> asyncio.Task[Any]:
        """A task linked to this actor: if it raises, the actor crashes; it ends with the actor."""
        return self.ctx.cell.spawn(coro, name=name)

    # -- persistence (committed with the message being handled) ---------------------------------
    def persist(self, key: str, value: Any) -> None:
        self.ctx.cell.stage_state(self, key, value)

    def forget(self, key: str) -> None:
        self.ctx.cell.stage_forget(self, key)

    def load(self, key: str, default: Any = None) -> Any:
        return self.ctx.cell.load_state(key, default)

    def stage(self, op: tuple[Any, ...], after_commit: Callable[[], None] | None = None) -> None:
        """Add a raw store op (for actor-owned tables) to the current unit of work."""
        self.ctx.cell.stage_op(self, op, after_commit)

    def send_durable(self, to: ActorRef, msg: object) -> None:
        """Append ``msg`` to ``to``'s durable mailbox in the same commit as this message."""
        self.ctx.cell.stage_send(self, to, msg)

    def send_once_committed(self, to: str, msg: object) -> None:
        """Send ``msg`` to the actor at path ``to`` (this node or another) once what handling
        the current message staged (:meth:`persist`, :meth:`stage`, :meth:`send_durable`) is
        committed: an answer that tells a peer something was accepted must not go out before
        it is on disk (a node killed in between loses what the peer was told it kept, and the
        peer does not send it again). A message whose handling staged nothing sends it as soon
        as its handler returns, without waiting for a commit (unless a send of an earlier
        message in its batch waits: they keep their order). If the commit fails nothing is
        sent (the actor crashes and restarts on what is on disk); if the actor is killed while
        its commit runs, it is sent once the commit lands, as durable sends are delivered.
        Dropped with the rest when the handler raises (or refuses)."""
        self.ctx.cell.send_committed(self, to, msg)

    async def commit(self) -> None:
        """Commit staged changes now (inside ``receive``), e.g. before answering a peer."""
        await self.ctx.cell.commit_staged(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorContext:
    path: str
    system: ActorSystem
    cell: Cell
    parent: ActorRef | None

    @property
    def ref(self) -> ActorRef:
        return self.cell.ref

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


ActorFactory = Callable[[ActorContext], Actor]
