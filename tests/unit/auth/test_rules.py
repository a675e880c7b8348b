"""Central rules: validation lists every problem, apply is all or nothing, versions, rollback."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from actors import rules as r
from actors.auth_settings import AuthSettings, UnknownIdPolicy
from actors.rules import Rules, RulesState, apply, rollback


def bundle(version: int, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "kind": "edge-rules",
        "version": version,
        "issued_utc": "2025-06-01T12:00:00Z",
        "authorization": {"unknown_id_offline": "accept_capped", "unknown_id_energy_cap_wh": 5000},
        "site": {"margin_a": 2.0, "max_current_a": 63},
        "charge_points": {
            "CP001": {"priority": 10, "max_current_a": 16.0, "unknown_id_offline": "reject"},
            "CP002": {"priority": 0},
        },
    }
    doc.update(extra)
    return doc


def applied(*docs: dict[str, Any]) -> RulesState:
    state = RulesState()
    for doc in docs:
        outcome = apply(state, doc)
        assert outcome.outcome == "applied", outcome.problems
        state = outcome.state
    return state


def test_bad_bundle_is_refused_whole_with_every_problem() -> None:
    state = applied(bundle(3))
    bad = bundle(
        4,
        rollback="yes",
        colour="blue",
        authorization={"unknown_id_offline": "accept_capped", "cache_max": 0, "pasword": "x"},
        site={"margin_a": -1, "max_current_a": "63"},
        charge_points={
            "CP001": {"priority": 101, "max_current_a": 0, "unknown_id_offline": "maybe"},
            "CP002": "fast",
            "CP003": {"unknown_id_offline": "accept_capped", "prio": 1},
        },
    )
    outcome = apply(state, bad)
    assert outcome.outcome == "refused"
    assert outcome.state is state  # nothing applied
    assert sorted(p.path for p in outcome.problems) == sorted(
        [
            "rollback",
            "colour",
            "authorization.cache_max",
            "authorization.pasword",
            "authorization.unknown_id_energy_cap_wh",
            "site.margin_a",
            "site.max_current_a",
            "charge_points.CP001.priority",
            "charge_points.CP001.max_current_a",
            "charge_points.CP001.unknown_id_offline",
            "charge_points.CP002",
            "charge_points.CP003.prio",
            "charge_points.CP003.unknown_id_energy_cap_wh",
        ]
    )
    assert "13 problem(s)" in outcome.reason


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        pytest.param("not json {", "<bundle>", id="not-json"),
        pytest.param([1, 2], "<bundle>", id="not-an-object"),
        pytest.param(bundle(0), "version", id="version-zero"),
        pytest.param(bundle(True), "version", id="version-bool"),
        pytest.param(bundle(2, kind="other"), "kind", id="wrong-kind"),
        pytest.param(bundle(2, issued_utc="noon"), "issued_utc", id="bad-time"),
        pytest.param(
            bundle(2, site={"margin_a": 63, "max_current_a": 63}),
            "site.margin_a",
            id="margin-not-below-max",
        ),
        pytest.param(
            bundle(2, charge_points={"CP1": {"max_current_a": 80}}),
            "charge_points.CP1.max_current_a",
            id="cp-above-site-max",
        ),
        pytest.param(bundle(2, authorization=[]), "authorization", id="section-not-a-table"),
    ],
)
def test_single_problems_name_their_path(doc: object, path: str) -> None:
    outcome = apply(RulesState(), doc)
    assert outcome.outcome == "refused"
    assert [p.path for p in outcome.problems] == [path]
    assert outcome.state == RulesState()


def test_json_text_from_data_transfer_applies() -> None:
    outcome = apply(RulesState(), orjson.dumps(bundle(1)).decode())
    assert outcome.outcome == "applied"
    assert outcome.state.current is not None
    assert outcome.state.current.version == 1


def test_versions() -> None:
    state = applied(bundle(3))
    assert apply(state, bundle(3)).outcome == "already_applied"
    assert apply(state, copy.deepcopy(bundle(3))).state is state
    changed = bundle(3, site={"margin_a": 3.0})
    same_version = apply(state, changed)
    assert same_version.outcome == "refused"
    assert [c.path for c in same_version.diff] == ["site.margin_a", "site.max_current_a"]
    lower = apply(state, bundle(2))
    assert (lower.outcome, lower.state) == ("refused", state)
    explicit = apply(state, bundle(2, rollback=True))
    assert explicit.outcome == "applied"
    assert explicit.state.current is not None
    assert explicit.state.current.version == 2
    assert apply(state, bundle(4)).outcome == "applied"


def test_apply_reports_the_diff() -> None:
    state = applied(bundle(3))
    new = bundle(4, site={"margin_a": 3.0, "max_current_a": 63})
    new["charge_points"]["CP001"]["max_current_a"] = 20.0
    del new["charge_points"]["CP002"]
    outcome = apply(state, new)
    assert [c.to_json() for c in outcome.diff] == [
        {"path": "charge_points.CP001.max_current_a", "before": 16.0, "after": 20.0},
        {"path": "charge_points.CP002.priority", "before": 0, "after": None},
        {"path": "site.margin_a", "before": 2.0, "after": 3.0},
        {"path": "version", "before": 3, "after": 4},
    ]
    assert outcome.audit_inputs()["version"] == 4


def test_rollback_restores_the_previous_exactly() -> None:
    state = applied(bundle(3), bundle(4, site={"margin_a": 5.0}))
    before = state.previous
    outcome = rollback(state)
    assert outcome.outcome == "rolled_back"
    assert outcome.state.current is before
    assert outcome.state.current == applied(bundle(3)).current
    assert [c.path for c in outcome.diff] == ["site.margin_a", "site.max_current_a", "version"]
    assert rollback(outcome.state).outcome == "refused"  # one level only
    assert rollback(RulesState()).outcome == "refused"


def test_settings_per_charge_point() -> None:
    state = applied(bundle(1))
    rules = state.current
    assert isinstance(rules, Rules)
    base = AuthSettings(cache_max=50)
    site = rules.auth_settings(base)
    assert (site.unknown_id_offline, site.unknown_id_energy_cap_wh, site.cache_max) == (
        UnknownIdPolicy.ACCEPT_CAPPED,
        5000,
        50,
    )
    assert rules.auth_settings(base, "CP001").unknown_id_offline is UnknownIdPolicy.REJECT
    assert rules.auth_settings(base, "CP999") == site
    assert rules.charge_point("CP001") == {"priority": 10, "max_current_a": 16.0}
    assert rules.site() == {"margin_a": 2.0, "max_current_a": 63}


def test_capped_charge_point_takes_the_bundle_cap_and_plain_forms_map() -> None:
    doc = bundle(
        1,
        authorization={
            "unknown_id_energy_cap_wh": 7000,
            "max_energy_on_invalid_id_wh": "unlimited",
            "cache_ttl_s": 0,
        },
        charge_points={"CP9": {"unknown_id_offline": "accept_capped"}},
    )
    outcome = apply(RulesState(), doc)
    assert outcome.outcome == "applied", outcome.problems
    assert outcome.state.current is not None
    site = outcome.state.current.auth_settings(AuthSettings())
    assert (site.max_energy_on_invalid_id_wh, site.cache_ttl_s) == (None, None)
    cp = outcome.state.current.auth_settings(AuthSettings(), "CP9")
    assert (cp.unknown_id_offline, cp.unknown_id_energy_cap_wh) == (
        UnknownIdPolicy.ACCEPT_CAPPED,
        7000,
    )


def test_state_round_trips_through_json() -> None:
    state = applied(bundle(3), bundle(4, site={"margin_a": 5.0}))
    data = orjson.dumps(r.state_to_dict(state))
    back = r.state_from_dict(orjson.loads(data))
    assert back == state
    assert r.state_from_dict(r.state_to_dict(RulesState())) == RulesState()
    with pytest.raises(ValueError, match=r"rules_state\.rv"):
        r.state_from_dict({**r.state_to_dict(state), "rv": 2})
