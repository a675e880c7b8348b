"""The ``[authorization]`` section of a site file: local authorization and its fallback rules.

```toml
[authorization]
local_authorize_offline = true        # offline, accept ids valid in the local list / cache
                                      # (OCPP LocalAuthorizeOffline)
local_pre_authorize = false           # online, accept ids valid locally without waiting for the
                                      # cloud (LocalPreAuthorize)
authorization_cache_enabled = true    # remember the cloud's answers (AuthorizationCacheEnabled)
cache_ttl_s = 604800                  # drop a cache entry unused this long; 0: never
                                      # (2.0.1 AuthCacheCtrlr.LifeTime)
cache_max = 1000                      # entries; when full, NOT-valid then least recently used go
local_list_enabled = true             # use the cloud's SendLocalList (LocalAuthListEnabled)
local_list_max_entries = 10000        # a larger list is refused (LocalAuthListMaxLength)
unknown_id_offline = "reject"         # offline, ids in neither list nor cache: "reject",
                                      # "accept" (1.6 AllowOfflineTxForUnknownId) or
                                      # "accept_capped" (accept up to unknown_id_energy_cap_wh)
unknown_id_energy_cap_wh = 5000       # required with "accept_capped"
stop_transaction_on_invalid_id = true # cloud later rejects an id accepted locally: stop the
                                      # transaction, reason DeAuthorized (StopTransactionOnInvalidId)
max_energy_on_invalid_id_wh = 0       # otherwise: Wh the transaction may still take
                                      # (MaxEnergyOnInvalidId); 0 stops energy at once,
                                      # "unlimited" lets it run
rules_file = "rules.json"             # optional central rules bundle to load at start; relative
                                      # to this file; it must exist when this file is loaded; a
                                      # newer bundle from the cloud replaces it
```

Every key is optional; the defaults are the values shown above except ``unknown_id_energy_cap_wh``
(none) and ``rules_file`` (none). Central rules (``actors/rules.py``) may override any of these
keys except ``rules_file``, site-wide or per charge point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.auth_settings import AUTH_KEYS, AuthSettings, plain_value_problem, with_overrides
from config.fields import ConfigError, Table, check_readable


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationConfig:
    settings: AuthSettings
    rules_file: Path | None = None


def from_table(t: Table) -> AuthorizationConfig:
    plain: dict[str, Any] = {}
    for key, expected in AUTH_KEYS.items():
        if not t.has(key):
            t.raw(key, None)  # mark as read: an absent key keeps its default
            continue
        value = t.raw(key)
        if plain_value_problem(key, value):
            raise t.error(key, expected, value)
        plain[key] = value
    if (
        plain.get("unknown_id_offline") == "accept_capped"
        and "unknown_id_energy_cap_wh" not in plain
    ):
        raise t.error(
            "unknown_id_energy_cap_wh",
            "an integer >= 1 (required by unknown_id_offline = 'accept_capped')",
        )
    try:
        settings = with_overrides(AuthSettings(), plain)
    except ValueError as exc:  # every value and known combination was checked above
        raise ConfigError(
            t.source, t.path or "authorization", f"consistent settings ({exc})"
        ) from None
    rules_file = t.string("rules_file", None)
    path: Path | None = None
    if rules_file is not None:
        if not rules_file:
            raise t.error("rules_file", "a file name", rules_file)
        path = Path(rules_file)
        if not path.is_absolute() and not t.source.startswith("<"):
            path = Path(t.source).parent / path
        # Only the operator writes it (the cloud's bundles go to the store) and only a start
        # reads it: missing, the site would run on its fallbacks with an error in the log.
        check_readable(t, "rules_file", path)
    t.reject_unknown()
    return AuthorizationConfig(settings=settings, rules_file=path)
