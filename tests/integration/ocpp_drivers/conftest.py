"""Fixtures for the OCPP websocket tests: a self-signed certificate, a recording handler, a
listener on a free loopback port."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import LinkClosed, OcppConnection
from drivers.ocpp.server import ChargePointAccess, ListenerOptions, OcppListener
from tests.helpers import timeout_s


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    cert: str
    key: str

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    folder: Path = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return TlsFiles(cert=str(cert), key=str(key))


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
