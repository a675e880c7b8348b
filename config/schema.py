"""The site configuration: one TOML file, validated whole before anything starts.

Sections (each documented in README and in ``config/example-site.toml``):
``[site]`` name and storage; ``[runtime]`` process layout and supervision; ``[listener]`` and
``[cloud]`` (OCPP, :mod:`config.ocpp`); ``[[charge_points]]`` (keys of several sections);
``[[meters]]``, ``[[feeders]]``, ``[[grid_limits]]``, ``[allocation]`` (:mod:`config.energy`);
``[authorization]`` (:mod:`config.auth`).

Every error is a :class:`ConfigError` naming the file, the key and what was expected; the runtime
does not start half-configured.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from actors.shards import broker_node
from config.auth import AuthorizationConfig
from config.auth import from_table as auth_from_table
from config.fields import ConfigError, Table
from config.ocpp import (
    ChargePointOcpp,
    CloudConfig,
    ListenerConfig,
    charge_point_ocpp_from_table,
    check_unique_ids,
    cloud_from_table,
    listener_from_table,
    password_key,
)
from drivers.control import MAX_UNIX_PATH, unix_path_fits

Mode = Literal["nodes", "single-process"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
CPU_AFFINITY = ("auto", "off")  # supervisors/affinity.py
MAX_BROKER_SHARDS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeConfig:
    mode: Mode = "nodes"
    admin_port: int = 0  # Thespian admin port; 0 picks a free loopback port at start
    node_max_restarts: int = 10
    node_restart_period_s: float = 60.0
    node_start_timeout_s: float = 60.0  # a node not up by then is ended (and restarted)
    shutdown_timeout_s: float = 15.0
    log_level: str = "INFO"
    status_timeout_s: float = 1.0
    cpu_affinity: str = (
        "off"  # "auto": each node's loop on a CPU of its own (supervisors/affinity.py)
    )
    broker_shards: int = 1  # broker node processes; the charge points spread over them
    # nodes whose event loop runs at real-time priority (supervisors/priority.py), e.g. energy
    realtime_nodes: tuple[str, ...] = ()

    def nodes(self) -> tuple[tuple[str, str], ...]:
        """The site's nodes as (name, kind), in start order: the energy node and
        ``broker_shards`` broker nodes (``broker``, ``broker-1``, ...: actors/shards.py).
        supervisors/launcher.py starts these; ``realtime_nodes`` must name some of them."""
        brokers = tuple((broker_node(k), "broker") for k in range(self.broker_shards))
        return (("energy", "energy"), *brokers)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePointConfig:
    ocpp: ChargePointOcpp
    energy: Any = None  # config.energy section of this charge point, when configured

    @property
    def id(self) -> str:
        return self.ocpp.id


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteConfig:
    source: str
    name: str
    storage_dir: Path
    runtime: RuntimeConfig
    listener: ListenerConfig
    cloud: CloudConfig | None
    charge_points: tuple[ChargePointConfig, ...]
    energy: Any = None
    auth: AuthorizationConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # casefolded id -> config: every connect and every actor start looks one up (a scan made
    # starting 900 charge points cost 900 x 900 comparisons)
    _by_id: dict[str, ChargePointConfig] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        for cp in self.charge_points:
            self._by_id.setdefault(cp.id.casefold(), cp)

    @property
    def control_socket(self) -> Path:
        return self.storage_dir / "control.sock"

    def charge_point(self, cp_id: str) -> ChargePointConfig | None:
        return self._by_id.get(cp_id.casefold())


def runtime_from_table(t: Table) -> RuntimeConfig:
    """``[runtime]``: mode ("nodes": a Thespian root with broker and energy node processes;
    "single-process": the same actor trees in one process), admin_port, node_max_restarts /
    node_restart_period_s (node restart intensity; beyond it the runtime exits non-zero for systemd),
    node_start_timeout_s (a node not started by then is ended: a failure, restarted within the
    intensity), shutdown_timeout_s, log_level, status_timeout_s, cpu_affinity ("off"; "auto": each node's
    event loop on a CPU of its own), broker_shards (broker node processes, 1 to 8: the charge
    points spread over them by their id, actors/shards.py), realtime_nodes (node names whose
    event loop runs at real-time priority, supervisors/priority.py)."""
    r = RuntimeConfig(
        mode=t.string("mode", "nodes", choices=("nodes", "single-process")),
        admin_port=t.integer("admin_port", 0, min=0, max=65535),
        node_max_restarts=t.integer("node_max_restarts", 10, min=0),
        node_restart_period_s=t.number("node_restart_period_s", 60.0, min=0.1),
        node_start_timeout_s=t.number("node_start_timeout_s", 60.0, min=0.1),
        shutdown_timeout_s=t.number("shutdown_timeout_s", 15.0, min=0.1),
        log_level=t.string("log_level", "INFO", choices=LOG_LEVELS),
        status_timeout_s=t.number("status_timeout_s", 1.0, min=0.1, max=30),
        cpu_affinity=t.string("cpu_affinity", "off", choices=CPU_AFFINITY),
        broker_shards=t.integer("broker_shards", 1, min=1, max=MAX_BROKER_SHARDS),
        realtime_nodes=_names(t, "realtime_nodes"),
    )
    t.reject_unknown()
    if r.realtime_nodes and r.mode != "nodes":
        # One loop for every node: its priority would be every node's.
        raise t.error("realtime_nodes", "[] with mode single-process", list(r.realtime_nodes))
    names = [name for name, _ in r.nodes()]
    unknown = [n for n in r.realtime_nodes if n not in names]
    if unknown:
        raise t.error("realtime_nodes", "names of this site's nodes: " + ", ".join(names), unknown)
    return r


def _names(t: Table, name: str) -> tuple[str, ...]:
    raw = t.raw(name, [])
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise t.error(name, 'a list of node names, e.g. ["energy"]', raw)
    return tuple(dict.fromkeys(raw))


# Every section a site file may have (config.energy reads the last four).
SECTIONS = (
    "site",
    "runtime",
    "listener",
    "cloud",
    "authorization",
    "charge_points",
    "meters",
    "feeders",
    "grid_limits",
    "allocation",
)


def load_site(path: Path) -> SiteConfig:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "<file>", "a readable file", exc.strerror) from exc
    return parse_site(text, source=source, base_dir=path.resolve().parent)


def parse_site(text: str, *, source: str, base_dir: Path) -> SiteConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "<syntax>", "valid TOML", str(exc)) from exc
    top = Table(data, source=source)
    site = top.table("site")
    name = site.string("name")
    if not name.strip():
        raise site.error("name", "a non-empty name", name)
    if not site.has("storage_dir") and (
        name in (".", "..") or "/" in name or "\\" in name or "\0" in name
    ):
        # the default storage_dir is var/<name>: "../../x" would put the stores elsewhere
        raise site.error(
            "name", "a name usable as a directory name (no '/', not '..'), or a storage_dir", name
        )
    storage = Path(site.string("storage_dir", "var/" + name))
    site.reject_unknown()
    runtime = runtime_from_table(top.table("runtime", Table({}, source=source, path="runtime")))
    listener = listener_from_table(top.table("listener", Table({}, source=source, path="listener")))
    cloud_table = top.table("cloud", None)
    cloud = None if cloud_table is None else cloud_from_table(cloud_table)
    cp_tables = top.tables("charge_points")
    ocpp_parts = [
        charge_point_ocpp_from_table(t, security_profile=listener.security_profile)
        for t in cp_tables
    ]
    check_unique_ids(ocpp_parts, source=source)
    if cloud is None:
        for i, cp in enumerate(ocpp_parts):
            if cp.cloud_password is not None:  # no cloud to send it to: set for nothing
                written = password_key(cp_tables[i], "cloud_password")
                raise ConfigError(
                    source, f"charge_points[{i}].{written}", "a [cloud] section with it", "set"
                )
    if cloud is not None and cloud.edge_identity is not None:
        clash = next(
            (cp.id for cp in ocpp_parts if cp.id.casefold() == cloud.edge_identity.casefold()), None
        )
        if clash is not None:
            raise ConfigError(
                source, "cloud.edge_identity", "an identity no charge point uses", clash
            )
    if runtime.broker_shards > 1:
        _check_shards(runtime, source=source)
        longest = (
            base_dir / storage
        ).resolve() / f"broker-{runtime.broker_shards - 1}.handover.sock"
        if not unix_path_fits(longest):
            raise ConfigError(
                source,
                "site.storage_dir",
                f"a path short enough for the broker nodes' Unix sockets (at most {MAX_UNIX_PATH} "
                "bytes with the socket's name)",
                str(longest),
            )
    # A misspelt section ([[feeder]]) is named before the load-management sections check their
    # references: they would blame what it left out ("'yard' is no feeder name").
    for key in sorted(set(top.data) - set(SECTIONS)):
        raise top.error(key, "no such key here (misspelt?)")
    energy, cp_energy = _energy_sections(top, cp_tables)
    auth = _auth_section(top)
    for t in cp_tables:
        t.reject_unknown()
    top.reject_unknown()
    return SiteConfig(
        source=source,
        name=name,
        storage_dir=storage if storage.is_absolute() else (base_dir / storage).resolve(),
        runtime=runtime,
        listener=listener,
        cloud=cloud,
        charge_points=tuple(
            ChargePointConfig(ocpp=o, energy=e) for o, e in zip(ocpp_parts, cp_energy, strict=True)
        ),
        energy=energy,
        auth=auth,
    )


def _check_shards(runtime: RuntimeConfig, *, source: str) -> None:
    """What several broker nodes cannot do (yet), refused at start rather than half done."""
    got = f"broker_shards = {runtime.broker_shards}"
    if runtime.mode != "nodes":
        raise ConfigError(source, "runtime.broker_shards", "1 with mode single-process", got)
    # TLS (security_profile 2) is the front's: it relays the other nodes' charge points
    # (drivers/ocpp/handover.py).


def _energy_sections(top: Table, cp_tables: list[Table]) -> tuple[Any, list[Any]]:
    """Load-management sections; wired in by the energy package (config.energy)."""
    try:
        from config import energy
    except ImportError:
        return None, [None] * len(cp_tables)
    loader = getattr(energy, "site_energy_from_tables", None)
    if loader is None:
        return None, [None] * len(cp_tables)
    result: tuple[Any, list[Any]] = loader(top, cp_tables)
    return result


def _auth_section(top: Table) -> AuthorizationConfig:
    table = top.table("authorization", None)
    return auth_from_table(
        table if table is not None else Table({}, source=top.source, path="authorization")
    )
