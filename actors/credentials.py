"""The key a charge point authenticates with (security profiles 1 and 2), as the cloud rotates it.

The cloud changes a charge point's HTTP Basic password through the edge: 1.6 ChangeConfiguration
of ``AuthorizationKey``, 2.0.1 SetVariables of ``SecurityCtrlr.BasicAuthPassword``. Once the
charge point has accepted it, it connects with the new key (to the edge), and the cloud expects
the new key from the edge's session for that identity. So when the charge point accepts, its
actor keeps the key in the broker node's store (table ``credentials``, key = charge point id):

- the listener takes the new key, and the previous one until the charge point has connected once
  with the new one (a charge point that accepted a key but did not keep it is not locked out);
- the charge point's cloud session sends the new key.

The site file stays the starting point: a rotated key applies while the site file still holds the
password it replaced (compared by fingerprint). An operator who writes another password in the
site file thereby overrides the rotation (each side, the charge point's and the cloud's,
separately). Keys are never logged, audited or reported; the status says when and how a key was
rotated.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config.ocpp import Secret
from drivers.store import codec
from drivers.store.env import Store

log = logging.getLogger(__name__)

TABLE = "credentials"
ACCEPTED = ("Accepted", "RebootRequired")
ACTIONS = frozenset({"ChangeConfiguration", "SetVariables"})  # the cloud calls that can set it


@codec.persisted(version=1)
@dataclass(frozen=True, slots=True, kw_only=True)
class StoredKey:
    password: str = field(repr=False)
    # still accepted until the charge point connects with ``password``
    previous: str | None = field(repr=False)
    site_password_sha256: str = field(repr=False)  # the site file's password it replaced
    site_cloud_password_sha256: str = field(repr=False)  # the site file's cloud password
    rotated_utc: str
    action: str  # the cloud call that set it


def put_op(cp_id: str, key: StoredKey) -> tuple[str, str, bytes, bytes]:
    """The store op that keeps ``key`` (for the charge point actor's unit of work)."""
    return ("put", TABLE, cp_id.encode(), codec.encode(key))


def fingerprint(secret: Secret | None) -> str:
    return "" if secret is None else hashlib.sha256(secret.reveal().encode()).hexdigest()


def load(store: Store, cp_id: str) -> StoredKey | None:
    try:
        stored = store.get_value(TABLE, cp_id.encode())
    except codec.CodecError as exc:
        log.error("%s: stored key unreadable (%s); the site file's password applies", cp_id, exc)
        return None
    return stored if isinstance(stored, StoredKey) else None


def listener_passwords(
    stored: StoredKey | None, site_password: Secret | None
) -> tuple[str | None, str | None]:
    """(the password, the previous one still accepted) for the listener."""
    configured = None if site_password is None else site_password.reveal()
    if stored is None or stored.site_password_sha256 != fingerprint(site_password):
        return configured, None
    return stored.password, stored.previous


def cloud_password(stored: StoredKey | None, site_cloud_password: Secret | None) -> str | None:
    """What the charge point's cloud session sends."""
    configured = None if site_cloud_password is None else site_cloud_password.reveal()
    if stored is None or stored.site_cloud_password_sha256 != fingerprint(site_cloud_password):
        return configured
    return stored.password


def rotation(action: str, call_payload: Mapping[str, Any], answer: Mapping[str, Any]) -> str | None:
    """The new key a cloud call set, if the charge point accepted it."""
    if action == "ChangeConfiguration":
        if call_payload.get("key") != "AuthorizationKey" or answer.get("status") not in ACCEPTED:
            return None
        return _key(call_payload.get("value"))
    if action == "SetVariables":
        accepted = {
            _names(r)
            for r in answer.get("setVariableResult") or ()
            if isinstance(r, Mapping) and r.get("attributeStatus") in ACCEPTED
        }
        for data in call_payload.get("setVariableData") or ():
            if not isinstance(data, Mapping) or data.get("attributeType", "Actual") != "Actual":
                continue
            names = _names(data)
            if names == ("SecurityCtrlr", "BasicAuthPassword") and names in accepted:
                return _key(data.get("attributeValue"))
    return None


def _names(item: Mapping[str, Any]) -> tuple[str, str]:
    component, variable = item.get("component"), item.get("variable")
    return (
        str(component.get("name")) if isinstance(component, Mapping) else "",
        str(variable.get("name")) if isinstance(variable, Mapping) else "",
    )


def _key(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def rotated(
    stored: StoredKey | None,
    new: str,
    *,
    site_password: Secret | None,
    site_cloud_password: Secret | None,
    action: str,
    now_utc: str,
) -> StoredKey:
    current, _ = listener_passwords(stored, site_password)
    return StoredKey(
        password=new,
        previous=current if current != new else None,
        site_password_sha256=fingerprint(site_password),
        site_cloud_password_sha256=fingerprint(site_cloud_password),
        rotated_utc=now_utc,
        action=action,
    )


def status(stored: StoredKey | None, site_password: Secret | None) -> dict[str, Any] | None:
    """For the charge point's status: when and how its key was rotated (never the key)."""
    if stored is None:
        return None
    in_force = stored.site_password_sha256 == fingerprint(site_password)
    return {
        "rotated_utc": stored.rotated_utc,
        "by": stored.action,
        "in_force": in_force,
        "previous_accepted": in_force and stored.previous is not None,
    }
