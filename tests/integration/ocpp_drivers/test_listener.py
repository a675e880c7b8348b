"""The OCPP listener on a real socket: handshake decisions, limits, link quality, secrets."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.server import (
    ListenerOptions,
    RefusalLog,
    tls_server_context,
)
from drivers.ocpp.upstream import Unauthorized, basic_authorization, connect_upstream
from tests.helpers import timeout_s, wait_for
from tests.integration.ocpp_drivers.conftest import (
    PASSWORD,
    Echo,
    Listen,
    TlsFiles,
    open_client,
    url,
)


async def test_binds_loopback_by_default(listen: Listen, echo: Echo) -> None:
    assert ListenerOptions().host == "127.0.0.1"
    listener = await listen()
    assert listener.bound_addresses == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("identity", "offered", "version"),
    [
        pytest.param("CP1", ["ocpp1.6"], OcppVersion.V16, id="1.6"),
        pytest.param("CP1", ["ocpp2.0.1"], OcppVersion.V201, id="2.0.1"),
        pytest.param("CP1", ["ocpp2.0.1", "ocpp1.6"], OcppVersion.V201, id="client-preference"),
        pytest.param("CP1", ["ocpp1.5", "ocpp1.6"], OcppVersion.V16, id="skips-unknown"),
        pytest.param("CP16", ["ocpp2.0.1", "ocpp1.6"], OcppVersion.V16, id="configured-version"),
        pytest.param("RDAM%20123", ["ocpp1.6"], OcppVersion.V16, id="percent-encoded-id"),
    ],
)
async def test_subprotocol_negotiation(
    listen: Listen,
    echo: Echo,
    identity: str,
    offered: list[str],
    version: OcppVersion,
) -> None:
    listener = await listen()
    async with open_client(url(listener, identity), *offered) as ws:
        assert ws.subprotocol == version.subprotocol
        await ws.send('[2,"1","Heartbeat",{}]')
        assert await ws.recv() == '[2,"1","Heartbeat",{}]'
    (connection,) = echo.connections
    assert connection.ocpp_version is version
    assert connection.charge_point_id == identity.replace("%20", " ")
    assert connection.remote_address.startswith("127.0.0.1:")
    assert not connection.auto_registered


@pytest.mark.parametrize(
    ("identity", "offered"),
    [
        pytest.param("CP1", ["ocpp1.5"], id="neither"),
        pytest.param("CP1", [], id="none-offered"),
        pytest.param("CP16", ["ocpp2.0.1"], id="not-the-configured-version"),
    ],
)
async def test_no_common_subprotocol_completes_then_closes(
    listen: Listen, echo: Echo, identity: str, offered: list[str]
) -> None:
    listener = await listen()
    async with open_client(url(listener, identity), *offered) as ws:
        assert ws.response is not None
        assert ws.response.status_code == 101
        assert "Sec-WebSocket-Protocol" not in ws.response.headers
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), timeout_s(5))
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1002
    assert "no OCPP subprotocol in common" in caught.value.rcvd.reason
    assert echo.connections == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/ocpp/CP9", 404, id="unknown-id"),
        pytest.param("/elsewhere/CP1", 404, id="wrong-prefix"),
        pytest.param("/ocpp/CP%3A1", 400, id="invalid-id"),
        pytest.param("/ocpp/", 400, id="empty-id"),
    ],
)
async def test_refused_paths(listen: Listen, echo: Echo, path: str, status: int) -> None:
    listener = await listen()
    with pytest.raises(InvalidStatus) as caught:
        async with open_client(f"ws://127.0.0.1:{listener.port}{path}", "ocpp1.6"):
            pass
    assert caught.value.response.status_code == status
    assert echo.connections == []


async def test_auto_register_accepts_unknown_ids(listen: Listen, echo: Echo) -> None:
    listener = await listen(auto_register=True)
    async with open_client(url(listener, "NEW-1"), "ocpp1.6") as ws:
        await ws.send("x")
        await ws.recv()
    (connection,) = echo.connections
    assert (connection.charge_point_id, connection.auto_registered) == ("NEW-1", True)


async def test_auto_register_does_not_bypass_authentication(listen: Listen, echo: Echo) -> None:
    listener = await listen(auto_register=True, security_profile=1)
    with pytest.raises(InvalidStatus) as caught:
        async with open_client(url(listener, "NEW-1"), "ocpp1.6"):
            pass
    assert caught.value.response.status_code == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"Authorization": basic_authorization("CP1", PASSWORD)}, 101, id="accepted"),
        pytest.param({}, 401, id="missing"),
        pytest.param(
            {"Authorization": basic_authorization("CP1", PASSWORD + "x")}, 401, id="wrong-password"
        ),
        pytest.param(
            {"Authorization": basic_authorization("CP2", PASSWORD)}, 401, id="user-not-identity"
        ),
        pytest.param(
            {"Authorization": "Basic " + base64.b64encode(b"CP1").decode()}, 401, id="garbled"
        ),
    ],
)
async def test_basic_auth(listen: Listen, echo: Echo, headers: dict[str, str], status: int) -> None:
    listener = await listen(security_profile=1)
    if status == 101:
        async with open_client(url(listener), "ocpp1.6", additional_headers=headers) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
        return
    with pytest.raises(InvalidStatus) as caught:
        async with open_client(url(listener), "ocpp1.6", additional_headers=headers):
            pass
    assert caught.value.response.status_code == status
    assert caught.value.response.headers["WWW-Authenticate"].startswith("Basic")
    assert echo.connections == []


async def test_refusals_are_counted_and_logged_once_a_minute_per_charge_point(
    listen: Listen, echo: Echo, caplog: pytest.LogCaptureFixture
) -> None:
    """A charge point with a wrong password retries every few seconds, a scan tries many ids:
    each refusal is counted (the listener's status), but logged once a minute per charge point
    and reason (a line each filled the journal)."""
    caplog.set_level(logging.INFO, logger="drivers.ocpp.server")
    listener = await listen(security_profile=1)
    wrong = {"Authorization": basic_authorization("CP1", PASSWORD + "x")}
    attempts = [("CP1", wrong)] * 5 + [("CP16", wrong)] * 2 + [(f"CP9{i}", {}) for i in range(3)]
    for identity, headers in attempts:
        with pytest.raises(InvalidStatus):
            async with open_client(url(listener, identity), "ocpp1.6", additional_headers=headers):
                pass
    assert listener.refused == {"credentials": 7, "unknown": 3}
    lines = [r.getMessage() for r in caplog.records if r.name == "drivers.ocpp.server"]
    refusals = [line for line in lines if line.startswith("refused")]
    assert len(refusals) == 3, refusals  # CP1's and CP16's passwords; unknown ids from a host
    assert sum("'CP1'" in line and "bad credentials" in line for line in refusals) == 1


def test_the_refusal_log_says_how_many_it_left_out() -> None:
    now = [0.0]
    log = RefusalLog(window_s=60.0, max_keys=2, clock=lambda: now[0])
    assert [log.due("a") for _ in range(4)] == [0, None, None, None]
    now[0] = 59.9
    assert log.due("a") is None
    now[0] = 60.0
    assert log.due("a") == 4  # logged, with the four before it left out
    assert log.due("a") is None
    assert (log.due("b"), log.due("c")) == (0, 0)  # "a" forgotten: at most two keys
    assert log.due("a") == 0


async def test_tls_with_basic_auth(listen: Listen, echo: Echo, tls_files: TlsFiles) -> None:
    context = tls_server_context(tls_files.cert, tls_files.key)
    listener = await listen(security_profile=2, ssl_context=context)
    auth = {"Authorization": basic_authorization("CP1", PASSWORD)}
    async with open_client(
        url(listener, scheme="wss"),
        "ocpp2.0.1",
        ssl=tls_files.client_context(),
        additional_headers=auth,
    ) as ws:
        await ws.send("over tls")
        assert await ws.recv() == "over tls"
    with pytest.raises(InvalidStatus) as caught:
        async with open_client(
            url(listener, scheme="wss"), "ocpp2.0.1", ssl=tls_files.client_context()
        ):
            pass
    assert caught.value.response.status_code == 401
    with pytest.raises(InvalidMessage):  # plain websocket to a TLS port
        async with open_client(url(listener), "ocpp2.0.1", additional_headers=auth):
            pass


def test_profile_2_needs_tls() -> None:
    with pytest.raises(ValueError, match="ssl_context"):
        ListenerOptions(security_profile=2)


async def test_oversized_frame_closes_with_1009(listen: Listen, echo: Echo) -> None:
    listener = await listen(max_frame_bytes=4096)
    async with open_client(url(listener), "ocpp1.6") as ws:
        await ws.send("a" * 4000)
        assert await ws.recv() == "a" * 4000
        await ws.send("b" * 5000)
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), timeout_s(5))
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1009
    await wait_for(lambda: len(echo.closes) == 1, what="the server side to see the close")
    assert echo.closes[0].code == 1009


async def test_ping_measures_round_trip(listen: Listen, echo: Echo) -> None:
    listener = await listen(ping_interval_s=0.05, ping_timeout_s=5)
    async with open_client(url(listener), "ocpp1.6", ping_interval=None) as ws:
        await wait_for(lambda: len(echo.connections) == 1, what="the connection")
        (connection,) = echo.connections
        await wait_for(lambda: connection.latency_s > 0, what="a keepalive round trip")
        assert 0 < connection.latency_s < timeout_s(1)
        assert 0 < await connection.ping() < timeout_s(1)
        await ws.send("x")
        await ws.recv()


async def test_binary_json_is_read_as_text_and_bad_utf8_closes(listen: Listen, echo: Echo) -> None:
    listener = await listen()
    async with open_client(url(listener), "ocpp1.6") as ws:
        await ws.send(b'[2,"1","Heartbeat",{}]')
        assert await ws.recv() == '[2,"1","Heartbeat",{}]'
        await ws.send(b"\xff\xfe")
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), timeout_s(5))
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1007


async def test_secrets_never_reach_the_logs(
    listen: Listen, echo: Echo, caplog: pytest.LogCaptureFixture
) -> None:
    """Both ends are ours here (listener and upstream client), so every log line is checked."""
    caplog.set_level(logging.DEBUG)
    listener = await listen(security_profile=1)
    cloud_url = f"ws://127.0.0.1:{listener.port}/ocpp"
    new_key = "fedcba9876543210fedcba9876543210fedcba98"
    connection = await connect_upstream(cloud_url, "CP1", OcppVersion.V16, password=PASSWORD)
    frame = f'[2,"1","ChangeConfiguration",{{"key":"AuthorizationKey","value":"{new_key}"}}]'
    await connection.send(frame)
    assert await connection.recv() == frame
    await connection.close()
    with pytest.raises(Unauthorized):
        await connect_upstream(cloud_url, "CP1", OcppVersion.V16, password="wrong-password-wrong")
    text = caplog.text
    assert "Authorization: [redacted]" in text  # the header lines are there, only redacted
    assert "TEXT [" in text  # and so are the frame lines, without their content
    for secret in (
        PASSWORD,
        "wrong-password-wrong",
        new_key,
        basic_authorization("CP1", PASSWORD).split()[1],
        basic_authorization("CP1", "wrong-password-wrong").split()[1],
    ):
        assert secret not in text
    ours = [r for r in caplog.records if r.name.startswith("drivers.ocpp")]
    assert ours
    assert not any(hasattr(r, "websocket") for r in ours)


async def test_stop_closes_open_connections(listen: Listen, echo: Echo) -> None:
    listener = await listen()
    ws: ClientConnection
    async with open_client(url(listener), "ocpp1.6") as ws:
        await wait_for(lambda: len(echo.connections) == 1, what="the connection")
        await listener.stop()
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), timeout_s(5))
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1001


async def test_a_connection_is_logged_once_each_way_by_charge_point(
    listen: Listen, echo: Echo, caplog: pytest.LogCaptureFixture
) -> None:
    """Our lines name the charge point, its version and peer, and how the link ended;
    websockets' own per-connection lines (which name none of it) only at DEBUG."""
    caplog.set_level(logging.INFO)
    listener = await listen()
    async with open_client(url(listener, "CP1"), "ocpp1.6") as ws:
        await ws.send('[2,"1","Heartbeat",{}]')
        assert await ws.recv() == '[2,"1","Heartbeat",{}]'
        await ws.close(1000, "going home")

    def lines(start: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]

    await wait_for(lambda: bool(lines("charge point disconnected")), what="the disconnect line")
    (connected,) = lines("charge point connected")
    (disconnected,) = lines("charge point disconnected")
    assert "'CP1' OCPP 1.6 peer=127.0.0.1:" in connected
    assert "'CP1' OCPP 1.6 peer=127.0.0.1:" in disconnected
    assert disconnected.endswith("s, close code 1000 ('going home')")
    assert not lines("connection open")
    assert not lines("connection closed")
    # At DEBUG websockets' lines are there as before.
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="drivers.ocpp.websockets.server")
    async with open_client(url(listener, "CP1"), "ocpp1.6"):
        pass
    await wait_for(lambda: len(lines("charge point disconnected")) == 1, what="the second")
    await wait_for(lambda: bool(lines("connection closed")), what="websockets' close line")
    assert lines("connection open")
