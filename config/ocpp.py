"""The OCPP sections of a site file: ``[listener]``, ``[cloud]`` and each charge point's OCPP keys.

```toml
[listener]                     # where charge points connect: ws(s)://HOST:PORT/ocpp/<id>
host = "127.0.0.1"             # bind address; "0.0.0.0" only on a site network you trust ("" is
                               # refused: write "0.0.0.0" or "::" to bind every interface)
port = 9000
security_profile = 1           # 0 none, 1 HTTP Basic, 2 TLS + HTTP Basic (OCPP security profiles)
tls_cert_file = "edge.crt"     # profile 2 only; relative paths are relative to this file; each
                               # file must be readable when this file is loaded
tls_key_file = "edge.key"
max_frame_bytes = 1048576      # a larger frame closes the socket (1009)
auto_register = false          # accept unknown identities (profile 0 only)
ping_interval_s = 30           # websocket ping; 0 turns it off; its round trip is link quality
ping_timeout_s = 30            # no pong within this closes the socket; 0: no limit

[cloud]                        # the CSMS; each charge point gets its own session <url>/<id>
url = "wss://csms.example.com/ocpp"
mode = "autonomous"            # or "strict": close the charge points' sockets while it is away
tls_ca_file = "cloud-ca.pem"   # optional: trust this CA instead of the system's
open_timeout_s = 10            # TCP + TLS + websocket handshake
call_timeout_s = 30            # waiting for the answer to one CALL
answer_deadline_s = 10         # a charge point waiting longer than this is answered by the edge
linger_s = 60                  # keep a session this long after its charge point disconnected
edge_identity = "SITE-EDGE"    # optional: the edge's own session (<url>/<edge_identity>) that
                               # syncs the audit trail and takes SendLocalList, GetLocalListVersion
                               # and DataTransfer (vendorId "site-edge": RulesBundle, RulesRollback,
                               # GridLimit) addressed to the edge
edge_password_file = "secrets/edge.key"  # or edge_password: its HTTP Basic password at the cloud
retry_backoff_min_s = 5        # first wait before resending an unanswered message
retry_backoff_max_s = 300      # the wait doubles up to this
max_attempts = 5               # then the message goes to the dead-letter store
reconnect_min_s = 1            # first wait before reconnecting, doubling with jitter ...
reconnect_max_s = 120          # ... up to this
max_frame_bytes = 4194304      # 4096 to 67108864; a larger frame from the cloud closes the session
ping_interval_s = 30           # websocket ping on each session; 0 turns it off
ping_timeout_s = 30            # no pong within this closes the session; 0: no limit
edge_transaction_id_first = 2000000000   # 1.6 ids the edge mints offline; the cloud must not
edge_transaction_id_last = 2147483647    # use this range

[[charge_points]]
id = "CP-001"                  # the identity in its URL and its HTTP Basic user
password_file = "secrets/CP-001.key"  # or password = "..." (16-40 characters), profile 1/2
cloud_password = "..."         # or cloud_password_file: what the cloud expects from this id
ocpp_version = "1.6"           # optional: only accept this version from it
```

Passwords are held as :class:`Secret`, whose repr never shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from actors.ocpp_rules import INT32_MAX, EdgeIdRange
from config.fields import ConfigError, Table, check_readable
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.identity import identity_problem

MIN_PASSWORD_CHARS: Final = 16  # 1.6 security whitepaper A00.FR.205: at least 16 bytes
MAX_PASSWORD_CHARS: Final = 40  # 20 bytes as 40 hex digits
DEFAULT_EDGE_ID_RANGE: Final = EdgeIdRange()


class Secret:
    """A password that does not print: ``repr`` and ``str`` hide it, ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _path(t: Table, name: str) -> str | None:
    """A file named in the site file; relative to the site file's own folder."""
    value = t.string(name, None)
    if value is None:
        return None
    path = Path(value)
    if not path.is_absolute() and not t.source.startswith("<"):
        path = Path(t.source).parent / path
    return str(path)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 9000
    security_profile: int = 0
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    max_frame_bytes: int = 1 << 20
    auto_register: bool = False
    ping_interval_s: float | None = 30.0
    ping_timeout_s: float | None = 30.0
    # permessage-deflate when a charge point offers it ("deflate") or never ("off"): see
    # drivers/ocpp/server.py COMPRESSION.
    compression: str = "off"


COMPRESSIONS = ("off", "deflate")


def listener_from_table(t: Table) -> ListenerConfig:
    profile = t.integer("security_profile", 0, min=0, max=2)
    cert, key = _path(t, "tls_cert_file"), _path(t, "tls_key_file")
    if profile == 2 and (cert is None or key is None):
        missing = "tls_cert_file" if cert is None else "tls_key_file"
        raise t.error(missing, "a certificate file path (security_profile 2 is TLS)")
    if profile != 2 and (cert is not None or key is not None):
        name = "tls_cert_file" if cert is not None else "tls_key_file"
        raise t.error(name, "no TLS file unless security_profile = 2")
    if cert is not None and key is not None:
        check_readable(t, "tls_cert_file", cert)
        check_readable(t, "tls_key_file", key)
    auto = t.boolean("auto_register", False)
    if auto and profile != 0:
        raise t.error(
            "auto_register", "false with security_profile 1 or 2 (unknown ids have no password)"
        )
    host = t.string("host", "127.0.0.1")
    if not host.strip():
        # The server would bind every interface: that must be written, not left empty.
        raise t.error(
            "host", 'an address to bind (write "0.0.0.0" or "::" to bind every interface)', host
        )
    config = ListenerConfig(
        host=host,
        port=t.integer("port", 9000, min=0, max=65535),
        security_profile=profile,
        tls_cert_file=cert,
        tls_key_file=key,
        max_frame_bytes=t.integer("max_frame_bytes", 1 << 20, min=4096, max=1 << 24),
        auto_register=auto,
        ping_interval_s=t.number("ping_interval_s", 30.0, min=0.0) or None,
        ping_timeout_s=t.number("ping_timeout_s", 30.0, min=0.0) or None,
        compression=t.string("compression", "off", choices=COMPRESSIONS),
    )
    t.reject_unknown()
    return config


CloudMode = Literal["autonomous", "strict"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudConfig:
    url: str
    mode: CloudMode = "autonomous"
    tls_ca_file: str | None = None
    open_timeout_s: float = 10.0
    call_timeout_s: float = 30.0
    answer_deadline_s: float = 10.0
    linger_s: float = 60.0
    retry_backoff_min_s: float = 5.0
    retry_backoff_max_s: float = 300.0
    max_attempts: int = 5
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 120.0
    max_frame_bytes: int = 4 << 20
    ping_interval_s: float | None = 30.0
    ping_timeout_s: float | None = 30.0
    edge_transaction_ids: EdgeIdRange = DEFAULT_EDGE_ID_RANGE
    edge_identity: str | None = None
    edge_password: Secret | None = None


def cloud_from_table(t: Table) -> CloudConfig:
    url = t.string("url")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise t.error("url", "a ws:// or wss:// URL with a host", url)
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs; the charge point's cloud_password is the place.
        raise t.error("url", "a URL without user:password@ (use cloud_password)", parts.hostname)
    if parts.query or parts.fragment:
        raise t.error("url", "a URL without ?query or #fragment (the id is appended)", url)
    ca_file = _path(t, "tls_ca_file")
    if ca_file is not None and parts.scheme != "wss":
        raise t.error("tls_ca_file", "no CA file for a ws:// URL (it is not TLS)")
    if ca_file is not None:
        check_readable(t, "tls_ca_file", ca_file)
    backoff_min = t.number("retry_backoff_min_s", 5.0, min=0.1)
    backoff_max = t.number("retry_backoff_max_s", 300.0, min=0.1)
    if backoff_max < backoff_min:
        raise t.error("retry_backoff_max_s", f"a value >= retry_backoff_min_s ({backoff_min})")
    reconnect_min = t.number("reconnect_min_s", 1.0, min=0.1)
    reconnect_max = t.number("reconnect_max_s", 120.0, min=0.1)
    if reconnect_max < reconnect_min:
        raise t.error("reconnect_max_s", f"a value >= reconnect_min_s ({reconnect_min})")
    first = t.integer(
        "edge_transaction_id_first", DEFAULT_EDGE_ID_RANGE.first, min=1, max=INT32_MAX
    )
    last = t.integer("edge_transaction_id_last", DEFAULT_EDGE_ID_RANGE.last, min=1, max=INT32_MAX)
    if last < first:
        raise t.error("edge_transaction_id_last", f"a value >= edge_transaction_id_first ({first})")
    config = CloudConfig(
        url=url,
        mode=t.string("mode", "autonomous", choices=("autonomous", "strict")),
        tls_ca_file=ca_file,
        open_timeout_s=t.number("open_timeout_s", 10.0, min=0.1),
        call_timeout_s=t.number("call_timeout_s", 30.0, min=0.1),
        answer_deadline_s=t.number("answer_deadline_s", 10.0, min=0.1),
        linger_s=t.number("linger_s", 60.0, min=0.0),
        retry_backoff_min_s=backoff_min,
        retry_backoff_max_s=backoff_max,
        max_attempts=t.integer("max_attempts", 5, min=1),
        reconnect_min_s=reconnect_min,
        reconnect_max_s=reconnect_max,
        max_frame_bytes=t.integer("max_frame_bytes", 4 << 20, min=4096, max=1 << 26),
        ping_interval_s=t.number("ping_interval_s", 30.0, min=0.0) or None,
        ping_timeout_s=t.number("ping_timeout_s", 30.0, min=0.0) or None,
        edge_transaction_ids=EdgeIdRange(first=first, last=last),
        edge_identity=_edge_identity(t),
        edge_password=_password(t, "edge_password"),
    )
    if config.edge_password is not None and config.edge_identity is None:
        # no edge session to use it: a password set for nothing
        raise t.error(
            password_key(t, "edge_password"),
            "edge_identity with it (the edge's own session)",
            "set",
        )
    t.reject_unknown()
    return config


def _edge_identity(t: Table) -> str | None:
    identity: str | None = t.string("edge_identity", None)
    if identity is not None:
        problem = identity_problem(identity)
        if problem is not None:
            raise t.error("edge_identity", f"an OCPP identity ({problem})", identity)
    return identity


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePointOcpp:
    id: str
    password: Secret | None = None  # what the charge point sends us (profiles 1 and 2)
    cloud_password: Secret | None = None  # what we send the cloud on its behalf
    ocpp_version: OcppVersion | None = None  # None: whatever it offers


def password_key(t: Table, name: str) -> str:
    """The key a password was written under: ``name`` or ``name_file``."""
    return f"{name}_file" if t.has(f"{name}_file") else name


def _password(t: Table, name: str) -> Secret | None:
    file_key = f"{name}_file"
    inline, path = t.raw(name, None), _path(t, file_key)
    if inline is not None and not isinstance(inline, str):
        # Not t.string: its error echoes the value (a key written without quotes is a number).
        raise t.error(name, f"a string (in quotes), not a TOML {type(inline).__name__}")
    if inline is not None and path is not None:
        raise t.error(file_key, f"either {name} or {file_key}, not both")
    key = name
    if path is not None:
        key = file_key
        try:
            inline = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise t.error(file_key, f"a readable UTF-8 file ({type(exc).__name__})", path) from None
    if inline is None:
        return None
    # Never echo the value: the error names the key and the rule only.
    if not MIN_PASSWORD_CHARS <= len(inline) <= MAX_PASSWORD_CHARS:
        raise t.error(
            key,
            f"a password of {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters "
            f"(got {len(inline)})",
        )
    if any(not (" " <= c <= "~") for c in inline):
        raise t.error(key, "a password of printable ASCII characters")
    return Secret(inline)


def charge_point_ocpp_from_table(t: Table, *, security_profile: int) -> ChargePointOcpp:
    """Read the OCPP keys of one ``[[charge_points]]`` table.

    Does not call ``t.reject_unknown()``: the table has other sections' keys too, so the caller
    does once every loader has read its own. ``security_profile`` is the listener's: with 1 or 2
    a charge point without a password could never connect, so that is an error here.
    """
    identity = t.string("id")
    problem = identity_problem(identity)
    if problem is not None:
        raise t.error("id", f"a charge point identity ({problem})", identity)
    password = _password(t, "password")
    if password is None and security_profile >= 1:
        raise t.error(
            "password", f"a password (the listener uses security profile {security_profile})"
        )
    version = t.string("ocpp_version", None, choices=tuple(v.value for v in OcppVersion))
    return ChargePointOcpp(
        id=identity,
        password=password,
        cloud_password=_password(t, "cloud_password"),
        ocpp_version=None if version is None else OcppVersion(version),
    )


def check_unique_ids(charge_points: list[ChargePointOcpp], *, source: str) -> None:
    """Identities are compared case-insensitively (2.0.1 identifierString is case-insensitive)."""
    seen: dict[str, int] = {}
    for i, cp in enumerate(charge_points):
        folded = cp.id.casefold()
        if folded in seen:
            raise ConfigError(
                source,
                f"charge_points[{i}].id",
                f"an id not used before (charge_points[{seen[folded]}] has it)",
                cp.id,
            )
        seen[folded] = i
