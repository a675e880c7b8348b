"""The authorization cache: lifetime, eviction order, bounded size, persistence round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.auth_cache import (
    AuthCache,
    CacheEntry,
    cache_from_entries,
    entry_from_dict,
    entry_to_dict,
)
from actors.id_tags import AuthStatus, IdTagInfo
from actors.messages import CacheClearedAtChargePoint
from drivers.store import codec

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = 86400


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def entry(status: AuthStatus, used_min: int, expiry_min: int | None = None) -> CacheEntry:
    expiry = None if expiry_min is None else at(expiry_min)
    return CacheEntry(
        info=IdTagInfo(status=status, expiry_utc=expiry),
        stored_utc=at(used_min),
        last_used_utc=at(used_min),
    )


FULL = AuthCache(
    entries={
        "old-valid": entry(AuthStatus.ACCEPTED, -50),
        "new-valid": entry(AuthStatus.ACCEPTED, -10),
        "blocked": entry(AuthStatus.BLOCKED, -5),
        "expired": entry(AuthStatus.ACCEPTED, -1, expiry_min=-2),
    }
)


@pytest.mark.parametrize(
    ("max_entries", "evicted"),
    [
        pytest.param(5, (), id="room-left-no-eviction"),
        pytest.param(4, ("blocked",), id="full-not-valid-goes-first-oldest-first"),
        pytest.param(3, ("blocked", "expired"), id="expired-counts-as-not-valid"),
        pytest.param(2, ("blocked", "expired", "old-valid"), id="then-least-recently-used-valid"),
        pytest.param(
            1, ("blocked", "expired", "old-valid", "new-valid"), id="max-one-keeps-only-new"
        ),
    ],
)
def test_eviction_order(max_entries: int, evicted: tuple[str, ...]) -> None:
    change = FULL.plan_store(
        "new", IdTagInfo(status=AuthStatus.ACCEPTED), now=NOW, max_entries=max_entries, ttl_s=DAY
    )
    assert set(change.remove) == set(evicted)
    after = FULL.apply(change)
    assert len(after) == min(max_entries, len(FULL) + 1)
    assert after.entries["new"].stored_utc == NOW


def test_past_lifetime_goes_before_not_valid() -> None:
    cache = FULL.apply(
        FULL.plan_store(
            "stale", IdTagInfo(status=AuthStatus.ACCEPTED), now=at(-100), max_entries=9, ttl_s=DAY
        )
    )
    change = cache.plan_store(
        "new", IdTagInfo(status=AuthStatus.ACCEPTED), now=NOW, max_entries=len(cache), ttl_s=3600
    )
    assert change.remove == ("stale",)


def test_update_of_a_present_id_never_evicts_and_keeps_last_use() -> None:
    change = FULL.plan_store(
        "old-valid", IdTagInfo(status=AuthStatus.BLOCKED), now=NOW, max_entries=4, ttl_s=DAY
    )
    assert change.remove == ()
    updated = FULL.apply(change).entries["old-valid"]
    assert updated.info.status is AuthStatus.BLOCKED
    assert updated.last_used_utc == NOW


def test_lifetime_counts_from_last_use() -> None:
    cache = AuthCache(entries={"x": entry(AuthStatus.ACCEPTED, -60)})
    assert cache.lookup("x", now=NOW, ttl_s=3601) is not None
    assert cache.lookup("x", now=NOW, ttl_s=3600) is None
    assert cache.lookup("x", now=NOW, ttl_s=None) is not None
    touched = cache.apply(cache.plan_touch("x", now=NOW))
    assert touched.lookup("x", now=at(59), ttl_s=3600) is not None
    assert cache.plan_purge(now=NOW, ttl_s=3600).remove == ("x",)
    assert not cache.plan_purge(now=NOW, ttl_s=None)


def test_expired_by_date_reads_as_expired() -> None:
    assert FULL.entries["expired"].info.effective_status(NOW) is AuthStatus.EXPIRED
    assert FULL.entries["old-valid"].info.effective_status(NOW) is AuthStatus.ACCEPTED


def test_clear_cache_removes_everything() -> None:
    assert len(FULL.apply(FULL.plan_clear())) == 0


@given(
    ops=st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from(list(AuthStatus)), st.integers(0, 600)),
        max_size=80,
    ),
    max_entries=st.integers(1, 12),
)
def test_size_never_exceeds_max(ops: list[tuple[int, AuthStatus, int]], max_entries: int) -> None:
    cache = AuthCache()
    for key, status, minute in sorted(ops, key=lambda op: op[2]):
        change = cache.plan_store(
            f"id{key}",
            IdTagInfo(status=status),
            now=at(minute),
            max_entries=max_entries,
            ttl_s=3600,
        )
        cache = cache.apply(change)
        assert len(cache) <= max_entries
        assert cache.entries[f"id{key}"].info.status is status


times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
entries_st = st.builds(
    CacheEntry,
    info=st.builds(
        IdTagInfo,
        status=st.sampled_from(list(AuthStatus)),
        expiry_utc=st.none() | times,
        parent_id=st.none() | st.text(max_size=20),
    ),
    stored_utc=times,
    last_used_utc=times,
)


@given(items=st.dictionaries(st.text(min_size=1, max_size=36), entries_st, max_size=10))
def test_entries_round_trip_through_json(items: dict[str, CacheEntry]) -> None:
    stored = [orjson.dumps(entry_to_dict(k, e)) for k, e in items.items()]
    back = cache_from_entries([entry_from_dict(orjson.loads(b)) for b in stored])
    assert back == AuthCache(entries=items)


def test_newer_entry_record_is_refused() -> None:
    doc = entry_to_dict("x", entry(AuthStatus.ACCEPTED, 0))
    doc["rv"] = 99
    with pytest.raises(ValueError, match="rv"):
        entry_from_dict(doc)


def test_a_charge_points_cleared_cache_round_trips_through_a_durable_mailbox() -> None:
    """CacheClearedAtChargePoint travels durably to the authorizer (the cloud is told Accepted
    once it is queued there): as the codec stores it."""
    message = CacheClearedAtChargePoint(charge_point_id="CP1", message_id="cc-1")
    assert codec.decode(codec.encode(message)) == message
