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

The edge's own key at the cloud (``[cloud] edge_identity`` / ``edge_password``) rotates the same
way, with the edge in the charge point's place (:mod:`actors.edge_endpoint`): the cloud sends
ChangeConfiguration AuthorizationKey to the edge's session; the edge keeps the key (table
``edge_credentials``, so no charge point's listener entry can be confused with it), answers
Accepted and reconnects with it (OCPP 1.6 security whitepaper, test case TC_073). Should the cloud
then refuse the new key (it did not keep it), the session falls back to the previous key rather
than lock the edge out; the first session opened with the new key retires the previous one.
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
EDGE_TABLE = "edge_credentials"
KEY_CHARS = (16, 40)  # OCPP: an AuthorizationKey of 16-20 bytes, up to 40 hex characters
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


def edge_put_op(identity: str, key: StoredKey) -> tuple[str, str, bytes, bytes]:
    return ("put", EDGE_TABLE, identity.encode(), codec.encode(key))


def load_edge(store: Store, identity: str) -> StoredKey | None:
    """The edge's own key at the cloud, as the cloud last rotated it (None: the site file's)."""
    try:
        stored = store.get_value(EDGE_TABLE, identity.encode())
    except codec.CodecError as exc:
        log.error(
            "the edge's stored key unreadable (%s); the site file's edge_password applies", exc
        )
        return None
    return stored if isinstance(stored, StoredKey) else None


def edge_key_problem(value: object) -> str | None:
    """Why the edge does not take ``value`` as its new key (None: it does). Never the value."""
    if not isinstance(value, str):
        return f"the key is not a string but {type(value).__name__}"
    low, high = KEY_CHARS
    if not low <= len(value) <= high:
        return f"the key has {len(value)} characters, not {low}-{high}"
    if not value.isascii() or not value.isprintable():
        return "the key has characters other than printable ASCII"
    return None


def edge_rotated(
    stored: StoredKey | None,
    new: str,
    *,
    site_password: Secret | None,
    action: str,
    now_utc: str,
) -> StoredKey:
    """The edge's key after the cloud set ``new``; the one in use now stays as the previous."""
    current = cloud_password(stored, site_password)
    return StoredKey(
        password=new,
        previous=current if current != new else None,
        site_password_sha256="",
        site_cloud_password_sha256=fingerprint(site_password),
        rotated_utc=now_utc,
        action=action,
    )


def edge_status(stored: StoredKey | None, site_password: Secret | None) -> dict[str, Any] | None:
    """For the edge session's status: when its key was rotated and whether the previous one is
    still kept (never a key)."""
    if stored is None:
        return None
    return _status(stored, stored.site_cloud_password_sha256, site_password, "previous_kept")


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
    return _status(stored, stored.site_password_sha256, site_password, "previous_accepted")


def _status(
    stored: StoredKey, replaced_sha256: str, site_password: Secret | None, previous_name: str
) -> dict[str, Any]:
    """In force while the site file still holds the password the rotation replaced."""
    in_force = replaced_sha256 == fingerprint(site_password)
    return {
        "rotated_utc": stored.rotated_utc,
        "by": stored.action,
        "in_force": in_force,
        previous_name: in_force and stored.previous is not None,
    }
