"""The authorization cache: what the cloud last said about each id, bounded and ageing.

Semantics (OCPP 1.6 section 3.5.1; 2.0.1 AuthCacheCtrlr):

- Every IdTagInfo the cloud returns (Authorize, StartTransaction, StopTransaction) is stored, valid
  or not, unless the id is in the local list (the caller checks that: ``decide`` never caches a
  list id).
- An Accepted entry past its expiry reads as Expired (``IdTagInfo.effective_status``).
- An entry unused for ``ttl_s`` seconds (2.0.1 ``AuthCacheCtrlr.LifeTime``: "since it is last
  used") is gone: ``lookup`` does not return it and the next store or purge removes it.
- When the cache is full, a new id evicts first entries past their lifetime, then NOT-valid
  entries, then the least recently used valid ones (1.6: "remove any NOT-valid entries, and then,
  if necessary, the oldest valid entries").

The cache is a value. Methods named ``plan_*`` return a :class:`CacheChange` (entries to put, keys
to remove); the caller persists that change and calls :meth:`AuthCache.apply` to get the new value,
so the store can write only what changed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from actors.id_tags import IdTagInfo
from actors.utc import format_utc, parse_utc


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheEntry:
    info: IdTagInfo
    stored_utc: datetime
    last_used_utc: datetime

    def past_lifetime(self, now: datetime, ttl_s: int | None) -> bool:
        return ttl_s is not None and self.last_used_utc + timedelta(seconds=ttl_s) <= now


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheChange:
    put: tuple[tuple[str, CacheEntry], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.put or self.remove)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthCache:
    entries: Mapping[str, CacheEntry] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, key: str, *, now: datetime, ttl_s: int | None) -> CacheEntry | None:
        entry = self.entries.get(key)
        if entry is None or entry.past_lifetime(now, ttl_s):
            return None
        return entry

    def plan_store(
        self, key: str, info: IdTagInfo, *, now: datetime, max_entries: int, ttl_s: int | None
    ) -> CacheChange:
        """Store the cloud's answer for ``key``, evicting to stay within ``max_entries``."""
        if max_entries < 1:
            raise ValueError(f"cache max_entries must be >= 1, got {max_entries}")
        old = self.entries.get(key)
        entry = CacheEntry(
            info=info,
            stored_utc=now,
            last_used_utc=now if old is None else max(old.last_used_utc, now),
        )
        if old is not None:
            return CacheChange(put=((key, entry),))
        excess = len(self.entries) + 1 - max_entries
        if excess <= 0:
            return CacheChange(put=((key, entry),))
        # Victims: past lifetime first, then NOT-valid, then least recently used.
        horizon = None if ttl_s is None else now - timedelta(seconds=ttl_s)

        def rank(item: tuple[str, CacheEntry]) -> tuple[bool, bool, datetime, str]:
            k, e = item
            alive = horizon is None or e.last_used_utc > horizon
            return alive, e.info.valid(now), e.last_used_utc, k

        victims = tuple(k for k, _ in heapq.nsmallest(excess, self.entries.items(), key=rank))
        return CacheChange(put=((key, entry),), remove=victims)

    def plan_touch(self, key: str, *, now: datetime) -> CacheChange:
        """A cache hit restarts the entry's lifetime."""
        entry = self.entries.get(key)
        if entry is None or entry.last_used_utc >= now:
            return CacheChange()
        return CacheChange(
            put=(
                (key, CacheEntry(info=entry.info, stored_utc=entry.stored_utc, last_used_utc=now)),
            )
        )

    def plan_purge(self, *, now: datetime, ttl_s: int | None) -> CacheChange:
        return CacheChange(
            remove=tuple(sorted(k for k, e in self.entries.items() if e.past_lifetime(now, ttl_s)))
        )

    def plan_clear(self) -> CacheChange:
        """ClearCache.req."""
        return CacheChange(remove=tuple(sorted(self.entries)))

    def apply(self, change: CacheChange) -> AuthCache:
        entries = dict(self.entries)
        for key in change.remove:
            entries.pop(key, None)
        for key, entry in change.put:
            entries[key] = entry
        return AuthCache(entries=entries)


# --- persistence -----------------------------------------------------------------------------

RECORD = "auth_cache_entry"
RECORD_VERSION = 1
# MIGRATIONS[n] turns a version-n entry record into a version-(n+1) one.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def entry_to_dict(key: str, entry: CacheEntry) -> dict[str, Any]:
    """One entry per store key, so a change writes only the entries it touches."""
    return {
        "record": RECORD,
        "rv": RECORD_VERSION,
        "key": key,
        "info": entry.info.to_dict(),
        "stored_utc": format_utc(entry.stored_utc),
        "last_used_utc": format_utc(entry.last_used_utc),
    }


def entry_from_dict(data: object) -> tuple[str, CacheEntry]:
    if not isinstance(data, Mapping) or data.get("record") != RECORD:
        raise ValueError(f"not an {RECORD} record: {data!r:.200}")
    doc = dict(data)
    rv = doc.get("rv")
    if not isinstance(rv, int) or rv < 1 or rv > RECORD_VERSION:
        raise ValueError(f"{RECORD}.rv: expected 1..{RECORD_VERSION}, got {rv!r}")
    while rv < RECORD_VERSION:
        migrate = MIGRATIONS.get(rv)
        if migrate is None:
            raise ValueError(f"{RECORD} record version {rv} has no migration to {rv + 1}")
        doc = migrate(doc)
        rv += 1
    key = doc.get("key")
    if not isinstance(key, str):
        raise ValueError(f"{RECORD}.key: expected a string, got {key!r}")
    return key, CacheEntry(
        info=IdTagInfo.from_dict(doc.get("info"), where=f"{RECORD}[{key!r}].info"),
        stored_utc=parse_utc(doc.get("stored_utc"), where=f"{RECORD}[{key!r}].stored_utc"),
        last_used_utc=parse_utc(doc.get("last_used_utc"), where=f"{RECORD}[{key!r}].last_used_utc"),
    )


def cache_from_entries(items: list[tuple[str, CacheEntry]]) -> AuthCache:
    return AuthCache(entries=dict(items))
