"""The cloud answers non-Accepted for a transaction the edge accepted: each site setting."""

from __future__ import annotations

from typing import Any

import pytest

from actors.auth_settings import AuthSettings
from actors.authorization import DecisionPath, LateAction, on_late_answer
from actors.id_tags import AuthStatus
from actors.messages import CloudVerdict, LateDecision, LateVerdict
from drivers.store import codec

STOP = {"stop_transaction_on_invalid_id": True}
KEEP = {"stop_transaction_on_invalid_id": False}

CASES = [
    # cloud status, running, delivered Wh, fallback cap, settings -> action, stop reason, cap, remaining
    pytest.param(
        AuthStatus.INVALID,
        False,
        800.0,
        None,
        STOP,
        LateAction.NONE,
        None,
        None,
        None,
        id="transaction-already-ended",
    ),
    pytest.param(
        AuthStatus.ACCEPTED,
        True,
        800.0,
        None,
        STOP,
        LateAction.NONE,
        None,
        None,
        None,
        id="cloud-agrees",
    ),
    pytest.param(
        AuthStatus.ACCEPTED,
        True,
        800.0,
        5000,
        STOP,
        LateAction.LIFT_CAP,
        None,
        None,
        None,
        id="cloud-agrees-lift-fallback-cap",
    ),
    pytest.param(
        AuthStatus.INVALID,
        True,
        800.0,
        None,
        STOP,
        LateAction.STOP,
        "DeAuthorized",
        None,
        None,
        id="stop-on-invalid-id",
    ),
    pytest.param(
        AuthStatus.BLOCKED,
        True,
        800.0,
        5000,
        STOP,
        LateAction.STOP,
        "DeAuthorized",
        None,
        None,
        id="stop-beats-fallback-cap",
    ),
    pytest.param(
        AuthStatus.CONCURRENT_TX,
        True,
        0.0,
        None,
        STOP,
        LateAction.STOP,
        "DeAuthorized",
        None,
        None,
        id="concurrent-tx-is-not-accepted",
    ),
    pytest.param(
        AuthStatus.INVALID,
        True,
        800.0,
        None,
        KEEP | {"max_energy_on_invalid_id_wh": 0},
        LateAction.SUSPEND_ENERGY,
        None,
        0,
        0.0,
        id="keep-transaction-stop-energy",
    ),
    pytest.param(
        AuthStatus.INVALID,
        True,
        2500.0,
        None,
        KEEP | {"max_energy_on_invalid_id_wh": 10000},
        LateAction.CAP_ENERGY,
        None,
        10000,
        7500.0,
        id="max-energy-on-invalid-id-remaining",
    ),
    pytest.param(
        AuthStatus.EXPIRED,
        True,
        12000.0,
        None,
        KEEP | {"max_energy_on_invalid_id_wh": 10000},
        LateAction.SUSPEND_ENERGY,
        None,
        10000,
        0.0,
        id="max-energy-already-used",
    ),
    pytest.param(
        AuthStatus.INVALID,
        True,
        1000.0,
        5000,
        KEEP | {"max_energy_on_invalid_id_wh": 10000},
        LateAction.CAP_ENERGY,
        None,
        5000,
        4000.0,
        id="smaller-fallback-cap-still-binds",
    ),
    pytest.param(
        AuthStatus.INVALID,
        True,
        2500.0,
        None,
        KEEP | {"max_energy_on_invalid_id_wh": None},
        LateAction.LET_RUN,
        None,
        None,
        None,
        id="site-lets-it-run",
    ),
    pytest.param(
        AuthStatus.INVALID,
        True,
        1000.0,
        5000,
        KEEP | {"max_energy_on_invalid_id_wh": None},
        LateAction.LET_RUN,
        None,
        5000,
        4000.0,
        id="let-run-within-fallback-cap",
    ),
]


@pytest.mark.parametrize(
    (
        "cloud",
        "running",
        "delivered",
        "fallback_cap",
        "settings",
        "action",
        "stop_reason",
        "cap",
        "remaining",
    ),
    CASES,
)
def test_late_answer(
    cloud: AuthStatus,
    running: bool,
    delivered: float,
    fallback_cap: int | None,
    settings: dict[str, Any],
    action: LateAction,
    stop_reason: str | None,
    cap: int | None,
    remaining: float | None,
) -> None:
    path = DecisionPath.FALLBACK_ACCEPT_CAPPED if fallback_cap else DecisionPath.FALLBACK_ACCEPT
    result = on_late_answer(
        local_path=path,
        local_energy_cap_wh=fallback_cap,
        cloud_status=cloud,
        transaction_running=running,
        energy_delivered_wh=delivered,
        settings=AuthSettings(**settings),
    )
    assert (result.action, result.stop_reason, result.energy_cap_wh, result.remaining_wh) == (
        action,
        stop_reason,
        cap,
        remaining,
    )
    assert cloud.value in result.reason
    assert result.audit_inputs()["action"] == action.value


@pytest.mark.parametrize(
    ("cloud", "refused_before", "fallback_cap", "settings"),
    [
        pytest.param(AuthStatus.ACCEPTED, AuthStatus.INVALID, 2000, KEEP, id="accepted-keeps-cap"),
        pytest.param(AuthStatus.ACCEPTED, AuthStatus.INVALID, None, STOP, id="accepted-after-stop"),
        pytest.param(AuthStatus.BLOCKED, AuthStatus.INVALID, None, STOP, id="second-refusal"),
        pytest.param(
            AuthStatus.INVALID,
            AuthStatus.EXPIRED,
            None,
            KEEP | {"max_energy_on_invalid_id_wh": 500},
            id="second-refusal-no-new-cap",
        ),
    ],
)
def test_a_refusal_stands_for_the_transactions_lifetime(
    cloud: AuthStatus,
    refused_before: AuthStatus,
    fallback_cap: int | None,
    settings: dict[str, Any],
) -> None:
    """A verdict after the cloud refused the transaction (2.0.1: a later event carrying its id)
    changes nothing, whatever it says: as in 1.6, where the start's answer is the only one."""
    result = on_late_answer(
        local_path=DecisionPath.FALLBACK_ACCEPT_CAPPED if fallback_cap else DecisionPath.CACHE,
        local_energy_cap_wh=fallback_cap,
        cloud_status=cloud,
        transaction_running=True,
        energy_delivered_wh=300.0,
        settings=AuthSettings(**settings),
        refused_before=refused_before,
    )
    assert (result.action, result.energy_cap_wh, result.stop_reason) == (
        LateAction.NONE,
        None,
        None,
    )
    assert f"refused it before ({refused_before.value})" in result.reason


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(
            CloudVerdict(edge_id=7, cloud_id=1234, status="Invalid"), id="cloud-verdict-16"
        ),
        pytest.param(
            CloudVerdict(edge_id="tx-1", cloud_id="tx-1", status="Blocked", id_token="TAG"),
            id="cloud-verdict-201",
        ),
        pytest.param(
            LateVerdict(
                charge_point_id="CP1",
                transaction_id="tx-1",
                local_path="fallback:accept_capped",
                local_energy_cap_wh=2000,
                cloud_status="Invalid",
                running=True,
                energy_delivered_wh=212.5,
                reply_to="broker/charge_points/CP1",
                refused_before="Invalid",
            ),
            id="late-verdict",
        ),
        pytest.param(
            LateDecision(
                transaction_id="tx-1", action="cap_energy", reason="r", energy_cap_wh=500.0
            ),
            id="late-decision",
        ),
    ],
)
def test_the_late_verdicts_messages_round_trip_through_a_durable_mailbox(message: object) -> None:
    """They travel durably (a crash on their way loses nothing): as the codec stores them."""
    assert codec.decode(codec.encode(message)) == message
