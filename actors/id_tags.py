"""Identifiers and what the cloud said about them: the entry type shared by the local list and cache.

OCPP 1.6 calls it ``IdTagInfo`` (status, expiryDate, parentIdTag) keyed by a bare ``idTag``;
OCPP 2.0.1 calls it ``IdTokenInfo`` (status, cacheExpiryDateTime, groupIdToken) keyed by an
``IdToken`` object with a type. Both map to :class:`IdTagInfo` here. A 2.0.1 token is keyed as
``"<type>:<idToken>"`` (:func:`token_key`) because the same value under two types is two
identities; a 1.6 idTag is its own key. The token types contain no colon, so the key splits back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from actors.utc import format_utc, parse_utc


class AuthStatus(StrEnum):
    """Authorization status; the first five are OCPP 1.6, the rest are 2.0.1 additions."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"
    NO_CREDIT = "NoCredit"
    NOT_ALLOWED_TYPE_EVSE = "NotAllowedTypeEVSE"
    NOT_AT_THIS_LOCATION = "NotAtThisLocation"
    NOT_AT_THIS_TIME = "NotAtThisTime"
    UNKNOWN = "Unknown"

    def for_ocpp16(self) -> AuthStatus:
        """The nearest 1.6 status: 2.0.1-only refusals become Invalid (still a refusal)."""
        return self if self in _OCPP16 else AuthStatus.INVALID


_OCPP16 = frozenset(
    {
        AuthStatus.ACCEPTED,
        AuthStatus.BLOCKED,
        AuthStatus.EXPIRED,
        AuthStatus.INVALID,
        AuthStatus.CONCURRENT_TX,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdTagInfo:
    status: AuthStatus
    expiry_utc: datetime | None = None
    parent_id: str | None = None

    def effective_status(self, now: datetime) -> AuthStatus:
        """Accepted past its expiry reads as Expired (1.6 3.5.1: 'changed to expired')."""
        if self.status is AuthStatus.ACCEPTED and self.expired(now):
            return AuthStatus.EXPIRED
        return self.status

    def expired(self, now: datetime) -> bool:
        return self.expiry_utc is not None and self.expiry_utc <= now

    def valid(self, now: datetime) -> bool:
        return self.effective_status(now) is AuthStatus.ACCEPTED

    def to_ocpp16(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.for_ocpp16().value}
        if self.expiry_utc is not None:
            out["expiryDate"] = format_utc(self.expiry_utc)
        if self.parent_id is not None:
            out["parentIdTag"] = self.parent_id
        return out

    def to_ocpp201(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value}
        if self.expiry_utc is not None:
            out["cacheExpiryDateTime"] = format_utc(self.expiry_utc)
        if self.parent_id is not None:
            out["groupIdToken"] = token_from_key(self.parent_id)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for persistence and audit inputs."""
        out: dict[str, Any] = {"status": self.status.value}
        if self.expiry_utc is not None:
            out["expiry_utc"] = format_utc(self.expiry_utc)
        if self.parent_id is not None:
            out["parent_id"] = self.parent_id
        return out

    @staticmethod
    def from_dict(data: object, *, where: str) -> IdTagInfo:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected an object, got {data!r}")
        expiry = data.get("expiry_utc")
        parent = data.get("parent_id")
        if parent is not None and not isinstance(parent, str):
            raise ValueError(f"{where}.parent_id: expected a string, got {parent!r}")
        return IdTagInfo(
            status=_status(data.get("status"), where=f"{where}.status"),
            expiry_utc=None if expiry is None else parse_utc(expiry, where=f"{where}.expiry_utc"),
            parent_id=parent,
        )


def _status(value: object, *, where: str) -> AuthStatus:
    if isinstance(value, str) and value in _BY_VALUE:
        return _BY_VALUE[value]
    known = ", ".join(s.value for s in AuthStatus)
    raise ValueError(f"{where}: expected one of {known}, got {value!r}")


_BY_VALUE = {s.value: s for s in AuthStatus}


def parse_id_tag_info(data: object, *, where: str = "idTagInfo") -> IdTagInfo:
    """OCPP 1.6 ``IdTagInfo`` (Authorize.conf, StartTransaction.conf, SendLocalList entries)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected an object, got {data!r}")
    status = _status(data.get("status"), where=f"{where}.status")
    if status.for_ocpp16() is not status:
        raise ValueError(f"{where}.status: {status.value!r} is not an OCPP 1.6 status")
    expiry = data.get("expiryDate")
    parent = data.get("parentIdTag")
    if parent is not None and not isinstance(parent, str):
        raise ValueError(f"{where}.parentIdTag: expected a string, got {parent!r}")
    return IdTagInfo(
        status=status,
        expiry_utc=None if expiry is None else parse_utc(expiry, where=f"{where}.expiryDate"),
        parent_id=parent,
    )


def parse_id_token_info(data: object, *, where: str = "idTokenInfo") -> IdTagInfo:
    """OCPP 2.0.1 ``IdTokenInfo``; the group token becomes the parent key."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected an object, got {data!r}")
    expiry = data.get("cacheExpiryDateTime")
    group = data.get("groupIdToken")
    return IdTagInfo(
        status=_status(data.get("status"), where=f"{where}.status"),
        expiry_utc=(
            None if expiry is None else parse_utc(expiry, where=f"{where}.cacheExpiryDateTime")
        ),
        parent_id=None if group is None else token_key(group, where=f"{where}.groupIdToken"),
    )


def token_key(token: object, *, where: str = "idToken") -> str:
    """The key of a 2.0.1 ``IdToken`` object: ``"<type>:<idToken>"``."""
    if not isinstance(token, Mapping):
        raise ValueError(f"{where}: expected an IdToken object, got {token!r}")
    value = token.get("idToken")
    kind = token.get("type")
    if not isinstance(value, str):
        raise ValueError(f"{where}.idToken: expected a string, got {value!r}")
    if not isinstance(kind, str) or not kind or ":" in kind:
        raise ValueError(f"{where}.type: expected an IdTokenEnumType name, got {kind!r}")
    return f"{kind}:{value}"


def token_from_key(key: str) -> dict[str, str]:
    kind, sep, value = key.partition(":")
    if not sep:
        raise ValueError(f"{key!r} is not a 2.0.1 token key (expected '<type>:<idToken>')")
    return {"idToken": value, "type": kind}
