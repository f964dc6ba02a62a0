"""API keys: created and revoked by system callers, scoped to a domain."""

from __future__ import annotations

from typing import Any

from policyhub.identity import new_api_key
from policyhub.manager.api_key_manager import ApiKeyManager
from policyhub.manager.audit_trail import AuditTrail
from policyhub.service import validation
from policyhub.service.context import Clock, RequestContext
from policyhub.service.guard import Guard
from policyhub.service.permissions import API_KEY_CREATE, API_KEY_LIST, API_KEY_REVOKE


class ApiKeyService:
    def __init__(self, api_keys: ApiKeyManager, guard: Guard, audit: AuditTrail, clock: Clock):
        self.api_keys = api_keys
        self.guard = guard
        self.audit = audit
        self.clock = clock

    def create(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        service_account_id = validation.identifier(params.get("service_account_id", ""), "service_account_id")
        name = validation.name(params.get("name", ""))
        self.guard.require(ctx, API_KEY_CREATE, "api_key")
        key_id, plaintext, key_hash = new_api_key()
        created = self.api_keys.create(
            {
                "api_key_id": key_id,
                "key_hash": key_hash,
                "name": name,
                "service_account_id": service_account_id,
                "domain_id": ctx.domain_id,
                "state": "ACTIVE",
                "created_at": self.clock(),
            }
        )
        self.audit.record(ctx, API_KEY_CREATE, key_id, None, created)
        return {**created, "api_key": plaintext}

    def revoke(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        key_id = validation.identifier(params.get("api_key_id", ""), "api_key_id")
        self.guard.require(ctx, API_KEY_REVOKE, "api_key")
        revoked = self.api_keys.revoke(ctx.domain_id, key_id, self.clock())
        self.audit.record(ctx, API_KEY_REVOKE, key_id, None, revoked)
        return revoked

    def list(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        self.guard.require(ctx, API_KEY_LIST, "api_key")
        return self.api_keys.list(ctx.domain_id, params.get("query"))
