"""The simulated charge point's link to its central system: connect, boot, send, reconnect.

One websocket at a time. Per connection, a receive task (the ``ocpp`` package's loop, which answers
the cloud's calls) and a work task (boot, then heartbeats and the single sender). The sender sends
every outgoing CALL, so at most one is outstanding: first the direct messages (status, heartbeat,
authorize, triggered messages), then the head of the outbox. When the connection drops both tasks are
cancelled; cancelling a pending ``call()`` is safe here only because the ``ocpp`` ChargePoint and its
response queue are thrown away with the connection, so an orphan reply can never reach a later call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import random
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from sim.dialect import Msg
from sim.errors import CallFailedError, NotConnectedError
from sim.ocpp_lib import OCPPError, UnknownCallErrorCodeError, error_code, error_description
from sim.tasks import cancel_and_wait, failure

if TYPE_CHECKING:
    from collections.abc import Callable

    from sim.charge_point import SimChargePoint


@dataclass(slots=True)
class _Direct:
    msg: Msg
    future: asyncio.Future[Any]


class _Tap:
    """The connection as the ``ocpp`` package sees it; notes which answers went out."""

    def __init__(self, session: Session, ws: ClientConnection) -> None:
        self.session = session
        self.ws = ws

    async def recv(self) -> str | bytes:
        return await self.ws.recv()

    async def send(self, message: str) -> None:
        await self.ws.send(message)
        if message.startswith("[3,") and self.session._answers:
            waiter = self.session._answers.pop(str(orjson.loads(message)[1]), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


class Session:
    def __init__(self, core: SimChargePoint) -> None:
        self.core = core
        self.online = False
        self.ws_open = False
        self.boot_status: str | None = None
        self.connect_count = 0
        self.last_connect_error: str | None = None
        self._need_boot = True
        self._reboot_now = False
        self._direct: deque[_Direct] = deque()
        self._wake = asyncio.Event()
        self._retry_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._answers: dict[str, asyncio.Future[None]] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"sim-cp-session-{self.core.id}")
        self._task.add_done_callback(self._run_done)

    def _run_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.core.record_error(f"connection loop ended: {task.exception()!r}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def reboot(self) -> None:
        """Boot again on a fresh connection, at once (after Reset)."""
        self._need_boot = True
        self.boot_status = None
        self._reboot_now = True
        if self._ws is not None:
            await self._ws.close()

    def when_answered(self, unique_id: str) -> asyncio.Future[None]:
        """Resolves once our CALLRESULT to the cloud's call ``unique_id`` has been sent."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answers[unique_id] = future
        return future

    async def drop(self) -> None:
        """Close the websocket as a network fault would; the loop reconnects with backoff."""
        if self._ws is not None:
            await self._ws.close()

    def wake(self) -> None:
        self._wake.set()

    # -- outgoing ----------------------------------------------------------------------------------

    def post(self, msg: Msg, *, on_fail: Callable[[], None] | None = None) -> asyncio.Future[Any]:
        """Queue a direct (non-transaction) message; the future holds the answer or the error."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(f: asyncio.Future[Any]) -> None:
            failed = f.cancelled() or f.exception() is not None
            if failed and on_fail is not None:
                on_fail()

        future.add_done_callback(done)
        if not self.online:
            future.set_exception(
                NotConnectedError(f"{self.core.id}: offline, {msg.action} not sent")
            )
        else:
            self._direct.append(_Direct(msg=msg, future=future))
            self._wake.set()
        return future

    async def call_direct(self, msg: Msg) -> Any:
        return await self.post(msg)

    async def _call(self, handler: Any, action: str, payload: dict[str, Any]) -> Any:
        stats = self.core.stats
        request = getattr(self.core.dialect.call_module, action)(**payload)
        unique_id = str(uuid.uuid4())
        stats.sent[action] += 1
        stats.sent_ids.append((action, unique_id))
        try:
            result = await handler.call(request, suppress=False, unique_id=unique_id)
        except OCPPError as exc:
            stats.call_errors[action] += 1
            raise CallFailedError(action, f"{error_code(exc)}: {error_description(exc)}") from exc
        except UnknownCallErrorCodeError as exc:
            stats.call_errors[action] += 1
            raise CallFailedError(action, str(exc)) from exc
        except TimeoutError as exc:
            stats.timeouts[action] += 1
            raise CallFailedError(action, "no answer in time") from exc
        stats.answered[action] += 1
        return result

    # -- the connection loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        cfg = self.core.config
        subprotocol = self.core.dialect.subprotocol
        headers: dict[str, str] = {}
        if cfg.password is not None:
            token = base64.b64encode(f"{cfg.charge_point_id}:{cfg.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        delay = cfg.backoff_initial_s
        while True:
            try:
                async with connect(
                    cfg.full_url,
                    subprotocols=[Subprotocol(subprotocol)],
                    additional_headers=headers,
                    open_timeout=cfg.open_timeout_s,
                    ping_interval=cfg.ping_interval_s,
                    ping_timeout=cfg.ping_interval_s,
                    close_timeout=1.0,
                    compression=None,
                    proxy=None,
                ) as ws:
                    if ws.subprotocol != subprotocol:
                        self.last_connect_error = f"server did not accept {subprotocol}"
                    else:
                        delay = cfg.backoff_initial_s
                        self.connect_count += 1
                        self._ws = ws
                        self.ws_open = True
                        await self._session(ws)
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                self.last_connect_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._ws = None
                self.ws_open = False
            if self._reboot_now:
                self._reboot_now = False
                continue
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, cfg.backoff_max_s)

    async def _session(self, ws: ClientConnection) -> None:
        handler = self.core.dialect.make_handler(self.core, _Tap(self, ws))
        receive = asyncio.create_task(handler.start(), name=f"sim-cp-recv-{self.core.id}")
        work = asyncio.create_task(self._work(handler), name=f"sim-cp-work-{self.core.id}")
        for task in (receive, work):
            # Seen as soon as it ends: if this session is cancelled meanwhile (the simulator
            # stopping as the edge closes the link), the link's ConnectionClosed is not left for
            # asyncio to log as "never retrieved" at exit.
            task.add_done_callback(failure)
        try:
            await asyncio.wait({receive, work}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._go_offline()
            await cancel_and_wait([receive, work])
        for task in (receive, work):
            exc = failure(task)
            if exc is not None and not isinstance(exc, ConnectionClosed):
                self.core.record_error(f"session: {exc!r}")

    def _go_offline(self) -> None:
        self.online = False
        while self._direct:
            item = self._direct.popleft()
            if not item.future.done():
                item.future.set_exception(NotConnectedError(f"{self.core.id}: connection lost"))

    async def _work(self, handler: Any) -> None:
        core = self.core
        first = self._need_boot or core.config.behaviour.boot_on_reconnect
        if first:
            await self._boot(handler)
        self.online = True
        if first and core.dialect.subprotocol == "ocpp1.6":
            self.post(core.dialect.status_notification(core, 0, "Available"))
        for c in core.connectors.values():
            core.post_status(c, force=first)
        heartbeats = asyncio.create_task(self._heartbeats())
        try:
            await self._sender(handler)
        finally:
            await cancel_and_wait([heartbeats])

    async def _boot(self, handler: Any) -> None:
        core = self.core
        reason = "PowerUp" if core.reset_count == 0 else "RemoteReset"
        while True:
            msg = core.dialect.boot(core, reason)
            try:
                result = await self._call(handler, msg.action, msg.payload)
            except CallFailedError:
                await asyncio.sleep(core.config.backoff_max_s)
                continue
            status, interval_s = core.dialect.boot_answer(result)
            self.boot_status = status
            if interval_s > 0:
                key = core.configuration["HeartbeatInterval"]
                core.configuration["HeartbeatInterval"] = dataclasses.replace(
                    key, value=str(int(interval_s))
                )
            if status == "Accepted":
                self._need_boot = False
                return
            await asyncio.sleep(interval_s if interval_s > 0 else core.config.backoff_max_s)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.core.heartbeat_interval_s())
            self.post(Msg(action="Heartbeat", payload={}))

    async def _sender(self, handler: Any) -> None:
        loop = asyncio.get_running_loop()
        outbox = self.core.outbox
        while True:
            if self._direct:
                item = self._direct.popleft()
                await self._send_direct(handler, item)
                continue
            head = outbox.head()
            if head is not None and loop.time() >= self._retry_at:
                await self._send_queued(handler)
                continue
            self._wake.clear()
            timeout = None if head is None else max(0.0, self._retry_at - loop.time())
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event fires, and the sender would then outlive its connection.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _send_direct(self, handler: Any, item: _Direct) -> None:
        try:
            result = await self._call(handler, item.msg.action, item.msg.payload)
        except CallFailedError as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            return
        except asyncio.CancelledError:
            item.future.cancel()
            raise
        if not item.future.done():
            item.future.set_result(result)

    async def _send_queued(self, handler: Any) -> None:
        core = self.core
        outbox = core.outbox
        item = outbox.head()
        assert item is not None
        payload = outbox.resolve(item)
        if payload is None:
            outbox.pop_dropped(item, "its StartTransaction was never answered")
            return
        item.attempts += 1
        try:
            result = await self._call(handler, item.action, payload)
        except CallFailedError as exc:
            limit = int(core.configuration["TransactionMessageAttempts"].value)
            if item.attempts >= max(1, limit):
                outbox.pop_dropped(item, exc.reason)
                self._retry_at = 0.0
            else:
                interval = core.config.transaction_message_retry_interval_s
                if "TransactionMessageRetryInterval" in core.changed_keys:
                    interval = float(core.configuration["TransactionMessageRetryInterval"].value)
                self._retry_at = asyncio.get_running_loop().time() + interval * item.attempts
            return
        except asyncio.CancelledError:
            item.attempts -= 1  # the link went away: not the cloud refusing the message
            raise
        outbox.pop_delivered(item)
        self._retry_at = 0.0
        try:
            core.dialect.delivered(core, item.action, item.local_tx, result)
        except Exception as exc:
            core.record_error(f"handling the answer to {item.action}: {exc!r}")
