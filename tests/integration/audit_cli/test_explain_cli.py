"""``run.py explain``: the story across the broker and energy stores, in-process and as a process."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.integration.audit_cli.trail import (
    CP,
    auth,
    cloud_cap,
    day_at_cp001,
    limit,
    rules,
    run_main,
    run_process,
    write,
    write_site,
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    day_at_cp001(tmp_path / "var")
    return write_site(tmp_path)


def test_the_story_names_the_limit_its_source_the_answer_and_the_messages(site: Path) -> None:
    r = run_main(["explain", CP, "--at", "2025-06-01T12:00:00Z", "--config", str(site)])
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "Why CP001 at 2025-06-01T12:00:00Z:"
    assert lines[1].startswith("  Limit: 10 A since 2025-06-01T11:59:00Z")
    assert "bound by grid_limit:dso" in lines[1]
    assert "Answer: Accepted for 04A1 via fallback:accept_capped at 2025-06-01T11:58:00Z" in r.out
    assert "Rules: version 4 at 2025-06-01T11:00:00Z" in r.out
    around = r.out.split("Around it (within 15 min):")[1]
    assert "message_buffered: StartTransaction" in around
    assert "message_replayed: StartTransaction" in around
    assert "CP002" not in r.out, "another charge point's records"
    assert "fuse:F1" not in r.out
    assert "from node stores broker, energy" in r.out


def test_json_carries_the_records_and_the_message_counts(site: Path) -> None:
    r = run_main(["explain", CP, "--at", "2025-06-01T12:00:00Z", "--json", "--config", str(site)])
    assert r.code == 0, r.err
    doc = orjson.loads(r.out)
    assert doc["limit"]["inputs"]["binding_source"] == "grid_limit:dso"
    assert doc["limit"]["inputs"]["limit_a"] == 10
    assert doc["answer"]["inputs"]["path"] == "fallback:accept_capped"
    assert doc["rules"]["decision"] == "version 4"
    assert doc["messages"]["message_buffered"] == 1
    assert doc["messages"]["message_replayed"] == 1
    assert doc["nodes"] == ["broker", "energy"]
    assert doc["lookback_complete"] is True


@pytest.mark.parametrize(
    ("at", "limit_line"),
    [
        pytest.param("2025-06-01T11:45:00", "32 A since 2025-06-01T11:40:00Z", id="naive-is-utc"),
        pytest.param("2025-06-01T13:45:00+02:00", "32 A since", id="offset"),
        pytest.param("2025-06-01T12:31:00Z", "20 A since 2025-06-01T12:30:00Z", id="later-limit"),
        pytest.param("30m", "20 A since", id="relative-to-now"),
        pytest.param("now", "20 A since", id="now"),
    ],
)
def test_time_forms(site: Path, at: str, limit_line: str) -> None:
    r = run_main(["explain", CP, "--at", at, "--window", "60", "--config", str(site)])
    assert r.code == 0, r.err
    assert f"Limit: {limit_line}" in r.out


def test_the_limit_in_force_comes_from_long_before_the_window(tmp_path: Path) -> None:
    var = tmp_path / "var"
    write(var, "energy", [limit(-86_400, 13, "grid_limit:dso")])
    write(var, "broker", [auth(-90_000), rules(-100_000, 9)])
    r = run_main(
        [
            "explain",
            CP,
            "--at",
            "2025-06-01T12:00:00Z",
            "--json",
            "--config",
            str(write_site(tmp_path)),
        ]
    )
    assert r.code == 0, r.err
    doc = orjson.loads(r.out)
    assert doc["limit"]["decision"] == "13 A"
    assert doc["answer"]["time_utc"] == "2025-05-31T11:00:00Z"
    assert doc["rules"]["decision"] == "version 9"
    assert doc["around"] == []


def test_nothing_at_or_around_the_time_exits_1_with_the_story(site: Path) -> None:
    r = run_main(["explain", CP, "--at", "2025-05-01T00:00:00Z", "--config", str(site)])
    assert r.code == 1
    assert "Limit: no limit decision at or before this time" in r.out


def test_an_unknown_charge_point_is_named_with_the_ids_that_have_records(site: Path) -> None:
    r = run_main(["explain", "cp001", "--config", str(site)])
    assert r.code == 1
    assert "no audit records for charge point 'cp001'" in r.err
    assert "did you mean CP001" in r.err
    assert "charge points with records: CP001, CP002" in r.err
    assert r.out == ""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--at", "yesterdayish"], "--at: 'yesterdayish' is not a time", id="bad-time"),
        pytest.param(["--at", "2025-13-01"], "--at: '2025-13-01' is not a time", id="bad-date"),
        pytest.param(["--window", "-5"], "--window: -5 s is outside", id="negative-window"),
        pytest.param(["--window", "1e9"], "--window: 1e+09 s is outside", id="huge-window"),
        pytest.param(["--window", "abc"], "invalid float value: 'abc'", id="window-not-number"),
    ],
)
def test_bad_arguments_exit_2_and_name_the_value(
    site: Path, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run_main(["explain", CP, *argv, "--config", str(site)])
    assert r.code == 2
    assert expected in r.err + capsys.readouterr().err  # argparse writes its own errors
    assert r.out == ""


def test_the_accepted_time_forms_are_named_in_the_error(site: Path) -> None:
    r = run_main(["explain", CP, "--at", "soon", "--config", str(site)])
    assert "no zone means UTC" in r.err
    assert "15m" in r.err


def test_no_stores_exit_1_naming_the_storage_dir(tmp_path: Path) -> None:
    r = run_main(["explain", CP, "--config", str(write_site(tmp_path))])
    assert r.code == 1
    assert f"no node stores under {tmp_path / 'var'}" in r.err


def test_a_bad_config_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\nname = "x"\nsurprise = 1\n')
    r = run_main(["explain", CP, "--config", str(bad)])
    assert r.code == 78
    assert "surprise" in r.err


def test_run_py_explain_as_a_process(site: Path) -> None:
    r = run_process(["explain", CP, "--at", "2025-06-01T12:00:00", "--config", str(site)])
    assert r.code == 0, r.err
    assert "bound by grid_limit:dso" in r.out
    assert "via fallback:accept_capped" in r.out
    bad = run_process(["explain", CP, "--at", "tomorrow-ish", "--config", str(site)])
    assert bad.code == 2
    assert "'tomorrow-ish' is not a time" in bad.err
    unknown = run_process(["explain", "CP404", "--config", str(site)])
    assert unknown.code == 1
    assert "'CP404'" in unknown.err
    assert "CP001, CP002" in unknown.err
    missing = run_process(["explain", CP, "--config", str(site.parent / "nope.toml")])
    assert missing.code == 78


def test_run_py_help_says_a_time_without_zone_is_utc() -> None:
    r = run_process(["explain", "--help"])
    assert r.code == 0
    assert "without a zone it means UTC" in " ".join(r.out.split())


@pytest.mark.parametrize("cap_a", [32.0, None], ids=["cap-above-the-site-limit", "cap-cleared"])
def test_a_cloud_cap_that_does_not_bind_is_not_the_limit_in_force(
    tmp_path: Path, cap_a: float | None
) -> None:
    """The broker records the cloud's TxProfile cap when it comes and goes; the energy node
    records its decision only when it changes. A cap above the site's 10 A (or its end) leaves
    the decision at 10 A, bound by the DSO: that is the limit in force, not the cap's record."""
    var = tmp_path / "var"
    write(var, "energy", [limit(-60, 10, "grid_limit:dso")])
    write(var, "broker", [cloud_cap(-30, cap_a)])
    site = write_site(tmp_path)
    r = run_main(["explain", CP, "--at", "2025-06-01T12:00:00Z", "--config", str(site)])
    assert r.code == 0, r.err
    assert r.out.splitlines()[1].startswith("  Limit: 10 A since 2025-06-01T11:59:00Z"), r.out
    assert "bound by grid_limit:dso" in r.out.splitlines()[1]
    assert "limit: " + ("no cloud cap" if cap_a is None else "at most 32.0 A") in r.out, (
        "the cap's record is still told, around the time"
    )
    doc = orjson.loads(
        run_main(
            ["explain", CP, "--at", "2025-06-01T12:00:00Z", "--json", "--config", str(site)]
        ).out
    )
    assert doc["limit"]["inputs"]["limit_a"] == 10
