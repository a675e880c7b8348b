"""The upstream client against tiny real servers on 127.0.0.1: success and each failure kind."""

from __future__ import annotations

import asyncio
import http
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import LinkClosed
from drivers.ocpp.server import tls_server_context
from drivers.ocpp.upstream import (
    ConnectFailed,
    ConnectTimeout,
    Forbidden,
    HandshakeFailed,
    HandshakeRejected,
    SubprotocolRefused,
    TlsFailed,
    Unauthorized,
    UnknownIdentity,
    Unreachable,
    basic_authorization,
    connect_upstream,
)
from drivers.ports import free_tcp_port
from tests.helpers import timeout_s
from tests.integration.ocpp_drivers.conftest import TlsFiles


class TinyCloud:
    """A websocket server that records what it was asked and answers as told."""

    def __init__(self, *, status: int = 101, subprotocols: Sequence[str] = ("ocpp1.6",)) -> None:
        self.status = status
        self.subprotocols = [Subprotocol(s) for s in subprotocols]
        self.paths: list[str] = []
        self.authorizations: list[str | None] = []
        self.received: list[str] = []

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.paths.append(request.path)
        self.authorizations.append(request.headers.get("Authorization"))
        if self.status != 101:
            return connection.respond(http.HTTPStatus(self.status), "no\n")
        return None

    def select(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        return next((s for s in offered if s in self.subprotocols), None)

    async def handler(self, connection: ServerConnection) -> None:
        async for message in connection:
            assert isinstance(message, str)
            self.received.append(message)
            await connection.send(f'[3,"{message}",{{}}]')


StartCloud = Callable[..., Awaitable[str]]


@pytest.fixture
async def cloud_factory() -> AsyncIterator[StartCloud]:
    servers = []

    async def start(cloud: TinyCloud, **kwargs: object) -> str:
        server = await serve(
            cloud.handler,
            "127.0.0.1",
            0,
            process_request=cloud.process_request,
            select_subprotocol=cloud.select,
            **kwargs,  # type: ignore[arg-type]
        )
        servers.append(server)
        scheme = "wss" if kwargs.get("ssl") else "ws"
        return f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}/csms/ocpp"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_connects_with_identity_subprotocol_and_credentials(
    cloud_factory: StartCloud,
) -> None:
    cloud = TinyCloud(subprotocols=["ocpp2.0.1"])
    base = await cloud_factory(cloud)
    connection = await connect_upstream(
        base + "/",
        "RDAM 123",
        OcppVersion.V201,
        password="secret-secret-16",
        open_timeout_s=timeout_s(5),
    )
    try:
        assert (connection.charge_point_id, connection.ocpp_version) == (
            "RDAM 123",
            OcppVersion.V201,
        )
        await connection.send("m1")
        assert await connection.recv() == '[3,"m1",{}]'
        assert cloud.paths == ["/csms/ocpp/RDAM%20123"]
        assert cloud.authorizations == [basic_authorization("RDAM 123", "secret-secret-16")]
    finally:
        await connection.close()
    assert connection.closed
    assert connection.close_code == 1000
    with pytest.raises(LinkClosed):
        await connection.send("after close")


async def test_no_credentials_sends_no_authorization(cloud_factory: StartCloud) -> None:
    cloud = TinyCloud()
    base = await cloud_factory(cloud)
    connection = await connect_upstream(base, "CP1", OcppVersion.V16)
    await connection.close()
    assert cloud.authorizations == [None]


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        pytest.param(401, Unauthorized, id="401"),
        pytest.param(403, Forbidden, id="403"),
        pytest.param(404, UnknownIdentity, id="404"),
        pytest.param(503, HandshakeRejected, id="503"),
    ],
)
async def test_http_refusals(
    cloud_factory: StartCloud, status: int, exc: type[HandshakeRejected]
) -> None:
    base = await cloud_factory(TinyCloud(status=status))
    with pytest.raises(exc) as caught:
        await connect_upstream(base, "CP1", OcppVersion.V16, password="secret-secret-16")
    assert type(caught.value) is exc
    assert caught.value.status_code == status
    assert "secret" not in str(caught.value)


async def test_subprotocol_refused(cloud_factory: StartCloud) -> None:
    cloud = TinyCloud(subprotocols=["ocpp2.0.1"])
    base = await cloud_factory(cloud)
    with pytest.raises(SubprotocolRefused):
        await connect_upstream(base, "CP1", OcppVersion.V16)


async def test_refused_port_is_unreachable() -> None:
    port = free_tcp_port()  # free a moment ago, no listener
    with pytest.raises(Unreachable):
        await connect_upstream(f"ws://127.0.0.1:{port}/ocpp", "CP1", OcppVersion.V16)


async def test_silent_server_times_out() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectTimeout):
            await connect_upstream(
                f"ws://127.0.0.1:{port}/ocpp", "CP1", OcppVersion.V16, open_timeout_s=0.2
            )
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_tls_verified_and_refused(cloud_factory: StartCloud, tls_files: TlsFiles) -> None:
    context = tls_server_context(tls_files.cert, tls_files.key)
    base = await cloud_factory(TinyCloud(), ssl=context)
    connection = await connect_upstream(
        base, "CP1", OcppVersion.V16, ssl_context=tls_files.client_context()
    )
    await connection.send("m1")
    assert await connection.recv() == '[3,"m1",{}]'
    await connection.close()
    with pytest.raises(TlsFailed):  # the system roots do not trust a self-signed certificate
        await connect_upstream(base, "CP1", OcppVersion.V16)


async def test_bad_url() -> None:
    with pytest.raises(HandshakeFailed):
        await connect_upstream("http://127.0.0.1:1/ocpp", "CP1", OcppVersion.V16)


async def test_errors_never_show_credentials_from_the_url() -> None:
    with pytest.raises(ConnectFailed) as caught:
        await connect_upstream("ws://user:hunter2@127.0.0.1:1/ocpp", "CP1", OcppVersion.V16)
    assert "hunter2" not in str(caught.value)
    assert caught.value.url == "ws://127.0.0.1:1/ocpp/CP1"
