"""Every authorization path, online and offline, and the invariants between list, cache and rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.auth_cache import AuthCache, CacheEntry
from actors.auth_settings import AuthSettings, UnknownIdPolicy
from actors.authorization import AuthDecision, AwaitCloud, DecisionPath, decide
from actors.id_tags import AuthStatus, IdTagInfo
from actors.local_list import LocalList

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
A = AuthStatus


def info(
    status: AuthStatus, expiry: datetime | None = None, parent: str | None = None
) -> IdTagInfo:
    return IdTagInfo(status=status, expiry_utc=expiry, parent_id=parent)


def entry(i: IdTagInfo, *, used: datetime = NOW - HOUR) -> CacheEntry:
    return CacheEntry(info=i, stored_utc=used, last_used_utc=used)


LIST = LocalList(
    version=7,
    entries={
        "LIST-OK": info(A.ACCEPTED, NOW + HOUR, parent="FLEET"),
        "LIST-BLOCKED": info(A.BLOCKED),
        "LIST-EXPIRED": info(A.ACCEPTED, NOW - HOUR),
        "LIST-INVALID": info(A.INVALID),
        "LIST-CONCURRENT": info(A.CONCURRENT_TX),
        "BOTH-BLOCKED": info(A.BLOCKED),  # blocked in the list, Accepted in the cache
    },
)
CACHE = AuthCache(
    entries={
        "CACHE-OK": entry(info(A.ACCEPTED, NOW + HOUR)),
        "CACHE-BLOCKED": entry(info(A.BLOCKED)),
        "CACHE-EXPIRED": entry(info(A.ACCEPTED, NOW - HOUR)),
        "CACHE-STALE": entry(info(A.ACCEPTED), used=NOW - timedelta(days=30)),
        "BOTH-BLOCKED": entry(info(A.ACCEPTED)),
    }
)
ACCEPT: dict[str, Any] = {"unknown_id_offline": UnknownIdPolicy.ACCEPT}
CAPPED: dict[str, Any] = {
    "unknown_id_offline": UnknownIdPolicy.ACCEPT_CAPPED,
    "unknown_id_energy_cap_wh": 5000,
}
LAO_OFF: dict[str, Any] = {"local_authorize_offline": False}
NO_CACHE: dict[str, Any] = {"authorization_cache_enabled": False}
PRE: dict[str, Any] = {"local_pre_authorize": True}


def run(
    id_tag: str, *, online: bool = False, answer: IdTagInfo | None = None, **settings: Any
) -> AuthDecision | AwaitCloud:
    return decide(
        id_tag,
        online=online,
        cloud_answer=answer,
        local_list=LIST,
        cache=CACHE,
        settings=AuthSettings(**{"cache_ttl_s": 7 * 86400, **settings}),
        now=NOW,
    )


P = DecisionPath
OFFLINE_CASES = [
    # id, settings, status, path, energy cap
    pytest.param("LIST-OK", {}, A.ACCEPTED, P.LOCAL_LIST, None, id="offline-list-accepted"),
    pytest.param(
        "LIST-BLOCKED",
        ACCEPT,
        A.BLOCKED,
        P.LOCAL_LIST,
        None,
        id="offline-list-blocked-despite-accept-rule",
    ),
    pytest.param(
        "BOTH-BLOCKED",
        ACCEPT,
        A.BLOCKED,
        P.LOCAL_LIST,
        None,
        id="offline-list-blocked-wins-over-cache-accepted",
    ),
    pytest.param(
        "LIST-EXPIRED", ACCEPT, A.EXPIRED, P.LOCAL_LIST, None, id="offline-list-expired-by-time"
    ),
    pytest.param(
        "LIST-INVALID",
        CAPPED,
        A.INVALID,
        P.LOCAL_LIST,
        None,
        id="offline-list-invalid-despite-capped-rule",
    ),
    pytest.param(
        "LIST-CONCURRENT", {}, A.CONCURRENT_TX, P.LOCAL_LIST, None, id="offline-list-concurrent-tx"
    ),
    pytest.param(
        "LIST-BLOCKED",
        LAO_OFF | ACCEPT,
        A.BLOCKED,
        P.LOCAL_LIST,
        None,
        id="offline-list-blocked-with-local-authorize-off",
    ),
    pytest.param(
        "LIST-OK",
        LAO_OFF,
        A.INVALID,
        P.FALLBACK_REJECT,
        None,
        id="offline-list-accepted-but-local-authorize-off-reject-rule",
    ),
    pytest.param(
        "LIST-OK",
        LAO_OFF | ACCEPT,
        A.ACCEPTED,
        P.FALLBACK_ACCEPT,
        None,
        id="offline-list-accepted-but-local-authorize-off-accept-rule",
    ),
    pytest.param(
        "LIST-BLOCKED",
        {"local_list_enabled": False} | ACCEPT,
        A.ACCEPTED,
        P.FALLBACK_ACCEPT,
        None,
        id="offline-list-disabled-id-is-unknown",
    ),
    pytest.param("CACHE-OK", {}, A.ACCEPTED, P.CACHE, None, id="offline-cache-accepted"),
    pytest.param(
        "CACHE-BLOCKED",
        ACCEPT,
        A.BLOCKED,
        P.CACHE,
        None,
        id="offline-cache-blocked-despite-accept-rule",
    ),
    pytest.param(
        "CACHE-EXPIRED", ACCEPT, A.EXPIRED, P.CACHE, None, id="offline-cache-expired-by-time"
    ),
    pytest.param(
        "CACHE-OK",
        NO_CACHE,
        A.INVALID,
        P.FALLBACK_REJECT,
        None,
        id="offline-cache-disabled-reject-rule",
    ),
    pytest.param(
        "CACHE-OK",
        NO_CACHE | CAPPED,
        A.ACCEPTED,
        P.FALLBACK_ACCEPT_CAPPED,
        5000,
        id="offline-cache-disabled-capped-rule",
    ),
    pytest.param(
        "CACHE-BLOCKED",
        NO_CACHE | ACCEPT,
        A.ACCEPTED,
        P.FALLBACK_ACCEPT,
        None,
        id="offline-cache-disabled-blocked-entry-ignored",
    ),
    pytest.param(
        "CACHE-OK",
        LAO_OFF,
        A.INVALID,
        P.FALLBACK_REJECT,
        None,
        id="offline-cache-accepted-but-local-authorize-off",
    ),
    pytest.param(
        "CACHE-STALE",
        {},
        A.INVALID,
        P.FALLBACK_REJECT,
        None,
        id="offline-cache-entry-past-lifetime-is-unknown",
    ),
    pytest.param(
        "CACHE-STALE",
        {"cache_ttl_s": None},
        A.ACCEPTED,
        P.CACHE,
        None,
        id="offline-cache-no-lifetime-keeps-entry",
    ),
    pytest.param("NOBODY", {}, A.INVALID, P.FALLBACK_REJECT, None, id="offline-unknown-reject"),
    pytest.param(
        "NOBODY", ACCEPT, A.ACCEPTED, P.FALLBACK_ACCEPT, None, id="offline-unknown-accept"
    ),
    pytest.param(
        "NOBODY",
        CAPPED,
        A.ACCEPTED,
        P.FALLBACK_ACCEPT_CAPPED,
        5000,
        id="offline-unknown-accept-capped",
    ),
]


@pytest.mark.parametrize(("id_tag", "settings", "status", "path", "cap"), OFFLINE_CASES)
def test_offline_paths(
    id_tag: str, settings: dict[str, Any], status: AuthStatus, path: DecisionPath, cap: int | None
) -> None:
    result = run(id_tag, **settings)
    assert isinstance(result, AuthDecision)
    assert (result.status, result.path, result.energy_cap_wh) == (status, path, cap)
    assert result.list_version == 7
    assert result.reason.startswith("offline: ")
    assert not result.local_list_conflict


ONLINE_LOCAL_CASES = [
    pytest.param("LIST-OK", {}, None, id="online-no-answer-pre-authorize-off"),
    pytest.param("LIST-OK", PRE, P.PRE_AUTHORIZE_LIST, id="online-pre-authorize-list"),
    pytest.param("CACHE-OK", PRE, P.PRE_AUTHORIZE_CACHE, id="online-pre-authorize-cache"),
    pytest.param("CACHE-OK", PRE | NO_CACHE, None, id="online-pre-authorize-cache-disabled"),
    pytest.param("BOTH-BLOCKED", PRE, None, id="online-pre-authorize-list-blocked-beats-cache"),
    pytest.param("LIST-EXPIRED", PRE, None, id="online-pre-authorize-list-expired"),
    pytest.param("CACHE-BLOCKED", PRE, None, id="online-pre-authorize-cache-blocked"),
    pytest.param("CACHE-EXPIRED", PRE, None, id="online-pre-authorize-cache-expired"),
    pytest.param("NOBODY", PRE | ACCEPT, None, id="online-unknown-never-uses-offline-rule"),
]


@pytest.mark.parametrize(("id_tag", "settings", "path"), ONLINE_LOCAL_CASES)
def test_online_before_the_cloud_answers(
    id_tag: str, settings: dict[str, Any], path: DecisionPath | None
) -> None:
    result = run(id_tag, online=True, **settings)
    if path is None:
        assert isinstance(result, AwaitCloud)
        assert result.id_tag == id_tag
    else:
        assert isinstance(result, AuthDecision)
        assert (result.status, result.path) == (A.ACCEPTED, path)


def test_pre_authorize_from_list_keeps_expiry_and_parent() -> None:
    result = run("LIST-OK", online=True, **PRE)
    assert isinstance(result, AuthDecision)
    assert (result.expiry_utc, result.parent_id) == (NOW + HOUR, "FLEET")
    assert not result.cache_change  # list hits never touch the cache


def test_cache_hit_restarts_the_entry_lifetime() -> None:
    result = run("CACHE-OK")
    assert isinstance(result, AuthDecision)
    touched = CACHE.apply(result.cache_change).entries["CACHE-OK"]
    assert touched.last_used_utc == NOW
    assert touched.info == CACHE.entries["CACHE-OK"].info


CLOUD_CASES = [
    # id, answer, settings, cached?, conflict?
    pytest.param(
        "NOBODY", info(A.ACCEPTED, NOW + HOUR), {}, True, False, id="cloud-accepts-unknown-cached"
    ),
    pytest.param(
        "CACHE-OK", info(A.BLOCKED), {}, True, False, id="cloud-blocks-cached-id-cache-updated"
    ),
    pytest.param("NOBODY", info(A.INVALID), {}, True, False, id="cloud-rejection-cached-too"),
    pytest.param(
        "NOBODY", info(A.ACCEPTED), NO_CACHE, False, False, id="cloud-answer-cache-disabled"
    ),
    pytest.param(
        "LIST-OK",
        info(A.ACCEPTED, NOW + HOUR),
        {},
        False,
        False,
        id="cloud-answer-list-id-never-cached",
    ),
    pytest.param("LIST-OK", info(A.BLOCKED), {}, False, True, id="cloud-contradicts-list-conflict"),
    pytest.param(
        "LIST-BLOCKED", info(A.ACCEPTED), {}, False, True, id="cloud-accepts-list-blocked-conflict"
    ),
]


@pytest.mark.parametrize(("id_tag", "answer", "settings", "cached", "conflict"), CLOUD_CASES)
def test_cloud_answer_is_the_answer(
    id_tag: str, answer: IdTagInfo, settings: dict[str, Any], cached: bool, conflict: bool
) -> None:
    for online in (True, False):  # an answer that arrived is used even if the link just dropped
        result = run(id_tag, online=online, answer=answer, **settings)
        assert isinstance(result, AuthDecision)
        assert (result.status, result.path) == (answer.status, P.CLOUD)
        assert result.expiry_utc == answer.expiry_utc
        assert result.local_list_conflict is conflict
        after = CACHE.apply(result.cache_change)
        if cached:
            assert after.entries[id_tag].info == answer
            assert after.entries[id_tag].stored_utc == NOW
        else:
            assert after == CACHE


def test_cloud_answer_evicts_when_the_cache_is_full() -> None:
    result = run("NEW", online=True, answer=info(A.ACCEPTED), cache_max=len(CACHE))
    assert isinstance(result, AuthDecision)
    after = CACHE.apply(result.cache_change)
    assert len(after) == len(CACHE)
    assert "NEW" in after.entries
    # The entry past its lifetime goes first.
    assert "CACHE-STALE" not in after.entries


def test_audit_inputs_are_plain() -> None:
    result = run("NOBODY", **CAPPED)
    assert isinstance(result, AuthDecision)
    assert result.audit_inputs() == {
        "id_tag": "NOBODY",
        "status": "Accepted",
        "path": "fallback:accept_capped",
        "list_version": 7,
        "energy_cap_wh": 5000,
    }


# --- invariants over random worlds -----------------------------------------------------------

statuses = st.sampled_from(list(AuthStatus))
infos = st.builds(
    IdTagInfo,
    status=statuses,
    expiry_utc=st.none() | st.integers(-48, 48).map(lambda h: NOW + timedelta(hours=h)),
)
settings_st = st.builds(
    AuthSettings,
    local_authorize_offline=st.booleans(),
    local_pre_authorize=st.booleans(),
    authorization_cache_enabled=st.booleans(),
    local_list_enabled=st.just(True),
    unknown_id_offline=st.sampled_from(list(UnknownIdPolicy)),
    unknown_id_energy_cap_wh=st.just(1000),
)


@given(listed=infos, cached=st.none() | infos, settings=settings_st)
def test_a_listed_id_that_is_not_valid_is_never_accepted_offline(
    listed: IdTagInfo, cached: IdTagInfo | None, settings: AuthSettings
) -> None:
    cache = AuthCache(entries={} if cached is None else {"X": entry(cached)})
    result = decide(
        "X",
        online=False,
        cloud_answer=None,
        local_list=LocalList(version=1, entries={"X": listed}),
        cache=cache,
        settings=settings,
        now=NOW,
    )
    assert isinstance(result, AuthDecision)
    if not listed.valid(NOW):
        assert result.status is not AuthStatus.ACCEPTED
        assert result.path is DecisionPath.LOCAL_LIST
    assert not result.cache_change


@given(listed=st.none() | infos, answer=infos, settings=settings_st, online=st.booleans())
def test_list_ids_are_never_cached(
    listed: IdTagInfo | None, answer: IdTagInfo, settings: AuthSettings, online: bool
) -> None:
    result = decide(
        "X",
        online=online,
        cloud_answer=answer,
        local_list=LocalList(version=1, entries={} if listed is None else {"X": listed}),
        cache=AuthCache(),
        settings=settings,
        now=NOW,
    )
    assert isinstance(result, AuthDecision)
    stored = AuthCache().apply(result.cache_change)
    expect_cached = listed is None and settings.authorization_cache_enabled
    assert ("X" in stored.entries) is expect_cached
