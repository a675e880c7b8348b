"""The cloud's GridLimit push, checked whole before the edge answers it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from actors.cloud_limit_push import BadCloudLimit, cloud_limit_push

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SOURCES = {"cloud": "site"}


def push(data: Any, sources: dict[str, str] = SOURCES) -> Any:
    return cloud_limit_push(data, now_utc=NOW, sources=sources)


def test_a_good_push() -> None:
    limit = push({"limit_a": 10, "expires_utc": "2026-11-30T13:00:00Z", "node": "site"})
    assert (limit.source, limit.node, limit.limit_a, limit.power_w) == ("cloud", "site", 10.0, None)
    lifted = push({"limit_a": None})
    assert (lifted.limit_a, lifted.power_w) == (None, None)
    # A site with one cloud source takes the push whatever it calls the source.
    assert push({"power_w": 4200, "source": "platform"}).node == "site"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        pytest.param({"limitA": 10}, "unknown key(s) limitA", id="misspelled-key-would-lift"),
        pytest.param({}, "neither limit_a nor power_w", id="empty"),
        pytest.param([10], "JSON object", id="not-an-object"),
        pytest.param({"limit_a": -10}, "finite number >= 0", id="negative"),
        pytest.param({"limit_a": float("nan")}, "finite number >= 0", id="nan"),
        pytest.param({"limit_a": "10"}, "number or null", id="text"),
        pytest.param({"limit_a": True}, "number or null", id="bool"),
        pytest.param(
            {"limit_a": 10, "expires_utc": "tomorrow"}, "expires_utc", id="expiry-not-a-time"
        ),
        pytest.param(
            {"limit_a": 10, "expires_utc": 1767225600}, "UTC time as text", id="expiry-a-number"
        ),
        pytest.param(
            {"limit_a": 10, "expires_utc": "2026-11-30T11:00:00Z"}, "already past", id="expired"
        ),
        pytest.param({"limit_a": 10, "node": "Site"}, "limits node 'site'", id="other-node"),
    ],
)
def test_a_bad_push_is_refused_naming_what_is_wrong(data: Any, why: str) -> None:
    with pytest.raises(BadCloudLimit) as info:
        push(data)
    assert why in str(info.value)


def test_a_site_without_the_source_refuses() -> None:
    with pytest.raises(BadCloudLimit, match="no cloud limit source"):
        push({"limit_a": 10}, {})
    with pytest.raises(BadCloudLimit, match="no cloud limit source 'x'"):
        push({"limit_a": 10, "source": "x"}, {"a": "site", "b": "garage"})


def test_a_kept_push_that_cannot_be_read_again_is_dropped_not_a_crash() -> None:
    """A NaN an older edge accepted was stored as null: every restart of the cloud source then
    raised in started(), until its supervisor gave up."""
    from actors.grid_limit import _cloud_state

    assert _cloud_state({"current_a": [None, None, None], "power_w": None}).value is None
    assert _cloud_state({"current_a": [1.0], "power_w": None}).value is None
    assert _cloud_state({"current_a": [10.0] * 3, "valid_until_utc": "garbage"}).value is None
    kept = _cloud_state({"current_a": [10.0] * 3, "power_w": None, "valid_until_utc": None})
    assert kept.value is not None
    assert kept.value.current_a == (10.0, 10.0, 10.0)
