"""The Authorizer actor (one per broker node): local authorization, the local list, central rules.

Holds the edge's local list, the authorization cache, the site's settings and the versioned
central rules; answers :class:`AuthorizeLocally` with :class:`AuthorizedLocally` (never awaiting
anyone) and learns from the cloud's answers (:class:`CloudAuthorized`) into the cache. Calls the
cloud addresses to the edge (SendLocalList, GetLocalListVersion, DataTransfer RulesBundle and
RulesRollback) are answered here. A rules bundle is validated whole and applied atomically or not
at all; the applied version is reported back and the previous one kept for rollback; its energy part
goes to the energy node, and again when the energy node's allocator starts and asks
(:class:`SiteRulesWanted`). Every decision is written to the audit trail in the same commit as the
state it changes, and the cloud's call is answered once that commit has landed
(:meth:`Actor.send_once_committed`): an update answered Accepted is on disk.

With broker shards (``[runtime] broker_shards``) the cloud's calls to the edge reach the front's
authorizer (``broker``) only: it shares its local list and rules, whole, with the other broker
nodes' authorizers whenever they change and when one starts (:class:`AuthorityShared`); they keep
the last they got (persisted, so a node restarted while the front is down still has it). Their
rules file is the front's to apply. Each node keeps its own authorization cache and passes what it
learns from the cloud on to the others' (:class:`CloudAuthorized` with ``from_node``): a driver
who charged at one node's charge point is known offline at every node's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson

from actors.audit import audit
from actors.audit_records import AuditKind
from actors.auth_cache import (
    CacheChange,
    cache_from_entries,
    entry_from_dict,
    entry_to_dict,
)
from actors.auth_settings import AuthSettings
from actors.authorization import (
    AuthDecision,
    AwaitCloud,
    DecisionPath,
    decide,
    on_late_answer,
)
from actors.broker_context import BrokerContext
from actors.energy_messages import SiteRulesChanged, SiteRulesWanted
from actors.id_tags import AuthStatus, IdTagInfo, parse_id_tag_info, parse_id_token_info
from actors.local_list import LocalList, handle_send_local_list, local_list_version
from actors.local_list import from_dict as list_from_dict
from actors.local_list import to_dict as list_to_dict
from actors.messages import (
    AnswerToCloud,
    AuthorityShared,
    AuthorityWanted,
    AuthorizedLocally,
    AuthorizeLocally,
    CacheClearedAtChargePoint,
    CloudAuthorized,
    EdgeCallFromCloud,
    LateDecision,
    LateVerdict,
)
from actors.rules import RulesOutcome, RulesState, apply, rollback, state_from_dict, state_to_dict
from actors.shards import broker_node
from actors.utc import format_utc, parse_utc
from drivers.ocpp.framing import call_result_text
from supervisors.actor import Actor, ActorContext

log = logging.getLogger(__name__)


class Authorizer(Actor):
    # The cloud's late verdict on a transaction (from its charge point actor), decided and
    # answered (LateDecision) in one unit of work: a crash on its way loses nothing.
    # A charge point's Accepted ClearCache, the cloud told so once this is queued here.
    DURABLE = frozenset({LateVerdict, CacheClearedAtChargePoint})

    def __init__(self, ctx: ActorContext, broker: BrokerContext) -> None:
        super().__init__(ctx)
        self.broker = broker
        auth = broker.config.auth
        self.settings = auth.settings if auth is not None else AuthSettings()
        self.decisions = 0
        # Broker shards: the front's list and rules go to the others (AuthorityShared).
        self.front = broker.shard == 0
        self.shared_stamp_ns = 0  # the last AuthorityShared applied (another node's)

    async def started(self) -> None:
        raw_list = self.load("local_list")
        self.local_list = list_from_dict(raw_list) if raw_list is not None else LocalList()
        self.cache = cache_from_entries([entry_from_dict(e) for e in self.load("cache", [])])
        raw_rules = self.load("rules")
        self.rules = state_from_dict(raw_rules) if raw_rules is not None else RulesState()
        if not self.front:
            # The front applies the rules file and tells the energy node; ask it for its state.
            self.ctx.system.send(
                f"{broker_node(0)}/authorizer", AuthorityWanted(reply_to=self.ctx.path)
            )
            return
        auth = self.broker.config.auth
        if auth is not None and auth.rules_file is not None:
            self._rules_from_file(auth.rules_file)
        self._publish_rules()
        self._share_all()  # to those that asked before this node was up

    def _share(self, to: str) -> None:
        # Once committed (at once if nothing changed: an answer to AuthorityWanted): sent
        # before, a front killed before its commit left the other broker nodes (which keep
        # them) on a local list and rules it lost and the cloud was never told were accepted.
        self.send_once_committed(
            to,
            AuthorityShared(
                local_list=list_to_dict(self.local_list),
                rules=state_to_dict(self.rules),
                stamp_ns=time.monotonic_ns(),
            ),
        )

    def _share_all(self) -> None:
        for k in range(1, self.broker.shards):
            self._share(f"{broker_node(k)}/authorizer")

    def _shared(self, msg: AuthorityShared) -> None:
        """Another node's: the front's local list and rules, in force here from now on."""
        if msg.stamp_ns <= self.shared_stamp_ns:
            return
        self.shared_stamp_ns = msg.stamp_ns
        self.local_list = list_from_dict(msg.local_list)
        self.rules = state_from_dict(msg.rules)
        self.persist("local_list", msg.local_list)
        self.persist("rules", msg.rules)
        self._drop_listed_from_cache()
        log.info(
            "local list version %s and rules version %s from the front",
            self.local_list.version,
            None if self.rules.current is None else self.rules.current.version,
        )

    def _rules_from_file(self, path: Any) -> None:
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".toml":
                import tomllib

                bundle: object = tomllib.loads(text)
            else:
                bundle = text
        except (OSError, ValueError) as exc:
            log.error("rules file %s unreadable: %s (keeping the rules in force)", path, exc)
            return
        outcome = apply(self.rules, bundle)
        if outcome.outcome == "refused":
            log.error(
                "rules file %s refused: %s %s",
                path,
                outcome.reason,
                [str(p) for p in outcome.problems],
            )
        self._rules_outcome(outcome, source=f"file {path}")

    def settings_for(self, charge_point_id: str | None) -> AuthSettings:
        current = self.rules.current
        if current is None:
            return self.settings
        return current.auth_settings(self.settings, charge_point_id)

    def _rules_outcome(self, outcome: RulesOutcome, *, source: str) -> None:
        kind = {
            "applied": AuditKind.RULES_APPLIED,
            "already_applied": AuditKind.RULES_APPLIED,
            "refused": AuditKind.RULES_REFUSED,
            "rolled_back": AuditKind.RULES_ROLLED_BACK,
        }[outcome.outcome]
        audit(
            self,
            kind,
            decision=outcome.outcome,
            reason=f"{outcome.reason} ({source})",
            inputs=outcome.audit_inputs(),
            now=self.broker.now(),
        )
        if outcome.outcome in ("applied", "rolled_back"):
            self.rules = outcome.state
            self.persist("rules", state_to_dict(self.rules))
            self._publish_rules()
            self._share_all()

    def _publish_rules(self, to: str = "energy/allocator") -> None:
        current = self.rules.current
        if current is None:
            return
        cps = current.doc.get("charge_points", {})
        # Once they are committed (at once if nothing changed): sent before, a node killed
        # before the commit left the energy node (which stores them) on rules the broker lost
        # and the cloud was never told were accepted, and a broker with no rules after its
        # restart sends none to correct it.
        self.send_once_committed(
            to,
            SiteRulesChanged(
                seq=self.ctx.system.require_store().next_id(),
                version=current.version,
                priorities={k: int(v["priority"]) for k, v in cps.items() if "priority" in v},
                max_current_a={
                    k: float(v["max_current_a"]) for k, v in cps.items() if "max_current_a" in v
                },
                site={k: float(v) for k, v in current.site().items()},
            ),
        )

    def report(self) -> dict[str, Any]:
        return {
            "rules_version": None if self.rules.current is None else self.rules.current.version,
            "rules_previous": None if self.rules.previous is None else self.rules.previous.version,
            "local_list_version": self.local_list.version,
            "local_list_entries": len(self.local_list),
            "cache_entries": len(self.cache),
            "local_decisions": self.decisions,
        }

    def _drop_listed_from_cache(self) -> None:
        """An id now in the local list is never answered from the cache."""
        self._apply_cache(
            CacheChange(remove=tuple(k for k in self.cache.entries if self.local_list.get(k)))
        )

    def _apply_cache(self, change: CacheChange) -> None:
        if change:
            self.cache = self.cache.apply(change)
            self.persist("cache", [entry_to_dict(k, e) for k, e in self.cache.entries.items()])

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, AuthorizeLocally):
            now = self.broker.now()
            result = self._decide(msg.id_token, msg.charge_point_id, now)
            assert isinstance(result, AuthDecision)  # offline always decides
            self._apply_cache(result.cache_change)
            self.decisions += 1
            audit(
                self,
                AuditKind.AUTHORIZATION,
                decision=result.status.value,
                reason=result.reason,
                charge_point_id=msg.charge_point_id,
                inputs=result.audit_inputs(),
                now=now,
            )
            self.ctx.system.send(
                msg.reply_to,
                AuthorizedLocally(
                    message_id=msg.message_id,
                    ask_ref=msg.ask_ref,
                    status=result.status.value,
                    expiry_utc=None if result.expiry_utc is None else format_utc(result.expiry_utc),
                    parent_id=result.parent_id,
                    energy_cap_wh=result.energy_cap_wh,
                    path=result.path.value,
                    reason=result.reason,
                ),
            )
            return None
        if isinstance(msg, CloudAuthorized):
            self._learned(msg)
            return None
        if isinstance(msg, EdgeCallFromCloud):
            self._edge_call(msg)
            return None
        if isinstance(msg, AuthorityShared):
            if not self.front:
                self._shared(msg)
            return None
        if isinstance(msg, AuthorityWanted):
            if self.front:
                self._share(msg.reply_to)
            return None
        if isinstance(msg, SiteRulesWanted):
            if self.front:
                self._publish_rules(msg.reply_to)
            return None
        if isinstance(msg, LateVerdict):
            self._late(msg)
            return None
        if isinstance(msg, CacheClearedAtChargePoint):
            self._cache_cleared(msg)
            return None
        return await super().receive(msg)

    def _decide(
        self, id_token: str, charge_point_id: str, now: datetime, cloud: IdTagInfo | None = None
    ) -> AuthDecision | AwaitCloud:
        """:func:`decide` with this node's list, cache and settings: offline, or on the
        cloud's answer ``cloud``."""
        return decide(
            id_token,
            online=cloud is not None,
            cloud_answer=cloud,
            local_list=self.local_list,
            cache=self.cache,
            settings=self.settings_for(charge_point_id),
            now=now,
        )

    def _learned(self, msg: CloudAuthorized) -> None:
        """The cloud's answer for an id, into the cache: learned here (then passed on to the
        other broker nodes' authorizers) or by another node (unless this one has learned a
        newer answer for that id meanwhile)."""
        try:
            if "status" in msg.id_tag_info and ":" in msg.id_token:
                info = parse_id_token_info(msg.id_tag_info)
            else:
                info = parse_id_tag_info(msg.id_tag_info)
        except ValueError:
            return
        now = self.broker.now()
        if msg.from_node:
            try:
                now = parse_utc(msg.learned_utc, where=f"CloudAuthorized from {msg.from_node}")
            except ValueError:
                return
            known = self.cache.entries.get(msg.id_token)
            if known is not None and known.stored_utc >= now:
                return
        result = self._decide(msg.id_token, msg.charge_point_id, now, info)
        if not isinstance(result, AuthDecision) or not result.cache_change:
            return
        self._apply_cache(result.cache_change)
        if msg.from_node or self.broker.shards == 1:
            return
        shared = replace(msg, from_node=self.broker.node, learned_utc=format_utc(now))
        for k in range(self.broker.shards):
            if k != self.broker.shard:
                self.ctx.system.send(f"{broker_node(k)}/authorizer", shared)

    def _cache_cleared(self, msg: CacheClearedAtChargePoint) -> None:
        """The cloud's ClearCache, accepted by a charge point: the edge answers that charge
        point offline from this node's cache, whose every entry would authorize there (it is
        the node's, not the charge point's), so all of it goes. Clearing only what was learned
        at that charge point left a tag the cloud revoked, learned at a neighbour, accepted
        there offline; the neighbours lose their cached ids until the cloud answers for them
        again (the local list, which ClearCache leaves alone, is for ids that must work
        offline)."""
        removed = len(self.cache)
        self._apply_cache(self.cache.plan_clear())
        audit(
            self,
            AuditKind.CACHE_CLEARED,
            decision="cleared",
            reason="the cloud's ClearCache, accepted by the charge point",
            charge_point_id=msg.charge_point_id,
            inputs={"entries_removed": removed, "message_id": msg.message_id},
            now=self.broker.now(),
        )

    def _late(self, msg: LateVerdict) -> None:
        try:
            path = DecisionPath(msg.local_path)
            status = AuthStatus(msg.cloud_status)
        except ValueError:
            path, status = DecisionPath.FALLBACK_ACCEPT, AuthStatus.INVALID
        refused_before = None
        if msg.refused_before is not None:
            try:
                refused_before = AuthStatus(msg.refused_before)
            except ValueError:
                refused_before = AuthStatus.INVALID
        action = on_late_answer(
            local_path=path,
            local_energy_cap_wh=msg.local_energy_cap_wh,
            cloud_status=status,
            transaction_running=msg.running,
            energy_delivered_wh=msg.energy_delivered_wh,
            settings=self.settings_for(msg.charge_point_id),
            refused_before=refused_before,
        )
        audit(
            self,
            AuditKind.LATE_AUTHORIZATION,
            decision=action.action.value,
            reason=action.reason,
            charge_point_id=msg.charge_point_id,
            now=self.broker.now(),
            inputs={
                "transaction_id": msg.transaction_id,
                "cloud_status": msg.cloud_status,
                "local_path": msg.local_path,
                "energy_delivered_wh": msg.energy_delivered_wh,
                **({"refused_before": msg.refused_before} if msg.refused_before else {}),
            },
        )
        decision = LateDecision(
            transaction_id=msg.transaction_id,
            action=action.action.value,
            reason=action.reason,
            energy_cap_wh=action.energy_cap_wh,
        )
        ref = self.ctx.system.lookup(msg.reply_to)
        if ref is None:
            self.ctx.system.send(msg.reply_to, decision)  # no such actor: a dead letter
        else:
            self.send_durable(ref, decision)  # committed with its record

    def _edge_call(self, msg: EdgeCallFromCloud) -> None:
        now = self.broker.now()
        supported = self.settings.local_list_enabled
        answer: dict[str, Any]
        if msg.action == "GetLocalListVersion":
            answer = {"listVersion": local_list_version(self.local_list, supported=supported)}
        elif msg.action == "SendLocalList":
            result = handle_send_local_list(
                self.local_list,
                msg.payload,
                protocol="ocpp1.6",
                supported=supported,
                max_entries=self.settings.local_list_max_entries,
            )
            if result.status.value == "Accepted":
                self.local_list = result.local_list
                self.persist("local_list", list_to_dict(self.local_list))
                self._drop_listed_from_cache()
                self._share_all()
            audit(
                self,
                AuditKind.LOCAL_LIST_UPDATED,
                decision=result.status.value,
                reason=result.reason,
                inputs=result.audit_inputs(),
                now=now,
            )
            answer = {"status": result.status.value}
        else:
            if msg.action == "RulesRollback":
                outcome = rollback(self.rules)
            else:
                outcome = apply(self.rules, msg.payload.get("data") or "")
            self._rules_outcome(outcome, source="cloud DataTransfer")
            current = outcome.state.current
            answer = {
                "status": "Rejected" if outcome.outcome == "refused" else "Accepted",
                "data": orjson.dumps(
                    {
                        "outcome": outcome.outcome,
                        "version": None if current is None else current.version,
                        "reason": outcome.reason,
                        "problems": [str(p) for p in outcome.problems],
                    }
                ).decode(),
            }
        # Once what it changed is committed: a list or rules the cloud was told were accepted
        # were lost if the node died before the commit (the cloud does not send them again; a
        # lost differential update leaves the version wrong and entries missing). An answer
        # that changed nothing (GetLocalListVersion) goes at once.
        self.send_once_committed(
            msg.reply_path,
            AnswerToCloud(session=msg.session, text=call_result_text(msg.message_id, answer)),
        )
