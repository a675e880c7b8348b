"""``run.py explain`` and ``run.py audit``: the audit trail of every node, merged by time.

    python run.py explain CHARGE_POINT [--at TIME] [--window S] [--json] [--config FILE]
    python run.py audit [--since TIME] [--until TIME] [--charge-point ID] [--kind KIND]...
                        [--limit N] [--json] [--config FILE]

Both read every node store under the site's ``storage_dir`` (``<storage_dir>/<node>/data.mdb``):
a charge point's records live in several (the broker node: authorizations, messages buffered,
replayed or dead-lettered, rejected frames; the energy node: limits). Stores are opened read-only
and read in short transactions, so the commands work while the runtime runs, after it stopped,
and inside a process that runs the nodes itself (its open store is reused).

TIME is ISO-8601 (``2025-06-01T14:02:00Z``, ``2025-06-01T16:02:00+02:00``; without a zone it
means UTC), a span back from now (``90s``, ``15m``, ``2h``, ``1d``) or ``now``.

``explain`` tells why the charge point had its limit and its last answer at TIME (default now):
the limit in force and the source that bound it, the authorization and its path, the central
rules in force, and everything recorded within ``--window`` seconds either side (default 900).
``--json`` prints one object: ``charge_point_id``, ``at_utc``, ``window_s``, ``limit``,
``answer``, ``rules`` (a record each, or null; ``limit`` the latest of any connector),
``limits`` (the limit in force on each connector the records name: a record each), ``around``
(records), ``messages`` (counts of
``message_buffered``, ``message_coalesced``, ``message_replayed``, ``message_dead_lettered`` in
the window), ``nodes`` (the stores read) and ``lookback_complete`` (false when the search before
the window for the limit, answer or rules in force stopped after
``cli.audit_query.LOOKBACK`` index entries).

``audit`` prints the newest ``--limit`` records (default 1000; 0 for all) that match, oldest first.
``--json`` prints one JSON object per line with these fields (stable):

- ``node``: the node whose store holds the record (``broker``, ``energy``, ...);
- ``id``: the record id, unique within its node (two nodes may reuse one);
- ``time_utc``: RFC 3339 UTC time of the decision (``2025-06-01T14:02:00.120Z``);
- ``actor``: supervision path of the actor that decided (``broker/charge_points/CP001``);
- ``charge_point_id``: the charge point concerned, or null for a site-wide decision;
- ``kind``: one of :class:`actors.audit_records.AuditKind` (``authorization``, ``limit``, ...);
- ``decision``: what was decided (``Accepted``, ``16 A``, ``StartTransaction``, ...);
- ``inputs``: the decision's inputs as a JSON object, secrets redacted;
- ``reason``: why, in words.

Exit codes: 0 something shown; 1 nothing found (no stores; no records for the charge point, or
none at or around TIME; none matching the filters; or a store could not be read: the message says
which); 2 bad arguments; 78 bad configuration.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from actors.audit_records import AuditKind, record_to_json
from actors.explain import format_audit, parse_since
from cli import audit_query
from cli.audit_query import Stores, audit_rows, explain_charge_point, known_ids, open_stores
from config.fields import ConfigError
from config.schema import SiteConfig, load_site
from drivers.store import audit_log
from drivers.store.env import StoreError

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 78
MAX_WINDOW_S = 7 * 86_400
TIME_FORMS = (
    "ISO-8601 such as 2025-06-01T14:02:00Z or 2025-06-01T16:02:00+02:00 (no zone means UTC), "
    "a span back from now such as 90s, 15m, 2h, 1d, or 'now'"
)


EXPLAIN_HELP = "why a charge point had its limit and its answer at a time"
AUDIT_HELP = "audit records of every node, merged by time, newest last"


class UsageError(ValueError):
    """A bad argument value: exit code 2."""


# --- arguments -------------------------------------------------------------------------------


def add_explain_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        f"Tell {EXPLAIN_HELP}, from the audit records of every node store of the site: the "
        "limit in force and the source that bound it, the authorization and its path, the "
        "central rules in force, and what was recorded around that time. TIME is ISO-8601 "
        "(without a zone it means UTC), a span back from now (90s, 15m, 2h, 1d) or 'now'."
    )
    p.add_argument("charge_point", metavar="CHARGE_POINT", help="the charge point id")
    p.add_argument("--at", metavar="TIME", default="now", help=f"when; {TIME_FORMS}")
    p.add_argument(
        "--window",
        metavar="S",
        type=float,
        default=900.0,
        help="also show what was recorded this many seconds either side (default 900)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object (see cli/audit.py)")
    p.add_argument(
        "--config", metavar="FILE", type=Path, dest="sub_config", help="site configuration (TOML)"
    )


def add_audit_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        f"Show the {AUDIT_HELP}. TIME is ISO-8601 (without a zone it means UTC), a span back "
        "from now (90s, 15m, 2h, 1d) or 'now'. --json: one object per line with node, id, "
        "time_utc, actor, charge_point_id, kind, decision, inputs, reason."
    )
    p.add_argument("--since", metavar="TIME", help=f"from this time on; {TIME_FORMS}")
    p.add_argument("--until", metavar="TIME", help="up to this time (same forms)")
    p.add_argument("--charge-point", metavar="ID", help="only this charge point's records")
    p.add_argument(
        "--kind",
        action="append",
        choices=[k.value for k in AuditKind],
        metavar="KIND",
        help="only records of this kind (repeatable): " + ", ".join(k.value for k in AuditKind),
    )
    p.add_argument(
        "--limit",
        metavar="N",
        type=int,
        default=1000,
        help="the newest N rows (default 1000; 0: all)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--config", metavar="FILE", type=Path, dest="sub_config", help="site configuration (TOML)"
    )


def parse_time(text: str, *, option: str, now: datetime) -> datetime:
    if text.strip().lower() == "now":
        return now
    try:
        return parse_since(text, now=now)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a time; expected {TIME_FORMS}") from None


# --- messages --------------------------------------------------------------------------------


def _unknown_charge_point(stores: Stores, charge_point_id: str, where: Path) -> str:
    ids, more = known_ids(stores)
    nodes = ", ".join(name for name, _ in stores)
    text = f"no audit records for charge point {charge_point_id!r} in node stores {nodes} ({where})"
    if not ids:
        return text + "; no charge point has records yet"
    close = difflib.get_close_matches(charge_point_id, ids, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    listed = ", ".join(ids) + (", ..." if more else "")
    return f"{text}{hint}\ncharge points with records: {listed}"


def _warn_unindexed(stores: Stores, err: TextIO) -> None:
    for name, store in stores:
        hidden = audit_log.unindexed(store)
        if hidden:
            err.write(
                f"warning: node {name} has {hidden} audit record(s) outside the time index "
                "(appended without actors.audit.stage_record); they are not shown\n"
            )


# --- the commands ----------------------------------------------------------------------------


def run(
    config: SiteConfig,
    args: argparse.Namespace,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    now: datetime | None = None,
) -> int:
    """``args`` from a parser set up with :func:`add_explain_arguments` (``command`` "explain")
    or :func:`add_audit_arguments` (``command`` "audit")."""
    when = now or datetime.now(UTC)
    try:
        if args.command == "explain":
            return _explain(config, args, out, err, when)
        return _audit(config, args, out, err, when)
    except UsageError as exc:
        err.write(f"run.py {args.command}: {exc}\n")
        return EXIT_USAGE
    except (StoreError, ValueError) as exc:  # a store that cannot be read, a corrupt record
        err.write(f"run.py {args.command}: {exc}\n")
        return EXIT_NOTHING


def _no_stores(config: SiteConfig, err: TextIO) -> int:
    err.write(
        f"no node stores under {config.storage_dir} (storage_dir of site {config.name!r} in "
        f"{config.source}): has the runtime run with this configuration?\n"
    )
    return EXIT_NOTHING


def _explain(
    config: SiteConfig, args: argparse.Namespace, out: TextIO, err: TextIO, now: datetime
) -> int:
    at = parse_time(args.at, option="--at", now=now)
    window_s = float(args.window)
    if not 0 <= window_s <= MAX_WINDOW_S:
        raise UsageError(f"--window: {args.window:g} s is outside 0..{MAX_WINDOW_S} s")
    cp = args.charge_point
    if not cp:
        raise UsageError("CHARGE_POINT: expected a charge point id, got an empty string")
    with open_stores(config.storage_dir) as stores:
        if not stores:
            return _no_stores(config, err)
        _warn_unindexed(stores, err)
        if not any(audit_log.has_records_for(store, cp) for _, store in stores):
            err.write(_unknown_charge_point(stores, cp, config.storage_dir) + "\n")
            return EXIT_NOTHING
        result = explain_charge_point(stores, cp, at_utc=at, window_s=window_s)
        nodes = [name for name, _ in stores]
    story = result.explanation
    if args.json:
        doc: dict[str, Any] = {
            **story.data,
            "nodes": nodes,
            "lookback_complete": result.lookback_complete,
        }
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(story.text() + "\n")
        if not result.lookback_complete:
            out.write(
                f"  (the search before the window stopped after {audit_query.LOOKBACK} records "
                "of a store: an older limit, answer or rules change was not looked for)\n"
            )
        out.write(f"  (from node stores {', '.join(nodes)} under {config.storage_dir})\n")
    found = any(story.data[k] is not None for k in ("limit", "answer", "rules"))
    return EXIT_OK if found or story.data["around"] else EXIT_NOTHING


def _audit(
    config: SiteConfig, args: argparse.Namespace, out: TextIO, err: TextIO, now: datetime
) -> int:
    since = None if args.since is None else parse_time(args.since, option="--since", now=now)
    until = None if args.until is None else parse_time(args.until, option="--until", now=now)
    if since is not None and until is not None and until < since:
        raise UsageError(f"--until {args.until!r} is before --since {args.since!r}")
    if args.limit < 0:
        raise UsageError(f"--limit: expected 0 (all) or more, got {args.limit}")
    kinds = None if not args.kind else frozenset(AuditKind(k) for k in args.kind)
    cp = args.charge_point
    if cp == "":
        raise UsageError("--charge-point: expected a charge point id, got an empty string")
    with open_stores(config.storage_dir) as stores:
        if not stores:
            return _no_stores(config, err)
        _warn_unindexed(stores, err)
        rows, more = audit_rows(
            stores,
            since=since,
            until=until,
            charge_point_id=cp,
            kinds=kinds,
            limit=args.limit or None,
        )
        if not rows:
            unknown = cp is not None and not any(
                audit_log.has_records_for(store, cp) for _, store in stores
            )
            if unknown:
                err.write(_unknown_charge_point(stores, cp, config.storage_dir) + "\n")
            else:
                err.write("no audit records match\n")
            return EXIT_NOTHING
    if args.json:
        for name, record in rows:
            out.write(orjson.dumps({"node": name, **record_to_json(record)}).decode() + "\n")
    else:
        out.write(format_audit(record for _, record in rows) + "\n")
    if more:
        err.write(
            f"showing the newest {len(rows)} rows; older ones match too "
            "(narrow --since, or raise --limit; 0 shows all)\n"
        )
    return EXIT_OK


# --- python -m cli.audit / in-process use ----------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py", description="The audit trail of an edge site.")
    sub = p.add_subparsers(dest="command", required=True)
    add_explain_arguments(sub.add_parser("explain", help=EXPLAIN_HELP))
    add_audit_arguments(sub.add_parser("audit", help=AUDIT_HELP))
    return p


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    now: datetime | None = None,
) -> int:
    """``run.py explain ...`` / ``run.py audit ...`` (``--config`` default: the demo site)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error (or --help)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    path = args.sub_config or Path(__file__).resolve().parents[1] / "config" / "demo-site.toml"
    try:
        config = load_site(path)
    except ConfigError as exc:
        err.write(f"configuration error: {exc}\n")
        return EXIT_CONFIG
    return run(config, args, out=out, err=err, now=now)


if __name__ == "__main__":
    sys.exit(main())
