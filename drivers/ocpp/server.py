"""The OCPP-J listener: charge points connect to ``ws(s)://HOST:PORT/ocpp/<charge_point_id>``.

The opening handshake is decided here, in this order (OCPP-J 1.6 sections 3 and 6, 2.0.1 Part 4
section 3.2, the 1.6 security whitepaper section 2):

1. the path is the prefix plus one percent-encoded identity: anything else is HTTP 404, an
   identity that cannot be one (:mod:`drivers.ocpp.identity`) HTTP 400;
2. ``lookup(id)`` says whether the identity is known: unknown is HTTP 404, unless
   ``auto_register`` is on (security profile 0 only: an unknown identity has no password);
3. security profile 1 and 2: HTTP Basic with user = identity and the charge point's password,
   compared in constant time; missing or wrong is HTTP 401;
4. the subprotocol: the first one the charge point offers that it is allowed to speak. With none
   in common the handshake completes without the header and the socket is closed at once with
   1002 and a reason that lists what we speak.

Each accepted connection is handed to ``on_connect`` as an :class:`OcppConnection`; the socket is
closed when that coroutine returns, so it must run for the life of the connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hmac
import http
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from drivers.ocpp.codes import SUBPROTOCOLS, OcppVersion
from drivers.ocpp.connection import OcppConnection, format_address
from drivers.ocpp.handover import (
    MAX_CONCURRENT,
    HandoverError,
    Sniffer,
    Tasks,
    hand_over,
    relay_to,
    request_target,
)
from drivers.ocpp.identity import identity_problem
from drivers.ocpp.redact import websockets_logger

log = logging.getLogger(__name__)

CLOSE_NO_SUBPROTOCOL: Final = 1002


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePointAccess:
    """What the listener needs to admit one charge point; ``lookup`` returns it for known ids.

    ``password`` is the charge point's HTTP Basic password (AuthorizationKey) for security
    profiles 1 and 2; ``previous_password`` one it is still allowed while a rotated key is new
    (:mod:`actors.credentials`); ``ocpp_versions`` the versions it may speak (all when not
    configured).
    """

    password: str | None = field(default=None, repr=False)
    previous_password: str | None = field(default=None, repr=False)
    ocpp_versions: tuple[OcppVersion, ...] = tuple(OcppVersion)


Lookup = Callable[[str], ChargePointAccess | None]
OnConnect = Callable[[OcppConnection], Awaitable[None]]
# Broker shards (drivers/ocpp/handover.py): the Unix socket of the node that serves a charge
# point, or None when this node does.
Route = Callable[[str], Path | None]


# permessage-deflate (RFC 7692), off unless configured ([listener] compression = "deflate"):
# websockets' serve() accepts it by default, and many charge points offer it (OkHttp, websockets
# and libwebsockets clients do). OCPP frames are a few hundred bytes on a site's LAN; compressed,
# each costs the broker zlib state per connection and CPU per frame, and a profile fan-out loses
# the direct frame write (OcppConnection.send). Measured (bench/fanout.py, the cars offering it):
# see the README's benchmark table. Declining is always within the protocol: the client then
# sends and expects plain frames.
COMPRESSION = "deflate"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerOptions:
    host: str = "127.0.0.1"
    port: int = 0
    path_prefix: str = "/ocpp/"
    security_profile: int = 0
    ssl_context: ssl.SSLContext | None = None
    max_frame_bytes: int = 1 << 20
    auto_register: bool = False
    ping_interval_s: float | None = 30.0
    ping_timeout_s: float | None = 30.0
    open_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    compression: bool = False  # see COMPRESSION

    def __post_init__(self) -> None:
        if self.security_profile not in (0, 1, 2):
            raise ValueError(f"security_profile must be 0, 1 or 2, got {self.security_profile}")
        if self.security_profile == 2 and self.ssl_context is None:
            raise ValueError("security profile 2 needs an ssl_context (TLS)")
        if not (self.path_prefix.startswith("/") and self.path_prefix.endswith("/")):
            raise ValueError(f"path_prefix must start and end with '/', got {self.path_prefix!r}")


def tls_server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS 1.2 or newer (1.6 security whitepaper A00.FR.312), with our certificate and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class InvalidIdentity(ValueError):
    pass


def charge_point_id_from_path(path: str, prefix: str = "/ocpp/") -> str:
    """The percent-decoded identity in ``<prefix><id>``; raise :class:`InvalidIdentity`.

    What an identity may be is :func:`drivers.ocpp.identity.identity_problem`'s rule.
    """
    path = path.split("?", 1)[0]
    if not path.startswith(prefix):
        raise InvalidIdentity(f"path does not start with {prefix!r}")
    encoded = path[len(prefix) :]
    if "/" in encoded:
        raise InvalidIdentity("the identity is one path segment")
    try:
        identity = unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        raise InvalidIdentity("the identity is not percent-encoded UTF-8") from None
    problem = identity_problem(identity)
    if problem is not None:
        raise InvalidIdentity(problem)
    return identity


def basic_auth_ok(header: str | None, charge_point_id: str, password: str | None) -> bool:
    """HTTP Basic with user = identity and the configured password, in constant time.

    OCPP-J 1.6 section 6.2.2 sends the AuthorizationKey as its raw 20 bytes, the security
    whitepaper as the text itself; when the configured password is 16 to 20 bytes in hex, both
    forms are accepted.
    """
    if header is None or password is None:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, sep, given = decoded.partition(b":")
    if not sep:
        return False
    user_ok = hmac.compare_digest(user, charge_point_id.encode())
    candidates = [password.encode()]
    if len(password) in range(32, 41, 2):
        with contextlib.suppress(ValueError):
            candidates.append(bytes.fromhex(password))
    password_ok = False
    for candidate in candidates:
        password_ok |= hmac.compare_digest(given, candidate)
    return user_ok and password_ok


@dataclass(frozen=True, slots=True, kw_only=True)
class _Admission:
    charge_point_id: str
    access: ChargePointAccess
    auto_registered: bool
    key_used: str  # "password", "previous_password" or "" (security profile 0)


class _OcppServerConnection(ServerConnection):
    admission: _Admission | None = None
    # The charge point's address when the front relays its connection (TLS with broker shards):
    # this node's socket is then a local one.
    relayed_from: str | None = None

    @property
    def remote_address(self) -> Any:
        if self.relayed_from is not None:
            return self.relayed_from
        return super().remote_address


class RefusalLog:
    """Which refusals to log: the first of each key, then at most one per ``window_s``, saying
    how many were not logged in between. At most ``max_keys`` keys are remembered (the oldest
    forgotten first): a scan of many ids costs bounded memory, and logs at most one line per new
    id."""

    def __init__(
        self,
        window_s: float = 60.0,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._keys: dict[str, tuple[float, int]] = {}  # key -> (logged at, unlogged since)

    def due(self, key: str) -> int | None:
        """None: do not log this one; else log it, with this many left unlogged before it."""
        now = self.clock()
        seen = self._keys.pop(key, None)
        if seen is not None and now - seen[0] < self.window_s:
            self._keys[key] = (seen[0], seen[1] + 1)
            return None
        if len(self._keys) >= self.max_keys:
            del self._keys[next(iter(self._keys))]
        self._keys[key] = (now, 0)
        return 0 if seen is None else seen[1]


def _host(peer: str) -> str:
    """A peer's host without its port ("127.0.0.1:50312" -> "127.0.0.1", "[::1]:50312" -> "[::1]")."""
    return peer.rpartition(":")[0] or peer


def _respond(
    connection: ServerConnection, status: http.HTTPStatus, text: str, **headers: str
) -> Response:
    response = connection.respond(status, text + "\n")
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


class OcppListener:
    """The websocket server; ``async with OcppListener(...)`` or ``start()`` / ``stop()``.

    Broker shards (drivers/ocpp/handover.py): with ``route``, this is the front: it accepts
    every connection on the port itself and passes each one that ``route`` maps to another
    node's Unix socket there before the handshake (with TLS: after the TLS handshake, which the
    front does, relaying the decrypted stream); the rest (and anything that is not an OCPP
    request line, which its websocket server then answers) it serves. With ``listening=False``
    it opens no port and serves only the connections handed to :meth:`adopt` (plain: TLS ends
    at the front)."""

    def __init__(
        self,
        on_connect: OnConnect,
        lookup: Lookup,
        options: ListenerOptions | None = None,
        *,
        route: Route | None = None,
        listening: bool = True,
    ) -> None:
        self.options = options or ListenerOptions()
        if route is not None and not listening:
            raise ValueError("a front (route) listens on the OCPP port")
        self._on_connect = on_connect
        self._lookup = lookup
        self._route = route
        self._listening = listening
        self._server: Server | None = None
        self._front: socket.socket | None = None  # the OCPP port, accepted by us (route)
        self._tasks = Tasks()
        self._handovers = asyncio.Semaphore(MAX_CONCURRENT)
        self.handed_over = 0
        self.relayed = 0  # of those handed over, relayed by this front (TLS)
        self._relays: set[asyncio.Transport] = set()  # their TLS connections (relay_to)
        self.handover_failed = 0
        # Connections refused at the handshake, by why (status: the listener's "refused"), and
        # their log lines, one per charge point (or peer) and minute.
        self.refused: dict[str, int] = {}
        self.refusal_log = RefusalLog()

    async def __aenter__(self) -> OcppListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._front is not None:
            return int(self._front.getsockname()[1])
        if self._server is None or not self._listening:
            raise RuntimeError("the listener is not started, or has no port (listening=False)")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def bound_addresses(self) -> list[str]:
        if self._front is not None:
            return [str(self._front.getsockname()[0])]
        if self._server is None or not self._listening:
            return []
        return [str(s.getsockname()[0]) for s in self._server.sockets]

    async def start(self) -> None:
        o = self.options
        where: dict[str, object] = {"host": o.host, "port": o.port}
        if self._route is not None or not self._listening:
            # The websocket server accepts nothing itself: its connections come through
            # adopt(). asyncio needs a socket for it; this one is never bound nor listened on.
            where = {"sock": socket.socket(socket.AF_INET, socket.SOCK_STREAM)}
            where["start_serving"] = False
        self._server = await serve(
            self._handle,
            **where,  # type: ignore[arg-type]
            create_connection=_OcppServerConnection,
            select_subprotocol=self._select_subprotocol,
            process_request=self._process_request,
            server_header=None,
            open_timeout=o.open_timeout_s,
            ping_interval=o.ping_interval_s,
            ping_timeout=o.ping_timeout_s,
            close_timeout=o.close_timeout_s,
            max_size=o.max_frame_bytes,
            compression=COMPRESSION if o.compression else None,
            # A front does the TLS handshake itself (_dispatch_tls); the other nodes get the
            # decrypted stream from it.
            ssl=o.ssl_context if "sock" not in where else None,
            logger=websockets_logger("drivers.ocpp.websockets.server"),
        )
        if "sock" in where:
            # Serving, as far as websockets' handshake asks (it answers 503 otherwise), without
            # accepting on that socket (asyncio.Server.close() clears it).
            self._server.server._serving = True  # type: ignore[attr-defined]
        if self._route is not None:
            family = socket.getaddrinfo(o.host, o.port, type=socket.SOCK_STREAM)[0][0]
            front = socket.create_server((o.host, o.port), family=family, backlog=512)
            front.setblocking(False)
            self._front = front
            self._tasks.spawn(self._accept_loop(front))
        if self._listening:
            log.info(
                "OCPP listener on %s port %d (security profile %d%s)",
                o.host,
                self.port,
                o.security_profile,
                ", the front of the broker nodes" if self._route is not None else "",
            )

    async def stop(self) -> None:
        await self._tasks.cancel()  # the accept loop first: then the port closes quietly
        for transport in list(self._relays):  # each closes its node's end too (Relay)
            transport.close()
        if self._front is not None:
            self._front.close()
            self._front = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def adopt(self, sock: socket.socket, relayed_from: str | None = None) -> None:
        """Serve a connection accepted elsewhere (the front, another node): its handshake has not
        begun; the bytes of its request wait in the socket. ``relayed_from``: the socket is the
        front's relay of the charge point at that address (TLS ended at the front)."""
        if self._server is None:
            sock.close()
            raise RuntimeError("the listener is not started")
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        factory = self._factory()
        if relayed_from is not None:
            serve_it = factory

            def factory() -> _OcppServerConnection:
                connection = serve_it()
                connection.relayed_from = relayed_from
                return connection

        await loop.connect_accepted_socket(factory, sock)

    def _factory(self) -> Callable[[], _OcppServerConnection]:
        """websockets' protocol factory, as its own accept would use it (asyncio.Server keeps
        it)."""
        assert self._server is not None
        factory: Callable[[], _OcppServerConnection] = self._server.server._protocol_factory  # type: ignore[attr-defined]
        return factory

    async def _accept_loop(self, front: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(front)
            except OSError as exc:  # out of descriptors, say: the listener goes on
                log.warning("OCPP listener: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self._tasks.spawn(self._dispatch(conn))

    async def _dispatch(self, conn: socket.socket) -> None:
        """Serve ``conn`` here or pass it to the node that serves its charge point."""
        assert self._route is not None
        conn.setblocking(False)
        if self.options.ssl_context is not None:
            await self._dispatch_tls(conn, self.options.ssl_context)
            return
        peer = "?"
        try:
            peer = format_address(conn.getpeername())
            async with asyncio.timeout(self.options.open_timeout_s):
                target = await request_target(conn)
        except (TimeoutError, OSError) as exc:
            log.info("OCPP listener: %s sent no request line (%s); closed", peer, exc or "timeout")
            conn.close()
            return
        node = self._node_for(target)
        if node is None:
            await self.adopt(conn)  # ours, or not an OCPP request: our handshake answers it
            return
        try:
            await hand_over(node, conn, self._handovers)
            self.handed_over += 1
        except HandoverError as exc:
            self.handover_failed += 1
            log.warning("OCPP listener: could not pass %s (%r) on: %s", peer, target, exc)
            with contextlib.suppress(OSError):
                conn.send(_UNAVAILABLE)
        finally:
            conn.close()

    def _node_for(self, target: str | None) -> Path | None:
        """The Unix socket of the node that serves the request-target ``target``; None: this
        node's (its own charge point, or no OCPP request, which its handshake answers)."""
        assert self._route is not None
        if target is None:
            return None
        try:
            return self._route(charge_point_id_from_path(target, self.options.path_prefix))
        except InvalidIdentity:
            return None

    async def _dispatch_tls(self, conn: socket.socket, context: ssl.SSLContext) -> None:
        """:meth:`_dispatch` behind TLS: the handshake here, the request line read from the
        decrypted stream; another node's charge point is relayed to it (handover.relay_to)."""
        assert self._route is not None
        loop = asyncio.get_running_loop()
        timeout_s = self.options.open_timeout_s
        peer = "?"
        sniffer = Sniffer()
        transport: asyncio.BaseTransport | None = None
        try:
            peer = format_address(conn.getpeername())
            async with asyncio.timeout(timeout_s):
                transport, _ = await loop.connect_accepted_socket(
                    lambda: sniffer, conn, ssl=context, ssl_handshake_timeout=timeout_s
                )
                target = await sniffer.line
        except BaseException as exc:
            if transport is not None:
                transport.close()
            else:
                conn.close()
            if not isinstance(exc, TimeoutError | OSError | ssl.SSLError):
                raise  # the listener stopping
            log.info(
                "OCPP listener: %s sent no request line over TLS (%s); closed",
                peer,
                exc or "timeout",
            )
            return
        assert isinstance(transport, asyncio.Transport)
        node = self._node_for(target)
        if transport.is_closing():  # gone already
            return
        if node is None:  # ours, or not an OCPP request: our handshake answers it
            sniffer.take(transport, self._factory()())
            return
        self._relays.add(transport)
        try:
            await relay_to(
                node,
                transport,
                sniffer,
                peer,
                self._handovers,
                functools.partial(self._relays.discard, transport),
            )
            self.handed_over += 1
            self.relayed += 1
        except HandoverError as exc:
            self._relays.discard(transport)
            self.handover_failed += 1
            log.warning("OCPP listener: could not pass %s (%r) on: %s", peer, target, exc)
            transport.write(_UNAVAILABLE)
            transport.close()
        except BaseException:  # the listener stopping, or no descriptor left for the relay
            self._relays.discard(transport)
            transport.close()
            raise

    @property
    def relays_open(self) -> int:
        """Charge points of other nodes this front relays now (TLS)."""
        return len(self._relays)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        o = self.options
        peer = format_address(connection.remote_address)
        try:
            charge_point_id = charge_point_id_from_path(request.path, o.path_prefix)
        except InvalidIdentity as exc:
            status = (
                http.HTTPStatus.NOT_FOUND
                if not request.path.startswith(o.path_prefix)
                else http.HTTPStatus.BAD_REQUEST
            )
            self._refused(
                logging.INFO, "path", _host(peer), "refused a connection from %s: %s", peer, exc
            )
            return _respond(connection, status, f"Not an OCPP endpoint: {exc}")
        access = self._lookup(charge_point_id)
        auto = False
        if access is None:
            if not (o.auto_register and o.security_profile == 0):
                self._refused(
                    logging.INFO,
                    "unknown",
                    _host(peer),  # a scan of ids from one host: a line a minute
                    "refused unknown charge point %r from %s",
                    charge_point_id,
                    peer,
                )
                return _respond(connection, http.HTTPStatus.NOT_FOUND, "Unknown charge point")
            access, auto = ChargePointAccess(), True
        key_used = ""
        if o.security_profile >= 1:
            header = _authorization(request.headers)
            if basic_auth_ok(header, charge_point_id, access.password):
                key_used = "password"
            elif access.previous_password is not None and basic_auth_ok(
                header, charge_point_id, access.previous_password
            ):
                key_used = "previous_password"
        if o.security_profile >= 1 and not key_used:
            self._refused(
                logging.WARNING,
                "credentials",
                charge_point_id,
                "refused charge point %r from %s: bad credentials",
                charge_point_id,
                peer,
            )
            return _respond(
                connection,
                http.HTTPStatus.UNAUTHORIZED,
                "Invalid credentials",
                WWW_Authenticate='Basic realm="OCPP", charset="UTF-8"',
            )
        cast(_OcppServerConnection, connection).admission = _Admission(
            charge_point_id=charge_point_id, access=access, auto_registered=auto, key_used=key_used
        )
        return None

    def _refused(self, level: int, why: str, who: str, msg: str, *args: object) -> None:
        """Count a refusal and log it, once a minute per ``who`` and reason (bad credentials: the
        charge point; an unknown id or a bad path: the peer's host): a charge point with a wrong
        password retries every few seconds, and a scan tries many ids; a line for each filled
        the journal. The next line says how many went unlogged."""
        self.refused[why] = self.refused.get(why, 0) + 1
        unlogged = self.refusal_log.due(f"{why}:{who}")
        if unlogged is None:
            return
        if unlogged:
            msg += " (and %d more like it since the last such line, not logged)"
            args = (*args, unlogged)
        log.log(level, msg, *args)

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        admission = cast(_OcppServerConnection, connection).admission
        if admission is None:
            return None
        allowed = {v.subprotocol for v in admission.access.ocpp_versions}
        for name in offered:
            if name in allowed:
                return name
        # None completes the handshake without the header, as OCPP-J requires; _handle closes.
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        admission = cast(_OcppServerConnection, websocket).admission
        assert admission is not None  # process_request refused every connection without one
        subprotocol = websocket.subprotocol
        if subprotocol is None:
            allowed = ", ".join(v.subprotocol for v in admission.access.ocpp_versions)
            log.info(
                "closing charge point %r: no subprotocol in common (it may speak %s)",
                admission.charge_point_id,
                allowed,
            )
            await websocket.close(CLOSE_NO_SUBPROTOCOL, f"no OCPP subprotocol in common: {allowed}")
            return
        connection = OcppConnection(
            websocket,
            charge_point_id=admission.charge_point_id,
            ocpp_version=OcppVersion.from_subprotocol(subprotocol),
            auto_registered=admission.auto_registered,
            key_used=admission.key_used,
        )
        log.info("charge point connected: %r", connection)
        opened = time.monotonic()
        try:
            await self._on_connect(connection)
        finally:
            code = connection.close_code
            log.info(
                "charge point disconnected: %r after %.1f s, %s",
                connection,
                time.monotonic() - opened,
                "closed by the edge"
                if code is None
                else f"close code {code}"
                + (f" ({connection.close_reason!r})" if connection.close_reason else ""),
            )


# To a charge point whose broker node is not there (restarting): it reconnects later.
_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 41\r\n"
    b"Connection: close\r\n\r\nIts broker node is not ready; try again.\n"
)


def _authorization(headers: Headers) -> str | None:
    values = headers.get_all("Authorization")
    return values[0] if len(values) == 1 else None


__all__ = [
    "SUBPROTOCOLS",
    "ChargePointAccess",
    "InvalidIdentity",
    "ListenerOptions",
    "OcppListener",
    "basic_auth_ok",
    "charge_point_id_from_path",
    "tls_server_context",
]
