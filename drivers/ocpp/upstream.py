"""The client side: one websocket to the cloud CSMS per charge point, at ``<cloud url>/<id>``.

To the cloud the edge is the charge point (2.0.1 Part 4 section 6.2): same identity in the path,
same subprotocol, the charge point's HTTP Basic credentials when the cloud wants them.

Exceptions (all under :class:`drivers.ocpp.connection.LinkError`)::

    ConnectFailed               the session could not be opened; .url (never with credentials)
    ├── Unreachable             refused, unreachable, name not resolved (an OSError)
    ├── ConnectTimeout          no handshake within open_timeout_s
    ├── TlsFailed               TLS handshake or certificate check failed
    ├── HandshakeRejected       the cloud answered with an HTTP status; .status_code
    │   ├── Unauthorized        401: wrong or missing credentials
    │   ├── Forbidden           403
    │   └── UnknownIdentity     404: the cloud does not know this charge point
    ├── SubprotocolRefused      the cloud accepted none of the offered subprotocols
    └── HandshakeFailed         any other broken handshake (bad URL, bad response)

The first two are worth retrying soon; the HTTP refusals mostly need an operator.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from typing import Final
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import LinkError, OcppConnection
from drivers.ocpp.redact import websockets_logger

CLOSE_NO_SUBPROTOCOL: Final = 1002


class ConnectFailed(LinkError):
    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


class Unreachable(ConnectFailed):
    pass


class ConnectTimeout(ConnectFailed):
    pass


class TlsFailed(ConnectFailed):
    pass


class HandshakeRejected(ConnectFailed):
    def __init__(self, message: str, *, url: str, status_code: int) -> None:
        super().__init__(message, url=url)
        self.status_code = status_code


class Unauthorized(HandshakeRejected):
    pass


class Forbidden(HandshakeRejected):
    pass


class UnknownIdentity(HandshakeRejected):
    pass


class SubprotocolRefused(ConnectFailed):
    pass


class HandshakeFailed(ConnectFailed):
    pass


_REJECTED: Final[dict[int, type[HandshakeRejected]]] = {
    401: Unauthorized,
    403: Forbidden,
    404: UnknownIdentity,
}


def _display(url: str) -> str:
    """The URL without any user:password@ part, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return scheme + sep + authority.rpartition("@")[2] + slash + path


def upstream_url(cloud_url: str, charge_point_id: str) -> str:
    """``<cloud url>/<percent-encoded id>`` (2.0.1 Part 4 section 3.1.1)."""
    return cloud_url.rstrip("/") + "/" + quote(charge_point_id, safe="")


def basic_authorization(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def tls_client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verify the cloud's certificate (system roots, or ``ca_file``), TLS 1.2 or newer."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def connect_upstream(
    cloud_url: str,
    charge_point_id: str,
    ocpp_version: OcppVersion,
    *,
    password: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    open_timeout_s: float = 10.0,
    ping_interval_s: float | None = 30.0,
    ping_timeout_s: float | None = 30.0,
    close_timeout_s: float = 5.0,
    max_frame_bytes: int = 1 << 20,
    proxy: str | None = None,
) -> OcppConnection:
    """Open the charge point's session to the cloud; raise a :class:`ConnectFailed` subclass.

    ``ssl_context`` only matters for ``wss://`` URLs (default: :func:`tls_client_context`).
    ``proxy`` is off unless given: the edge's network is configured, not inherited from the
    environment.
    """
    url = upstream_url(cloud_url, charge_point_id)
    shown = _display(url)
    secure = url.startswith("wss:")
    headers = {}
    if password is not None:
        headers["Authorization"] = basic_authorization(charge_point_id, password)
    try:
        async with asyncio.timeout(open_timeout_s):
            websocket = await connect(
                url,
                subprotocols=[Subprotocol(ocpp_version.subprotocol)],
                additional_headers=headers,
                user_agent_header=None,
                open_timeout=None,  # our own timeout covers TCP, TLS and the handshake
                ping_interval=ping_interval_s,
                ping_timeout=ping_timeout_s,
                close_timeout=close_timeout_s,
                max_size=max_frame_bytes,
                proxy=proxy,
                ssl=(ssl_context or tls_client_context()) if secure else None,
                logger=websockets_logger("drivers.ocpp.websockets.client"),
            )
    except TimeoutError:
        raise ConnectTimeout(f"no handshake within {open_timeout_s} s", url=shown) from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        kind = _REJECTED.get(status, HandshakeRejected)
        raise kind(f"the cloud answered HTTP {status}", url=shown, status_code=status) from None
    except InvalidURI as exc:
        raise HandshakeFailed(f"not a websocket URL: {exc}", url=shown) from None
    except InvalidHandshake as exc:
        raise HandshakeFailed(f"bad handshake: {exc}", url=shown) from None
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        raise TlsFailed(f"TLS failed: {exc}", url=shown) from None
    except OSError as exc:
        raise Unreachable(f"cannot connect: {exc}", url=shown) from None
    if websocket.subprotocol != ocpp_version.subprotocol:
        await websocket.close(CLOSE_NO_SUBPROTOCOL, "no OCPP subprotocol in common")
        raise SubprotocolRefused(f"the cloud did not accept {ocpp_version.subprotocol}", url=shown)
    return OcppConnection(websocket, charge_point_id=charge_point_id, ocpp_version=ocpp_version)
