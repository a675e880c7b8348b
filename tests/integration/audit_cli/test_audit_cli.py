"""``run.py audit``: rows of every node merged by time, filters, JSON lines, errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from actors.audit_records import AuditKind
from cli import audit as audit_cli
from drivers.store.env import open_store
from tests.helpers import timeout_s
from tests.integration.audit_cli.trail import (
    REPO,
    day_at_cp001,
    limit,
    message,
    run_main,
    run_process,
    write,
    write_site,
)

ALL = [  # decisions of day_at_cp001, oldest first, across both stores
    "version 4",  # broker  -3600
    "32 A",  # energy  -1200
    "Accepted",  # broker  -120  CP001
    "StartTransaction",  # broker  -110  buffered
    "10 A",  # energy  -60
    "Accepted",  # broker  -50   CP002
    "16 A",  # energy  -40   CP002
    "StartTransaction",  # broker  +30   replayed
    "20 A",  # energy  +1800
]


def documented_fields() -> set[str]:
    doc = audit_cli.__doc__ or ""
    section = doc.split("``--json`` prints one JSON object per line")[1].split("Exit codes")[0]
    return set(re.findall(r"^- ``(\w+)``:", section, flags=re.MULTILINE))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    day_at_cp001(tmp_path / "var")
    return write_site(tmp_path)


def json_rows(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


def test_rows_of_both_stores_are_merged_by_time_newest_last(site: Path) -> None:
    r = run_main(["audit", "--json", "--config", str(site)])
    assert r.code == 0, r.err
    rows = json_rows(r.out)
    assert [row["decision"] for row in rows] == ALL
    times = [row["time_utc"] for row in rows]
    assert times == sorted(times)
    assert [row["node"] for row in rows][:3] == ["broker", "energy", "broker"]


def test_json_lines_have_exactly_the_documented_fields(site: Path) -> None:
    fields = documented_fields()
    assert fields == {
        "node",
        "id",
        "time_utc",
        "actor",
        "charge_point_id",
        "kind",
        "decision",
        "inputs",
        "reason",
    }
    rows = json_rows(run_main(["audit", "--json", "--config", str(site)]).out)
    assert rows
    for row in rows:
        assert set(row) == fields
        assert isinstance(row["inputs"], dict)
        assert AuditKind(row["kind"])


def test_text_rows_are_oldest_first(site: Path) -> None:
    r = run_main(["audit", "--config", str(site)])
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) == len(ALL)
    assert "rules_applied" in lines[0]
    assert "[broker/rules]" in lines[0]
    assert "20 A" in lines[-1]
    assert "[energy/site_allocator]" in lines[-1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["--since", "2025-06-01T11:58:00Z"], ALL[2:], id="since"),
        pytest.param(["--until", "2025-06-01T11:59:00"], ALL[:5], id="until-naive-utc"),
        pytest.param(
            ["--since", "2025-06-01T13:58:00+02:00", "--until", "2025-06-01T12:00:00Z"],
            ALL[2:7],
            id="between",
        ),
        pytest.param(["--since", "90m", "--until", "40m"], ALL[1:8], id="relative"),
        pytest.param(["--charge-point", "CP002"], ["Accepted", "16 A"], id="charge-point"),
        pytest.param(["--kind", "limit"], ["32 A", "10 A", "16 A", "20 A"], id="kind"),
        pytest.param(
            ["--kind", "message_buffered", "--kind", "rules_applied"],
            ["version 4", "StartTransaction"],
            id="kinds",
        ),
        pytest.param(
            ["--charge-point", "CP001", "--kind", "limit", "--limit", "2"],
            ["10 A", "20 A"],
            id="newest-two-of-cp-and-kind",
        ),
        pytest.param(["--limit", "3"], ALL[-3:], id="limit-newest"),
        pytest.param(["--limit", "0"], ALL, id="limit-0-all"),
    ],
)
def test_filters(site: Path, args: list[str], expected: list[str]) -> None:
    r = run_main(["audit", "--json", *args, "--config", str(site)])
    assert r.code == 0, r.err
    assert [row["decision"] for row in json_rows(r.out)] == expected


def test_a_limit_that_cuts_says_so(site: Path) -> None:
    r = run_main(["audit", "--limit", "2", "--config", str(site)])
    assert r.code == 0
    assert "showing the newest 2 rows; older ones match too" in r.err
    whole = run_main(["audit", "--limit", str(len(ALL)), "--config", str(site)])
    assert whole.err == ""


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        pytest.param(
            ["--since", "last tuesday"], 2, "--since: 'last tuesday' is not a time", id="since"
        ),
        pytest.param(["--until", "x"], 2, "--until: 'x' is not a time", id="until"),
        pytest.param(
            ["--since", "2025-06-01T12:00:00Z", "--until", "2025-06-01T11:00:00Z"],
            2,
            "is before --since",
            id="until-before-since",
        ),
        pytest.param(["--kind", "limits"], 2, "invalid choice: 'limits'", id="kind"),
        pytest.param(["--limit", "-1"], 2, "--limit: expected 0 (all) or more", id="limit"),
        pytest.param(["--charge-point", ""], 2, "--charge-point: expected", id="empty-cp"),
        pytest.param(["--since", "2030-01-01T00:00:00Z"], 1, "no audit records match", id="none"),
        pytest.param(
            ["--charge-point", "CP9"], 1, "charge points with records: CP001, CP002", id="cp"
        ),
    ],
)
def test_errors_and_exit_codes(
    site: Path, args: list[str], code: int, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run_main(["audit", *args, "--config", str(site)])
    assert r.code == code
    assert expected in r.err + capsys.readouterr().err
    assert r.out == ""


def test_records_outside_the_indexes_are_warned_about(site: Path) -> None:
    store = open_store(site.parent / "var" / "energy")
    try:
        store.table("audit")
        store.write_now([("put", "audit", (2**62).to_bytes(8, "big"), b"{}")])
    finally:
        store.close()
    r = run_main(["audit", "--config", str(site)])
    assert r.code == 0
    assert "warning: node energy has 1 audit record(s) outside the time index" in r.err


def test_run_py_audit_as_a_process(site: Path) -> None:
    r = run_process(["audit", "--json", "--kind", "limit", "--config", str(site)])
    assert r.code == 0, r.err
    rows = json_rows(r.out)
    assert [row["decision"] for row in rows] == ["32 A", "10 A", "16 A", "20 A"]
    assert {row["node"] for row in rows} == {"energy"}
    assert run_process(["audit", "--kind", "nope", "--config", str(site)]).code == 2
    assert run_process(["audit", "--since", "2030-01-01", "--config", str(site)]).code == 1
    status = run_process(["status", "--json", "--config", str(site)])
    assert status.code in (1, 2), "the existing subcommand still runs"


def test_ids_repeat_across_nodes_and_rows_stay_apart(tmp_path: Path) -> None:
    var = tmp_path / "var"
    broker_ids = write(var, "broker", [message(AuditKind.MESSAGE_BUFFERED, 0)])
    energy_ids = write(var, "energy", [limit(0, 6, "min_current")])
    assert broker_ids == energy_ids, "both nodes start at epoch 1: the node tells them apart"
    rows = json_rows(run_main(["audit", "--json", "--config", str(write_site(tmp_path))]).out)
    assert sorted(row["node"] for row in rows) == ["broker", "energy"]


@pytest.mark.parametrize(
    "command", [["audit"], ["explain", "CP001"], ["status"]], ids=lambda c: c[0]
)
def test_a_reader_that_left_early_ends_the_command_quietly(site: Path, command: list[str]) -> None:
    """``run.py audit | head``: the reader leaves after its lines; the command then ends as one
    killed by SIGPIPE would, without a traceback on the terminal."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # gone before the first line is written: every write fails (EPIPE)
    try:
        done = subprocess.run(
            [sys.executable, "run.py", *command, "--config", str(site)],
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout_s(60),
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr, done.stderr
    assert "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 128 + signal.SIGPIPE, done.stderr
