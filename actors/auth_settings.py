"""A site's authorization settings and their plain (config file / rules bundle) form.

The plain form is what ``[authorization]`` in the site file and the ``authorization`` table of a
rules bundle hold: :data:`AUTH_KEYS` names each key and what it expects, and
:func:`with_overrides` maps plain values onto :class:`AuthSettings` (``cache_ttl_s = 0`` means
"never age out", ``max_energy_on_invalid_id_wh = "unlimited"`` means "let it run").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class UnknownIdPolicy(StrEnum):
    REJECT = "reject"
    ACCEPT = "accept"
    ACCEPT_CAPPED = "accept_capped"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    """A site's authorization settings (config ``[authorization]``, overridable by rules)."""

    local_authorize_offline: bool = True
    local_pre_authorize: bool = False
    authorization_cache_enabled: bool = True
    cache_ttl_s: int | None = 7 * 24 * 3600  # None: entries never age out
    cache_max: int = 1000
    local_list_enabled: bool = True
    local_list_max_entries: int = 10_000
    unknown_id_offline: UnknownIdPolicy = UnknownIdPolicy.REJECT
    unknown_id_energy_cap_wh: int | None = None
    stop_transaction_on_invalid_id: bool = True
    # None: let the transaction run; 0: stop energy at once; N: allow N Wh in the transaction.
    max_energy_on_invalid_id_wh: int | None = 0

    def to_plain(self) -> dict[str, Any]:
        """The plain form (:data:`AUTH_KEYS`); ``with_overrides(AuthSettings(), s.to_plain()) == s``."""
        out: dict[str, Any] = {
            "local_authorize_offline": self.local_authorize_offline,
            "local_pre_authorize": self.local_pre_authorize,
            "authorization_cache_enabled": self.authorization_cache_enabled,
            "cache_ttl_s": self.cache_ttl_s or 0,
            "cache_max": self.cache_max,
            "local_list_enabled": self.local_list_enabled,
            "local_list_max_entries": self.local_list_max_entries,
            "unknown_id_offline": self.unknown_id_offline.value,
            "stop_transaction_on_invalid_id": self.stop_transaction_on_invalid_id,
            "max_energy_on_invalid_id_wh": (
                "unlimited"
                if self.max_energy_on_invalid_id_wh is None
                else self.max_energy_on_invalid_id_wh
            ),
        }
        if self.unknown_id_energy_cap_wh is not None:
            out["unknown_id_energy_cap_wh"] = self.unknown_id_energy_cap_wh
        return out

    def __post_init__(self) -> None:
        if self.cache_max < 1:
            raise ValueError(f"cache_max must be >= 1, got {self.cache_max}")
        if self.cache_ttl_s is not None and self.cache_ttl_s < 1:
            raise ValueError(f"cache_ttl_s must be >= 1 or None, got {self.cache_ttl_s}")
        if self.local_list_max_entries < 0:
            raise ValueError(
                f"local_list_max_entries must be >= 0, got {self.local_list_max_entries}"
            )
        cap = self.unknown_id_energy_cap_wh
        if self.unknown_id_offline is UnknownIdPolicy.ACCEPT_CAPPED and (cap is None or cap < 1):
            raise ValueError(
                f"unknown_id_offline = 'accept_capped' needs unknown_id_energy_cap_wh >= 1, got {cap!r}"
            )
        if self.max_energy_on_invalid_id_wh is not None and self.max_energy_on_invalid_id_wh < 0:
            raise ValueError(
                f"max_energy_on_invalid_id_wh must be >= 0 or None, got {self.max_energy_on_invalid_id_wh}"
            )


# The plain (config/rules) form of each setting; ``with_overrides`` maps it onto AuthSettings.
AUTH_KEYS: dict[str, str] = {
    "local_authorize_offline": "true or false",
    "local_pre_authorize": "true or false",
    "authorization_cache_enabled": "true or false",
    "cache_ttl_s": "an integer >= 0 (0: entries never age out)",
    "cache_max": "an integer >= 1",
    "local_list_enabled": "true or false",
    "local_list_max_entries": "an integer >= 0",
    "unknown_id_offline": "one of 'reject', 'accept', 'accept_capped'",
    "unknown_id_energy_cap_wh": "an integer >= 1",
    "stop_transaction_on_invalid_id": "true or false",
    "max_energy_on_invalid_id_wh": "an integer >= 0 or 'unlimited'",
}


def with_overrides(base: AuthSettings, plain: Mapping[str, Any]) -> AuthSettings:
    """``base`` with the plain-form values in ``plain`` (keys of :data:`AUTH_KEYS`); raises
    ValueError naming the key when a value or the combination is wrong."""
    changes: dict[str, Any] = {}
    for key, value in plain.items():
        if key not in AUTH_KEYS:
            raise ValueError(f"{key}: no such authorization setting")
        problem = plain_value_problem(key, value)
        if problem:
            raise ValueError(f"{key}: expected {problem}, got {value!r}")
        if key == "cache_ttl_s":
            value = value or None
        elif key == "max_energy_on_invalid_id_wh":
            value = None if value == "unlimited" else value
        elif key == "unknown_id_offline":
            value = UnknownIdPolicy(value)
        changes[key] = value
    return replace(base, **changes)


def plain_value_problem(key: str, value: object) -> str:
    """What ``key`` expects when ``value`` does not fit it, else ''."""
    expected = AUTH_KEYS[key]
    if expected == "true or false":
        return "" if isinstance(value, bool) else expected
    if key == "unknown_id_offline":
        return "" if value in ("reject", "accept", "accept_capped") else expected
    if key == "max_energy_on_invalid_id_wh" and value == "unlimited":
        return ""
    lowest = {"cache_max": 1, "unknown_id_energy_cap_wh": 1}.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        return expected
    return ""
