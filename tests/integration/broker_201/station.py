"""A simulated 2.0.1 station whose every frame on the wire is recorded, for raw comparisons.

The recording wraps the websocket below the ``ocpp`` package (the outermost seam): it changes
nothing, it keeps the exact text of each frame the station sent.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from sim.charge_point import SimChargePoint
from sim.cp_config import ChargePointConfig
from sim.cp_session import Session


class _RecordingSocket:
    def __init__(self, ws: ClientConnection, sent: list[str]) -> None:
        self.ws = ws
        self.sent = sent

    async def recv(self) -> str | bytes:
        return await self.ws.recv()

    async def send(self, message: str) -> None:
        await self.ws.send(message)
        self.sent.append(message)


class RecordingSession(Session):
    def __init__(self, core: SimChargePoint) -> None:
        super().__init__(core)
        self.sent: list[str] = []

    async def _session(self, ws: ClientConnection) -> None:
        await super()._session(_RecordingSocket(ws, self.sent))  # type: ignore[arg-type]


def recording_station(url: str, cp_id: str, **over: Any) -> SimChargePoint:
    config = ChargePointConfig(
        charge_point_id=cp_id,
        url=url,
        protocol="ocpp2.0.1",
        meter_interval_s=0.1,
        tick_s=0.02,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        response_timeout_s=5.0,
        transaction_message_retry_interval_s=0.05,
        ping_interval_s=None,
    )
    cp = SimChargePoint(dataclasses.replace(config, **over))
    cp.session = RecordingSession(cp)
    return cp


def sent_calls(cp: SimChargePoint, action: str) -> list[list[Any]]:
    """Every CALL of ``action`` the station put on the wire, in order, retries included."""
    session = cp.session
    assert isinstance(session, RecordingSession)
    frames = [orjson.loads(text) for text in session.sent]
    return [f for f in frames if f[0] == 2 and f[2] == action]
