"""The Authorizer actor (one per broker node): local authorization decisions and their records.

Holds the edge's local list, the authorization cache and the site's settings; answers
:class:`AuthorizeLocally` with :class:`AuthorizedLocally` (never awaiting anyone), and learns from
the cloud's answers (:class:`CloudAuthorized`) into the cache. Every local decision is written to the
audit trail in the same commit as the cache change it causes.
"""

from __future__ import annotations

from typing import Any

from actors.audit import audit
from actors.audit_records import AuditKind
from actors.auth_cache import (
    CacheChange,
    cache_from_entries,
    entry_from_dict,
    entry_to_dict,
)
from actors.auth_settings import AuthSettings
from actors.authorization import AuthDecision, decide
from actors.broker_context import BrokerContext
from actors.id_tags import parse_id_tag_info, parse_id_token_info
from actors.local_list import LocalList
from actors.local_list import from_dict as list_from_dict
from actors.messages import AuthorizedLocally, AuthorizeLocally, CloudAuthorized
from actors.utc import format_utc
from supervisors.actor import Actor, ActorContext


class Authorizer(Actor):
    def __init__(self, ctx: ActorContext, broker: BrokerContext) -> None:
        super().__init__(ctx)
        self.broker = broker
        auth = broker.config.auth
        self.settings = auth.settings if auth is not None else AuthSettings()
        self.decisions = 0

    async def started(self) -> None:
        raw_list = self.load("local_list")
        self.local_list = list_from_dict(raw_list) if raw_list is not None else LocalList()
        self.cache = cache_from_entries([entry_from_dict(e) for e in self.load("cache", [])])

    def report(self) -> dict[str, Any]:
        return {
            "local_list_version": self.local_list.version,
            "local_list_entries": len(self.local_list),
            "cache_entries": len(self.cache),
            "local_decisions": self.decisions,
        }

    def _apply_cache(self, change: CacheChange) -> None:
        if change:
            self.cache = self.cache.apply(change)
            self.persist("cache", [entry_to_dict(k, e) for k, e in self.cache.entries.items()])

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, AuthorizeLocally):
            now = self.broker.now()
            result = decide(
                msg.id_token,
                online=False,
                cloud_answer=None,
                local_list=self.local_list,
                cache=self.cache,
                settings=self.settings,
                now=now,
            )
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
            try:
                if "status" in msg.id_tag_info and ":" in msg.id_token:
                    info = parse_id_token_info(msg.id_tag_info)
                else:
                    info = parse_id_tag_info(msg.id_tag_info)
            except ValueError:
                return None
            result = decide(
                msg.id_token,
                online=True,
                cloud_answer=info,
                local_list=self.local_list,
                cache=self.cache,
                settings=self.settings,
                now=self.broker.now(),
            )
            if isinstance(result, AuthDecision):
                self._apply_cache(result.cache_change)
            return None
        return await super().receive(msg)
