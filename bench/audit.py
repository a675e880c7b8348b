"""Audit trail figures (issue: audit trail).

    python bench/audit.py [--quick]

Prints, as its last lines:
- append throughput through the real path: an actor on an ActorSystem with a real LMDB store
  (under /var/tmp) and its StoreWriter stages one record per message with ``actors.audit.audit``;
  with many messages queued (they commit in batches) against one commit per record (each message
  awaited), in the same run;
- explain latency over 1,000,000 records (100,000 with ``--quick``) in two node stores (limits in
  "energy", the rest in "broker") over 1,000 charge points and a week: p50/p99 of
  ``cli.audit_query.explain_charge_point`` for 200 random (charge point, time) pairs, the same in a
  ``run.py explain`` process (including interpreter start), and ``run.py audit --since 1h``
  (rows read, merged and rendered) as the last hour of the week.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.audit import audit
from actors.audit_records import AuditKind, AuditRecord, limit_record, message_record, new_record
from actors.explain import format_audit
from actors.store_writer import StoreWriter
from cli.audit_query import audit_rows, explain_charge_point, open_stores
from drivers.store import audit_log
from drivers.store.env import open_store
from supervisors.actor import Actor
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem

REPO = Path(__file__).resolve().parents[1]
WEEK_S = 7 * 86_400
START = datetime(2025, 6, 2, tzinfo=UTC)
CHARGE_POINTS = 1_000
QUERIES = 200
WRITE_BATCH = 20_000  # records per direct write transaction when building the big trail


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# --- (a) append throughput through the actor path --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Decide:
    n: int


class Decider(Actor):
    """Stands for an allocator: each message is one limit decision with its audit record."""

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, Decide):
            audit(
                self,
                AuditKind.LIMIT,
                decision="16 A",
                reason="DSO limit 40 A shared by 3 charging connectors",
                charge_point_id=f"CP{msg.n % CHARGE_POINTS:04d}",
                inputs={"limit_a": 16.0, "binding_source": "grid_limit:dso", "n": msg.n},
            )
            return None
        return await super().receive(msg)


async def append_figures(quick: bool, workdir: Path) -> dict[str, float]:
    store = open_store(workdir / "append", map_size_bytes=256 << 20)
    system = ActorSystem("bench", store=store)
    await system.start(
        SupervisorSpec(
            strategy="rest_for_one",
            children=(
                ChildSpec(id="store", start=StoreWriter),
                ChildSpec(id="decider", start=Decider),
            ),
        )
    )
    ref = system.lookup("bench/decider")
    writer = system.actor("bench/store")
    assert ref is not None
    assert isinstance(writer, StoreWriter)
    assert writer.writer is not None
    stats = writer.writer.stats

    n_single = 300 if quick else 2_000
    t0 = time.perf_counter()
    for i in range(n_single):
        await ref.ask(Decide(n=i))  # answered after its own commit: one commit per record
    single_rate = n_single / (time.perf_counter() - t0)

    n_group = 20_000 if quick else 200_000
    commits_before = stats.commits
    t0 = time.perf_counter()
    for i in range(n_group - 1):
        ref.tell(Decide(n=i))
    await ref.ask(Decide(n=n_group - 1), timeout_s=300)  # answered after every earlier commit
    group_rate = n_group / (time.perf_counter() - t0)
    commits = stats.commits - commits_before
    await system.stop(30)
    appended = audit_log.count(store)
    store.close()
    if appended != n_single + n_group:
        raise AssertionError(f"{appended} records on disk, expected {n_single + n_group}")
    return {
        "append_one_commit_per_record_per_s": single_rate,
        "append_queued_records_per_s": group_rate,
        "append_group_ratio": group_rate / single_rate,
        "append_records_per_commit": n_group / max(commits, 1),
    }


# --- (b) explain and audit over a big trail --------------------------------------------------


def templates() -> dict[AuditKind, AuditRecord]:
    """One record per kind as the actors build them; the trail varies time and charge point."""
    t, cp = START, "CP0000"
    cloud = "broker/cloud/CP0000"
    return {
        AuditKind.LIMIT: limit_record(
            time_utc=t,
            actor="energy/site_allocator",
            charge_point_id=cp,
            connector_id=1,
            limit_a=16,
            binding_source="grid_limit:dso",
            reason="DSO limit 40 A shared by 3 charging connectors",
            inputs={"previous_a": 32.0, "target_a": 16.0, "action": "decrease", "mode": "normal"},
        ),
        AuditKind.AUTHORIZATION: new_record(
            time_utc=t,
            actor="broker/charge_points/CP0000",
            charge_point_id=cp,
            kind=AuditKind.AUTHORIZATION,
            decision="Accepted",
            reason="offline: in the local list (version 7)",
            inputs={"id_tag": "04A1B2C3", "status": "Accepted", "path": "local_list"},
        ),
        AuditKind.MESSAGE_BUFFERED: message_record(
            AuditKind.MESSAGE_BUFFERED,
            time_utc=t,
            actor=cloud,
            charge_point_id=cp,
            action="MeterValues",
            message_id="e-1234",
            reason="the cloud is away: queued for replay, in order",
            inputs={"queue_depth": 3},
        ),
        AuditKind.MESSAGE_REPLAYED: message_record(
            AuditKind.MESSAGE_REPLAYED,
            time_utc=t,
            actor=cloud,
            charge_point_id=cp,
            action="MeterValues",
            message_id="e-1234",
            reason="delivered to the cloud after the edge had answered it",
            inputs={"attempts": 1},
        ),
        AuditKind.CLOUD_LINK: new_record(
            time_utc=t,
            actor=cloud,
            charge_point_id=cp,
            kind=AuditKind.CLOUD_LINK,
            decision="down",
            reason="no answer to 3 pings",
        ),
        AuditKind.RULES_APPLIED: new_record(
            time_utc=t,
            actor="broker/rules",
            kind=AuditKind.RULES_APPLIED,
            decision="version 4",
            reason="version 4 applied (was 3)",
            inputs={"version": 4},
        ),
    }


MIX = (  # kind, share of the trail
    (AuditKind.LIMIT, 0.40),
    (AuditKind.AUTHORIZATION, 0.15),
    (AuditKind.MESSAGE_BUFFERED, 0.20),
    (AuditKind.MESSAGE_REPLAYED, 0.20),
    (AuditKind.CLOUD_LINK, 0.05),
)
RULES_PER_WEEK = 14


def build_trail(var: Path, n: int, rng: random.Random) -> tuple[float, int]:
    """``n`` records in stores ``var/energy`` (limits) and ``var/broker`` (the rest), time
    ordered like appends; returns (records/s written, bytes on disk)."""
    shapes = templates()
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    offsets = sorted(rng.uniform(0, WEEK_S) for _ in range(n - RULES_PER_WEEK))
    rules_at = {round(WEEK_S * (i + 0.5) / RULES_PER_WEEK, 3) for i in range(RULES_PER_WEEK)}
    timeline = sorted([(s, False) for s in offsets] + [(s, True) for s in rules_at])
    stores = {name: open_store(var / name, map_size_bytes=8 << 30) for name in ("energy", "broker")}
    pending: dict[str, list[AuditRecord]] = {name: [] for name in stores}
    t0 = time.perf_counter()
    for offset, is_rules in timeline:
        at = START + timedelta(seconds=offset)
        if is_rules:
            pending["broker"].append(replace(shapes[AuditKind.RULES_APPLIED], time_utc=at))
        else:
            kind = rng.choices(kinds, weights)[0]
            cp = f"CP{rng.randrange(CHARGE_POINTS):04d}"
            node = "energy" if kind is AuditKind.LIMIT else "broker"
            pending[node].append(replace(shapes[kind], time_utc=at, charge_point_id=cp))
        for name, rows in pending.items():
            if len(rows) >= WRITE_BATCH:
                audit_log.write_records(stores[name], rows)
                rows.clear()
    for name, rows in pending.items():
        audit_log.write_records(stores[name], rows)
    rate = len(timeline) / (time.perf_counter() - t0)
    size = sum(s.info().used_bytes for s in stores.values())
    for store in stores.values():
        store.close()
    return rate, size


def query_figures(quick: bool, workdir: Path) -> dict[str, float]:
    n = 100_000 if quick else 1_000_000
    rng = random.Random(20250602)
    var = workdir / "var"
    build_rate, size = build_trail(var, n, rng)
    end = START + timedelta(seconds=WEEK_S)
    pairs = [
        (f"CP{rng.randrange(CHARGE_POINTS):04d}", START + timedelta(seconds=rng.uniform(0, WEEK_S)))
        for _ in range(QUERIES)
    ]
    latencies: list[float] = []
    found = rules = complete = 0
    with open_stores(var) as stores:
        for cp, at in pairs:
            t0 = time.perf_counter()
            result = explain_charge_point(stores, cp, at_utc=at, window_s=900.0)
            latencies.append(time.perf_counter() - t0)
            found += result.explanation.data["limit"] is not None
            rules += result.explanation.data["rules"] is not None
            complete += result.lookback_complete
        indexed = all(audit_log.site_wide_indexed(store) for _, store in stores)
        audit_times: list[float] = []
        rows = 0
        for _ in range(5):
            t0 = time.perf_counter()
            out, _ = audit_rows(
                stores,
                since=end - timedelta(hours=1),
                until=None,
                charge_point_id=None,
                kinds=None,
                limit=None,
            )
            format_audit(record for _, record in out)
            audit_times.append(time.perf_counter() - t0)
            rows = len(out)
    process_ms = cli_process_ms(workdir, var, pairs[:5])
    return {
        "trail_records": float(n),
        "trail_build_records_per_s": build_rate,
        "trail_mb": size / 1e6,
        "site_wide_records_in_cp_index": float(indexed),
        "explain_p50_ms": pct(latencies, 50) * 1e3,
        "explain_p99_ms": pct(latencies, 99) * 1e3,
        "explain_found_limit_pct": 100 * found / len(pairs),
        "explain_found_rules_pct": 100 * rules / len(pairs),
        "explain_lookback_complete_pct": 100 * complete / len(pairs),
        "explain_cli_process_p50_ms": process_ms,
        "audit_since_1h_rows": float(rows),
        "audit_since_1h_ms": pct(audit_times, 50) * 1e3,
    }


def cli_process_ms(workdir: Path, var: Path, pairs: list[tuple[str, datetime]]) -> float:
    site = workdir / "site.toml"
    site.write_text(f'[site]\nname = "bench"\nstorage_dir = "{var}"\n')
    times = []
    for cp, at in pairs:
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "run.py",
                "explain",
                cp,
                "--at",
                at.isoformat(),
                "--config",
                str(site),
            ],
            cwd=REPO,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - t0)
    return pct(times, 50) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="100,000 records (< 30 s)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="bench-audit-", dir="/var/tmp"))
    started = time.perf_counter()
    try:
        figures = asyncio.run(append_figures(args.quick, workdir))
        figures.update(query_figures(args.quick, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"bench/audit.py {'--quick ' if args.quick else ''}on {os.cpu_count()} cores, "
        f"{time.perf_counter() - started:.1f} s"
    )
    for key, value in figures.items():
        print(f"{key:36s} {value:14,.1f}")
    print(
        "explain: 1,000 charge points over a week, window 900 s, two node stores; "
        "process = python run.py explain, interpreter start included"
    )


if __name__ == "__main__":
    main()
