"""The status view's site summary (``run.py status`` without ``--json``)."""

from __future__ import annotations

import io
from typing import Any

from cli.site_view import _brokers, render_site


def doc(recent: list[dict[str, Any]]) -> dict[str, Any]:
    broker = {
        "charge_points_connected": 2,
        "charge_points": {},
        "profiles": {"recent_batches": recent},
    }
    energy = {"mode": "normal", "meters": {}, "limits": {}, "connectors": {}}
    return {
        "nodes": [
            {"kind": "broker", "site": broker},
            {"kind": "energy", "site": energy},
        ]
    }


def rendered(d: dict[str, Any]) -> str:
    out = io.StringIO()
    render_site(d, out)
    return out.getvalue()


def test_the_last_written_profile_batch_is_shown_with_its_latency() -> None:
    recent = [
        {"trigger_monotonic_ns": 1, "limits": 3, "written": 3, "last_written_ms": 12.3},
        {"trigger_monotonic_ns": 2, "limits": 5, "written": 4, "last_written_ms": 48.6},
        {"trigger_monotonic_ns": 3, "limits": 2, "written": 0, "last_written_ms": None},
    ]
    text = rendered(doc(recent))
    assert (
        "Load management: normal; last profile batch: 4 of 5 limits written, the last 49 ms "
        "after its meter sample" in text
    ), text


def test_no_batch_written_yet_shows_the_mode_alone() -> None:
    assert "Load management: normal\n" in rendered(doc([]))


def test_the_edge_sessions_key_rotation_is_shown_without_the_key() -> None:
    d = doc([])
    edge = {"identity": "SITE-EDGE", "online": True, "synced_total": 3, "unsynced": {"broker": 1}}
    d["nodes"][0]["site"]["edge_session"] = edge
    assert "Edge session SITE-EDGE: online, audit records synced 3, not yet synced 1\n" in (
        rendered(d)
    )
    edge["key_rotation"] = {
        "rotated_utc": "2026-11-29T05:00:00.000Z",
        "by": "ChangeConfiguration",
        "in_force": True,
        "previous_kept": True,
    }
    assert (
        "not yet synced 1; key rotated by the cloud 2026-11-29T05:00:00.000Z; the previous key "
        "kept until a session opens with the new one\n" in rendered(d)
    )
    edge["key_rotation"] = {**edge["key_rotation"], "in_force": False}
    assert "overridden by the site file's edge_password" in rendered(d)


def test_the_charge_points_of_every_broker_node_are_shown_together() -> None:
    """``[runtime] broker_shards``: each broker node reports its own charge points."""

    def broker(cps: list[str], online: int, queued: int) -> dict[str, Any]:
        return {
            "charge_points_connected": len(cps),
            "cloud_sessions_online": online,
            "queued_for_cloud": queued,
            "charge_points": {cp: {"connected": True, "cloud": {"online": True}} for cp in cps},
        }

    d = {
        "nodes": [
            {"kind": "energy", "site": {"mode": "normal"}},
            {"name": "broker", "kind": "broker", "site": broker(["CP1", "CP3"], 2, 1)},
            {"name": "broker-1", "kind": "broker", "site": broker(["CP2"], 0, 4)},
        ]
    }
    text = rendered(d)
    assert "Charge points: 3/3 connected; cloud sessions online 2; queued for the cloud 5" in text
    assert [line.split()[0] for line in text.splitlines()[-3:]] == ["CP1", "CP2", "CP3"]


def test_the_last_profile_batch_counts_every_broker_nodes_part() -> None:
    """Each broker node writes its charge points' part of a batch (the same trigger): the line
    adds the parts up and shows the latest frame of any."""

    def broker(recent: list[dict[str, Any]], rejected: int = 0) -> dict[str, Any]:
        profiles = {"recent_batches": recent, "profiles_rejected": rejected, "batches_received": 9}
        return {"charge_points": {}, "profiles": profiles}

    front = [{"trigger_monotonic_ns": 7, "limits": 250, "written": 250, "last_written_ms": 31.0}]
    other = [{"trigger_monotonic_ns": 7, "limits": 250, "written": 249, "last_written_ms": 44.4}]
    d = {
        "nodes": [
            {"kind": "energy", "site": {"mode": "normal"}},
            {"name": "broker", "kind": "broker", "site": broker(front, 1)},
            {"name": "broker-1", "kind": "broker", "site": broker(other, 2)},
        ]
    }
    assert "last profile batch: 499 of 500 limits written, the last 44 ms after" in rendered(d)
    # what adds up is added up; no node's own counter passes for the site's
    assert _brokers(d)["profiles"]["profiles_rejected"] == 3
    assert "batches_received" not in _brokers(d)["profiles"]


def test_a_meter_that_refuses_some_fields_says_which() -> None:
    """A meter read without the fields it refuses (drivers/modbus/client.py) is not stale; the
    site view names those fields beside its reading (they were only in the meter's own status)."""
    d = doc([])
    meters = d["nodes"][1]["site"]["meters"]
    meters["grid"] = {"node": "site", "current_a": [12.0, 8.0, -3.0], "age_s": 0.2}
    assert "Meter grid (site): L1 12.0 A L2 8.0 A L3 -3.0 A  (0.2 s old)\n" in rendered(d)
    meters["grid"]["dropped_fields"] = ["energy_export_wh", "voltage_l1_v"]
    assert (
        "Meter grid (site): L1 12.0 A L2 8.0 A L3 -3.0 A  (0.2 s old; refuses energy_export_wh, "
        "voltage_l1_v, read without)\n" in rendered(d)
    )


def test_what_a_charge_point_chose_cannot_write_control_characters_to_the_terminal() -> None:
    # A 2.0.1 transactionId is any string of up to 36 characters: here one that would clear
    # the operator's screen and start a forged row.
    d = doc([])
    d["nodes"][0]["site"]["charge_points"] = {
        "CP1": {
            "connected": True,
            "connectors": {"1": "Charging"},
            "transactions": {"\x1b[2J\nX": {}},
        }
    }
    text = rendered(d)
    assert "\x1b" not in text
    row = next(line for line in text.splitlines() if line.startswith("CP1"))
    assert "Charging" in row
    assert "\\x1b[2J\\nX" in row


def test_a_limit_line_names_each_phases_source_and_the_total() -> None:
    """A node whose phases are bound by different sources names each (it named L1's alone, so
    an EMS limiting L2 read as the fuse's); a power limit's total (a section 14a contact's
    4.2 kW, 18.3 A summed over the phases) is shown with its source."""
    d = doc([])

    def phase(a: float, source: str) -> dict[str, Any]:
        return {"limit_a": a, "source": source}

    d["nodes"][1]["site"]["limits"] = {
        "site": {
            "L1": phase(63.0, "main fuse"),
            "L2": phase(40.0, "ems"),
            "L3": phase(63.0, "main fuse"),
        },
        "CP-001": {
            "L1": phase(18.261, "14a"),
            "L2": phase(18.261, "14a"),
            "L3": phase(18.261, "14a"),
            "total": phase(18.261, "14a"),
        },
        "garage": {p: phase(32.0, "garage breaker") for p in ("L1", "L2", "L3")},
    }
    text = rendered(d)
    assert (
        "Limit at site: L1 63 A L2 40 A L3 63 A  (bound by L1 main fuse, L2 ems, L3 main fuse)\n"
        in text
    ), text
    assert "Limit at CP-001: L1 18 A L2 18 A L3 18 A total 18.3 A  (bound by 14a)\n" in text, text
    assert "Limit at garage: L1 32 A L2 32 A L3 32 A  (bound by garage breaker)\n" in text, text


def test_an_idle_charge_point_shows_no_draw_from_its_last_transaction() -> None:
    """The last MeterValues sample stays in the state after a transaction ends (the energy node
    counts it): the table shows offered and drawn current only while a transaction runs."""
    d = doc([])
    meter = {
        "1": {"offered_a": 24.0, "current_L1_a": 24.0, "current_L2_a": 23.9, "current_L3_a": 24.1}
    }
    cp = {
        "connected": True,
        "connectors": {"1": "Charging"},
        "meter": meter,
        "transactions": {"7": {}},
    }
    d["nodes"][0]["site"]["charge_points"] = {"CP1": cp}
    row = next(line for line in rendered(d).splitlines() if line.startswith("CP1"))
    assert row.split()[5:8] == ["24.0", "A", "24.0/23.9/24.1"], row
    cp["transactions"] = {}
    cp["connectors"] = {"1": "Available"}
    row = next(line for line in rendered(d).splitlines() if line.startswith("CP1"))
    assert row.split()[2:6] == ["Available", "-", "-", "-"], row
