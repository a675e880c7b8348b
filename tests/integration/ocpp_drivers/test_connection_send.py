"""OcppConnection.send on real sockets: its direct write for an open socket with room in its
buffer (drivers/ocpp/connection.py) keeps websockets' order, back-pressure and close errors, with
the frames written as they are (no extension) and through websockets' Protocol (a charge point
that negotiated permessage-deflate)."""

from __future__ import annotations

import asyncio
import gc
import random
import socket
import weakref

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode

from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import LinkClosed, text_frame_header
from drivers.ocpp.server import ListenerOptions, OcppListener, tls_server_context
from drivers.ocpp.upstream import basic_authorization, connect_upstream
from tests.helpers import timeout_s, wait_for
from tests.integration.ocpp_drivers.conftest import (
    PASSWORD,
    Echo,
    Listen,
    TlsFiles,
    lookup,
    open_client,
    url,
)


def frame(i: int, size: int = 100) -> str:
    """A frame of about ``size`` bytes that does not compress (permessage-deflate)."""
    head = f'[2,"{i}","DataTransfer",{{"data":"'
    body = random.Random(i).randbytes(max(0, size - len(head) - 3) // 2 + 1).hex()
    return head + body[: max(0, size - len(head) - 3)] + '"}]'


COMPRESSION = pytest.mark.parametrize("compression", [None, "deflate"])


@COMPRESSION
@pytest.mark.parametrize("secure", [False, True])
async def test_frames_arrive_whole_and_in_order(
    listen: Listen, echo: Echo, tls_files: TlsFiles, secure: bool, compression: str | None
) -> None:
    """Sizes across the frame's length encodings (7 bit, 16 bit, 64 bit), plain and over TLS."""
    if secure:
        context = tls_server_context(tls_files.cert, tls_files.key)
        listener = await listen(
            security_profile=2, ssl_context=context, compression=compression is not None
        )
        client = open_client(
            url(listener, scheme="wss"),
            "ocpp1.6",
            ssl=tls_files.client_context(),
            additional_headers={"Authorization": basic_authorization("CP1", PASSWORD)},
            compression=compression,
        )
    else:
        listener = await listen(compression=compression is not None)
        client = open_client(url(listener), "ocpp1.6", compression=compression)
    sizes = [10, 125, 126, 1000, 65535, 65536, 200_000] * 20
    async with client as ws:
        await wait_for(lambda: len(echo.connections) == 1, what="the connection")
        (server,) = echo.connections
        assert server._plain_frames is (compression is None)  # the path under test

        # Read while the frames are written: 6.7 MB do not always fit in the sockets' buffers
        # (seen over TLS in a fresh clone's run), and a client that does not read would hold the
        # writer up until the keepalive closed the link.
        async def read_all() -> list[str]:
            return [await asyncio.wait_for(ws.recv(), timeout_s(5)) for _ in sizes]

        reader = asyncio.create_task(read_all())
        for i, size in enumerate(sizes):
            await server.send(frame(i, size))
        got = await asyncio.wait_for(reader, timeout_s(30))
    assert got == [frame(i, size) for i, size in enumerate(sizes)]


@COMPRESSION
async def test_send_waits_while_the_peer_does_not_read(
    listen: Listen, echo: Echo, compression: str | None
) -> None:
    """A charge point that stops reading: its socket's buffer stays bounded (send waits, as
    websockets' own send does), and every frame arrives once it reads again."""
    listener = await listen(compression=compression is not None)
    # Small kernel buffers, set before the connection opens (loopback's autotuning takes up to
    # 32 MB before the sender has to wait).
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", listener.port))
    async with open_client(
        url(listener), "ocpp1.6", max_queue=1, sock=sock, compression=compression
    ) as ws:
        await wait_for(lambda: len(echo.connections) == 1, what="the connection")
        (server,) = echo.connections
        transport = server._ws.transport
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        blocked: asyncio.Task[None] | None = None
        sent = 0
        for i in range(1000):  # 16 MB at most
            task = asyncio.create_task(server.send(frame(i, 16_000)))
            sent += 1
            done, _ = await asyncio.wait({task}, timeout=timeout_s(0.3))
            if not done:
                blocked = task
                break
        assert blocked is not None, f"{sent} frames of 16 kB written and send never waited"
        assert transport.get_write_buffer_size() <= 64 * 1024 + 16_000
        for i in range(sent):
            assert await asyncio.wait_for(ws.recv(), timeout_s(5)) == frame(i, 16_000)
        await asyncio.wait_for(blocked, timeout_s(5))


@COMPRESSION
async def test_send_after_the_peer_closed_raises_link_closed(
    listen: Listen, echo: Echo, compression: str | None
) -> None:
    listener = await listen(compression=compression is not None)
    async with open_client(url(listener), "ocpp1.6", compression=compression) as ws:
        await wait_for(lambda: len(echo.connections) == 1, what="the connection")
        (server,) = echo.connections
        await server.send(frame(1))
        assert await ws.recv() == frame(1)
    await wait_for(lambda: server.closed, what="the server side to see the close")
    with pytest.raises(LinkClosed) as caught:
        await server.send(frame(2))
    assert caught.value.code == 1000


@pytest.mark.parametrize("accept", [False, True])
async def test_permessage_deflate_only_when_configured(
    listen: Listen, echo: Echo, accept: bool
) -> None:
    """websockets' client offers permessage-deflate, as many charge points' do: the listener
    declines it ([listener] compression = "off", the default) and the frames go plain, or
    accepts it when configured."""
    listener = await listen(compression=True) if accept else await listen()
    async with open_client(url(listener), "ocpp1.6", compression="deflate") as ws:
        await wait_for(lambda: len(echo.connections) == 1, what="the connection")
        (server,) = echo.connections
        negotiated = [e.name for e in ws.protocol.extensions]
        assert negotiated == (["permessage-deflate"] if accept else [])
        assert server._plain_frames is not accept
        await server.send(frame(1))
        assert await ws.recv() == frame(1)


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 1 << 20])
def test_the_header_is_websockets_own(length: int) -> None:
    data = b"x" * length
    assert text_frame_header(length) + data == Frame(Opcode.TEXT, data).serialize(mask=False)


@COMPRESSION
async def test_the_cloud_side_sends_masked_frames(compression: str | None) -> None:
    """The edge as a client (its session to the cloud) must mask every frame: websockets' own
    path. The cloud's websockets server fails the connection on an unmasked one."""
    got: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            got.append(str(message))

    async with serve(
        handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"], compression=compression
    ) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await connect_upstream(f"ws://127.0.0.1:{port}/", "CP1", OcppVersion.V16)
        assert not conn._plain_frames
        frames = [frame(i, size) for i, size in enumerate([10, 126, 70_000] * 3)]
        for text in frames:
            await conn.send(text)
        await wait_for(lambda: len(got) == len(frames) or conn.closed, what="every frame")
        assert got == frames
        await conn.close(1000, "done")


async def test_a_frame_held_to_the_end_of_the_turn_goes_before_a_close(
    listen: Listen, echo: Echo
) -> None:
    """A plain frame is written at the end of the loop's turn (drivers/ocpp/connection.py:
    _Held), not when send returns; a close right after it still comes after it on the wire, and
    what waits for the write (when_written) runs once it is written."""
    listener = await listen()
    async with open_client(url(listener), "ocpp1.6") as ws:
        await wait_for(lambda: len(echo.connections) == 1, what="the connection")
        (server,) = echo.connections
        written: list[int] = []
        await server.send(frame(1))
        server.when_written(written.append, 1)
        assert written == [], "held to the end of the turn"
        await asyncio.sleep(0)
        assert written == [1]
        assert await asyncio.wait_for(ws.recv(), timeout_s(5)) == frame(1)
        await server.send(frame(2))
        server.when_written(written.append, 2)
        await server.close(4000, "after the frame")
        assert written == [1, 2]
        assert await asyncio.wait_for(ws.recv(), timeout_s(5)) == frame(2)
        await asyncio.wait_for(ws.wait_closed(), timeout_s(5))
        assert ws.close_code == 4000


@pytest.mark.parametrize(
    "opcode", [pytest.param(Opcode.TEXT, id="text"), pytest.param(Opcode.BINARY, id="binary")]
)
async def test_a_frame_held_to_the_end_of_the_turn_goes_before_the_close_for_bad_utf8(
    listen: Listen, echo: Echo, opcode: Opcode
) -> None:
    """A charge point's frame, then one that is not UTF-8, read in one turn: the echo of the
    first is held to the end of the turn when reading the second closes the link (1007: ours
    for a binary frame, websockets' for a text one); it goes before the close, as before a
    close through OcppConnection.close."""
    listener = await listen()
    async with open_client(url(listener), "ocpp1.6") as ws:
        await wait_for(lambda: len(echo.connections) == 1, what="the connection")
        # Both written in this step, so the listener reads them in one turn (loopback).
        await ws.send(frame(1))
        ws.protocol.send_frame(Frame(opcode, b"\xff\xfe"))
        ws.send_data()
        assert await asyncio.wait_for(ws.recv(), timeout_s(5)) == frame(1)
        await asyncio.wait_for(ws.wait_closed(), timeout_s(5))
    assert ws.close_code == 1007
    assert echo.frames == [frame(1)]


def test_an_event_loop_that_held_frames_is_freed_once_closed() -> None:
    """The frames held per event loop (drivers/ocpp/connection.py: _Held) do not keep a closed
    loop alive, with what it references."""

    async def exchange() -> weakref.ref[asyncio.AbstractEventLoop]:
        echo = Echo()
        listener = OcppListener(echo, lookup, ListenerOptions())
        await listener.start()
        try:
            async with open_client(url(listener), "ocpp1.6") as ws:
                await ws.send(frame(1))  # echoed through a held frame
                assert await asyncio.wait_for(ws.recv(), timeout_s(5)) == frame(1)
        finally:
            await listener.stop()
        return weakref.ref(asyncio.get_running_loop())

    loop = asyncio.run(exchange())
    gc.collect()
    assert loop() is None
