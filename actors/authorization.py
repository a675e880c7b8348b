"""Local authorization: who may charge, decided without I/O, with the path that decided it.

``decide`` answers an Authorize (or the idTag of a StartTransaction) for one charge point:

Online (``cloud_answer`` given): the cloud's IdTagInfo is the answer. It is cached unless the cache
is disabled or the id is in the local list (1.6 3.5.3: list ids are never cached); a cloud answer
that contradicts the list is flagged (``local_list_conflict``: 1.6 asks for a StatusNotification
with errorCode LocalListConflict).

Online without an answer yet: with LocalPreAuthorize an id valid in the list or the cache is
Accepted at once; otherwise the result is :class:`AwaitCloud` (forward the request, then call
``decide`` again with the answer). A timed-out cloud is offline: call with ``online=False``.

Offline, in this order (1.6 3.5.3/3.5.4, 2.0.1 C13.FR.04 as amended by the 2023 errata):

1. Local list (if enabled). A non-Accepted entry, or an Accepted one past its expiry, is rejected
   with its status: it never falls through to the cache or the fallback. A valid entry is Accepted
   when LocalAuthorizeOffline is on.
2. Cache (if enabled). A NOT-valid entry is rejected the same way (the cloud said so; the unknown-id
   rule is only for ids in neither list nor cache). A valid entry is Accepted when
   LocalAuthorizeOffline is on.
3. Fallback for ids the list and cache do not grant: ``reject`` (Invalid), ``accept``, or
   ``accept_capped`` (Accepted with an energy cap). 1.6 AllowOfflineTxForUnknownId=true is
   ``accept``. With LocalAuthorizeOffline off, a valid list/cache id lands here too: the site's
   fallback is then the rule for everybody.

``on_late_answer`` is the 1.6 3.5.4 rule for a replayed StartTransaction (or Authorize) the cloud
answers non-Accepted while the offline-accepted transaction still runs: stop it (DeAuthorized),
suspend or cap its energy (MaxEnergyOnInvalidId), or let it run, per site settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from actors.auth_cache import AuthCache, CacheChange
from actors.auth_settings import AuthSettings, UnknownIdPolicy
from actors.id_tags import AuthStatus, IdTagInfo
from actors.local_list import LocalList
from actors.utc import format_utc


class DecisionPath(StrEnum):
    CLOUD = "cloud"
    LOCAL_LIST = "local_list"
    CACHE = "cache"
    PRE_AUTHORIZE_LIST = "pre_authorize:local_list"
    PRE_AUTHORIZE_CACHE = "pre_authorize:cache"
    FALLBACK_REJECT = "fallback:reject"
    FALLBACK_ACCEPT = "fallback:accept"
    FALLBACK_ACCEPT_CAPPED = "fallback:accept_capped"

    @property
    def local(self) -> bool:
        """Decided at the edge: the cloud may later disagree (see ``on_late_answer``)."""
        return self is not DecisionPath.CLOUD


_FALLBACK_PATH = {
    UnknownIdPolicy.REJECT: DecisionPath.FALLBACK_REJECT,
    UnknownIdPolicy.ACCEPT: DecisionPath.FALLBACK_ACCEPT,
    UnknownIdPolicy.ACCEPT_CAPPED: DecisionPath.FALLBACK_ACCEPT_CAPPED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthDecision:
    id_tag: str
    status: AuthStatus
    path: DecisionPath
    reason: str
    list_version: int
    expiry_utc: datetime | None = None
    parent_id: str | None = None
    energy_cap_wh: int | None = None
    cache_change: CacheChange = field(default_factory=CacheChange)  # persist, then apply it
    local_list_conflict: bool = False

    @property
    def accepted(self) -> bool:
        return self.status is AuthStatus.ACCEPTED

    def id_tag_info(self) -> IdTagInfo:
        return IdTagInfo(status=self.status, expiry_utc=self.expiry_utc, parent_id=self.parent_id)

    def audit_inputs(self) -> dict[str, Any]:
        """Plain JSON for the audit record (the id is an identity, not a secret)."""
        out: dict[str, Any] = {
            "id_tag": self.id_tag,
            "status": self.status.value,
            "path": self.path.value,
            "list_version": self.list_version,
        }
        if self.expiry_utc is not None:
            out["expiry_utc"] = format_utc(self.expiry_utc)
        if self.parent_id is not None:
            out["parent_id"] = self.parent_id
        if self.energy_cap_wh is not None:
            out["energy_cap_wh"] = self.energy_cap_wh
        if self.local_list_conflict:
            out["local_list_conflict"] = True
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitCloud:
    """No local answer: forward the request and decide again with the cloud's answer."""

    id_tag: str
    reason: str


def decide(
    id_tag: str,
    *,
    online: bool,
    cloud_answer: IdTagInfo | None,
    local_list: LocalList,
    cache: AuthCache,
    settings: AuthSettings,
    now: datetime,
) -> AuthDecision | AwaitCloud:
    version = local_list.version
    listed = local_list.get(id_tag) if settings.local_list_enabled else None
    use_cache = settings.authorization_cache_enabled
    cached = cache.lookup(id_tag, now=now, ttl_s=settings.cache_ttl_s) if use_cache else None

    def decision(status: AuthStatus, path: DecisionPath, reason: str, **extra: Any) -> AuthDecision:
        return AuthDecision(
            id_tag=id_tag, status=status, path=path, reason=reason, list_version=version, **extra
        )

    if cloud_answer is not None:
        change = CacheChange()
        if use_cache and listed is None:
            change = cache.plan_store(
                id_tag,
                cloud_answer,
                now=now,
                max_entries=settings.cache_max,
                ttl_s=settings.cache_ttl_s,
            )
        said = cloud_answer.effective_status(now)
        list_says = None if listed is None else listed.effective_status(now)
        conflict = list_says is not None and list_says != said
        if not use_cache:
            note = "not cached: cache disabled"
        elif listed is not None:
            note = "not cached: id is in the local list"
        else:
            note = "cached"
        if conflict and list_says is not None:
            note += f"; local list says {list_says.value}"
        return decision(
            cloud_answer.status,
            DecisionPath.CLOUD,
            f"cloud answered {cloud_answer.status.value} ({note})",
            expiry_utc=cloud_answer.expiry_utc,
            parent_id=cloud_answer.parent_id,
            cache_change=change,
            local_list_conflict=conflict,
        )

    if online:
        if settings.local_pre_authorize:
            if listed is not None and listed.valid(now):
                return decision(
                    AuthStatus.ACCEPTED,
                    DecisionPath.PRE_AUTHORIZE_LIST,
                    f"LocalPreAuthorize: Accepted in local list version {version}",
                    expiry_utc=listed.expiry_utc,
                    parent_id=listed.parent_id,
                )
            if listed is None and cached is not None and cached.info.valid(now):
                return decision(
                    AuthStatus.ACCEPTED,
                    DecisionPath.PRE_AUTHORIZE_CACHE,
                    "LocalPreAuthorize: Accepted in the authorization cache",
                    expiry_utc=cached.info.expiry_utc,
                    parent_id=cached.info.parent_id,
                    cache_change=cache.plan_touch(id_tag, now=now),
                )
        why = (
            "LocalPreAuthorize is off" if not settings.local_pre_authorize else "not valid locally"
        )
        return AwaitCloud(id_tag=id_tag, reason=f"online; {why}: ask the cloud")

    offline_off = "LocalAuthorizeOffline is off"
    skipped = ""
    if listed is not None:
        status = listed.effective_status(now)
        if status is not AuthStatus.ACCEPTED:
            what = "expired" if listed.status is AuthStatus.ACCEPTED else status.value
            return decision(
                status,
                DecisionPath.LOCAL_LIST,
                f"offline: {what} in local list version {version}",
                expiry_utc=listed.expiry_utc,
                parent_id=listed.parent_id,
            )
        if settings.local_authorize_offline:
            return decision(
                AuthStatus.ACCEPTED,
                DecisionPath.LOCAL_LIST,
                f"offline: Accepted in local list version {version}",
                expiry_utc=listed.expiry_utc,
                parent_id=listed.parent_id,
            )
        skipped = f"valid in local list but {offline_off}; "
    elif cached is not None:
        status = cached.info.effective_status(now)
        if status is not AuthStatus.ACCEPTED:
            what = "expired" if cached.info.status is AuthStatus.ACCEPTED else status.value
            return decision(
                status,
                DecisionPath.CACHE,
                f"offline: {what} in the authorization cache",
                expiry_utc=cached.info.expiry_utc,
                parent_id=cached.info.parent_id,
            )
        if settings.local_authorize_offline:
            return decision(
                AuthStatus.ACCEPTED,
                DecisionPath.CACHE,
                "offline: Accepted in the authorization cache",
                expiry_utc=cached.info.expiry_utc,
                parent_id=cached.info.parent_id,
                cache_change=cache.plan_touch(id_tag, now=now),
            )
        skipped = f"valid in the cache but {offline_off}; "
    else:
        skipped = "unknown id (in neither local list nor cache); "

    policy = settings.unknown_id_offline
    path = _FALLBACK_PATH[policy]
    if policy is UnknownIdPolicy.REJECT:
        return decision(AuthStatus.INVALID, path, f"offline: {skipped}site rule rejects")
    if policy is UnknownIdPolicy.ACCEPT:
        return decision(AuthStatus.ACCEPTED, path, f"offline: {skipped}site rule accepts")
    cap = settings.unknown_id_energy_cap_wh
    return decision(
        AuthStatus.ACCEPTED,
        path,
        f"offline: {skipped}site rule accepts up to {cap} Wh",
        energy_cap_wh=cap,
    )


# --- the cloud disagrees later ---------------------------------------------------------------


class LateAction(StrEnum):
    NONE = "none"  # nothing to do (the cloud agreed, or the transaction is over)
    LIFT_CAP = "lift_cap"  # the cloud accepted an id the fallback had capped
    STOP = "stop"  # StopTransaction with reason DeAuthorized
    SUSPEND_ENERGY = "suspend_energy"  # keep the transaction, deliver no more energy
    CAP_ENERGY = "cap_energy"  # deliver at most remaining_wh more, then suspend
    LET_RUN = "let_run"  # site setting: honour the offline acceptance


@dataclass(frozen=True, slots=True, kw_only=True)
class LateAnswerAction:
    action: LateAction
    reason: str
    stop_reason: str | None = None  # OCPP 1.6 Reason / 2.0.1 stoppedReason
    energy_cap_wh: int | None = None  # the transaction's total allowance
    remaining_wh: float | None = None

    def audit_inputs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action.value}
        if self.stop_reason is not None:
            out["stop_reason"] = self.stop_reason
        if self.energy_cap_wh is not None:
            out["energy_cap_wh"] = self.energy_cap_wh
        if self.remaining_wh is not None:
            out["remaining_wh"] = self.remaining_wh
        return out


def on_late_answer(
    *,
    local_path: DecisionPath,
    local_energy_cap_wh: int | None,
    cloud_status: AuthStatus,
    transaction_running: bool,
    energy_delivered_wh: float,
    settings: AuthSettings,
    refused_before: AuthStatus | None = None,
) -> LateAnswerAction:
    """What to do when the cloud answers the StartTransaction (replayed or not) of a running
    transaction; ``local_path`` is how the edge authorized it (for the reason text),
    ``local_energy_cap_wh`` the cap a capped fallback put on it (if any).

    ``refused_before``: the cloud's earlier refusal of this transaction's id (2.0.1: its answer
    to an earlier TransactionEvent carrying it). That verdict was judged and stands for the
    transaction's lifetime, as in 1.6, where the StartTransaction's answer is the only one: a
    later Accepted lifts no cap and takes back no stop, a later refusal adds nothing. What the
    cloud wants otherwise it says itself (RemoteStart/RequestStart, its charging profiles)."""
    said = f"cloud answered {cloud_status.value} for an id accepted via {local_path.value}"
    if not transaction_running:
        return LateAnswerAction(action=LateAction.NONE, reason=f"{said}; transaction already ended")
    if refused_before is not None:
        return LateAnswerAction(
            action=LateAction.NONE,
            reason=f"{said}; the cloud refused it before ({refused_before.value}): that stands",
        )
    if cloud_status is AuthStatus.ACCEPTED:
        if local_energy_cap_wh is not None:
            return LateAnswerAction(
                action=LateAction.LIFT_CAP, reason=f"{said}; lift the {local_energy_cap_wh} Wh cap"
            )
        return LateAnswerAction(action=LateAction.NONE, reason=f"{said}; nothing to change")
    if settings.stop_transaction_on_invalid_id:
        return LateAnswerAction(
            action=LateAction.STOP,
            reason=f"{said}; StopTransactionOnInvalidId: stop",
            stop_reason="DeAuthorized",
        )
    allowance = settings.max_energy_on_invalid_id_wh
    if allowance is None:
        if local_energy_cap_wh is not None:
            return LateAnswerAction(
                action=LateAction.LET_RUN,
                reason=f"{said}; site lets it run within the fallback's {local_energy_cap_wh} Wh cap",
                energy_cap_wh=local_energy_cap_wh,
                remaining_wh=max(0.0, local_energy_cap_wh - energy_delivered_wh),
            )
        return LateAnswerAction(
            action=LateAction.LET_RUN, reason=f"{said}; site lets offline-accepted transactions run"
        )
    if local_energy_cap_wh is not None:
        allowance = min(allowance, local_energy_cap_wh)
    remaining = max(0.0, allowance - energy_delivered_wh)
    if remaining <= 0:
        return LateAnswerAction(
            action=LateAction.SUSPEND_ENERGY,
            reason=(
                f"{said}; MaxEnergyOnInvalidId allowance {allowance} Wh reached "
                f"({energy_delivered_wh:g} Wh delivered): suspend energy"
            ),
            energy_cap_wh=allowance,
            remaining_wh=0.0,
        )
    return LateAnswerAction(
        action=LateAction.CAP_ENERGY,
        reason=f"{said}; MaxEnergyOnInvalidId: {remaining:g} Wh more of {allowance} Wh",
        energy_cap_wh=allowance,
        remaining_wh=remaining,
    )
