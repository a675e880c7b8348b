"""Broker shards: the front passes a charge point's connection, before its handshake, to the
node that serves it (drivers/ocpp/handover.py). The other node is a real process; the sockets
are real (loopback TCP, a Unix socket with SCM_RIGHTS)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from websockets.exceptions import InvalidStatus

from drivers.ocpp.connection import format_address
from drivers.ocpp.handover import Relay, request_target
from drivers.ocpp.server import ListenerOptions, OcppListener, Route, tls_server_context
from drivers.ocpp.upstream import basic_authorization
from tests.helpers import timeout_s, wait_for
from tests.integration.ocpp_drivers import shard_peer
from tests.integration.ocpp_drivers.conftest import (
    PASSWORD,
    Echo,
    TlsFiles,
    lookup,
    open_client,
    url,
)


@pytest.fixture
def peer_path(tmp_path: Path) -> Iterator[Path]:
    """A node process serving what is handed to ``tmp_path/peer.sock``."""
    path = tmp_path / "peer.sock"
    proc = shard_peer.spawn(path)
    try:
        yield path
    finally:
        shard_peer.stop(proc, timeout_s(10))


@pytest.fixture
async def front(echo: Echo, peer_path: Path) -> AsyncIterator[OcppListener]:
    """The front: charge points whose id starts with "X" are the peer's, the rest its own."""

    def route(charge_point_id: str) -> Path | None:
        return peer_path if charge_point_id.startswith("X") else None

    listener = OcppListener(
        echo, lookup, ListenerOptions(security_profile=1, open_timeout_s=timeout_s(2)), route=route
    )
    await listener.start()
    yield listener
    await listener.stop()


async def refused_with(
    front: OcppListener, cp_id: str, scheme: str = "ws", **kwargs: object
) -> int:
    """The HTTP status that refuses ``cp_id``'s handshake through ``front`` (fails if none)."""
    with pytest.raises(InvalidStatus) as refused:
        async with open_client(url(front, cp_id, scheme=scheme), "ocpp1.6", **kwargs):
            pass
    return refused.value.response.status_code


def auth(identity: str) -> dict[str, object]:
    return {"additional_headers": {"Authorization": basic_authorization(identity, PASSWORD)}}


async def test_the_front_serves_its_own_charge_points(front: OcppListener, echo: Echo) -> None:
    async with open_client(url(front, "CP1"), "ocpp1.6", **auth("CP1")) as ours:
        await ours.send('[2,"1","Heartbeat",{}]')
        assert await ours.recv() == '[2,"1","Heartbeat",{}]'  # the front's own echo
    assert [c.charge_point_id for c in echo.connections] == ["CP1"]
    assert front.handed_over == 0


async def test_the_handshake_runs_in_the_node_it_was_handed_to(
    front: OcppListener, echo: Echo
) -> None:
    # "XCP1" is the peer's; the peer looks it up in its own table, where it is unknown: the 404
    # comes from the peer (the front hands X ids over without looking them up).
    assert await refused_with(front, "XCP1", **auth("XCP1")) == 404
    assert front.handed_over == 1
    assert echo.connections == []


async def test_frames_flow_through_the_node_it_was_handed_to(
    tmp_path: Path, echo: Echo, peer_path: Path
) -> None:
    """Every id routed to the peer: its frames are answered by the peer's process, both ways,
    for several charge points at once."""
    front = OcppListener(
        echo,
        lookup,
        ListenerOptions(security_profile=1, open_timeout_s=timeout_s(2)),
        route=lambda cp: peer_path,
    )
    await front.start()
    try:
        ids = ["CP1", "RDAM 123", "CP16"]

        async def session(identity: str) -> list[dict[str, object]]:
            quoted = identity.replace(" ", "%20")
            async with open_client(url(front, quoted), "ocpp1.6", **auth(identity)) as ws:
                got = []
                for n in range(3):
                    await ws.send(f'[2,"{n}","Heartbeat",{{}}]')
                    got.append(orjson.loads(await ws.recv()))
                return got

        answers = await asyncio.gather(*(session(i) for i in ids))
        for identity, got in zip(ids, answers, strict=True):
            assert [a["id"] for a in got] == [identity] * 3
            assert [a["frame"] for a in got] == [f'[2,"{n}","Heartbeat",{{}}]' for n in range(3)]
            assert {a["pid"] for a in got} != {os.getpid()}
        assert front.handed_over == 3
        assert echo.connections == []
    finally:
        await front.stop()


async def test_bad_credentials_are_refused_by_the_serving_node(
    tmp_path: Path, echo: Echo, peer_path: Path
) -> None:
    front = OcppListener(
        echo, lookup, ListenerOptions(security_profile=1), route=lambda cp: peer_path
    )
    await front.start()
    try:
        assert await refused_with(front, "CP1") == 401
        assert front.handed_over == 1
    finally:
        await front.stop()


async def test_a_request_line_in_pieces_is_routed(front: OcppListener, echo: Echo) -> None:
    """The front peeks until the request line is complete; the handshake sees every byte."""
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", front.port))
    sock.setblocking(False)
    try:
        request = (
            b"GET /ocpp/XCP1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        )
        await loop.sock_sendall(sock, request[:9])  # "GET /ocpp"
        await asyncio.sleep(0.05)  # the rest comes in another segment, later
        await loop.sock_sendall(sock, request[9:])
        async with asyncio.timeout(timeout_s(5)):
            answer = await loop.sock_recv(sock, 4096)
        # The peer looked XCP1 up (unknown there): its 404, not the front's.
        assert answer.startswith(b"HTTP/1.1 404"), answer
        assert front.handed_over == 1
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        pytest.param(b"GET /other/XCP1 HTTP/1.1", b"404", id="outside-the-prefix"),
        pytest.param(b"GET /ocpp/X/Y HTTP/1.1", b"400", id="bad-identity"),
        # not routed: the front's own handshake looks the id up (unknown to the front)
        pytest.param(b"POST /ocpp/XCP1 HTTP/1.1", b"404", id="not-a-get"),
    ],
)
async def test_what_is_not_an_ocpp_request_is_answered_by_the_front(
    front: OcppListener, request_line: bytes, status: bytes
) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", front.port))
    sock.setblocking(False)
    try:
        await loop.sock_sendall(
            sock,
            request_line + b"\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        async with asyncio.timeout(timeout_s(5)):
            answer = await loop.sock_recv(sock, 4096)
        assert answer.split(b" ")[1] == status, answer
        assert front.handed_over == 0
    finally:
        sock.close()


async def test_a_node_that_is_not_there_gets_a_503(tmp_path: Path, echo: Echo) -> None:
    front = OcppListener(
        echo, lookup, ListenerOptions(security_profile=1), route=lambda cp: tmp_path / "gone.sock"
    )
    await front.start()
    try:
        assert await refused_with(front, "CP1", **auth("CP1")) == 503
        assert front.handover_failed == 1
        assert echo.connections == []
    finally:
        await front.stop()


async def test_a_request_target_with_a_newline_stays_on_its_log_line(
    tmp_path: Path, echo: Echo, caplog: pytest.LogCaptureFixture
) -> None:
    front = OcppListener(echo, lookup, ListenerOptions(), route=lambda cp: tmp_path / "gone.sock")
    await front.start()
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", front.port))
    sock.setblocking(False)
    try:
        # A bare LF inside the request line (only CRLF ends it), in the query the id ignores.
        await loop.sock_sendall(sock, b"GET /ocpp/CP1?a\nforged-line HTTP/1.1\r\n\r\n")
        async with asyncio.timeout(timeout_s(5)):
            assert (await loop.sock_recv(sock, 100)).startswith(b"HTTP/1.1 503")
        assert front.handover_failed == 1
    finally:
        sock.close()
        await front.stop()
    lines = [r.getMessage() for r in caplog.records if "forged-line" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]


async def test_a_silent_connection_is_closed_after_the_open_timeout(
    tmp_path: Path, echo: Echo
) -> None:
    front = OcppListener(
        echo,
        lookup,
        ListenerOptions(open_timeout_s=timeout_s(0.3)),
        route=lambda cp: tmp_path / "never.sock",
    )
    await front.start()
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", front.port))
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout_s(5)):
            assert await loop.sock_recv(sock, 10) == b""  # closed by the front, nothing sent
        assert front.handed_over == front.handover_failed == 0
    finally:
        sock.close()
        await front.stop()


async def test_request_target_waits_for_the_whole_line() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        peek = asyncio.ensure_future(request_target(a))
        b.sendall(b"GET /ocpp/CP")
        await asyncio.sleep(0.01)
        assert not peek.done()
        b.sendall(b"1 HTTP/1.1\r\nHost: x\r\n")
        async with asyncio.timeout(timeout_s(5)):
            assert await peek == "/ocpp/CP1"
        assert a.recv(100).startswith(b"GET /ocpp/CP1 HTTP/1.1\r\n")  # still there
    finally:
        a.close()
        b.close()


# -- TLS: the front ends it and relays the other node's charge points ----------------------------


async def start_tls_front(echo: Echo, tls_files: TlsFiles, route: Route) -> OcppListener:
    """A front behind TLS (security profile 2), started."""
    options = ListenerOptions(
        security_profile=2,
        ssl_context=tls_server_context(tls_files.cert, tls_files.key),
        open_timeout_s=timeout_s(2),
    )
    front = OcppListener(echo, lookup, options, route=route)
    await front.start()
    return front


@pytest.fixture
async def tls_front(
    echo: Echo, peer_path: Path, tls_files: TlsFiles
) -> AsyncIterator[OcppListener]:
    """:func:`front` behind TLS: the ids starting with "X" are the peer's."""
    listener = await start_tls_front(
        echo, tls_files, lambda cp: peer_path if cp.startswith("X") else None
    )
    yield listener
    await listener.stop()


def tls(tls_files: TlsFiles, identity: str) -> dict[str, object]:
    return {"ssl": tls_files.client_context(), **auth(identity)}


async def test_tls_the_front_serves_its_own_charge_points(
    tls_front: OcppListener, echo: Echo, tls_files: TlsFiles
) -> None:
    target = url(tls_front, "CP1", scheme="wss")
    async with open_client(target, "ocpp1.6", **tls(tls_files, "CP1")) as ours:
        await ours.send('[2,"1","Heartbeat",{}]')
        assert await ours.recv() == '[2,"1","Heartbeat",{}]'  # the front's own echo
        assert echo.connections[0].remote_address == format_address(ours.local_address)
    assert [c.charge_point_id for c in echo.connections] == ["CP1"]
    assert tls_front.handed_over == 0


async def test_tls_frames_flow_through_the_node_it_was_relayed_to(
    echo: Echo, peer_path: Path, tls_files: TlsFiles
) -> None:
    """Every id routed to the peer: the front ends TLS, the peer's process answers each frame
    (both ways, several charge points at once, a frame of 300 kB among them: more than the
    relay's buffers hold) and sees each charge point's own address."""
    front = await start_tls_front(echo, tls_files, lambda cp: peer_path)
    try:
        ids = ["CP1", "RDAM 123", "CP16"]
        big = "x" * 300_000

        async def session(identity: str) -> tuple[str, list[dict[str, object]]]:
            target = url(front, identity.replace(" ", "%20"), scheme="wss")
            async with open_client(target, "ocpp1.6", **tls(tls_files, identity)) as ws:
                got = []
                for n in range(3):
                    await ws.send(f'[2,"{n}","DataTransfer",{{"data":"{big if n == 1 else n}"}}]')
                    got.append(orjson.loads(await ws.recv()))
                return format_address(ws.local_address), got

        answers = await asyncio.gather(*(session(i) for i in ids))
        for identity, (local, got) in zip(ids, answers, strict=True):
            assert [a["id"] for a in got] == [identity] * 3
            assert [a["remote"] for a in got] == [local] * 3
            assert orjson.loads(str(got[1]["frame"]))[3]["data"] == big
            assert {a["pid"] for a in got} != {os.getpid()}
        assert (front.handed_over, front.relayed) == (3, 3)
        assert echo.connections == []
    finally:
        await front.stop()


async def test_tls_refusals_come_from_the_serving_node(
    echo: Echo, peer_path: Path, tls_files: TlsFiles
) -> None:
    front = await start_tls_front(echo, tls_files, lambda cp: peer_path)
    try:
        # unknown to the peer, then no credentials: both the peer's answers
        assert await refused_with(front, "NOPE", "wss", **tls(tls_files, "NOPE")) == 404
        assert await refused_with(front, "CP1", "wss", ssl=tls_files.client_context()) == 401
        assert front.relayed == 2
        # the peer closed each refused connection: the front's relays end with it
        await wait_for(lambda: front.relays_open == 0, what="the relays to end")
    finally:
        await front.stop()


async def test_tls_a_node_that_is_not_there_gets_a_503(
    tmp_path: Path, echo: Echo, tls_files: TlsFiles
) -> None:
    front = await start_tls_front(echo, tls_files, lambda cp: tmp_path / "gone.sock")
    try:
        assert await refused_with(front, "CP1", "wss", **tls(tls_files, "CP1")) == 503
        assert (front.handover_failed, front.relayed) == (1, 0)
    finally:
        await front.stop()


async def test_tls_the_charge_point_leaving_ends_its_relay(
    echo: Echo, peer_path: Path, tls_files: TlsFiles
) -> None:
    """A charge point of the peer disconnects: its relay ends (the front holds nothing of it);
    its next connection is relayed afresh. The listener stopping ends the relays it holds."""
    front = await start_tls_front(echo, tls_files, lambda cp: peer_path)
    try:
        target = url(front, "CP1", scheme="wss")
        for n in range(2):
            async with open_client(target, "ocpp1.6", **tls(tls_files, "CP1")) as ws:
                await ws.send(f'[2,"{n}","Heartbeat",{{}}]')
                assert orjson.loads(await ws.recv())["frame"] == f'[2,"{n}","Heartbeat",{{}}]'
                assert front.relays_open == 1
            await wait_for(lambda: front.relays_open == 0, what="the relays to end")
        assert front.relayed == 2
        async with open_client(target, "ocpp1.6", **tls(tls_files, "CP1")) as ws:
            await ws.send('[2,"9","Heartbeat",{}]')
            await ws.recv()
            await front.stop()
            async with asyncio.timeout(timeout_s(5)):
                await ws.wait_closed()
        assert front.relays_open == 0
    finally:
        await front.stop()


async def test_tls_what_is_not_tls_or_says_nothing_is_closed(
    tls_front: OcppListener, echo: Echo
) -> None:
    loop = asyncio.get_running_loop()
    for payload in (b"GET /ocpp/XCP1 HTTP/1.1\r\nHost: x\r\n\r\n", b""):
        sock = socket.create_connection(("127.0.0.1", tls_front.port))
        sock.setblocking(False)
        try:
            if payload:
                await loop.sock_sendall(sock, payload)  # plain HTTP to the TLS port
            async with asyncio.timeout(timeout_s(5)):
                while await loop.sock_recv(sock, 4096):  # a TLS alert at most, then closed
                    pass
        finally:
            sock.close()
    assert (tls_front.handed_over, tls_front.handover_failed) == (0, 0)
    assert echo.connections == []


async def test_tls_a_burst_of_connections_all_reach_their_node(
    tls_front: OcppListener, tls_files: TlsFiles
) -> None:
    ids = [f"X{n:04d}" for n in range(100)]
    statuses = await asyncio.gather(
        *(refused_with(tls_front, i, "wss", **tls(tls_files, i)) for i in ids)
    )
    assert set(statuses) == {404}
    assert (tls_front.relayed, tls_front.handover_failed) == (100, 0)


async def test_a_burst_of_connections_all_reach_their_node(front: OcppListener) -> None:
    """A site coming back: 200 charge points of the other node at once. Each handshake is
    answered by the peer (its 404: the ids are unknown there), none refused on the way (an
    AF_UNIX connect to a full backlog fails: the front bounds its hand-overs at once)."""

    ids = [f"X{n:04d}" for n in range(200)]
    statuses = await asyncio.gather(*(refused_with(front, i, **auth(i)) for i in ids))
    assert set(statuses) == {404}
    assert (front.handed_over, front.handover_failed) == (200, 0)


async def test_a_front_on_an_ipv6_address(echo: Echo, peer_path: Path) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    front = OcppListener(
        echo,
        lookup,
        ListenerOptions(host="::1", security_profile=1),
        route=lambda cp: peer_path,
    )
    await front.start()
    try:
        assert front.bound_addresses == ["::1"]
        target = f"ws://[::1]:{front.port}/ocpp/CP1"
        async with open_client(target, "ocpp1.6", **auth("CP1")) as ws:
            await ws.send('[2,"1","Heartbeat",{}]')
            assert orjson.loads(await ws.recv())["id"] == "CP1"  # the peer's answer
        assert front.handed_over == 1
    finally:
        await front.stop()


async def test_a_relay_holds_back_what_the_other_side_cannot_take() -> None:
    """Relay flow control: while one side does not read, the relay stops reading the other
    (nothing piles up in the front's memory); once it reads, every byte arrives, in order."""
    loop = asyncio.get_running_loop()
    a_far, a_near = socket.socketpair()
    b_near, b_far = socket.socketpair()
    for s in (a_far, a_near, b_near, b_far):
        s.setblocking(False)
    from_a, to_b = Relay(), Relay()
    ta, _ = await loop.connect_accepted_socket(lambda: from_a, a_near)
    tb, _ = await loop.connect_accepted_socket(lambda: to_b, b_near)
    assert isinstance(ta, asyncio.Transport)
    assert isinstance(tb, asyncio.Transport)
    from_a.other, to_b.other = tb, ta
    data = os.urandom(8 << 20)
    sender = asyncio.ensure_future(loop.sock_sendall(a_far, data))
    try:
        # b_far reads nothing: the relay's write buffer towards it fills, it stops reading a
        await wait_for(lambda: not ta.is_reading(), what="the relay to stop reading a")
        assert tb.get_write_buffer_size() < 1 << 20  # bounded, not the 8 MiB sent
        got = bytearray()
        async with asyncio.timeout(timeout_s(20)):
            while len(got) < len(data):
                got += await loop.sock_recv(b_far, 1 << 16)
            await sender
        assert bytes(got) == data
        assert ta.is_reading()
        a_far.close()  # one side ends: the relay closes the other
        async with asyncio.timeout(timeout_s(5)):
            assert await loop.sock_recv(b_far, 10) == b""
    finally:
        sender.cancel()
        for t in (ta, tb):
            t.close()
        for s in (a_far, b_far):
            s.close()


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        pytest.param(b"GET /other/XCP1 HTTP/1.1", b"404", id="outside-the-prefix"),
        pytest.param(b"POST /ocpp/XCP1 HTTP/1.1", b"404", id="not-a-get"),
        pytest.param(None, None, id="silent-after-the-tls-handshake"),
    ],
)
async def test_tls_what_is_not_an_ocpp_request_is_answered_or_closed_by_the_front(
    tls_front: OcppListener, tls_files: TlsFiles, request_line: bytes | None, status: bytes | None
) -> None:
    """Over TLS as without it: the front's own handshake answers what it cannot route; a
    connection that completes its TLS handshake and says nothing is closed after the open
    timeout. Nothing is relayed."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", tls_front.port, ssl=tls_files.client_context()
    )
    try:
        if request_line is not None:
            writer.write(
                request_line + b"\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
        async with asyncio.timeout(timeout_s(10)):
            answer = await reader.read(4096)
        if status is None:
            assert answer == b""  # closed by the front, nothing sent
        else:
            assert answer.split(b" ")[1] == status, answer
        assert (tls_front.handed_over, tls_front.relayed) == (0, 0)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
