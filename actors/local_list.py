"""The local authorization list: versioned by the cloud, changed only by SendLocalList.

Rules (OCPP 1.6 sections 3.5.2, 5.10, 5.15, 6.41, 7.1, 7.47; 2.0.1 D01/D02 keep them):

- The cloud owns the version. A Full update replaces the list and takes the request's version; a
  Differential update is answered ``VersionMismatch`` when its version is less than or equal to the
  current one ("Version number in the request for a differential update is less or equal then
  version number of current list"), and otherwise adds or updates every entry with an idTagInfo and
  removes every entry without one (removing an id that is not there is a no-op).
- idTags in one request must be unique, and a Full entry must carry idTagInfo: otherwise ``Failed``.
- A Full update without entries clears the list. A Differential update without entries changes no
  entry but still takes the request's version (the cloud said that is the version after it).
- Version 0 means "empty" (GetLocalListVersion: "0 SHALL be used to indicate that the local
  authorization list is empty", and -1 that the list is not supported). So an empty list always
  reports 0, even right after a Full update that cleared it with version 5; a non-empty Full update
  with a version below 1 is ``Failed`` because its version would read as "empty".
- Too many entries for the request (SendLocalListMaxLength) or the list (LocalAuthListMaxLength):
  ``Failed``, nothing applied. A disabled list feature: ``NotSupported``.

Everything returns new values; the caller persists the list it gets back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from actors.id_tags import IdTagInfo, parse_id_tag_info, parse_id_token_info, token_key

Protocol = Literal["ocpp1.6", "ocpp2.0.1"]


class UpdateType(StrEnum):
    FULL = "Full"
    DIFFERENTIAL = "Differential"


class UpdateStatus(StrEnum):
    ACCEPTED = "Accepted"
    FAILED = "Failed"
    NOT_SUPPORTED = "NotSupported"
    VERSION_MISMATCH = "VersionMismatch"


class ListUpdateError(ValueError):
    """A SendLocalList payload that cannot be read; answered ``Failed``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListUpdate:
    version: int
    update_type: UpdateType
    # (key, info); info None means "remove" in a Differential update.
    entries: tuple[tuple[str, IdTagInfo | None], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalList:
    version: int = 0
    entries: Mapping[str, IdTagInfo] = field(default_factory=dict)

    def get(self, key: str) -> IdTagInfo | None:
        return self.entries.get(key)

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListUpdateResult:
    status: UpdateStatus
    local_list: LocalList  # the new list when Accepted, else the unchanged current one
    reason: str
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def audit_inputs(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "version": self.local_list.version,
            "added": list(self.added),
            "updated": list(self.updated),
            "removed": list(self.removed),
        }


def parse_send_local_list(payload: object, *, protocol: Protocol) -> ListUpdate:
    """Read a SendLocalList request payload (1.6 ``listVersion``/``idTag``, 2.0.1 ``versionNumber``
    /``idToken``); raises :class:`ListUpdateError` naming the bad field."""
    if not isinstance(payload, Mapping):
        raise ListUpdateError(f"SendLocalList: expected an object, got {payload!r}")
    v16 = protocol == "ocpp1.6"
    version_key = "listVersion" if v16 else "versionNumber"
    version = payload.get(version_key)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ListUpdateError(f"SendLocalList.{version_key}: expected an integer, got {version!r}")
    kind = payload.get("updateType")
    if kind not in ("Full", "Differential"):
        raise ListUpdateError(
            f"SendLocalList.updateType: expected Full or Differential, got {kind!r}"
        )
    update_type = UpdateType(kind)
    raw = payload.get("localAuthorizationList", [])
    if not isinstance(raw, list):
        raise ListUpdateError(f"SendLocalList.localAuthorizationList: expected a list, got {raw!r}")
    entries: list[tuple[str, IdTagInfo | None]] = []
    for i, item in enumerate(raw):
        where = f"SendLocalList.localAuthorizationList[{i}]"
        try:
            if not isinstance(item, Mapping):
                raise ValueError(f"{where}: expected an object, got {item!r}")
            if v16:
                key = item.get("idTag")
                if not isinstance(key, str) or not key:
                    raise ValueError(f"{where}.idTag: expected a non-empty string, got {key!r}")
                info_raw = item.get("idTagInfo")
                info = (
                    None
                    if info_raw is None
                    else parse_id_tag_info(info_raw, where=f"{where}.idTagInfo")
                )
            else:
                key = token_key(item.get("idToken"), where=f"{where}.idToken")
                info_raw = item.get("idTokenInfo")
                info = (
                    None
                    if info_raw is None
                    else parse_id_token_info(info_raw, where=f"{where}.idTokenInfo")
                )
        except ValueError as exc:
            raise ListUpdateError(str(exc)) from None
        entries.append((key, info))
    return ListUpdate(version=version, update_type=update_type, entries=tuple(entries))


def apply_update(
    current: LocalList,
    update: ListUpdate,
    *,
    supported: bool = True,
    max_entries: int | None = None,
    max_per_message: int | None = None,
) -> ListUpdateResult:
    """Apply one SendLocalList: all of it or none of it."""

    def refuse(status: UpdateStatus, reason: str) -> ListUpdateResult:
        return ListUpdateResult(status=status, local_list=current, reason=reason)

    if not supported:
        return refuse(UpdateStatus.NOT_SUPPORTED, "the local authorization list is disabled here")
    if max_per_message is not None and len(update.entries) > max_per_message:
        return refuse(
            UpdateStatus.FAILED,
            f"{len(update.entries)} entries in one request, at most {max_per_message} allowed",
        )
    seen: set[str] = set()
    for key, _ in update.entries:
        if key in seen:
            return refuse(UpdateStatus.FAILED, f"id {key!r} appears twice in one request")
        seen.add(key)

    if update.update_type is UpdateType.FULL:
        missing = [key for key, info in update.entries if info is None]
        if missing:
            return refuse(UpdateStatus.FAILED, f"Full update entry {missing[0]!r} has no idTagInfo")
        if update.entries and update.version < 1:
            return refuse(
                UpdateStatus.FAILED,
                f"Full update with entries has version {update.version}; 0 and below mean empty",
            )
        entries = {key: info for key, info in update.entries if info is not None}
        added = tuple(sorted(k for k in entries if k not in current.entries))
        updated = tuple(
            sorted(k for k in entries if k in current.entries and current.entries[k] != entries[k])
        )
        removed = tuple(sorted(k for k in current.entries if k not in entries))
    else:
        if update.version <= current.version:
            return refuse(
                UpdateStatus.VERSION_MISMATCH,
                f"Differential update version {update.version} is not above the current "
                f"version {current.version}",
            )
        entries = dict(current.entries)
        added_l: list[str] = []
        updated_l: list[str] = []
        removed_l: list[str] = []
        for key, info in update.entries:
            if info is None:
                if entries.pop(key, None) is not None:
                    removed_l.append(key)
            elif key not in entries:
                entries[key] = info
                added_l.append(key)
            elif entries[key] != info:
                entries[key] = info
                updated_l.append(key)
        added, updated, removed = (
            tuple(sorted(added_l)),
            tuple(sorted(updated_l)),
            tuple(sorted(removed_l)),
        )

    if max_entries is not None and len(entries) > max_entries:
        return refuse(
            UpdateStatus.FAILED,
            f"the list would hold {len(entries)} entries, at most {max_entries} allowed",
        )
    new_list = LocalList(version=update.version if entries else 0, entries=entries)
    return ListUpdateResult(
        status=UpdateStatus.ACCEPTED,
        local_list=new_list,
        reason=(
            f"{update.update_type.value} update applied: version {new_list.version}, "
            f"{len(entries)} entries (+{len(added)} ~{len(updated)} -{len(removed)})"
        ),
        added=added,
        updated=updated,
        removed=removed,
    )


def handle_send_local_list(
    current: LocalList,
    payload: object,
    *,
    protocol: Protocol,
    supported: bool = True,
    max_entries: int | None = None,
    max_per_message: int | None = None,
) -> ListUpdateResult:
    """Parse and apply; an unreadable payload is answered ``Failed`` with the parse error."""
    if not supported:
        return apply_update(
            current, ListUpdate(version=0, update_type=UpdateType.FULL), supported=False
        )
    try:
        update = parse_send_local_list(payload, protocol=protocol)
    except ListUpdateError as exc:
        return ListUpdateResult(status=UpdateStatus.FAILED, local_list=current, reason=str(exc))
    return apply_update(
        current, update, supported=True, max_entries=max_entries, max_per_message=max_per_message
    )


def local_list_version(current: LocalList, *, supported: bool = True) -> int:
    """GetLocalListVersion: -1 when the list is not supported, 0 when it is empty."""
    if not supported:
        return -1
    return current.version if current.entries else 0


# --- persistence -----------------------------------------------------------------------------

RECORD = "local_list"
RECORD_VERSION = 1
# MIGRATIONS[n] turns a version-n record into a version-(n+1) record.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def to_dict(local_list: LocalList) -> dict[str, Any]:
    return {
        "record": RECORD,
        "rv": RECORD_VERSION,
        "version": local_list.version,
        "entries": {key: info.to_dict() for key, info in sorted(local_list.entries.items())},
    }


def from_dict(data: object) -> LocalList:
    if not isinstance(data, Mapping) or data.get("record") != RECORD:
        raise ValueError(f"not a {RECORD} record: {data!r:.200}")
    doc = dict(data)
    rv = doc.get("rv")
    if not isinstance(rv, int) or rv < 1:
        raise ValueError(f"{RECORD}.rv: expected a record version >= 1, got {rv!r}")
    if rv > RECORD_VERSION:
        raise ValueError(f"{RECORD} record version {rv} is newer than this code's {RECORD_VERSION}")
    while rv < RECORD_VERSION:
        migrate = MIGRATIONS.get(rv)
        if migrate is None:
            raise ValueError(f"{RECORD} record version {rv} has no migration to {rv + 1}")
        doc = migrate(doc)
        rv += 1
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"{RECORD}.version: expected an integer >= 0, got {version!r}")
    raw = doc.get("entries")
    if not isinstance(raw, Mapping):
        raise ValueError(f"{RECORD}.entries: expected an object, got {raw!r:.200}")
    entries = {
        str(key): IdTagInfo.from_dict(value, where=f"{RECORD}.entries[{key!r}]")
        for key, value in raw.items()
    }
    return LocalList(version=version, entries=entries)
