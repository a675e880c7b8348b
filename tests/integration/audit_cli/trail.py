"""A small audit trail in two node stores, written with the keys a running node writes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from actors.audit_records import AuditKind, AuditRecord, limit_record, message_record, new_record
from cli import audit as audit_cli
from drivers.store import audit_log
from drivers.store.env import open_store
from tests.helpers import timeout_s

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
CP = "CP001"


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def write_site(tmp_path: Path) -> Path:
    site = tmp_path / "site.toml"
    site.write_text(f'[site]\nname = "audit-test"\nstorage_dir = "{tmp_path / "var"}"\n')
    return site


def write(var: Path, node: str, records: Iterable[AuditRecord]) -> list[int]:
    store = open_store(var / node)
    try:
        return audit_log.write_records(store, list(records))
    finally:
        store.close()


def auth(at: float, *, cp: str = CP, path: str = "fallback:accept_capped") -> AuditRecord:
    return new_record(
        time_utc=t(at),
        actor=f"broker/charge_points/{cp}",
        charge_point_id=cp,
        kind=AuditKind.AUTHORIZATION,
        decision="Accepted",
        reason="offline: unknown id; site rule accepts up to 5000 Wh",
        inputs={"id_tag": "04A1", "path": path, "energy_cap_wh": 5000},
    )


def limit(at: float, limit_a: float, source: str, *, cp: str = CP) -> AuditRecord:
    return limit_record(
        time_utc=t(at),
        actor="energy/site_allocator",
        charge_point_id=cp,
        connector_id=1,
        limit_a=limit_a,
        binding_source=source,
        reason=f"{source} binds",
        inputs={"previous_a": 32.0},
    )


def cloud_cap(at: float, cap_a: float | None, *, cp: str = CP) -> AuditRecord:
    """The broker's record of a cloud TxProfile's cap (or its end), as actors.cp_cloud_caps
    writes it: kind ``limit``, binding source ``cloud profile``, no ``limit_a``."""
    decision = "no cloud cap" if cap_a is None else f"at most {cap_a:.1f} A"
    return new_record(
        time_utc=t(at),
        actor=f"broker/charge_points/{cp}",
        charge_point_id=cp,
        kind=AuditKind.LIMIT,
        decision=decision,
        reason=f"the cloud's TxProfile 42: {decision} on connector 1",
        inputs={
            "cloud_cap_a": cap_a,
            "binding_source": "cloud profile",
            "profile_id": 42,
            "connector_id": 1,
            "transaction_id": "7",
        },
    )


def message(
    kind: AuditKind, at: float, *, cp: str = CP, action: str = "StartTransaction"
) -> AuditRecord:
    return message_record(
        kind,
        time_utc=t(at),
        actor=f"broker/cloud/{cp}",
        charge_point_id=cp,
        action=action,
        message_id=f"m-{at:g}",
        reason=f"{kind.value} while the cloud was away",
    )


def rules(at: float, version: int) -> AuditRecord:
    return new_record(
        time_utc=t(at),
        actor="broker/rules",
        kind=AuditKind.RULES_APPLIED,
        decision=f"version {version}",
        reason=f"version {version} applied",
        inputs={"version": version},
    )


def day_at_cp001(var: Path) -> None:
    """Broker: rules, an authorization, a message buffered then replayed, another charge point.
    Energy: an old limit, the limit in force (bound by the DSO), a later one."""
    write(
        var,
        "broker",
        [
            rules(-3600, 4),
            auth(-120),
            message(AuditKind.MESSAGE_BUFFERED, -110),
            message(AuditKind.MESSAGE_REPLAYED, 30),
            auth(-50, cp="CP002", path="local_list"),
        ],
    )
    write(
        var,
        "energy",
        [
            limit(-1200, 32, "charge_point_max"),
            limit(-60, 10, "grid_limit:dso"),
            limit(-40, 16, "fuse:F1", cp="CP002"),
            limit(1800, 20, "meter_headroom"),
        ],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    code: int
    out: str
    err: str


def run_main(argv: list[str], *, now: datetime = NOW) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = audit_cli.main(argv, out=out, err=err, now=now)
    return Result(code=code, out=out.getvalue(), err=err.getvalue())


def run_process(argv: list[str]) -> Result:
    done = subprocess.run(
        [sys.executable, "run.py", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s(60),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    return Result(code=done.returncode, out=done.stdout, err=done.stderr)
