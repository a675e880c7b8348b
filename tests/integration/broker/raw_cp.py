"""A bare OCPP-J charge point for broker tests: raw frames in and out, nothing hidden.

It answers CALLs from the edge with ``answers[action]`` (a payload, or a callable taking the
request payload) and records them; results of its own calls are matched by message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from drivers.ocpp.upstream import basic_authorization

Answer = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


class RawChargePoint:
    def __init__(self, cp_id: str, *, version: str = "ocpp1.6") -> None:
        self.cp_id = cp_id
        self.version = version
        self.ws: ClientConnection | None = None
        self.ids = itertools.count(1)
        self.waiting: dict[str, asyncio.Future[list[Any]]] = {}
        self.received_calls: list[list[Any]] = []
        self.received_texts: list[str] = []  # each CALL's frame as it came on the wire
        self.other_frames: asyncio.Queue[str] = asyncio.Queue()
        self.answers: dict[str, Answer] = {}
        self.reader: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[tuple[int | None, str]] | None = None

    async def connect(self, base_url: str, *, password: str | None = None) -> RawChargePoint:
        headers = {}
        if password is not None:
            headers["Authorization"] = basic_authorization(self.cp_id, password)
        self.ws = await connect(
            f"{base_url}/{self.cp_id}",
            subprotocols=[self.version],  # type: ignore[list-item]
            additional_headers=headers,
            open_timeout=5,
            max_size=None,
        )
        self.closed = asyncio.get_running_loop().create_future()
        self.reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        assert self.closed is not None
        try:
            async for text in self.ws:
                try:
                    frame = orjson.loads(text)
                except orjson.JSONDecodeError:
                    await self.other_frames.put(str(text))
                    continue
                if isinstance(frame, list) and frame and frame[0] in (3, 4):
                    fut = self.waiting.pop(frame[1], None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                        continue
                if isinstance(frame, list) and frame and frame[0] == 2:
                    self.received_calls.append(frame)
                    self.received_texts.append(str(text))
                    answer = self.answers.get(frame[2])
                    if answer is not None:
                        payload = answer(frame[3]) if callable(answer) else answer
                        await self.ws.send(orjson.dumps([3, frame[1], payload]).decode())
                    continue
                await self.other_frames.put(str(text))
        except ConnectionClosed:
            pass
        finally:
            if not self.closed.done():
                self.closed.set_result((self.ws.close_code, self.ws.close_reason or ""))

    async def call(
        self, action: str, payload: dict[str, Any], *, timeout_s: float = 10.0
    ) -> list[Any]:
        message_id = f"m{next(self.ids)}"
        return await self.send_frame(
            [2, message_id, action, payload], message_id, timeout_s=timeout_s
        )

    async def send_frame(
        self, frame: list[Any], message_id: str, *, timeout_s: float = 10.0
    ) -> list[Any]:
        assert self.ws is not None
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.waiting[message_id] = fut
        await self.ws.send(orjson.dumps(frame).decode())
        return await asyncio.wait_for(fut, timeout_s)

    async def send_text(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send(text)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
