"""``run.py status [--json] [--watch]``: the live supervision tree and site summary.

Asks the running runtime over its control socket; when it does not answer within the configured
time (1 s by default) it prints the last state the nodes persisted in LMDB, marked stale with its
age. Exit code: 0 live, 1 stale, 2 nothing known.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from cli.site_view import render_site, table
from config.schema import SiteConfig
from drivers import control
from supervisors.node_runtime import read_snapshot
from supervisors.status_doc import status_document

EXIT_LIVE, EXIT_STALE, EXIT_UNKNOWN = 0, 1, 2


def collect(config: SiteConfig) -> dict[str, Any] | None:
    try:
        answer = control.ask(
            config.control_socket, {"cmd": "status"}, timeout_s=config.runtime.status_timeout_s
        )
        if "error" not in answer:
            return answer
    except control.ControlUnavailable:
        pass
    return stale_status(config)


def stale_status(config: SiteConfig) -> dict[str, Any] | None:
    nodes = []
    newest: datetime | None = None
    names = sorted(p.parent.name for p in config.storage_dir.glob("*/data.mdb"))
    for name in names:
        snapshot = read_snapshot(config.storage_dir, name)
        if snapshot is None:
            continue
        snapshot["state"] = "unknown (stale)"
        snapshot["answered"] = False
        snapshot.setdefault("up_since_utc", snapshot.get("started_utc"))  # its last start
        nodes.append(snapshot)
        taken = datetime.fromisoformat(snapshot["snapshot_utc"])
        newest = taken if newest is None or taken > newest else newest
    if newest is None:
        return None
    age = (datetime.now(UTC) - newest).total_seconds()
    return status_document(
        config=config, mode="unknown", nodes=nodes, launcher=None, stale=True, age_s=age
    )


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def loop_lag_cell(lag: dict[str, Any] | None) -> str:
    """The node's loop lag over the last minute (supervisors/loop_lag.py): p99 and max."""
    if not lag or not lag.get("samples"):
        return "-"
    return f"p99 {lag['p99_ms']:.1f} max {lag['max_ms']:.1f} ms"


def _tree_rows(children: list[dict[str, Any]], depth: int, rows: list[list[str]]) -> None:
    for child in children:
        rows.append(
            [
                "  " * depth + child["id"],
                child["kind"],
                child["state"],
                str(child["restarts"]),
                str(child["mailbox_depth"]),
                _cell(child.get("last_failure")),
            ]
        )
        _tree_rows(child.get("children", []), depth + 1, rows)


def render(doc: dict[str, Any], out: TextIO) -> None:
    if doc["stale"]:
        out.write(
            f"Site {doc['site']}: STALE - the runtime did not answer; last state persisted "
            f"{doc['age_s']} s ago\n\n"
        )
    else:
        launcher = doc.get("launcher") or {}
        extra = f", admin port {launcher['admin_port']}" if launcher.get("admin_port") else ""
        out.write(
            f"Site {doc['site']}: live ({doc['mode']} mode), launcher pid "
            f"{launcher.get('pid')}{extra}\n\n"
        )
    rows = [
        ["NODE", "KIND", "STATE", "PID", "RESTARTS", "DEAD LETTERS", "LOOP LAG", "LAST FAILURE"]
    ]
    for node in doc["nodes"]:
        failure = node.get("last_failure")
        if failure and node.get("last_failure_utc"):
            failure = f"{failure} (at {node['last_failure_utc']})"
        rows.append(
            [
                node["name"],
                node["kind"],
                _cell(node.get("state")),
                _cell(node.get("pid")),
                _cell(node.get("restarts")),
                _cell(node.get("dead_letters")),
                loop_lag_cell(node.get("loop_lag")),
                _cell(failure),
            ]
        )
    table(rows, out)
    out.write("\n")
    render_site(doc, out)
    for node in doc["nodes"]:
        out.write(f"\nSupervision tree of node {node['name']}:\n")
        tree_rows = [["ACTOR", "KIND", "STATE", "RESTARTS", "MAILBOX", "LAST FAILURE"]]
        _tree_rows(node.get("tree", []), 0, tree_rows)
        if len(tree_rows) == 1:
            out.write("  (no answer from this node)\n")
        else:
            table(tree_rows, out)


def render_watch(doc: dict[str, Any], out: TextIO) -> None:
    """The live view: the site at a glance, and the supervision tree's failures only."""
    when = doc.get("generated_utc", "")[:19].replace("T", " ")
    state = f"STALE ({doc['age_s']} s old)" if doc["stale"] else "live"
    out.write(f"Site {doc['site']} - {state} - {when} UTC   (Ctrl-C to leave)\n\n")
    render_site(doc, out)
    restarts = [
        (n["name"], n.get("restarts"), n.get("last_failure"))
        for n in doc["nodes"]
        if n.get("restarts")
    ]
    for name, count, failure in restarts:
        out.write(f"\nnode {name}: {count} restart(s), last: {failure}\n")


def main(
    config: SiteConfig,
    *,
    as_json: bool,
    watch: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    while True:
        doc = collect(config)
        if watch:
            out.write("\x1b[2J\x1b[H")
        if doc is None:
            # with --json, stdout is for the document alone (a program parses it)
            (err if as_json else out).write(
                f"Site {config.name}: no runtime answered and nothing is persisted under "
                f"{config.storage_dir}\n"
            )
            code = EXIT_UNKNOWN
        elif as_json:
            out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
            code = EXIT_STALE if doc["stale"] else EXIT_LIVE
        elif watch:
            render_watch(doc, out)
            code = EXIT_STALE if doc["stale"] else EXIT_LIVE
        else:
            render(doc, out)
            code = EXIT_STALE if doc["stale"] else EXIT_LIVE

        out.flush()
        if not watch:
            return code
        time.sleep(1.0)
