"""Fixtures for the OCPP websocket tests: a self-signed certificate, a recording handler, a
listener on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import LinkClosed, OcppConnection
from drivers.ocpp.server import ChargePointAccess, ListenerOptions, OcppListener
from tests.helpers import timeout_s
from tests.tls_files import TlsFiles, self_signed


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@dataclass(slots=True)
class Echo:
    """An on_connect handler that records each connection and echoes its frames back."""

    connections: list[OcppConnection] = field(default_factory=list)
    closes: list[LinkClosed] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)

    async def __call__(self, connection: OcppConnection) -> None:
        self.connections.append(connection)
        try:
            while True:
                text = await connection.recv()
                self.frames.append(text)
                await connection.send(text)
        except LinkClosed as exc:
            self.closes.append(exc)


@pytest.fixture
def echo() -> Echo:
    return Echo()


PASSWORD = "0123456789abcdef0123"
KNOWN: dict[str, ChargePointAccess] = {
    "CP1": ChargePointAccess(password=PASSWORD),
    "RDAM 123": ChargePointAccess(password=PASSWORD),
    "CP16": ChargePointAccess(password=PASSWORD, ocpp_versions=(OcppVersion.V16,)),
}


def lookup(charge_point_id: str) -> ChargePointAccess | None:
    return KNOWN.get(charge_point_id)


Listen = Callable[..., Awaitable[OcppListener]]


@pytest.fixture
async def listen(echo: Echo) -> AsyncIterator[Listen]:
    started: list[OcppListener] = []

    async def start(**options: object) -> OcppListener:
        listener = OcppListener(echo, lookup, ListenerOptions(**options))  # type: ignore[arg-type]
        await listener.start()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        await listener.stop()


def url(listener: OcppListener, identity: str = "CP1", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{listener.port}/ocpp/{identity}"


def open_client(target: str, *protocols: str, **kwargs: object) -> connect:
    return connect(
        target,
        subprotocols=[Subprotocol(p) for p in protocols] or None,
        open_timeout=timeout_s(5),
        **kwargs,  # type: ignore[arg-type]
    )
